"""Evaluation (issue 5): each metric on hand-made cases, the landmark baseline's geometry on a real
face, held-out subjects never in any judge's or model's training data, and the whole CV report
rendered from a tiny run (fixture store, tiny nets)."""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from emogan.cli import app
from pipeline.errors import EmoganError
from training.evaluation import evaluate as ev
from training.evaluation import metrics as mt
from training.evaluation.baselines import (RIGID_LANDMARKS, border_points, frontal_template, frontalize_landmarks, umeyama,
                                warp_to_mesh, triangulate)
from conftest import ROOT, TINY_NETS, params_of, write_tiny_cv_params

torch.set_num_threads(1)


# --- metrics on hand-made cases -------------------------------------------------------------

def test_epe_of_known_flows():
    gt = np.zeros((2, 2, 4, 4))
    pred = np.zeros_like(gt)
    pred[0, 0] = 3.0
    pred[0, 1] = 4.0          # every vector of sample 0 is off by (3, 4): 5 px
    pred[1, 0, :2] = 1.0      # half of sample 1's vectors off by 1 px along u
    assert mt.epe_px(pred, gt) == pytest.approx([5.0, 0.5])
    assert mt.epe_px(gt, gt) == pytest.approx([0.0, 0.0])
    # The end-point error is a per-vector norm, not a per-channel error: (1, 1) -> sqrt 2.
    assert mt.epe_px(np.ones((1, 2, 3, 3)), np.zeros((1, 2, 3, 3)))[0] == pytest.approx(math.sqrt(2))


def test_ssim_and_rmse_of_images():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (3, 3, 32, 32), dtype=np.uint8)
    assert mt.ssim_u8(a, a) == pytest.approx([1.0, 1.0, 1.0])
    assert mt.rmse_u8(a, a) == pytest.approx([0.0, 0.0, 0.0])
    b = np.clip(a.astype(int) + 10, 0, 255).astype(np.uint8)
    flat = np.full((1, 3, 32, 32), 100, np.uint8)
    assert mt.rmse_u8(flat + 10, flat)[0] == pytest.approx(10.0)
    noisy = np.clip(a.astype(int) + rng.normal(0, 40, a.shape), 0, 255).astype(np.uint8)
    s_b, s_noisy = mt.ssim_u8(b, a), mt.ssim_u8(noisy, a)
    assert (s_noisy < s_b).all() and (s_b < 1.0).all()


def test_false_colour_sees_a_tint_that_grey_metrics_do_not():
    rng = np.random.default_rng(1)
    face = rng.integers(40, 200, (2, 3, 32, 32), dtype=np.uint8)
    assert mt.chroma_u8(face, face) == pytest.approx([0.0, 0.0])
    brighter = face + np.uint8(30)                    # light: every channel alike, no colour
    assert mt.chroma_u8(brighter, face) == pytest.approx([0.0, 0.0], abs=1e-4)
    pink = face.astype(int)
    pink[:, 0, 8:16, :] += 30                         # a red band over a quarter of the face (R +30, G and B kept)
    pink[:, 1, 8:16, :] -= 15
    pink[:, 2, 8:16, :] -= 15
    pink = pink.astype(np.uint8)
    # chroma moves by (+30, -15, -15) on a quarter of the pixels: (30 + 15 + 15) / 3 / 4 = 5 grey levels
    assert mt.chroma_u8(pink, face) == pytest.approx([5.0, 5.0])
    assert (mt.chroma_u8(pink, face) > 10 * mt.chroma_u8(brighter, face) + 1).all()
    grey = lambda x: x.astype(float).mean(1, keepdims=True)  # noqa: E731
    assert np.allclose(grey(pink), grey(face))        # what a grey judge reads is unchanged


def test_delta_accuracy_and_confusion_arithmetic():
    assert mt.delta_percent(0.6, 0.4) == pytest.approx(50.0)
    assert mt.delta_percent(0.3, 0.4) == pytest.approx(-25.0)
    assert mt.gain_points(0.6, 0.4) == pytest.approx(20.0)
    assert mt.delta_percent(0.5, 0.0) is None and mt.delta_percent(None, 0.4) is None
    labels = np.array([0, 1, 1, 2, -1])
    preds = np.array([0, 1, 2, 2, 3])           # the unlabeled row does not count
    c = mt.confusion(labels, preds)
    assert c.sum() == 4 and c[1, 2] == 1 and np.trace(c) == 3
    assert mt.accuracy(labels, preds) == pytest.approx(0.75)
    assert mt.accuracy(np.array([-1]), np.array([0])) is None


def test_summaries_group_rows_and_compute_delta():
    rec = {
        "dataset": np.array(["a", "a", "a", "a", "b", "b"]),
        "pose": np.array(["yaw", "yaw", "roll", "nothing", "augmented", "augmented"]),
        "strategy": np.array(["neutral_apex"] * 6),
        "label": np.array([1, 2, 3, 4, 5, 6]),
        "flowcnn_nonfrontal": np.array([1, 0, 0, 4, 5, 0]),
        "flowcnn_emotiongan": np.array([1, 2, 3, 4, 5, 0]),
        "epe_nonfrontal": np.array([4.0, 6.0, 2.0, 1.0, 3.0, 3.0]),
        "epe_emotiongan": np.array([1.0, 1.0, 1.0, 1.0, 1.0, np.nan]),
    }
    bd = mt.breakdown(rec, {"large": ["yaw", "pitch", "roll", "diagonal"]})
    large = bd["a/large/neutral_apex"]
    assert large["n"] == 3
    assert large["flowcnn"]["accuracy"] == {"nonfrontal": pytest.approx(1 / 3), "emotiongan": 1.0}
    assert large["flowcnn"]["delta_percent"]["emotiongan"] == pytest.approx(200.0)
    assert large["flowcnn"]["gain_pts"]["emotiongan"] == pytest.approx(200 / 3)
    assert large["epe_px"] == {"nonfrontal": pytest.approx(4.0), "emotiongan": pytest.approx(1.0)}
    assert bd["all/all/all"]["n"] == 6
    assert bd["b/all/all"]["epe_px"]["emotiongan"] == pytest.approx(1.0)   # NaN rows are left out of means
    assert "a/pitch/all" not in bd                                      # no empty groups
    assert np.asarray(bd["all/large/all"]["flowcnn"]["confusion"]["emotiongan"]).sum() == 3


def test_flow_flip_mirrors_and_inverts():
    from training import flowrep
    from training.flowrep import flip_flows

    px = torch.zeros(1, 2, 4, 4)
    px[0, 0, :, 0] = 3.0     # rightward motion in the left column
    x = flowrep.encode(px, "polar", 10.0)
    f = flowrep.decode(flip_flows(x, "polar", 10.0), "polar", 10.0)
    assert f[0, 0, :, 3] == pytest.approx(torch.full((4,), -3.0), abs=1e-4)   # leftward, right column
    assert f[0, 0, :, 0].abs().max() < 1e-4
    back = flowrep.decode(flip_flows(flip_flows(x, "polar", 10.0), "polar", 10.0), "polar", 10.0)
    assert torch.allclose(back, px, atol=1e-4)


# --- landmark baseline geometry -------------------------------------------------------------

def _rotation(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    y, p, r = (math.radians(a) for a in (yaw_deg, pitch_deg, roll_deg))
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


def test_umeyama_recovers_a_similarity():
    rng = np.random.default_rng(1)
    src = rng.normal(size=(30, 3))
    r = _rotation(25, -10, 15)
    dst = 2.5 * src @ r.T + np.array([4.0, -2.0, 1.0])
    s, r_hat, t = umeyama(src, dst)
    assert s == pytest.approx(2.5) and np.allclose(r_hat, r) and np.allclose(t, [4.0, -2.0, 1.0])


def test_frontalized_landmarks_undo_the_head_rotation():
    """A face mesh (random 3-D points, the rigid ones fixed) turned by yaw/pitch/roll and moved comes back
    where the frontal frame put it, while a non-rigid point keeps its own (expression) offset."""
    from training.evaluation.baselines import FOREHEAD, NOSE_TIP, RIGID_PAIRS

    rng = np.random.default_rng(2)
    mesh = rng.normal(0, 30, (468, 3))
    mesh[FOREHEAD] = [0, -60, 10]
    mesh[NOSE_TIP] = [0, 0, 10]        # same depth as the forehead: the frontal frame is the image frame
    for k, (l, r) in enumerate(RIGID_PAIRS):
        mesh[l] = [-40 - 5 * k, -20 + 8 * k, 0]
        mesh[r] = [40 + 5 * k, -20 + 8 * k, 0]
    frontal = mesh + [256, 256, 0]
    template, scale, centre = frontal_template(frontal)
    base = frontalize_landmarks(frontal, template, scale, centre)
    moved = mesh.copy()
    moved[61] += [0, 12, 0]                       # a mouth corner drops: expression, not pose
    turned = moved @ _rotation(25, 10, -15).T * 0.9 + [280, 240, 5]
    out = frontalize_landmarks(turned, template, scale, centre)
    rigid = list(RIGID_LANDMARKS)
    assert np.abs(out[rigid] - base[rigid]).max() < 1e-6
    assert out[61] - base[61] == pytest.approx([0, 12], abs=1e-6)
    # the raw turned mesh is far from it: the test is not trivially satisfied
    assert np.abs(turned[rigid, :2] - base[rigid]).max() > 20


def test_mesh_warp_moves_texture_with_the_points():
    """Mesh points all shifted by (5, 3): inside every triangle of mesh points the image is shifted by (5, 3)."""
    from pipeline.face_model import rasterize

    rng = np.random.default_rng(3)
    img = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    g = np.linspace(16, 48, 5)
    pts = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    anchors = border_points(64, 2)
    src = np.concatenate([pts, anchors])
    dst = np.concatenate([pts + [5, 3], anchors])
    tris = triangulate(dst)
    out = warp_to_mesh(img, src, dst, tris)
    inner = np.flatnonzero((tris < len(pts)).all(1))
    ids = rasterize(dst[tris].astype(np.float32), np.arange(len(tris)), (64, 64))
    # Pixels strictly inside mesh triangles (edges may belong to a neighbour triangle).
    mask = np.isin(ids, inner)
    mask[1:-1, 1:-1] &= mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    yy, xx = np.nonzero(mask)
    assert len(yy) > 400
    assert np.array_equal(out[yy, xx], img[yy - 3, xx - 5])
    # Far from the mesh, the anchored border stays in place.
    assert np.array_equal(out[0, :], img[0, :])


@pytest.mark.slow
def test_landmark_frontalization_removes_an_in_plane_head_turn():
    """On a real face (scikit-image's astronaut), FaceMesh + mesh warp remove most of a 20 degree roll:
    the Farneback flow inside the face falls several fold."""
    import cv2

    from face_images import astronaut
    from pipeline.farneback import farneback_px
    from pipeline.flow import FlowParams
    from training.evaluation.baselines import LandmarkParams, frontalize_frames, landmarks

    img = cv2.resize(astronaut()[10:210, 40:240], (256, 256))
    m = cv2.getRotationMatrix2D((128, 128), 20, 1.0)
    m[0, 2] += 6
    turned = cv2.warpAffine(img, m, (256, 256), borderMode=cv2.BORDER_REFLECT)
    out, found = frontalize_frames([img, turned], params_of(LandmarkParams, "evaluate.landmark", workers=1))
    assert found.all()
    lm = landmarks(img, 0.3)
    mask = np.zeros((256, 256), np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(lm[:, :2].astype(np.float32)).astype(np.int32), 1)
    mask = mask.astype(bool)
    gray = [cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) for x in (img, turned, out[0], out[1])]
    fp = params_of(FlowParams, "flow")
    raw = np.hypot(*farneback_px(gray[0], gray[1], fp).transpose(2, 0, 1))[mask].mean()
    fr = np.hypot(*farneback_px(gray[2], gray[3], fp).transpose(2, 0, 1))[mask].mean()
    assert raw > 15 and fr < raw / 5


# --- a tiny CV run: held-out subjects, refusals, the report ---------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A fixture store named like the default dataset, tiny nets, both folds of a 2-fold CV trained and evaluated."""
    from training.fixture import write_fixture_store

    d = tmp_path_factory.mktemp("cv")
    params = write_tiny_cv_params(d, {"net": copy.deepcopy(TINY_NETS["de"]), "size": 32, "epochs": 1,
                                      "steps_per_epoch": 3, "batch_size": 16}, samples_per_pose=1)
    store = write_fixture_store(d / "synth.zarr", n_subjects=6, rows_per_subject=12, size=32, chunk_mib=0.02)
    # A stand-in landmark baseline that frontalizes perfectly (its flow is the ground truth): evaluate's
    # plumbing must then score it exactly like the frontal ground truth.
    import zarr

    g = zarr.open_group(str(store), mode="r")
    (d / "baselines").mkdir()
    # It covers the neutral-apex rows only, as a baseline computed for some strategies does.
    rows = np.flatnonzero(g["strategy"][:] == 0)
    np.savez(d / "baselines/synth_landmark.npz", rows=rows, flow=g["flow_target"][:][rows],
             image=g["target_image"][:][rows], ok=np.ones(len(rows), bool), meta=np.array("{}"))
    runner = CliRunner()

    def run(*args):
        r = runner.invoke(app, [str(a) for a in args] + ["--params", str(params)])
        assert r.exit_code == 0, r.output + repr(r.exception)
        return r

    for fold in (0, 1):
        run("train-fer", store, "--fold", fold, "--out", d / f"models/efer_fold{fold}")
        run("train-flowcnn", store, "--fold", fold)
        for variant in ("full", "no_rec"):
            out = d / f"models/{variant}_fold{fold}"
            run("train", store, "--fold", fold, "--out", out, "--efer-path", d / f"models/efer_fold{fold}",
                "--ablation", variant)
            run("evaluate", out, store)
    run("report", d / "metrics/eval")
    return {"dir": d, "store": store, "params": params, "run": run}


def test_held_out_subjects_are_never_trained_on(tiny):
    from training.data import check_store, fold_rows
    from training.data import subjects_of

    d, store = tiny["dir"], str(tiny["store"])
    info = check_store(store)
    for fold in (0, 1):
        test = set(subjects_of(store, fold_rows(info, fold, "test", None, 3)))
        train = set(subjects_of(store, fold_rows(info, fold, "train", None, 3)))
        assert test and train and not (test & train)
        judge = json.loads((d / f"models/flowcnn_fold{fold}/flowcnn.json").read_text())
        assert not (set(judge["train_subjects"][store]) & test)
        bd = json.loads((d / f"metrics/eval/full/fold_{fold}/breakdown.json").read_text())
        assert set(bd["meta"]["stores"]["synth"]["test_subjects"]) == test
        rows = mt.read_rows_csv(d / f"metrics/eval/full/fold_{fold}/rows.csv")
        assert set(rows["subject"]) == test


def test_evaluate_refuses_judges_and_models_of_another_fold(tiny):
    d, store = tiny["dir"], tiny["store"]
    r = CliRunner().invoke(app, ["evaluate", str(d / "models/full_fold0"), str(store), "--fold", "1",
                                 "--params", str(tiny["params"]), "--out", str(d / "x")])
    assert r.exit_code != 0 and "fold 0" in str(r.exception)
    r = CliRunner().invoke(app, ["evaluate", str(d / "models/full_fold0"), str(store), "--flowcnn",
                                 str(d / "models/flowcnn_fold1"), "--params", str(tiny["params"]), "--out", str(d / "x")])
    assert r.exit_code != 0 and "held out fold 1" in str(r.exception)
    # A run whose config claims another fold's training rows: the subject check itself refuses it.
    cfg = json.loads((d / "models/full_fold0/config.json").read_text())
    from training.config import RunRecord
    from training.data import check_store, fold_rows, subjects_of

    test = set(subjects_of(str(store), fold_rows(check_store(str(store)), 0, "test", None, 3)))
    with pytest.raises(EmoganError, match="trained on held-out subject"):
        ev.check_held_out(RunRecord.from_json({**cfg, "fold": 1}, "test"), str(store), test)


def test_ablation_switch_zeroes_the_terms(tiny):
    d = tiny["dir"]
    full = json.loads((d / "models/full_fold0/config.json").read_text())
    no_rec = json.loads((d / "models/no_rec_fold0/config.json").read_text())
    assert full["ablation"] == "full" and no_rec["ablation"] == "no_rec"
    lam = yaml.safe_load(tiny["params"].read_text())["train"]["small"]["lambdas"]
    assert lam[1] and lam[2], "the configured reconstruction terms must be on for this test to mean anything"
    assert full["train"]["lambdas"] == lam
    assert no_rec["train"]["lambdas"] == [lam[0], 0.0, 0.0, lam[3]]
    assert json.loads((d / "metrics/eval/no_rec/fold_0/breakdown.json").read_text())["meta"]["variant"] == "no_rec"


def test_report_renders_from_a_tiny_run(tiny):
    d = tiny["dir"]
    md = (d / "reports/REPORT.md").read_text()
    for heading in ("## Table I", "## Table II", "## Table IV", "## Acceptance check", "## Figures"):
        assert heading in md
    assert "Ours w/o L_epe, L_char" in md and "eMotion-GAN (ours)" in md
    for fig in ("fig1_frontalization.png", "fig5_fvs_comparison.png", "flowcnn_accuracy_by_pose.png",
                "confusion_flowcnn_large_poses.png"):
        assert (d / "reports/figures" / fig).stat().st_size > 1000
        assert f"figures/{fig}" in md
    cv = json.loads((d / "metrics/cv.json").read_text())
    assert cv["folds"] == [0, 1] and set(cv["variants"]) == {"full", "no_rec"}
    from training.evaluation.headline import count_numbers

    headline = json.loads((d / "metrics/headline.json").read_text())   # what `dvc metrics show` lists
    assert headline["folds"] == 2 and "pooled" in headline and 10 <= count_numbers(headline) <= 40
    # Table I shows G_W's false colour beside SSIM and RMSE (fold mean, as every cell).
    chroma = cv["variants"]["full"]["all/all/all"]["chroma.emotiongan"]
    assert "false colour ↓" in md and f"{chroma['mean']:.2f} ± {chroma['std']:.2f}" in md
    # The figures' samples: up to samples_per_pose per (dataset, pose, expression), each with the image judges'
    # readings; G_W's faces per expression drawn from the lowest fold that kept samples.
    with np.load(d / "metrics/eval/full/fold_0/samples.npz") as z:
        kept = list(zip(z["dataset"].astype(str), z["pose"].astype(str), z["label"].tolist()))
        assert len(kept) == len(set(kept)) and len(kept) > len({k[:2] for k in kept})
        assert z["fer2013_emotiongan"].shape == z["efer_gw_gt"].shape == (len(kept),)
    assert "figures/faces_by_expression.png" in md and "fold 0's held-out people" in md
    import shutil   # a result folder that kept fold 1's samples only: the figures draw fold 1's people
    shutil.copytree(d / "metrics/eval/full", d / "only1/full")
    (d / "only1/full/fold_0/samples.npz").unlink()
    tiny["run"]("report", d / "only1", "-o", d / "only1/REPORT.md", "--metrics", d / "only1/cv.json",
                "--headline", d / "only1/h.json")
    assert "fold 1's held-out people" in (d / "only1/REPORT.md").read_text()
    # Table I's numbers are the fold mean of the per-fold metrics.
    per_fold = [json.loads((d / f"metrics/eval/full/fold_{k}/metrics.json").read_text())["all"]["all"]["epe_px"]
                ["nonfrontal"] for k in (0, 1)]
    agg = cv["variants"]["full"]["all/all/all"]["epe_px.nonfrontal"]
    assert agg["mean"] == pytest.approx(np.mean(per_fold)) and agg["std"] == pytest.approx(np.std(per_fold, ddof=1))
    assert f"{np.mean(per_fold):.2f} ± {np.std(per_fold, ddof=1):.2f}" in md
    # The error band: in REPORT.md before Table I and in cv.json; --compare checks another run's headline.
    assert md.index("## Error band") < md.index("## Table I") and "bootstrap over held-out sequences" in md
    lo, hi = cv["band"]["pooled"]["flowcnn_acc_gf_pct"]
    assert lo <= headline["pooled"]["flowcnn_acc_gf_pct"]["mean"] <= hi
    out = tiny["run"]("report", d / "metrics/eval", "-o", d / "re/REPORT.md", "--metrics", d / "re/cv.json",
                      "--headline", d / "re/h.json", "--compare", d / "metrics/headline.json").output
    assert "headline numbers inside this report's error band" in out and "outside" not in out
    moved = {**headline, "pooled": {**headline["pooled"], "flowcnn_acc_gf_pct": {"mean": hi + 1.0, "std": 0.0}}}
    (d / "moved.json").write_text(json.dumps(moved))
    r = CliRunner().invoke(app, ["report", str(d / "metrics/eval"), "-o", str(d / "re/REPORT.md"), "--metrics",
                                 str(d / "re/cv.json"), "--headline", str(d / "re/h.json"), "--compare",
                                 str(d / "moved.json"), "--params", str(tiny["params"])])
    assert r.exit_code == 1 and "outside: pooled.flowcnn_acc_gf_pct" in r.output
    # The FER2013 judge read the central part of the store's faces, framed as it was trained (evaluate.fer2013_margin).
    from training.models.fer2013 import frame_for

    prm = yaml.safe_load(tiny["params"].read_text())
    fer = json.loads((d / "metrics/eval/full/fold_0/breakdown.json").read_text())["meta"]["judges"]["fer2013"]
    assert fer["frame"] == pytest.approx(frame_for(prm["evaluate"]["fer2013_margin"], prm["crop"]["margin"]))
    assert f"used, on the central {fer['frame']:.2f} of each face crop's side" in md


@pytest.mark.slow
def test_landmark_baseline_command_on_a_tiny_crops_folder(tmp_path):
    """`baseline_landmark` finds a sequence's cam2 frames through crops.csv and the store's sequence_ids/frame_t,
    and its flows of a turning head are much smaller than the raw flows."""
    import cv2

    from face_images import astronaut, write_rgb
    from pipeline.farneback import farneback_px
    from pipeline.flow import FlowParams
    from pipeline.normalize import denormalize, normalize_flow
    from pipeline.store import write_store
    from training.evaluation.baselines import LandmarkParams, landmark_baseline

    face = cv2.resize(astronaut()[10:210, 40:240], (256, 256))
    frames = []
    for i, deg in enumerate((0.0, 8.0, 16.0)):
        m = cv2.getRotationMatrix2D((128, 128), deg, 1.0)
        frames.append(cv2.warpAffine(face, m, (256, 256), borderMode=cv2.BORDER_REFLECT))
        write_rgb(tmp_path / "crops" / "S1" / "seq" / "cam2" / f"img_{i + 1:03d}.png", frames[-1])
    (tmp_path / "crops" / "crops.csv").write_text("subject,sequence,label_code,pose,cam2_dir\nS1,seq,1,roll,S1/seq/cam2\n")
    fp = params_of(FlowParams, "flow")
    raw = np.stack([farneback_px(cv2.cvtColor(frames[0], cv2.COLOR_RGB2GRAY), cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), fp)
                    .transpose(2, 0, 1) for f in frames[1:]])
    size = 32
    raw_small = np.stack([cv2.resize(r.transpose(1, 2, 0), (size, size), interpolation=cv2.INTER_AREA)
                          .transpose(2, 0, 1) for r in raw])
    flow = normalize_flow(raw_small, "cartesian", 40.0).astype(np.float16)
    n = 2
    arrays = {"flow_input": flow, "flow_target": flow, "neutral": np.zeros((n, 3, size, size), np.uint8),
              "target_image": np.zeros((n, 3, size, size), np.uint8), "input_image": np.zeros((n, 3, size, size), np.uint8),
              "label": np.ones(n, np.int16), "subject": np.zeros(n, np.int32), "sequence": np.zeros(n, np.int32),
              "pose": np.full(n, 4, np.int16), "strategy": np.ones(n, np.int16), "step": np.array([1, 2], np.int16),
              "frame_t": np.zeros(n, np.int16)}
    store = write_store(tmp_path / "tiny.zarr", arrays, {"representation": "cartesian", "clip": 40.0, "size": size,
                                                          "source_manifest_sha256": "test", "subject_ids": ["S1"],
                                                          "sequence_ids": ["S1/seq"], "params": {}})
    out = tmp_path / "lm.npz"
    meta = landmark_baseline(str(tmp_path / "tiny.zarr"), tmp_path / "crops", np.arange(n),
                             params_of(LandmarkParams, "evaluate.landmark", size=size, workers=1), fp, out, progress=False)
    assert meta["rows"] == 2 and meta["ok_fraction"] == 1.0 and meta["seconds"] > 0
    # a re-run writes the same bytes (the file held the run's wall-clock seconds: every run hashed anew for DVC)
    first = out.read_bytes()
    landmark_baseline(str(tmp_path / "tiny.zarr"), tmp_path / "crops", np.arange(n),
                      params_of(LandmarkParams, "evaluate.landmark", size=size, workers=1), fp, out, progress=False)
    assert out.read_bytes() == first
    z = np.load(out)
    assert list(z["rows"]) == [0, 1] and z["flow"].shape == (2, 2, size, size) and z["image"].shape == (2, 3, size, size)
    mag_lm = np.hypot(*denormalize(z["flow"].astype(np.float32), "cartesian", 40.0).transpose(1, 0, 2, 3))
    mag_raw = np.hypot(*raw_small.transpose(1, 0, 2, 3))
    # Inside the face (FaceMesh hull of the first frame): outside it the rotated background is not warped.
    from training.evaluation.baselines import landmarks

    hull = np.zeros((256, 256), np.float32)
    cv2.fillConvexPoly(hull, cv2.convexHull(landmarks(frames[0], 0.3)[:, :2].astype(np.float32)).astype(np.int32), 1.0)
    inside = cv2.resize(hull, (size, size), interpolation=cv2.INTER_AREA) > 0.99
    assert inside.sum() > 30
    assert mag_raw[:, inside].mean() > 8 and mag_lm[:, inside].mean() < mag_raw[:, inside].mean() / 3
    del store


def test_evaluate_scores_a_perfect_landmark_flow_like_the_ground_truth(tiny):
    all_rows = mt.read_rows_csv(tiny["dir"] / "metrics/eval/full/fold_0/rows.csv")
    apex = all_rows["strategy"] == "neutral_apex"
    assert apex.any() and (~apex).any()
    rows = {k: v[apex] for k, v in all_rows.items()}
    assert (rows["landmark_ok"] == 1).all()
    assert np.allclose(rows["epe_landmark"], 0.0, atol=1e-5)
    assert (rows["epe_nonfrontal"][rows["pose"] != "nothing"] > 0.1).all()   # the input itself is not frontal
    assert np.array_equal(rows["flowcnn_landmark"], rows["flowcnn_frontal_gt"])
    assert np.array_equal(rows["efer_landmark"], rows["efer_frontal_gt"])
    assert np.allclose(rows["ssim_landmark"], 1.0) and np.allclose(rows["rmse_landmark"], 0.0)
    assert np.allclose(rows["chroma_landmark"], 0.0) and (rows["chroma_nonfrontal"][rows["pose"] != "nothing"] > 1).all()
    # Rows the baseline did not compute are left out of its scores, not scored as something else.
    assert np.isnan(all_rows["epe_landmark"][~apex]).all() and (all_rows["flowcnn_landmark"][~apex] == -1).all()
    bd = json.loads((tiny["dir"] / "metrics/eval/full/fold_0/breakdown.json").read_text())["groups"]
    assert bd["all/all/all"]["flowcnn"]["accuracy"]["landmark"] == pytest.approx(
        bd["all/all/neutral_apex"]["flowcnn"]["accuracy"]["frontal_gt"])


def test_a_gf_that_reads_the_face_trains_and_evaluates_end_to_end(tiny):
    """`nets.gf.face: grey` (issue #12): the trainer streams the non-frontal face with the flows, evaluate (the
    chain included) hands each flow's end-frame face to G_F, and the trained G_F's output depends on it."""
    from training.checkpoint import load_run

    d, store = tiny["dir"], tiny["store"]
    p = yaml.safe_load(tiny["params"].read_text())
    p["train"]["small"]["nets"]["gf"] = {**p["train"]["small"]["nets"]["gf"], "face": "grey"}
    params = d / "params_face.yaml"
    params.write_text(yaml.safe_dump(p, sort_keys=False))
    runner = CliRunner()
    out = d / "models/face_fold0"
    for args in (["train", store, "--fold", 0, "--out", out, "--efer-path", d / "models/efer_fold0"],
                 ["evaluate", out, store, "--out", d / "face_eval"]):
        r = runner.invoke(app, [str(a) for a in args] + ["--params", str(params)])
        assert r.exit_code == 0, r.output + repr(r.exception)
    assert json.loads((out / "config.json").read_text())["train"]["nets"]["gf"]["face"] == "grey"
    face_rows = mt.read_rows_csv(next((d / "face_eval").rglob("rows.csv")))
    full_rows = mt.read_rows_csv(d / "metrics/eval/full/fold_0/rows.csv")
    assert len(face_rows["label"]) == len(full_rows["label"]) and np.isfinite(face_rows["epe_emotiongan"]).all()
    run = load_run(out)
    assert run.reads_face
    import zarr

    g = zarr.open_group(str(store), mode="r")
    x = torch.from_numpy(np.asarray(g["flow_input"][:4], np.float32))
    face = torch.from_numpy(np.asarray(g["input_image"][:4]))
    a, b = run.frontalize(x, face), run.frontalize(x, 255 - face)
    assert not torch.allclose(a, b), "the trained G_F's output must depend on the face it reads"
    with pytest.raises(EmoganError, match="nets.gf.face"):
        run.frontalize(x)


def test_evaluate_runs_g_f_once_per_row(tiny, monkeypatch):
    """evaluate runs G_F once on a row (`evaluate.neutral_apex: direct`; the chain adds its own step-1 rows): pass
    1's output of the image rows serves pass 2's flows and G_W's faces. The scores match the fixture's evaluation
    of the same model where the chain plays no part."""
    from training.checkpoint import TrainedRun

    d, store = tiny["dir"], tiny["store"]
    p = yaml.safe_load(tiny["params"].read_text())
    p["evaluate"]["neutral_apex"] = "direct"
    params = d / "params_direct.yaml"
    params.write_text(yaml.safe_dump(p, sort_keys=False))
    seen = []
    frontalize = TrainedRun.frontalize

    def counted(self, flow, face_u8=None):
        seen.append(len(flow))
        return frontalize(self, flow, face_u8)

    monkeypatch.setattr(TrainedRun, "frontalize", counted)
    r = CliRunner().invoke(app, ["evaluate", str(d / "models/full_fold0"), str(store), "--out", str(d / "direct_eval"),
                                 "--params", str(params)])
    assert r.exit_code == 0, r.output + repr(r.exception)
    rows = mt.read_rows_csv(next((d / "direct_eval").rglob("rows.csv")))
    images = np.isfinite(rows["ssim_emotiongan"])   # pass 2's rows (evaluate.image_strategies): G_W's faces
    assert images.any() and (~images).any()
    assert sum(seen) == len(rows["label"])
    full = mt.read_rows_csv(d / "metrics/eval/full/fold_0/rows.csv")
    f2f = full["strategy"] != "neutral_apex"
    assert f2f.any() and np.array_equal(rows["row"], full["row"])
    for key in ("epe_emotiongan", "flowcnn_emotiongan"):   # the chain replaces the neutral_apex rows only
        assert np.array_equal(rows[key][f2f], full[key][f2f], equal_nan=True), key
    for key in ("epe_gf_direct", "flowcnn_gf_direct"):
        assert np.array_equal(rows[key], full[key], equal_nan=True), key
