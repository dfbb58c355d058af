"""The trainer end to end on a tiny learnable store: one GAN step lowers every loss, G_F overfits,
resume equals uninterrupted, the NaN guard, 2-process gloo DDP, the run folder, e_FER plug-ins."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from emogan.cli import app
from pipeline.errors import EmoganError
from pipeline.params import as_dict
from pipeline.schema import CLASS_NAMES
from training import flowrep
from training.models import losses as L
from training.checkpoint import list_checkpoints, load_checkpoint
from training.config import TrainConfig
from conftest import ROOT, TINY_FER, TINY_NETS, dump_params, params_of, project_params, tiny_trainer_params
from training.models.efer import FrozenClassifier, load_efer, perceptual_backbone
from training.fixture import make_arrays, write_fixture_store
from training.config import parse_train
from training.distributed import Dist
from training.loop import TrainingDiverged
from training.models.networks import build_nets
from training.step import StepContext, autocast_ctx, gan_step, make_optimizer
from training.models.networks import build
from training.checkpoint import load_run

torch.set_num_threads(1)


def write_params(dest: Path, **train) -> Path:
    """The project's params.yaml with tiny nets in `train.small` (plus overrides) and a tiny e_FER."""
    small = {"size": None, "epochs": 2, "batch_size": 4, "e_c": 1, "steps_per_epoch": 3, "workers": 0, "log_every": 1,
             "eval_batch_size": 16, "image_steps": [0, 5], "keep_checkpoints": 0, **train}
    return dump_params(tiny_trainer_params(small, {"epochs": 1, "steps_per_epoch": 3, "batch_size": 8}), dest)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("loop")
    store = write_fixture_store(d / "fx.zarr", n_subjects=6, rows_per_subject=10, size=32, chunk_mib=0.02)
    params = write_params(d / "params.yaml")
    r = CliRunner().invoke(app, ["train-fer", str(store), "--fold", "0", "--out", str(d / "fer"), "--params",
                                 str(params)])
    assert r.exit_code == 0, r.output + repr(r.exception)
    return {"dir": d, "store": store, "params": params, "fer": d / "fer"}


def train(env, out: Path, *extra: str, params: Path | None = None):
    """`emogan train` through the CLI on the fixture store, fold 0."""
    args = ["train", str(env["store"]), "--fold", "0", "--out", str(out), "--efer-path", str(env["fer"]),
            "--params", str(params or env["params"]), *extra]
    return CliRunner().invoke(app, args)


def _batch(n: int = 4, size: int = 32) -> dict[str, torch.Tensor]:
    a = make_arrays(n_subjects=1, rows_per_subject=n, size=size, seed=5)
    return {"flow_input": torch.from_numpy(a["flow_input"]).float(),
            "flow_target": torch.from_numpy(a["flow_target"]).float(),
            "neutral": torch.from_numpy(a["neutral"]).float() / 127.5 - 1,
            "target_image": torch.from_numpy(a["target_image"]).float() / 127.5 - 1,
            "label": torch.from_numpy(a["label"]).long(), "step": torch.full((n,), 4)}


def test_one_step_of_the_whole_gan_lowers_each_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    raw = as_dict(params_of(TrainConfig, "train.paper"))
    raw.update({"nets": TINY_NETS, "image_steps": [3, 5], "e_c": 0, "amp": "off", "flow_loss_space": "cartesian"})
    raw["optim"] = {r: {"kind": "adam", "lr": 1e-4, "betas": [0.5, 0.999]} for r in ("gf", "dp", "gw")}
    raw["optim"]["de"] = {"kind": "sgd", "lr": 1e-3, "momentum": 0.9}
    t = parse_train(raw, "test config")
    nets = build_nets(TINY_NETS)
    efer = FrozenClassifier(build("fer_cnn", **{k: v for k, v in TINY_FER.items() if k != "name"}))
    opt = {r: make_optimizer(m.parameters(), getattr(t.optim, r), True) for r, m in nets.items()}
    b = _batch()
    y, ys, xt, xs, lab = b["flow_input"], b["flow_target"], b["neutral"], b["target_image"], b["label"]

    def d_loss(n, fake):
        logits = n["dp"](torch.cat([torch.cat([y, ys], 1), torch.cat([y, fake], 1)]))
        return (L.dp_loss(logits[:4], logits[4:]) + L.de_loss(n["de"](ys), lab)).item()

    def gw_loss(gw, flow):
        x = gw(flow, xt)
        return L.total_gw(L.l1_image(x, xs), L.perceptual(efer.features, (x + 1) / 2, (xs + 1) / 2),
                          L.efer_loss(efer((x + 1) / 2), lab), t.alphas)

    def gf_loss(gf, n):
        fake = gf(y)
        gan = L.gan_loss_gf(n["dp"](torch.cat([y, fake], 1)), n["de"](fake), lab)
        # L_epe and L_char on Cartesian (u, v)/clip, as the step computes them (flow_loss_space).
        f, s = flowrep.decode(fake, "polar", 10.0) / 10.0, flowrep.decode(ys, "polar", 10.0) / 10.0
        return L.total_gf(gan, L.epe(f, s), L.charbonnier(f, s, t.char_eps), gw_loss(n["gw"], fake),
                          t.lambdas, connected=True).item()

    before = copy.deepcopy(nets)
    with torch.no_grad():
        fake0 = nets["gf"](y)
        d0, w0 = d_loss(nets, fake0), gw_loss(nets["gw"], fake0).item()
    ctx = StepContext(nets, nets, opt, efer, efer.features, t, autocast_ctx(t, torch.device("cpu")), Dist(),
                      torch.device("cpu"), "polar", 10.0)
    out = gan_step(b, epoch=0, c=ctx)
    assert all(torch.isfinite(v) for v in out.values()) and out["gw"] > 0
    with torch.no_grad():
        # Each player's objective, on what it was optimized against, is lower after the step.
        assert d_loss(nets, fake0) < d0
        assert gw_loss(nets["gw"], fake0).item() < w0
        assert gf_loss(nets["gf"], nets) < gf_loss(before["gf"], nets)


@pytest.mark.parametrize("lambda_gw", [0.0, 1.0])
def test_gf_learns_from_gw_only_when_l_gw_weighs(lambda_gw):
    """L_GW at weight 0 (the small config): G_F's update is the same whatever G_W is; at weight 1 it is not."""
    raw = as_dict(params_of(TrainConfig, "train.paper"))
    raw.update({"nets": TINY_NETS, "image_steps": [3, 5], "e_c": 0, "amp": "off", "flow_loss_space": "cartesian",
                "lambdas": [1.0, 7.0, 3.0, lambda_gw]})
    raw["optim"] = {r: {"kind": "adam", "lr": 1e-3, "betas": [0.5, 0.999]} for r in ("gf", "dp", "gw")}
    raw["optim"]["de"] = {"kind": "sgd", "lr": 1e-3, "momentum": 0.9}
    t = parse_train(raw, "test config")
    efer = FrozenClassifier(build("fer_cnn", **{k: v for k, v in TINY_FER.items() if k != "name"}))
    gf_after = []
    for gw_seed in (1, 2):                  # the same G_F, D_P, D_E; two different G_W
        torch.manual_seed(0)
        nets = build_nets(TINY_NETS)
        torch.manual_seed(gw_seed)
        nets["gw"] = build_nets(TINY_NETS)["gw"]
        opt = {r: make_optimizer(m.parameters(), getattr(t.optim, r), True) for r, m in nets.items()}
        ctx = StepContext(nets, nets, opt, efer, efer.features, t, autocast_ctx(t, torch.device("cpu")), Dist(),
                          torch.device("cpu"), "polar", 10.0)
        torch.manual_seed(0)
        out = gan_step(_batch(), epoch=0, c=ctx)
        assert out["gw_rows"] > 0           # G_W itself trained on the image rows either way
        gf_after.append(torch.cat([p.detach().flatten() for p in nets["gf"].parameters()]))
    same = torch.equal(gf_after[0], gf_after[1])
    assert same if lambda_gw == 0 else not same


def test_gf_overfits_a_tiny_batch():
    torch.manual_seed(0)
    b = _batch(4)
    y, ys = b["flow_input"], b["flow_target"]
    gf = build("gf", ngf=16, max_ch=64, n_down=2, n_res_enc=1, n_res_dec=1)
    opt = torch.optim.Adam(gf.parameters(), lr=2e-3, betas=(0.5, 0.999))
    with torch.no_grad():
        start = flowrep.epe_px(gf(y), ys, "polar", 10.0).mean().item()
    target = flowrep.decode(ys, "polar", 10.0) / 10.0
    for _ in range(200):
        # The trainer's reconstruction terms: l2 L_epe + l3 L_char on (u, v)/clip.
        out = flowrep.decode(gf(y), "polar", 10.0) / 10.0
        loss = 7 * L.epe(out, target) + 3 * L.charbonnier(out, target, 1e-3)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        end = flowrep.epe_px(gf(y), ys, "polar", 10.0).mean().item()
    assert end * 5 <= start, (start, end)


def _steps(run: Path) -> list[dict]:
    recs = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    return [r for r in recs if r["event"] in ("step", "epoch") and r.pop("samples_per_s", True)]


def test_a_run_folder_holds_config_log_metrics_checkpoints_and_weights(env):
    run = env["dir"] / "run"
    r = train(env, run)
    assert r.exit_code == 0, r.output + repr(r.exception)
    assert "held-out fold 0 EPE" in r.output
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["config_name"] == "small" and cfg["fold"] == 0 and cfg["train"]["nets"] == TINY_NETS
    assert cfg["runtime"]["efer"]["name"] == "own" and cfg["runtime"]["perceptual"]["backbone"] in ("vgg16", "fer2013", "efer")
    if cfg["runtime"]["perceptual"]["backbone"] != "vgg16":
        assert "no ImageNet VGG16 weights" in cfg["runtime"]["perceptual"]["fallback_reason"]
    assert [e for e, _ in list_checkpoints(run)] == [1, 2]
    state = load_checkpoint(list_checkpoints(run)[-1][1])  # weights_only=True
    assert state["epoch"] == 2 and set(state["nets"]) == {"gf", "dp", "de", "gw"}
    assert set(load_file(str(run / "weights" / "gf.safetensors"))) == set(state["nets"]["gf"])
    m = json.loads((run / "metrics.json").read_text())
    assert m["epe_input_px"] > 0 and m["epe_frontalized_px"] > 0
    assert m["test"]["fx"]["rows"] == 10  # subject S000 (fold 0 of the rule over k=10) has 10 rows
    live = json.loads((run / "dvclive" / "metrics.json").read_text())
    assert live["epe_reduction"] == pytest.approx(m["epe_reduction"])
    assert "loss_gf" in json.dumps(live)
    # The public loading API runs the trained nets.
    run_ = load_run(run)
    import zarr
    g = zarr.open_group(str(env["store"]))
    f = torch.from_numpy(g["flow_input"][:3].astype(np.float32))
    fr = run_.frontalize(f)
    assert fr.shape == (3, 2, 32, 32)
    assert run_.warp(fr, torch.from_numpy(g["neutral"][:3])).dtype == torch.uint8
    with torch.no_grad():
        assert torch.equal(fr, run_.gf(f))
    # mirror_mean (evaluate/frontalize gf_mirror_mean): G_F's output averaged with its mirror image's, in pixels,
    # which makes the frontalization mirror-equivariant (a trained G_F alone is not), up to the polar angle's seam
    # (angle codes -1 and +1 are one direction, which G_F's input tells apart): compared as mean pixel errors.
    from training import flowrep

    rep, clip = run_.representation, run_.clip
    flip = (lambda x: flowrep.flip_flows(x, rep, clip))
    px = (lambda x: flowrep.decode(x, rep, clip))
    asym = (lambda: float((px(run_.frontalize(flip(f))) - px(flip(run_.frontalize(f)))).abs().mean()))
    plain = asym()
    run_.mirror_mean = True
    assert asym() < 0.25 * plain, (asym(), plain)
    with torch.no_grad():
        mean_px = 0.5 * (px(run_.gf(f)) + px(flip(run_.gf(flip(f)))))
    assert torch.allclose(px(run_.frontalize(f)), mean_px, atol=1e-4)
    # The dry run prints the resolved config and the selection, and writes nothing.
    dry = train(env, env["dir"] / "dry", "--dry-run", "--config", "paper")
    assert dry.exit_code == 0 and '"config_name": "paper"' in dry.output and "50 train, 10 test" in dry.output
    assert not (env["dir"] / "dry").exists()


def test_resume_equals_uninterrupted(env):
    full, part = env["dir"] / "full", env["dir"] / "part"
    assert train(env, full, "--epochs", "3").exit_code == 0
    assert train(env, part, "--epochs", "1").exit_code == 0
    # An interrupted epoch's records are dropped on resume: fake one.
    with (part / "log.jsonl").open("a") as f:
        f.write(json.dumps({"event": "step", "epoch": 1, "step": 99, "gf": 1.0}) + "\n")
    r = train(env, part, "--epochs", "3", "--resume")
    assert r.exit_code == 0, r.output + repr(r.exception)
    a, b = _steps(full), _steps(part)
    assert len(a) == len(b) > 6 and a == b
    for role in ("gf", "dp", "de", "gw"):
        wa, wb = load_file(str(full / "weights" / f"{role}.safetensors")), load_file(str(part / "weights" / f"{role}.safetensors"))
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # A changed config cannot resume exactly.
    r = train(env, part, "--epochs", "4", "--batch-size", "2", "--resume")
    assert r.exit_code != 0 and "train.batch_size" in str(r.exception)
    # Nor can a fresh run overwrite checkpoints.
    r = train(env, part, "--epochs", "1")
    assert r.exit_code != 0 and "--resume" in str(r.exception)


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(env, tmp_path, monkeypatch):
    import shutil

    import training.loop as loop_mod

    store = tmp_path / "fx.zarr"
    shutil.copytree(env["store"], store)
    e = dict(env, store=store)
    run = tmp_path / "run"
    assert train(e, run, "--epochs", "1").exit_code == 0
    # NaN flows reach the step in epoch 2 (in the batches: --resume refuses a store whose content changed).
    orig = loop_mod.gan_step
    monkeypatch.setattr(loop_mod, "gan_step", lambda batch, epoch, ctx: orig(
        {**batch, "flow_input": torch.full_like(batch["flow_input"], float("nan"))}, epoch, ctx))
    r = train(e, run, "--epochs", "2", "--resume")
    assert isinstance(r.exception, TrainingDiverged), r.output
    assert "non-finite loss" in str(r.exception) and "epoch_001.pt" in str(r.exception)
    assert [ep for ep, _ in list_checkpoints(run)] == [1]
    last = json.loads((run / "log.jsonl").read_text().splitlines()[-1])
    assert last["event"] == "diverged" and last["last_good"].endswith("epoch_001.pt")


DDP_SCRIPT = """
import json, sys, torch
from training.config import resolve_run
from training.loop import run_training
torch.set_num_threads(1)
store, out, fer, params = sys.argv[1:5]
c = resolve_run(params, stores=[store], out=out, fold=0, efer_path=fer)
def save(nets, d):
    torch.save({r: m.state_dict() for r, m in nets.items()}, f"{out}_rank{d.rank}.pt")
run_training(c, on_finish=save)
"""


def test_two_process_gloo_ddp_run_completes_with_identical_weights(env, tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    out = tmp_path / "ddp"
    envv = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           str(env["store"]), str(out), str(env["fer"]), str(env["params"])]
    p = subprocess.run(cmd, cwd=ROOT, env=envv, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    w0 = torch.load(f"{out}_rank0.pt", weights_only=True)
    w1 = torch.load(f"{out}_rank1.pt", weights_only=True)
    for role in w0:
        for k in w0[role]:
            assert torch.equal(w0[role][k], w1[role][k]), (role, k)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["runtime"]["world_size"] == 2
    recs = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    epochs = [r for r in recs if r["event"] == "epoch"]
    assert len(epochs) == 2 and all(len(set(e["ddp_param_sums"])) == 1 for e in epochs)
    single = torch.load(list_checkpoints(out)[-1][1], weights_only=True)["nets"]["gf"]
    assert all(torch.equal(single[k], w0["gf"][k]) for k in single)


def test_own_efer_trains_on_the_training_folds_only(env):
    meta = json.loads((env["fer"] / "fer.json").read_text())
    assert meta["fold"] == 0 and meta["class_names"] == list(CLASS_NAMES)
    import zarr
    g = zarr.open_group(str(env["store"]))
    subj, strat, lab = (np.asarray(g[k][:]) for k in ("subject", "strategy", "label"))
    # Fold 0 of the rule over k=10 is S000 alone: training rows are the neutral-apex rows of the others.
    assert meta["metrics"]["train_rows"] == int(((subj != 0) & (strat == 0) & (lab >= 0)).sum())
    model, info = load_efer({"name": "own", "path": str(env["fer"])}, fold=0)
    assert model(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)).shape == (2, 7) and info["fold"] == 0
    with pytest.raises(EmoganError, match="held out, but this run holds out fold 3"):
        load_efer({"name": "own", "path": str(env["fer"])}, fold=3)


def test_the_classifier_loop_mirrors_by_the_one_seeding_rule_and_stops_on_a_non_finite_loss(env):
    """fit_classifier (e_FER and Flow-CNN): the rows it mirrors are MirrorDraws(seed)'s draws of each epoch."""
    from training.classifier import fit_classifier
    from training.config import TrainFerConfig
    from training.data import MirrorDraws, check_store

    info = check_store(env["store"])
    spec = params_of(TrainFerConfig, "train_fer", epochs=2, batch_size=8, steps_per_epoch=2, hflip=True)
    seen: list[torch.Tensor] = []

    def prepare(b, draw):
        seen.append(draw(len(b["label"])))
        return b["target_image"].float().mean((2, 3)), b["label"]

    model = torch.nn.Linear(3, len(CLASS_NAMES))
    hist = fit_classifier(model, spec, [info], [np.arange(info.n)], ("target_image", "label"), prepare,
                          torch.device("cpu"), "test")
    assert [h["batches"] for h in hist] == [2, 2] and not model.training
    ref = MirrorDraws(spec.seed)
    want = []
    for epoch in range(2):
        ref.start_epoch(epoch)
        want += [ref.draw(8) for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(seen, want)) and len(seen) == 4

    def nan_prepare(b, draw):
        return torch.full((len(b["label"]), 3), float("nan")), b["label"]

    with pytest.raises(EmoganError, match="test: loss became nan at epoch 1"):
        fit_classifier(model, spec, [info], [np.arange(info.n)], ("target_image", "label"), nan_prepare,
                       torch.device("cpu"), "test")


def test_efer_class_weights_balance_the_faces_it_trains_on(env):
    """train_fer.class_balance: weights x counts (labels plus one neutral face per neutral-apex row) are equal."""
    import zarr

    from training.classifier import class_weights_of
    from training.data import check_store

    info = check_store(env["store"])
    g = zarr.open_group(str(env["store"]))
    lab, strat = np.asarray(g["label"][:]), np.asarray(g["strategy"][:])
    rows = np.nonzero((strat == 0) & (lab >= 0))[0]
    counts = np.bincount(lab[rows], minlength=len(CLASS_NAMES)).astype(float)
    counts[0] += len(rows)
    w = class_weights_of([info], [rows], add_neutral=True).numpy()
    present = counts > 0
    assert np.allclose((w * counts)[present], (w * counts)[present][0]) and np.isclose(w[present].mean(), 1.0)
    assert (w[~present] == 0).all() and w[0] < w[present][1:].min()   # neutral is the most frequent face here


def test_efer_jitter_moves_faces_reproducibly_and_zero_is_the_identity():
    from training.classifier import jitter_faces

    x = torch.zeros(4, 3, 32, 32)
    x[:, :, 12:20, 12:20] = 1.0                           # a bright square in the middle
    assert torch.equal(jitter_faces(x, 0.0, torch.Generator().manual_seed(0)), x)
    a = jitter_faces(x, 0.1, torch.Generator().manual_seed(0))
    b = jitter_faces(x, 0.1, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == x.shape
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    cx = (a[:, 0] * xs).sum((1, 2)) / a[:, 0].sum((1, 2))
    cy = (a[:, 0] * ys).sum((1, 2)) / a[:, 0].sum((1, 2))
    shift = torch.sqrt((cx - 15.5) ** 2 + (cy - 15.5) ** 2)
    assert (shift > 0.05).all() and (shift <= 0.1 * 32 * 1.5).all()   # each face moved, by at most ~the amount
    assert not torch.allclose(a[0], a[1])                # each face its own draw


def test_train_fer_with_balance_and_jitter_records_the_mean_per_class_recall(env, tmp_path):
    params = dump_params(tiny_trainer_params(None, {"epochs": 1, "steps_per_epoch": 3, "batch_size": 8,
                                                    "class_balance": True, "jitter": 0.08}), tmp_path / "p.yaml")
    r = CliRunner().invoke(app, ["train-fer", str(env["store"]), "--fold", "0", "--out", str(tmp_path / "fer"),
                                 "--params", str(params)])
    assert r.exit_code == 0, r.output + repr(r.exception)
    m = json.loads((tmp_path / "fer" / "metrics.json").read_text())
    recalls = [v for v in m["test_per_class"].values() if v is not None]
    assert m["test_balanced_accuracy"] == pytest.approx(float(np.mean(recalls)))
    assert "mean per-class recall" in r.output
    meta = json.loads((tmp_path / "fer" / "fer.json").read_text())
    assert meta["train_fer"]["class_balance"] is True and meta["train_fer"]["jitter"] == 0.08


def test_a_change_efer_reads_faces_against_their_neutral_face(env, tmp_path):
    """train_fer.input: change: trained on (face - neutral face), loaded as a `reference` e_FER that needs the
    neutral faces (a clear error without them); training.models.efer.classify passes them; an unchanged face reads
    as the uniform grey a neutral face's change is. input: image (the default) reads the faces alone."""
    from training.models.efer import change_image, classify

    params = dump_params(tiny_trainer_params(None, {"epochs": 1, "steps_per_epoch": 3, "batch_size": 8,
                                                    "input": "change"}), tmp_path / "p.yaml")
    r = CliRunner().invoke(app, ["train-fer", str(env["store"]), "--fold", "0", "--out", str(tmp_path / "fer"),
                                 "--params", str(params)])
    assert r.exit_code == 0, r.output + repr(r.exception)
    model, info = load_efer({"name": "own", "path": str(tmp_path / "fer")}, fold=0)
    assert model.reference and info["input"] == "change" and not model.has_features()
    faces, neutral = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    with pytest.raises(EmoganError, match="reads the change from the neutral face"):
        model(faces)
    assert torch.equal(classify(model, faces, neutral), model(faces, neutral))
    assert torch.allclose(change_image(neutral, neutral), torch.full_like(neutral, 0.5))
    assert torch.allclose(model(neutral, neutral), model(faces, faces))    # no change: the same reading for anyone
    image_model, image_info = load_efer({"name": "own", "path": str(env["fer"])}, fold=0)
    assert not image_model.reference and "input" not in image_info   # the default records nothing new
    assert torch.equal(classify(image_model, faces, neutral), image_model(faces))
    bad = dump_params(tiny_trainer_params(None, {"input": "difference"}), tmp_path / "bad.yaml")
    r = CliRunner().invoke(app, ["train-fer", str(env["store"]), "--fold", "0", "--out", str(tmp_path / "bad"),
                                 "--params", str(bad)])
    assert r.exit_code != 0 and "train_fer.input 'difference'" in r.output + str(r.exception)


def _onnx_linear(w: np.ndarray) -> bytes:
    """A hand-encoded ONNX model (no `onnx` package here): global average pool, flatten, matmul by w (3,K)."""
    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            b, n = n & 0x7F, n >> 7
            out.append(b | (0x80 if n else 0))
            if not n:
                return bytes(out)

    def f(field: int, v) -> bytes:
        if isinstance(v, int):
            return varint(field << 3) + varint(v)
        v = v.encode() if isinstance(v, str) else v
        return varint(field << 3 | 2) + varint(len(v)) + v

    def info(name, dims):
        shape = b"".join(f(1, f(2, d) if isinstance(d, str) else f(1, d)) for d in dims)
        return f(1, name) + f(2, f(1, f(1, 1) + f(2, shape)))

    nodes = [f(1, "x") + f(2, "p") + f(4, "GlobalAveragePool"),
             f(1, "p") + f(2, "f") + f(4, "Flatten") + f(5, f(1, "axis") + f(3, 1) + f(20, 2)),
             f(1, "f") + f(1, "W") + f(2, "logits") + f(4, "MatMul")]
    init = f(1, w.shape[0]) + f(1, w.shape[1]) + f(2, 1) + f(8, "W") + f(9, w.astype("<f4").tobytes())
    graph = b"".join(f(1, n) for n in nodes) + f(2, "g") + f(5, init) + f(11, info("x", ["N", 3, "H", "W"])) \
        + f(12, info("logits", ["N", w.shape[1]]))
    return f(1, 7) + f(8, f(1, "") + f(2, 13)) + f(7, graph)


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_external_efer_files_are_reordered_to_the_projects_classes(env, tmp_path):
    order = ["happy", "sad", "neutral", "angry", "surprise", "disgust", "fear", "contempt"]
    x = torch.rand(2, 3, 20, 20)
    # TorchScript: differentiable, columns mapped by name (aliases accepted, extra class dropped).
    net = build("fer_cnn", size=16, channels=[4], n_classes=8).eval()
    ts = tmp_path / "fer.ts"
    torch.jit.save(torch.jit.script(net), str(ts))
    m, info = load_efer({"name": "file", "path": str(ts), "classes": order}, trust_pickle=True)
    raw = net(x)
    for i, name in enumerate(CLASS_NAMES):
        j = [o.replace("happy", "happiness").replace("sad", "sadness").replace("angry", "anger") for o in order].index(name)
        assert torch.allclose(m(x)[:, i], raw[:, j], atol=1e-5)
    xg = x.clone().requires_grad_(True)
    m(xg).sum().backward()
    assert xg.grad is not None and info["differentiable"]
    # torch.export (.pt2), TorchScript's successor: the same.
    pt2 = tmp_path / "fer.pt2"
    torch.export.save(torch.export.export(net, (x,)), str(pt2))
    m2, _ = load_efer({"name": "file", "path": str(pt2), "classes": order}, trust_pickle=True)
    assert torch.allclose(m2(x), m(x), atol=1e-5)
    # ONNX: scored by onnxruntime, same mapping, no gradients.
    w = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
    p = tmp_path / "fer.onnx"
    p.write_bytes(_onnx_linear(w))
    m, info = load_efer({"name": "file", "path": str(p), "classes": order})
    ref = x.mean(dim=(2, 3)).numpy() @ w
    assert np.allclose(m(x).numpy()[:, CLASS_NAMES.index("happiness")], ref[:, 0], atol=1e-5)
    assert not info["differentiable"]
    with pytest.raises(EmoganError, match="lack neutral"):
        load_efer({"name": "file", "path": str(p), "classes": ["happy"] * 8})
    # L_eFER needs the e_FER's gradient: with it on (alphas[2] > 0; the small config's default is 0), an ONNX
    # e_FER is refused with the reason.
    prm = yaml.safe_load(Path(env["params"]).read_text())
    for cfg in ("paper", "medium", "small"):
        prm["train"][cfg]["alphas"][2] = 1.0
    with_efer = tmp_path / "params_efer.yaml"
    with_efer.write_text(yaml.safe_dump(prm))
    r = CliRunner().invoke(app, ["train", str(env["store"]), "--fold", "0", "--out", str(tmp_path / "run"),
                                 "--efer", "file", "--efer-path", str(p), "--efer-classes", ",".join(order),
                                 "--params", str(with_efer)])
    assert r.exit_code != 0 and "cannot pass gradients" in str(r.exception)


def test_fer2013_efer_scores_the_projects_classes():
    from pipeline.weights import weights_path

    m, info = load_efer({"name": "fer2013", "path": str(ROOT / weights_path("fer2013", project_params()))})
    assert m(torch.rand(2, 3, 48, 48)).shape == (2, 7) and len(info["sha256"]) == 64


def test_perceptual_backbone_is_vgg16_when_cached_else_efer_logged(monkeypatch, tmp_path):
    from training.models.networks import Vgg16Features

    efer = FrozenClassifier(build("fer_cnn", size=16, channels=[4, 8]))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    fn, mod, rec = perceptual_backbone("auto", efer)
    assert rec["backbone"] == "efer" and mod is None and len(fn(torch.rand(1, 3, 16, 16))) == 2
    with pytest.raises(EmoganError, match="VGG16 weights not found"):
        perceptual_backbone("vgg16", efer)
    (tmp_path / "checkpoints").mkdir()
    torch.save(Vgg16Features().state_dict(), tmp_path / "checkpoints" / "vgg16-397923af.pth")
    fn, mod, rec = perceptual_backbone("auto", efer)
    assert rec["backbone"] == "vgg16" and len(fn(torch.rand(1, 3, 16, 16))) == 4


@pytest.mark.parametrize("rep", ["polar", "cartesian"])
def test_mirrored_batches_negate_u_flip_faces_and_keep_labels(rep):
    from training.data import MirrorDraws, mirror_batch

    b = _batch(n=8)
    px = flowrep.decode(b["flow_input"], "cartesian", 10.0)
    b = {**b, "flow_input": flowrep.encode(px, rep, 10.0), "flow_target": flowrep.encode(px * 0.5, rep, 10.0)}
    draws = MirrorDraws(seed=3)
    draws.start_epoch(0)
    chosen = draws.draw(8)
    m = mirror_batch(b, chosen, rep, 10.0)
    sel = ~torch.isclose(m["neutral"], b["neutral"]).flatten(1).all(1)
    assert torch.equal(sel, chosen)
    assert 0 < int(sel.sum()) < 8                      # a random half, not none or all
    assert torch.equal(m["label"], b["label"]) and torch.equal(m["step"], b["step"])
    assert torch.equal(m["neutral"][sel], b["neutral"][sel].flip(-1))
    assert torch.equal(m["target_image"][~sel], b["target_image"][~sel])
    got = flowrep.decode(m["flow_input"][sel], rep, 10.0)
    want = flowrep.decode(b["flow_input"][sel], rep, 10.0).flip(-1) * torch.tensor([-1.0, 1.0]).view(1, 2, 1, 1)
    assert torch.allclose(got, want, atol=1e-4)
    # The same draw mirrors the same rows back: twice is the identity.
    back = mirror_batch(m, chosen, rep, 10.0)
    assert torch.allclose(flowrep.decode(back["flow_target"], rep, 10.0),
                          flowrep.decode(b["flow_target"], rep, 10.0), atol=1e-4)
    # The draws are the seed's, the rank's and the epoch's: a resumed epoch mirrors the same rows.
    again = MirrorDraws(seed=3)
    again.start_epoch(0)
    assert torch.equal(again.draw(8), chosen)
    again.start_epoch(1)
    assert not torch.equal(again.draw(64), MirrorDraws(seed=3, rank=1).draw(64))


def test_de_warmup_trains_de_alone_before_the_gan_steps(env, tmp_path):
    params = write_params(tmp_path / "params.yaml", de_warmup_steps=40, epochs=1, steps_per_epoch=1)
    p = yaml.safe_load(params.read_text())
    p["train"]["small"]["optim"]["de"] = {"kind": "adam", "lr": 3e-3, "betas": [0.9, 0.999]}
    params.write_text(yaml.safe_dump(p))
    r = train(env, tmp_path / "run", "--params", str(params))
    assert r.exit_code == 0, r.output + repr(r.exception)
    events = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    warm = [e for e in events if e["event"] == "de_warmup"]
    assert len(warm) == 1 and warm[0]["steps"] == 40
    assert warm[0]["de_last"] < 0.8 * warm[0]["de_first"]   # D_E learnt the fixture's labels
    # ... and before any GAN step: the first step record comes after it.
    kinds = [e["event"] for e in events]
    assert kinds.index("de_warmup") < kinds.index("step")
