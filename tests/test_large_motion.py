"""Issue #12's switches: the residual G_F, step-balanced flow losses, tuning folds with reserved test subjects."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from pipeline import folds as fo
from pipeline.cli import app
from pipeline.errors import EmoganError
from training import flowrep
from training import losses as L
from training.data import FoldError, check_store, fold_rows
from training.fixture import make_arrays, write_fixture_store
from training.networks import clamp_unit_disc
from training.registry import build

torch.set_num_threads(1)
SMALL = {"ngf": 8, "max_ch": 32, "n_down": 2, "n_res_enc": 1, "n_res_dec": 1}


def test_residual_gf_starts_as_the_identity_and_stays_in_the_unit_disc():
    torch.manual_seed(0)
    gf = build("gf", **SMALL, output="residual", head_side=2)
    x = torch.rand(3, 2, 16, 16) * 1.2 - 0.6          # |x| < 1: identity
    assert torch.allclose(gf(x), x, atol=1e-6)
    big = build("gf", **SMALL, output="residual", in_scale=4.0)
    out = big(x)
    assert torch.linalg.vector_norm(out, dim=1).max() <= 1 + 1e-5
    direction = torch.nn.functional.cosine_similarity(out, x, dim=1)
    assert direction.min() > 0.999                      # clamped by magnitude, direction kept


def test_unit_disc_clamp_passes_gradients_to_saturated_magnitudes():
    v = torch.tensor([[[[3.0]], [[4.0]]]], requires_grad=True)   # |v| = 5
    out = clamp_unit_disc(v)
    assert torch.allclose(out.detach().flatten(), torch.tensor([0.6, 0.8]))
    out.sum().backward()
    assert torch.allclose(v.grad.flatten(), torch.ones(2))        # straight-through: the estimate can shrink it


def test_a_one_pixel_head_field_is_a_global_translation():
    torch.manual_seed(0)
    gf = build("gf", **SMALL, output="residual", head_side=1, correction=False)
    torch.nn.init.normal_(gf.head[-1].weight)
    z = gf.encoder(torch.rand(2, 2, 16, 16))
    h = gf.head_motion(z, 16)
    assert h.shape == (2, 2, 16, 16)
    assert torch.allclose(h, h[:, :, :1, :1].expand_as(h), atol=1e-6)


def test_gf_output_must_be_known():
    with pytest.raises(EmoganError, match="direct or residual"):
        build("gf", **SMALL, output="sideways")


def test_a_gf_trained_in_the_test_brings_large_motion_pairs_closer_to_the_truth_than_a_zero_flow():
    """On the fixture's moving rows (expression + rigid head motion), G_F trained here brings held-out flows
    closer to the frontal truth than a zero flow and than the input (the issue's acceptance, in miniature)."""
    torch.manual_seed(0)
    a = make_arrays(n_subjects=1, rows_per_subject=64, size=16, representation="cartesian", clip=10.0, seed=3)
    x, y = torch.from_numpy(a["flow_input"]).float(), torch.from_numpy(a["flow_target"]).float()
    moving = torch.from_numpy(a["pose"] != 0)
    gf = build("gf", **SMALL, scale="input_rms")
    opt = torch.optim.Adam(gf.parameters(), lr=3e-3, betas=(0.5, 0.999))
    gen = torch.Generator().manual_seed(0)
    for _ in range(300):
        idx = torch.randint(48, (16,), generator=gen)
        loss = L.epe(gf(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        m = moving[48:]
        fr = flowrep.epe_px(gf(x[48:]), y[48:], "cartesian", 10.0)[m].mean()
        zero = torch.linalg.vector_norm(y[48:] * 10.0, dim=1).flatten(1).mean(1)[m].mean()
        inp = flowrep.epe_px(x[48:], y[48:], "cartesian", 10.0)[m].mean()
    assert fr < 0.6 * zero and fr < 0.6 * inp, (float(fr), float(zero), float(inp))


def test_step_weights_give_every_step_the_same_total():
    steps = np.repeat(np.arange(1, 10), np.arange(9, 0, -1))     # a 10-frame sequence's pairs
    w = L.step_weight_table(steps, "step")
    totals = np.bincount(steps, weights=w[steps])[1:]
    assert np.allclose(totals, totals[0]) and w[0] == 0
    assert np.isclose(w[steps].mean(), 1.0)
    assert L.step_weight_table(steps, "step", cap=2.0).max() == 2.0
    assert L.step_weight_table(steps, "none") is None
    with pytest.raises(ValueError, match="none or step"):
        L.step_weight_table(steps, "magic")


def test_weighted_epe_is_the_weighted_mean_of_rows():
    pred = torch.zeros(2, 2, 2, 2)
    target = torch.zeros(2, 2, 2, 2)
    target[0, 0], target[1, 0] = 1.0, 4.0
    assert torch.isclose(L.epe(pred, target, torch.tensor([3.0, 1.0])), torch.tensor((3 * 1 + 4) / 4))


def test_tuning_folds_reserve_the_test_folds_and_merge_validation():
    folds = fo.assign_folds([f"S{i:03d}" for i in range(1, 13)], 10)
    tune = fo.tuning_folds(folds, reserve=[0, 1, 2], validation=[3, 4])
    assert {s for s, f in tune.items() if f == -1} == {s for s, f in folds.items() if f in (0, 1, 2)}
    assert {s for s, f in tune.items() if f == 3} == {"S004", "S005"}
    assert all(tune[s] == f for s, f in folds.items() if f >= 5)
    with pytest.raises(EmoganError, match="not reserved"):
        fo.tuning_folds(folds, reserve=[0, 3], validation=[3])


def test_reserved_subjects_are_in_neither_training_nor_validation_rows(tmp_path):
    store = write_fixture_store(tmp_path / "fx.zarr", n_subjects=6, rows_per_subject=4, size=16,
                                representation="cartesian")
    ff = tmp_path / "tune.csv"
    with open(ff, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["subject", "fold"])
        for s, fold in (("S000", -1), ("S001", -1), ("S002", 3), ("S003", 5), ("S004", 6), ("S005", 6)):
            w.writerow([s, fold])
    info = check_store(store)
    subj = np.asarray(__import__("zarr").open_group(str(store), mode="r")["subject"][:])
    tr, va = fold_rows(info, 3, "train", ff, 10), fold_rows(info, 3, "test", ff, 10)
    assert set(subj[tr]) == {3, 4, 5} and set(subj[va]) == {2}
    assert not set(subj[tr]) & set(subj[va])
    with pytest.raises(FoldError, match="reserved"):
        fold_rows(info, -1, "test", ff, 10)


def test_folds_command_writes_a_tuning_split(tmp_path):
    manifest = tmp_path / "tiny.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["dataset", "subject", "sequence"])
        for i in range(12):
            w.writerow(["d", f"S{i + 1:03d}", f"{i:03d}"])
    out = tmp_path / "tune.csv"
    r = CliRunner().invoke(app, ["folds", "tiny", "--manifest", str(manifest), "--out", str(out),
                                 "--reserve", "0,1,2", "--validation", "3,4"])
    assert r.exit_code == 0, r.output
    tune = fo.read_folds(out)
    assert tune["S001"] == tune["S011"] == -1 and tune["S004"] == tune["S005"] == 3 and tune["S006"] == 5
    r = CliRunner().invoke(app, ["folds", "tiny", "--manifest", str(manifest), "--out", str(out), "--reserve", "0"])
    assert r.exit_code != 0
