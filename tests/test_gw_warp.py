"""The warping G_W (training/gw_warp.py): the warp direction on known motions and on Farneback's own flows, the
person kept by an untrained G_W, the checkerboard measure against a transposed-convolution regression, the
store-derived build spec, and the trainer's G_W switches (paper config on default-layout data, an empty
image-row filter, G_W's flow until e_c, `--efer fer2013` and the FER2013 perceptual backbone without VGG16)."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from face_images import astronaut
from pipeline.cli import app
from pipeline.errors import EmoganError
from training import flowrep
from training.data import check_store
from training.efer import FrozenClassifier, perceptual_backbone
from training.fixture import write_fixture_store
from training.gw_warp import checkerboard_ratio, complete_spec, source_positions, warp_forward
from training.loop import gw_update_flow
from training.registry import build, build_from

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
TINY_GW = {"name": "gw_warp", "ngf": 8, "max_ch": 16, "n_down": 2, "n_res": 1}
TINY_NETS = {
    "gf": {"name": "gf", "ngf": 8, "max_ch": 32, "n_down": 2, "n_res_enc": 1, "n_res_dec": 1},
    "dp": {"name": "dp", "in_ch": 4, "ndf": 8, "n_layers": 2, "max_ch": 32},
    "de": {"name": "de", "channels": [8, 16, 16], "pool": 4, "hidden": 16, "dropout": 0.0},
    "gw": TINY_GW,
}


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


# ---------------------------------------------------------------- build spec from the stores

def test_the_stores_fill_in_representation_clip_and_source_size(tmp_path):
    a = check_store(write_fixture_store(tmp_path / "a.zarr", n_subjects=2, rows_per_subject=4, src=256,
                                        representation="cartesian", clip=6.0))
    spec = complete_spec(TINY_GW, [a])
    assert spec["representation"] == "cartesian" and spec["clip"] == 6.0 and spec["source_size"] == 256
    assert complete_spec({**TINY_GW, "source_size": 512}, [a])["source_size"] == 512   # an explicit value stays
    assert complete_spec(TINY_NETS["gf"] | {"name": "gw", "n_res_enc": 1, "n_res_dec": 1}, [a]).get("clip") is None
    b = check_store(write_fixture_store(tmp_path / "b.zarr", n_subjects=2, rows_per_subject=4, src=128,
                                        representation="cartesian", clip=6.0))
    with pytest.raises(EmoganError, match="source_size 128 differs"):
        complete_spec(TINY_GW, [a, b])
    import zarr

    g = zarr.open_group(str(tmp_path / "b.zarr"), mode="r+")
    del g.attrs["source_size"]
    with pytest.raises(EmoganError, match="b.zarr: no source_size attr"):
        complete_spec(TINY_GW, [check_store(tmp_path / "b.zarr")])


def test_gw_trains_on_the_ground_truth_until_e_c_then_on_gf():
    t = {"gw_flow": "target_then_generated", "e_c": 2}
    assert [gw_update_flow(t, e) for e in range(4)] == ["target", "target", "generated", "generated"]
    assert gw_update_flow({**t, "gw_flow": "generated"}, 0) == "generated"
    assert gw_update_flow({**t, "gw_flow": "target"}, 9) == "target"


# ---------------------------------------------------------------- the trainer

def write_params(dest: Path, config: str, **train) -> Path:
    """params.yaml with tiny nets in `train.<config>` (plus overrides) and a tiny own e_FER."""
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    c = p["train"][config]
    c.update({"size": None, "nets": copy.deepcopy(TINY_NETS), "epochs": 1, "batch_size": 4, "steps_per_epoch": 6,
              "workers": 0, "log_every": 1, "eval_batch_size": 16, "keep_checkpoints": 0, "de_warmup_steps": 0})
    c.update(train)
    p["train_fer"].update({"net": {"name": "fer_cnn", "size": 32, "channels": [8, 16], "dropout": 0.0},
                           "epochs": 1, "steps_per_epoch": 3, "batch_size": 8})
    dest.write_text(yaml.safe_dump(p))
    return dest


def invoke(*args) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def default_layout(tmp_path_factory):
    """A store laid out like the default data (neutral_apex rows at step 9, frame_to_frame steps 1..9)."""
    d = tmp_path_factory.mktemp("gwloop")
    store = write_fixture_store(d / "fx.zarr", n_subjects=6, rows_per_subject=12, size=32, max_step=9,
                                chunk_mib=0.02)
    return {"dir": d, "store": store}


def test_one_epoch_of_the_paper_config_on_default_layout_data_trains_gw(default_layout, monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))   # no VGG16: FER2013 features
    params = write_params(tmp_path / "params.yaml", "paper")
    out = tmp_path / "run"
    r = invoke("train", default_layout["store"], "--config", "paper", "--fold", "0", "--efer", "fer2013",
               "--out", out, "--params", params)
    assert r.exit_code == 0, r.output + repr(r.exception)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["train"]["image_steps"] == [3, 5]          # the paper's filter, and it selects rows here
    assert cfg["runtime"]["image_rows"] > 0 and cfg["runtime"]["perceptual"]["backbone"] == "fer2013"
    epoch = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines() if '"epoch"' in x][-1]
    assert epoch["gw_rows"] > 0 and epoch["gw_flow"] == "target"   # e_c = 5: the ground truth first
    # G_W's weights moved away from their initialisation (same seed, same build order as the loop).
    torch.manual_seed(cfg["train"]["seed"])
    np.random.seed(cfg["train"]["seed"])
    init = {r: build_from(cfg["train"]["nets"][r]) for r in ("gf", "dp", "de", "gw")}["gw"].state_dict()
    trained = load_file(str(out / "weights" / "gw.safetensors"))
    moved = [k for k in init if not torch.equal(init[k], trained[k])]
    assert moved and "head.weight" in moved


def test_an_image_row_filter_that_selects_nothing_stops_the_run(default_layout, tmp_path):
    params = write_params(tmp_path / "params.yaml", "small", image_steps=[10, 20])
    r = invoke("train", default_layout["store"], "--fold", "0", "--efer", "fer2013", "--out", tmp_path / "run",
               "--params", params)
    assert isinstance(r.exception, EmoganError), r.output + repr(r.exception)
    assert "image_steps [10, 20]" in str(r.exception) and "selects none" in str(r.exception)
    assert not (tmp_path / "run" / "weights").exists()


def test_efer_fer2013_trains_without_vgg16(default_layout, monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    params = write_params(tmp_path / "params.yaml", "small", perceptual="auto", image_steps=None)
    out = tmp_path / "run"
    r = invoke("train", default_layout["store"], "--fold", "0", "--efer", "fer2013", "--out", out, "--params", params)
    assert r.exit_code == 0, r.output + repr(r.exception)
    rt = json.loads((out / "config.json").read_text())["runtime"]
    assert rt["efer"]["name"] == "fer2013" and rt["perceptual"]["backbone"] == "fer2013"
    assert rt["perceptual"]["shared_with_efer"] and "no ImageNet VGG16" in rt["perceptual"]["fallback_reason"]
    start = json.loads((out / "log.jsonl").read_text().splitlines()[0])
    assert start["perceptual"] == "fer2013" and start["gw"] == "gw_warp"


def test_perceptual_backbone_prefers_vgg16_then_fer2013_then_efer(monkeypatch, tmp_path):
    from training.networks import Vgg16Features

    efer = FrozenClassifier(build("fer_cnn", size=16, channels=[4, 8]))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    fn, mod, rec = perceptual_backbone("auto", efer)
    assert rec["backbone"] == "fer2013" and mod is not None and len(fn(torch.rand(1, 3, 64, 64))) == 5
    fn, mod, rec = perceptual_backbone("efer", efer)
    assert rec["backbone"] == "efer" and len(fn(torch.rand(1, 3, 16, 16))) == 2
    monkeypatch.setattr("training.fer2013.default_weights_path", lambda: tmp_path / "none.hdf5")
    fn, mod, rec = perceptual_backbone("auto", efer)
    assert rec["backbone"] == "efer" and "nor FER2013 weights" in rec["fallback_reason"]
    with pytest.raises(EmoganError, match="FER2013 weights not found"):
        perceptual_backbone("fer2013", efer)
    (tmp_path / "checkpoints").mkdir()
    torch.save(Vgg16Features().state_dict(), tmp_path / "checkpoints" / "vgg16-397923af.pth")
    fn, mod, rec = perceptual_backbone("auto", efer)
    assert rec["backbone"] == "vgg16" and len(fn(torch.rand(1, 3, 16, 16))) == 4
