"""The trainer's G_W switches (issue #13): the stores fill in a warping G_W's units, G_W trains on the ground-truth
flow until e_c, an image-row filter that selects nothing stops the run, one epoch of the paper config on
default-layout data trains G_W, and `--efer fer2013` trains without VGG16 (FER2013 perceptual features)."""
from __future__ import annotations

import contextlib
import copy
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from conftest import TINY_NETS, dump_params, project_params
from emogan.cli import app
from pipeline.errors import EmoganError
from pipeline.params import ParamsError, as_dict
from training.config import parse_train, validate
from training.data import check_store
from training.fixture import write_fixture_store
from training.models.fer2013 import frame_for
from training.models.networks import build_from, complete_gw_spec
from training.step import _gw_losses, check_image_rows, gw_update_flow

torch.set_num_threads(1)
TINY_GW = {"name": "gw_warp", "ngf": 8, "max_ch": 16, "n_down": 2, "n_res": 1}


def test_the_stores_fill_in_representation_clip_and_source_size(tmp_path):
    a = check_store(write_fixture_store(tmp_path / "a.zarr", n_subjects=2, rows_per_subject=4, src=256,
                                        representation="cartesian", clip=6.0))
    spec = complete_gw_spec(TINY_GW, [a])
    assert spec["representation"] == "cartesian" and spec["clip"] == 6.0 and spec["source_size"] == 256
    assert complete_gw_spec({**TINY_GW, "source_size": 512}, [a])["source_size"] == 512   # an explicit value stays
    assert "clip" not in complete_gw_spec(TINY_NETS["gw"], [a])                          # the paper's G_W takes none
    b = check_store(write_fixture_store(tmp_path / "b.zarr", n_subjects=2, rows_per_subject=4, src=128,
                                        representation="cartesian", clip=6.0))
    with pytest.raises(EmoganError, match="source_size 128 differs"):
        complete_gw_spec(TINY_GW, [a, b])
    import zarr

    g = zarr.open_group(str(tmp_path / "b.zarr"), mode="r+")
    del g.attrs["source_size"]
    with pytest.raises(EmoganError, match="b.zarr: no source_size attr"):
        complete_gw_spec(TINY_GW, [check_store(tmp_path / "b.zarr")])


def _cfg(**kw):
    raw = copy.deepcopy(project_params()["train"]["paper"])
    raw.update(kw)
    return parse_train(raw, "train.paper")


def test_gw_trains_on_the_ground_truth_until_e_c_then_on_gf():
    t = _cfg(gw_flow="target_then_generated", e_c=2)
    assert [gw_update_flow(t, e) for e in range(4)] == ["target", "target", "generated", "generated"]
    assert gw_update_flow(_cfg(gw_flow="generated"), 0) == "generated"
    assert gw_update_flow(_cfg(gw_flow="target"), 9) == "target"
    assert project_params()["train"]["paper"]["gw_flow"] == "target_then_generated"   # the authors' code


def test_an_empty_image_row_selection_names_the_steps_there_are():
    steps = np.array([1, 1, 9, 9, 1])
    assert check_image_rows(steps, (1, 100), "here") == 2 and check_image_rows(steps, None, "here") == 5
    with pytest.raises(EmoganError, match=r"here: image_steps \[3, 5\] .*selects none.*steps are \[1, 9\]"):
        check_image_rows(steps, (3, 5), "here")


def default_layout_max_step() -> int:
    """frame_to_frame steps 1..max_step that the default flow params produce (null: every step of 10 frames)."""
    f = project_params()["flow"]
    return int(f["max_step"] or ((f["frames"] or 10) - 1))


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """Stores laid out like the default data (neutral_apex rows at step 9, frame_to_frame steps 1..max_step of
    params.yaml `flow`) and like the paper's (every step 1..9)."""
    d = tmp_path_factory.mktemp("gwloop")
    return {m: write_fixture_store(d / f"fx{m}.zarr", n_subjects=6, rows_per_subject=12, size=32, max_step=m,
                                   chunk_mib=0.02) for m in sorted({default_layout_max_step(), 9})}


def params_file(dest: Path, config: str, **train) -> Path:
    """The project's params.yaml, `train.<config>` as it is but with tiny nets, one short epoch, plus overrides."""
    p = project_params()
    p.pop("__file__", None)
    p["train"][config].update({"nets": {**copy.deepcopy(TINY_NETS), "gw": TINY_GW}, "size": None, "epochs": 1, "steps_per_epoch": 6,
                               "workers": 0, "log_every": 1, "eval_batch_size": 16, "keep_checkpoints": 0,
                               "de_warmup_steps": 0, **train})
    return dump_params(p, dest)


def invoke(*args) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("layout", ["default", "paper"])
def test_one_epoch_of_the_paper_config_on_default_layout_data_trains_gw(stores, layout, monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))   # no VGG16: FER2013 features
    store = stores[default_layout_max_step() if layout == "default" else 9]
    out = tmp_path / "run"
    r = invoke("train", store, "--config", "paper", "--fold", "0", "--efer", "fer2013", "--out", out,
               "--params", params_file(tmp_path / "params.yaml", "paper"))
    assert r.exit_code == 0, r.output + repr(r.exception)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["train"]["image_steps"] == project_params()["train"]["paper"]["image_steps"]
    assert cfg["runtime"]["image_rows"] > 0 and cfg["runtime"]["perceptual"]["backbone"] == "fer2013"
    assert cfg["train"]["nets"]["gw"]["source_size"] == 128                 # the store's units, recorded
    epoch = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines() if '"epoch"' in x][-1]
    assert epoch["gw_rows"] > 0 and epoch["gw_flow"] == "target"   # e_c = 5: the ground truth first
    assert epoch["loss"]["gw"] > 0
    # G_W's weights moved away from their initialisation (same seed, same build order as the loop).
    torch.manual_seed(cfg["train"]["seed"])
    np.random.seed(cfg["train"]["seed"])
    init = {r: build_from(cfg["train"]["nets"][r]) for r in ("gf", "dp", "de", "gw")}["gw"].state_dict()
    trained = load_file(str(out / "weights" / "gw.safetensors"))
    moved = [k for k in init if not torch.equal(init[k], trained[k])]
    assert "head.weight" in moved and len(moved) > len(init) // 2


def test_an_image_row_filter_that_selects_nothing_stops_the_run(stores, tmp_path):
    r = invoke("train", stores[9], "--fold", "0", "--efer", "fer2013", "--out", tmp_path / "run",
               "--params", params_file(tmp_path / "params.yaml", "small", image_steps=[10, 20]))
    assert isinstance(r.exception, EmoganError), r.output + repr(r.exception)
    assert "image_steps [10, 20]" in str(r.exception) and "selects none" in str(r.exception)
    assert not (tmp_path / "run" / "weights").exists()


def test_efer_fer2013_trains_without_vgg16(stores, monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    out = tmp_path / "run"
    r = invoke("train", stores[9], "--fold", "0", "--efer", "fer2013", "--out", out,
               "--params", params_file(tmp_path / "params.yaml", "small", perceptual="auto", image_steps=None))
    assert r.exit_code == 0, r.output + repr(r.exception)
    rt = json.loads((out / "config.json").read_text())["runtime"]
    assert rt["efer"]["name"] == "fer2013" and rt["perceptual"]["backbone"] == "fer2013"
    assert rt["perceptual"]["shared_with_efer"] and "no ImageNet VGG16" in rt["perceptual"]["fallback_reason"]
    # FER2013 reads the store's faces framed as it was trained, as evaluation's judge does (issue #13).
    prm = project_params()
    frame = frame_for(prm["evaluate"]["fer2013_margin"], prm["crop"]["margin"])
    assert frame < 0.9 and rt["efer"]["frame"] == pytest.approx(frame) == rt["perceptual"]["frame"]
    start = json.loads((out / "log.jsonl").read_text().splitlines()[0])
    assert start["perceptual"] == "fer2013" and start["gw"] == "gw_warp"


def test_an_epoch_that_feeds_gw_no_row_stops_the_run(stores, monkeypatch, tmp_path):
    # The start's check passes (as when the selected rows exist but no batch of the epoch draws one).
    monkeypatch.setattr("training.loop.check_image_rows", lambda steps, image_steps, where: 1)
    r = invoke("train", stores[9], "--fold", "0", "--efer", "fer2013", "--out", tmp_path / "run",
               "--params", params_file(tmp_path / "params.yaml", "small", image_steps=[10, 20], steps_per_epoch=2))
    assert isinstance(r.exception, EmoganError), r.output + repr(r.exception)
    assert "epoch 1 fed G_W no image rows (image_steps [10, 20] over 2 batches)" in str(r.exception)
    assert not (tmp_path / "run" / "weights").exists()


def test_one_short_epoch_of_the_medium_config_runs_end_to_end(stores, tmp_path):
    """No GPU is lent here: a CPU smoke with tiny nets proves `--config medium` runs (issue #12)."""
    store = stores[default_layout_max_step()]
    out = tmp_path / "medium"
    r = invoke("train", store, "--config", "medium", "--fold", "0", "--efer", "fer2013", "--out", out,
               "--params", params_file(tmp_path / "params.yaml", "medium", workers=0))
    assert r.exit_code == 0, r.output + repr(r.exception)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["config_name"] == "medium" and cfg["train"]["epochs"] == 1 and (out / "weights").is_dir()


def test_judge_grad_grey_keeps_colour_out_of_what_the_judges_teach_gw():
    """A grey judge (FER2013 reads 0.299 R + 0.587 G + 0.114 B) and an e_FER that reads red: with `judge_grad: rgb`
    the gradient they send G_W's faces has colour (a step would tint them, issue #13's false colour); with `grey`
    it has none, and the losses' values are the same."""
    lum = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    perc = lambda x: [(x * lum).sum(1, keepdim=True)]  # noqa: E731 - a one-layer grey feature extractor
    efer = lambda x: x[:, :1].mean((2, 3)) * torch.arange(7.0)  # noqa: E731 - logits from the red channel
    torch.manual_seed(0)
    x_star, neutral = torch.rand(4, 3, 8, 8) * 2 - 1, torch.rand(4, 3, 8, 8) * 2 - 1
    labels = torch.tensor([0, 3, 5, 6])
    out = {}
    for mode in ("rgb", "grey"):
        x_gen = (torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1).requires_grad_()
        t = _cfg(alphas=[0.0, 7.0, 1.0], judge_grad=mode)
        c = SimpleNamespace(t=t, amp=contextlib.nullcontext, perc=perc, efer=efer)
        losses = _gw_losses(x_gen, x_star, labels, c, neutral)
        losses["gw"].backward()
        chroma = (x_gen.grad - x_gen.grad.mean(1, keepdim=True)).abs().max().item()
        out[mode] = (chroma, x_gen.grad.abs().max().item(), losses["gw_perc"].item(), losses["gw_fer"].item())
    assert out["rgb"][0] > 0.1 * out["rgb"][1] > 0            # rgb: the judges pay for colour
    assert out["grey"][0] < 1e-6 < out["grey"][1]              # grey: brightness only, and still a gradient
    assert out["grey"][2:] == pytest.approx(out["rgb"][2:])   # the same faces read, the same losses
    with pytest.raises(ParamsError, match="judge_grad is one of rgb, grey"):
        validate(_cfg(judge_grad="luma"), "train.paper")


def test_gw_epochs_train_gw_alone_after_the_joint_epochs(stores, monkeypatch, tmp_path):
    """`gw_epochs` past `epochs` (issue #13): the extra epochs move G_W only, so G_F, D_P and D_E end as in the run of
    `epochs` alone; in the small config G_W never reads G_F (L_GW out of L_GF, G_W on the truth's flow), and its
    weights end as in a joint run of `gw_epochs` at G_W's decay: the cheaper run gives the longer run's G_W."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    store = stores[default_layout_max_step()]

    def train(name, **kw):
        out = tmp_path / name
        r = invoke("train", store, "--fold", "0", "--efer", "fer2013", "--out", out,
                   "--params", params_file(tmp_path / f"{name}.yaml", "small", steps_per_epoch=3, **kw))
        assert r.exit_code == 0, r.output + repr(r.exception)
        return {role: load_file(str(out / "weights" / f"{role}.safetensors")) for role in ("gf", "dp", "de", "gw")}, out

    small = project_params()["train"]["small"]
    assert small["gw_flow"] == "target" and small["lambdas"][3] == 0 and small["alphas"][2] == 0
    one, _ = train("one", epochs=1)
    tail, out = train("tail", epochs=1, gw_epochs=3, gw_lr_gamma=0.5)
    joint, _ = train("joint", epochs=3, lr_gamma=0.5)

    def same(a, b):
        return all(torch.equal(a[k], b[k]) for k in a)
    assert all(same(one[r], tail[r]) for r in ("gf", "dp", "de"))     # frozen after `epochs`, buffers included
    assert not same(one["gw"], tail["gw"])                            # G_W trained on
    assert same(tail["gw"], joint["gw"])                              # ... exactly as the joint run's
    assert not same(tail["gf"], joint["gf"])
    recs = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    ep = [x for x in recs if x.get("event") == "epoch"]
    assert [x["trains"] for x in ep] == ["all", "gw", "gw"] and all(x["gw_rows"] > 0 for x in ep)
    assert ep[1]["test"] == {} and ep[2]["test"]    # G_F evaluated again at the last epoch only
    assert "gf" in ep[0]["loss"] and set(ep[1]["loss"]) == {"gw", "gw_l1", "gw_perc", "gw_fer"} and ep[1]["loss"]["gw"] > 0
    assert json.loads((out / "metrics.json").read_text())["gw_epochs"] == 3
    plots = out / "dvclive" / "plots" / "metrics" / "train"   # dvclive: G_W's own epochs log G_W's losses only
    assert [len(p.read_text().splitlines()) - 1 for p in (plots / "loss_gf.tsv", plots / "loss_gw.tsv")] == [1, 3]
    r = invoke("train", store, "--fold", "0", "--out", tmp_path / "dry", "--epochs", "2", "--gw-epochs", "1",
               "--dry-run", "--params", params_file(tmp_path / "dry.yaml", "small"))
    assert isinstance(r.exception, ParamsError) and "gw_epochs (1) must be null or >= epochs (2)" in str(r.exception)
