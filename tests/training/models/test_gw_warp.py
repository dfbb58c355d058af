"""The warping G_W (training/models/gw_warp.py): the warp direction on known motions and on Farneback's own
flows, the person kept by an untrained G_W (a zero flow returns the neutral face), the checkerboard measure
against a transposed-convolution regression, and the perceptual backbone's choice (vgg16 > fer2013 > efer)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import ROOT
from face_images import astronaut
from pipeline.errors import EmoganError
from training import flowrep
from training.models.efer import FrozenClassifier, perceptual_backbone
from training.models.gw_warp import checkerboard_ratio, decode_flow, source_positions, warp_forward
from training.models.networks import build

torch.set_num_threads(1)
TINY_GW = {"name": "gw_warp", "ngf": 8, "max_ch": 16, "n_down": 2, "n_res": 1}
FER2013 = ROOT / "weights" / "fer2013_mini_xception.hdf5"


def face(size: int = 64) -> torch.Tensor:
    """A real face (scikit-image's astronaut), (1,3,size,size) in [-1,1]."""
    a = astronaut()[15:115, 70:170]
    x = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].float() / 127.5 - 1
    return F.interpolate(x, size=(size, size), mode="area")


# ---------------------------------------------------------------- the warp

def test_a_known_translation_moves_the_face_by_that_many_pixels():
    img = face(32)
    disp = torch.zeros(1, 2, 32, 32)
    disp[:, 0], disp[:, 1] = 3.0, -2.0                  # every pixel moves 3 right, 2 up
    out = warp_forward(img, disp, iters=3)
    # out(x + 3, y - 2) = img(x, y), away from the border the warp repeats.
    assert torch.allclose(out[..., 0:30, 3:32], img[..., 2:32, 0:29], atol=1e-5)


@pytest.mark.parametrize("rep", ["cartesian", "polar"])
def test_the_network_scales_source_crop_pixels_to_its_side(rep):
    # Store flows are in pixels of the source crop: 8 px right and 4 px down on a 128 crop are 2 and 1 px at 32.
    net = build("gw_warp", representation=rep, clip=10.0, source_size=128, refine="none", **{
        k: v for k, v in TINY_GW.items() if k != "name"})
    px = torch.zeros(1, 2, 32, 32)
    px[:, 0], px[:, 1] = 8.0, 4.0
    img = face(32)
    out = net(flowrep.encode(px, rep, 10.0), img)
    assert torch.allclose(out[..., 1:32, 2:32], img[..., 0:31, 0:30], atol=1e-4)


def test_the_fixed_point_inverts_a_forward_expansion():
    # f(x) = a (x - c) moves x to c + (1 + a)(x - c); the output pixel y comes from c + (y - c) / (1 + a).
    a, c, n = 0.1, 15.5, 32
    ys, xs = torch.meshgrid(torch.arange(n).float(), torch.arange(n).float(), indexing="ij")
    disp = torch.stack([a * (xs - c), a * (ys - c)])[None]
    want = torch.stack([c + (xs - c) / (1 + a), c + (ys - c) / (1 + a)])
    first = (source_positions(disp, 1)[0] - want).abs().max()
    three = (source_positions(disp, 3)[0] - want).abs().max()
    assert first > 0.1 and three < 2e-3 and three < first / 50


def test_warping_the_first_frame_by_farnebacks_flow_gives_the_second():
    # The pipeline's convention end to end: flow = Farneback(prev=frame t, next=frame t+dt), a forward field.
    gray = cv2.cvtColor(astronaut(), cv2.COLOR_RGB2GRAY)
    m = cv2.getRotationMatrix2D((128, 128), 4.0, 1.05)       # head turns and comes closer
    nxt = cv2.warpAffine(gray, m, (256, 256), borderMode=cv2.BORDER_REFLECT)
    flow = cv2.calcOpticalFlowFarneback(gray, nxt, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    prev_t = torch.from_numpy(gray).float()[None, None] / 255
    nxt_t = torch.from_numpy(nxt).float()[None, None] / 255
    disp = torch.from_numpy(flow).permute(2, 0, 1)[None]
    inner = (slice(None), slice(None), slice(32, -32), slice(32, -32))
    err_warp = (warp_forward(prev_t, disp, 3) - nxt_t)[inner].abs().mean()
    err_still = (prev_t - nxt_t)[inner].abs().mean()
    err_wrong = (warp_forward(prev_t, -disp, 3) - nxt_t)[inner].abs().mean()   # the opposite direction
    assert err_warp < 0.35 * err_still and err_warp < 0.35 * err_wrong


def test_an_untrained_gw_warp_returns_the_warped_neutral_face():
    torch.manual_seed(0)
    net = build("gw_warp", representation="cartesian", clip=10.0, source_size=64, **{
        k: v for k, v in TINY_GW.items() if k != "name"})
    img = face(32)
    flow = torch.randn(1, 2, 32, 32) * 0.05
    p = net.parts(flow, img)
    # The correction head starts at zero: the person is the neutral face's, moved, from the first step.
    assert torch.allclose(p["out"], p["warped"], atol=1e-6)
    assert float((p["out"] - img).abs().mean().detach()) < 0.1


@pytest.mark.parametrize("refine", ["residual", "shading"])
def test_shading_refinement_adds_light_and_shadow_but_no_colour(refine):
    """`refine: shading` moves pixels toward white or black only: whatever its weights, no pixel of the output has
    more colour (a channel minus the pixel's grey) than the warped face there, and it stays in [-1, 1]; `residual`,
    with three free correction channels, can paint any colour (issue #13's false colour)."""
    torch.manual_seed(0)
    net = build("gw_warp", representation="cartesian", clip=10.0, source_size=64, refine=refine, **{
        k: v for k, v in TINY_GW.items() if k != "name"})
    img, flow = face(32), torch.randn(1, 2, 32, 32) * 0.05
    p = net.parts(flow, img)
    assert torch.equal(p["out"], p["warped"])                         # untrained: the warped face itself
    p["out"].sum().backward()
    assert net.head.weight.grad.abs().sum() > 0                       # and it learns from the first step
    with torch.no_grad():
        for seed in range(3):                                         # random heads: a trained net's
            torch.manual_seed(seed)
            torch.nn.init.normal_(net.head.weight, std=2.0)
            torch.nn.init.normal_(net.head.bias, std=2.0)
            p = net.parts(flow, img)
            colour = lambda x: x - x.mean(1, keepdim=True)  # noqa: E731 - each channel minus the pixel's grey
            gain = colour(p["out"]).abs() - colour(p["warped"]).abs()
            assert p["out"].min() >= -1 and p["out"].max() <= 1
            assert (p["out"] - p["warped"]).abs().max() > 0.5         # the refinement does change the face
            if refine == "shading":
                assert gain.max() < 1e-5
            else:
                assert gain.max() > 0.1


@pytest.mark.parametrize("rep", ["cartesian", "polar"])
def test_warping_by_a_zero_flow_returns_the_neutral_face(rep):
    torch.manual_seed(0)
    net = build("gw_warp", representation=rep, clip=10.0, source_size=128, **{
        k: v for k, v in TINY_GW.items() if k != "name"})
    img = face(32)
    zero = flowrep.encode(torch.zeros(2, 2, 32, 32), rep, 10.0)
    with torch.no_grad():
        out = net(zero, img.expand(2, -1, -1, -1))
    assert float((out - img).abs().max()) < 1e-4          # the person, pixel for pixel


@pytest.mark.parametrize("rep", ["cartesian", "polar"])
def test_the_models_flow_decoder_is_flowreps(rep):
    x = torch.rand(3, 2, 8, 8) * 2 - 1
    assert torch.allclose(decode_flow(x, rep, 7.0), flowrep.decode(x, rep, 7.0), atol=1e-6)


# ---------------------------------------------------------------- the checkerboard measure

@pytest.mark.parametrize("seed", [0, 1])
def test_the_checkerboard_measure_fails_a_transposed_convolution_decoder(seed):
    img = face(64)
    ratios = {}
    for up in ("nearest", "bilinear", "transposed"):
        torch.manual_seed(seed)
        net = build("gw_warp", representation="cartesian", clip=10.0, source_size=64, upsample=up, mask_bias=0.0,
                    **{k: v for k, v in TINY_GW.items() if k not in ("name",)})
        with torch.no_grad():
            # Open the refinement path (a trained net's), so that what the decoder draws reaches the face.
            torch.nn.init.normal_(net.head.weight, std=0.05)
            ratios[up] = checkerboard_ratio(net(torch.zeros(1, 2, 64, 64), img), img)
    assert ratios["nearest"] < 8 and ratios["bilinear"] < 8, ratios
    assert ratios["transposed"] > 8, ratios
    # A clean face against itself is 1; a faint one-pixel checkerboard is far from it.
    board = (torch.arange(64)[:, None] + torch.arange(64)[None]) % 2 * 0.1 - 0.05
    assert checkerboard_ratio(img, img) == pytest.approx(1.0)
    assert checkerboard_ratio(img + board, img) > 8


# ---------------------------------------------------------------- the perceptual backbone

def test_perceptual_backbone_prefers_vgg16_then_fer2013_then_efer(monkeypatch, tmp_path):
    from training.config import PERCEPTUAL_KINDS
    from training.models import efer as efer_mod
    from training.models.networks import Vgg16Features

    assert efer_mod.PERCEPTUAL_KINDS == PERCEPTUAL_KINDS
    efer = FrozenClassifier(build("fer_cnn", size=16, channels=[4, 8]))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    fn, mod, rec = perceptual_backbone("auto", efer, FER2013)
    assert rec["backbone"] == "fer2013" and mod is not None and len(fn(torch.rand(1, 3, 64, 64))) == 5
    assert "no ImageNet VGG16 weights" in rec["fallback_reason"] and not rec["shared_with_efer"]
    assert not any(p.requires_grad for p in mod.parameters())
    fn, mod, rec = perceptual_backbone("efer", efer, FER2013)
    assert rec["backbone"] == "efer" and len(fn(torch.rand(1, 3, 16, 16))) == 2
    fn, mod, rec = perceptual_backbone("auto", efer, tmp_path / "none.hdf5")
    assert rec["backbone"] == "efer" and "nor FER2013 weights" in rec["fallback_reason"]
    with pytest.raises(EmoganError, match="FER2013 weights not found"):
        perceptual_backbone("fer2013", efer, tmp_path / "none.hdf5")
    with pytest.raises(EmoganError, match="perceptual backbone 'resnet'"):
        perceptual_backbone("resnet", efer, FER2013)
    (tmp_path / "checkpoints").mkdir()
    torch.save(Vgg16Features().state_dict(), tmp_path / "checkpoints" / "vgg16-397923af.pth")
    fn, mod, rec = perceptual_backbone("auto", efer, FER2013)
    assert rec["backbone"] == "vgg16" and len(fn(torch.rand(1, 3, 16, 16))) == 4


def test_a_fer2013_efer_is_its_own_perceptual_backbone(monkeypatch, tmp_path):
    from training.models.fer2013 import load_fer2013

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    net = load_fer2013(FER2013)
    fn, mod, rec = perceptual_backbone("fer2013", net, FER2013)
    assert rec["shared_with_efer"] and mod is None and [f.shape[1] for f in fn(torch.rand(2, 3, 48, 48))] == \
        [8, 16, 32, 64, 128]


def test_the_fer2013_backbone_reads_the_central_part_of_each_face(monkeypatch, tmp_path):
    """The trainer's FER2013 features (perceptual loss) read the face framed as FER2013 was trained: the same
    features as the whole-input net's on the centre cut out by hand; recorded in the run's record."""
    from training.models.fer2013 import frame_for

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    efer = FrozenClassifier(build("fer_cnn", size=16, channels=[4, 8]))
    frame = frame_for(0.1, 0.4)
    whole, _, rec_whole = perceptual_backbone("fer2013", efer, FER2013)
    framed, _, rec = perceptual_backbone("fer2013", efer, FER2013, fer2013_frame=frame)
    assert rec_whole["frame"] == 1.0 and rec["frame"] == pytest.approx(frame)
    x = (face(64) + 1) / 2
    got, want = framed(x), whole(x[..., 10:53, 10:53])
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(got, want))
    assert not torch.allclose(whole(x)[-1], got[-1], atol=1e-3)
