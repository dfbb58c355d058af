"""Networks: output shapes of every registered net, paper parameter counts as printed in docs/MODEL.md,
registry errors, the VGG16 trunk's torchvision key layout, the LayerNorm-as-GroupNorm equivalence."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import ROOT
from pipeline.errors import EmoganError
from pipeline.params import as_dict, load_params
from training.commands import model_card
from training.config import ROLES, train_config
from training.models.networks import VGG16_TAPS, Vgg16Features, count_parameters
from training.models.networks import build, build_from, names

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def params():
    return load_params(ROOT / "params.yaml")


def test_registry_lists_every_role_and_rejects_unknowns():
    assert {"gf", "dp", "de", "gw", "fer_cnn"} <= set(names())
    with pytest.raises(EmoganError, match="unknown network 'nope'"):
        build("nope")
    with pytest.raises(EmoganError, match="unknown option.*widht"):
        build("gf", widht=3)


@pytest.mark.parametrize("config", ["paper", "small"])
def test_output_shapes_of_every_network(params, config):
    t = as_dict(train_config(params, config))
    s = t["size"] or 128
    n = 2
    # Meta tensors: the paper nets' shapes without allocating 200M parameters.
    with torch.device("meta"):
        nets = {r: build_from(t["nets"][r]) for r in ROLES}
        efer = build_from(params["train_fer"]["net"])
        flow, img = torch.zeros(n, 2, s, s), torch.zeros(n, 3, s, s)
        assert nets["gf"](flow).shape == (n, 2, s, s)
        patches = nets["dp"](torch.zeros(n, 4, s, s))
        assert patches.shape[:2] == (n, 1) and patches.shape[2] == patches.shape[3] == s // 8 - 2
        assert nets["de"](flow).shape == (n, 7)
        assert nets["gw"](flow, img).shape == (n, 3, s, s)
        assert efer(img).shape == (n, 7)
        assert [f.shape[1] for f in efer.features(img)] == list(params["train_fer"]["net"]["channels"])


def test_small_networks_run_for_real_and_stay_in_range(params):
    t = as_dict(train_config(params, "small"))
    torch.manual_seed(0)
    nets = {r: build_from(t["nets"][r]) for r in ROLES}
    flow = torch.rand(2, 2, 32, 32) * 2 - 1
    out = nets["gf"](flow)
    assert out.shape == flow.shape and out.abs().max() <= 1.0
    face = nets["gw"](out, torch.rand(2, 3, 32, 32) * 2 - 1)
    assert face.shape == (2, 3, 32, 32) and face.abs().max() <= 1.0
    assert torch.isfinite(nets["de"](flow)).all()


def test_model_card_counts_match_the_code(params):
    text = (ROOT / "docs" / "MODEL.md").read_text()
    printed = {}
    for m in re.finditer(r"^\| (paper|medium|small) \| [^|]+ \| `(\w+)` \| ([\d,]+) \|", text, re.M):
        printed[(m.group(1), m.group(2))] = int(m.group(3).replace(",", ""))
    rows = model_card.table(params)
    assert len(rows) == 15   # 5 roles (G_F, D_P, D_E, G_W, e_FER) x 3 configs
    for r in rows:
        assert printed[(r["config"], r["net"])] == r["params"], f"docs/MODEL.md is stale for {r}: run python -m training.commands.model_card"
    # The paper's G_F is the big one: 64 to 1024 channels at an 8x8 bottleneck.
    paper = {r["net"]: r["params"] for r in rows if r["config"] == "paper"}
    assert paper["gf"] > 100_000_000 and paper["gw"] > paper["de"] > paper["dp"]


def test_vgg16_trunk_has_torchvision_keys_and_loads_them(tmp_path):
    # torchvision's vgg16: convs at these indices of `features`; we keep the trunk to relu4_3.
    conv_idx = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21]
    net = Vgg16Features()
    assert set(net.state_dict()) == {f"features.{i}.{k}" for i in conv_idx for k in ("weight", "bias")}
    assert VGG16_TAPS == (3, 8, 15, 22)
    full = {k: torch.randn_like(v) for k, v in net.state_dict().items()}
    full.update({"features.24.weight": torch.zeros(512, 512, 3, 3), "classifier.0.weight": torch.zeros(4, 4)})
    p = tmp_path / "vgg16-397923af.pth"
    torch.save(full, p)
    net.load_imagenet(p)
    assert torch.equal(net.features[21].weight, full["features.21.weight"])
    feats = net(torch.rand(1, 3, 32, 32))
    assert [f.shape[1] for f in feats] == [64, 128, 256, 512]
    torch.save({"features.0.weight": torch.zeros(1)}, p)
    with pytest.raises(EmoganError, match="not a torchvision VGG16"):
        net.load_imagenet(p)


def test_layernorm_of_the_decoder_equals_the_papers_handwritten_one():
    torch.manual_seed(0)
    x = torch.randn(3, 5, 6, 7)
    gn = nn.GroupNorm(1, 5, affine=True)
    nn.init.normal_(gn.weight)
    nn.init.normal_(gn.bias)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    var = x.var(dim=(1, 2, 3), keepdim=True, unbiased=False)
    ref = (x - mean) / torch.sqrt(var + gn.eps) * gn.weight.view(1, -1, 1, 1) + gn.bias.view(1, -1, 1, 1)
    assert torch.allclose(gn(x), ref, atol=1e-5)


def test_parameter_count_helper():
    assert count_parameters(nn.Linear(3, 2)) == 8


def test_gated_gf_blends_its_input_with_its_drawing_and_learns_to_pass_a_frontal_flow():
    """`nets.gf.output: gated`: g x + (1 - g) d. With the gate forced shut it is the direct G_F's drawing, forced
    open the input itself; trained on pairs whose target is the input (frontal rows), it opens the gate and ends
    closer to the target than the direct G_F trained alike (which must redraw every flow)."""
    from training.models.networks import FlowGenerator

    kw = dict(ngf=8, max_ch=32, n_down=2, n_res_enc=1, n_res_dec=1)
    torch.manual_seed(0)
    gated = FlowGenerator(output="gated", **kw)
    x = torch.nn.functional.avg_pool2d(torch.randn(4, 2, 40, 40), 9, stride=1).clamp(-1, 1) * 3
    x = x.clamp(-1, 1)
    with torch.no_grad():
        gated.gate[-1].bias.fill_(-30.0)
        assert torch.allclose(gated(x), gated.decoder(gated.encoder(x)), atol=1e-6)
        gated.gate[-1].bias.fill_(30.0)
        assert torch.allclose(gated(x), x, atol=1e-6)
        gated.gate[-1].bias.fill_(-2.0)
    with pytest.raises(EmoganError, match="direct, residual or gated"):
        FlowGenerator(output="nope", **kw)

    def fit(net):
        opt = torch.optim.Adam(net.parameters(), lr=2e-3)
        gen = torch.Generator().manual_seed(1)
        for _ in range(60):
            b = torch.nn.functional.avg_pool2d(torch.randn(8, 2, 40, 40, generator=gen), 9, stride=1) * 3
            b = b.clamp(-1, 1)
            loss = (net(b) - b).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            return float((net(x) - x).norm(dim=1).mean())

    torch.manual_seed(0)
    direct = FlowGenerator(output="direct", **kw)
    err_direct, err_gated = fit(direct), fit(gated)
    assert err_gated < 0.5 * err_direct, (err_gated, err_direct)


def test_a_gf_that_reads_the_face_learns_what_only_the_face_tells():
    """`nets.gf.face: grey`: the encoder reads the non-frontal face (grey) beside the flow. On a task whose target
    the flow cannot tell (a uniform motion set by which half of the face is lit), it ends far closer to the target than the
    flow-only G_F trained alike; without a face it stops with an error that names the switch."""
    from training.models.networks import FlowGenerator, face_channels, reads_face

    kw = dict(ngf=8, max_ch=32, n_down=2, n_res_enc=1, n_res_dec=1)

    def batch(gen, n=8):
        flow = (torch.randn(n, 2, 32, 32, generator=gen) * 0.3).clamp(-1, 1)
        side = torch.randint(0, 2, (n,), generator=gen)              # which half of the face is lit
        face = torch.full((n, 3, 64, 64), -0.5) + 0.05 * torch.randn(n, 3, 64, 64, generator=gen)
        for i in range(n):
            face[i, :, :, 32 * int(side[i]):32 * int(side[i]) + 32] += 1.0
        u = 0.5 - side.float()                                        # lit left: +0.5, right: -0.5
        target = torch.stack([u, -u], 1).view(n, 2, 1, 1).expand(n, 2, 32, 32)
        return flow, face.clamp(-1, 1), target

    def fit(net):
        opt = torch.optim.Adam(net.parameters(), lr=2e-3)
        gen = torch.Generator().manual_seed(1)
        for _ in range(80):
            flow, face, target = batch(gen)
            loss = (net(flow, face) - target).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        flow, face, target = batch(torch.Generator().manual_seed(9), 32)
        with torch.no_grad():
            return float((net(flow, face) - target).norm(dim=1).mean())

    torch.manual_seed(0)
    with_face = FlowGenerator(face="grey", **kw)
    torch.manual_seed(0)
    flow_only = FlowGenerator(**kw)
    assert reads_face(with_face) and not reads_face(flow_only)
    err_face, err_flow = fit(with_face), fit(flow_only)
    assert err_face < 0.5 * err_flow, (err_face, err_flow)
    x = torch.zeros(2, 2, 32, 32)
    with pytest.raises(EmoganError, match="nets.gf.face: grey"):
        with_face(x)
    with pytest.raises(EmoganError, match=r"\(N,3,H,W\)"):
        with_face(x, torch.zeros(2, 1, 32, 32))
    with pytest.raises(EmoganError, match="none or grey"):
        FlowGenerator(face="rgb", **kw)
    # Grey by the BT.601 weights, area-resized to the flow's side
    red = torch.zeros(1, 3, 64, 64)
    red[:, 0] = 1.0
    g = face_channels(red, "grey", torch.zeros(1, 2, 32, 32))
    assert g.shape == (1, 1, 32, 32) and torch.allclose(g, torch.full_like(g, 0.299))
