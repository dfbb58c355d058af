"""#16 defect 8: non-finite data is caught where it enters a store, and by the readers: normalize wrote NaN
into a store with exit 0, stats crashed with an unrelated traceback, D_E's warm-up trained into NaN, and NaN in
held-out rows gave exit 0 and "0.0% lower"."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from emogan.cli import app
from flowdata import make_crops
from pipeline import flow as fl
from pipeline.errors import EmoganError
from pipeline.normalize import NormalizeParams, normalize_store
from pipeline.stats import StatsParams, compute_stats
from training.fixture import write_fixture_store
from conftest import dump_params, params_of, tiny_trainer_params

P = params_of(fl.FlowParams, "flow", size=32, workers=0, max_step=1)


@pytest.fixture
def nan_flows(tmp_path):
    crops = make_crops(tmp_path / "crops", n_sequences=2, frames=3, side=32)
    fl.compute_flows(crops, tmp_path / "f.zarr", P, progress=False)
    g = zarr.open_group(str(tmp_path / "f.zarr"), mode="r+")
    a = g["flow_target_px"][...]
    a[3, 0, 5, 5] = np.nan
    g["flow_target_px"][...] = a
    return tmp_path / "f.zarr"


def test_normalize_refuses_non_finite_flows_and_writes_nothing(nan_flows, tmp_path):
    with pytest.raises(EmoganError, match="NaN or infinite") as e:
        normalize_store(nan_flows, tmp_path / "s.zarr", params_of(NormalizeParams, "normalize", size=32, chunk_mib=0.05))
    assert str(nan_flows) in str(e.value) and "row 3" in str(e.value)
    assert not (tmp_path / "s.zarr").exists()


def test_stats_names_the_store_with_non_finite_flows(nan_flows, tmp_path):
    with pytest.raises(EmoganError, match="NaN or infinite") as e:
        compute_stats(nan_flows, tmp_path / "m.json", params_of(StatsParams, "stats"))
    assert str(nan_flows) in str(e.value) and "flow_target_px" in str(e.value)


def test_flow_skips_a_sequence_whose_flow_is_not_finite(tmp_path, monkeypatch):
    crops = make_crops(tmp_path / "crops", n_sequences=3, frames=3, side=32)
    orig = fl.compute_sequence

    def nan_for_the_second(frontal, nonfrontal, p):
        out = orig(frontal, nonfrontal, p)
        if "/002/" in frontal[0]:
            out["flow_input_px"][0, 0, 0, 0] = np.inf
        return out

    monkeypatch.setattr(fl, "compute_sequence", nan_for_the_second)
    rep = fl.compute_flows(crops, tmp_path / "f.zarr", P, progress=False)
    assert rep.n_sequences == 2 and [e["sequence"] for e in rep.errors] == ["002"]
    assert "non-finite" in rep.errors[0]["reason"]
    assert np.isfinite(fl.open_flows(tmp_path / "f.zarr")["flow_input_px"][...].astype(np.float32)).all()


def _params(tmp_path: Path, **small) -> Path:
    """Tiny trainer params (conftest's tiny nets), one short epoch, plus `small` overrides."""
    return dump_params(tiny_trainer_params(
        {"size": None, "epochs": 1, "batch_size": 4, "steps_per_epoch": 2, "workers": 0, "image_steps": None, **small},
        {"epochs": 1, "steps_per_epoch": 1, "batch_size": 8}), tmp_path / "params.yaml")


def _poison(store: Path, subject_codes: set[int]) -> None:
    g = zarr.open_group(str(store), mode="r+")
    rows = np.flatnonzero(np.isin(g["subject"][...], list(subject_codes)))
    a = g["flow_target"][...]
    a[rows] = np.nan
    g["flow_target"][...] = a


@pytest.mark.parametrize("where,warmup,expect", [("held_out", 0, "held-out rows"),
                                                 ("training", 3, "warm-up")])
def test_training_stops_at_non_finite_store_rows_with_one_line(tmp_path, where, warmup, expect):
    store = write_fixture_store(tmp_path / "s.zarr", n_subjects=4, rows_per_subject=8, size=32, chunk_mib=0.01)
    params = _params(tmp_path, de_warmup_steps=warmup)
    r = CliRunner().invoke(app, ["train-fer", str(store), "--fold", "0", "--out", str(tmp_path / "fer"),
                                 "--params", str(params)])
    assert r.exit_code == 0, r.output
    # 4 subjects, k = 10 round-robin: subject 0 is fold 0 (held out), 1..3 train.
    _poison(store, {0} if where == "held_out" else {1, 2, 3})
    r = CliRunner().invoke(app, ["train", str(store), "--fold", "0", "--out", str(tmp_path / "run"), "--efer-path",
                                 str(tmp_path / "fer"), "--params", str(params)])
    assert isinstance(r.exception, EmoganError), r.output + repr(r.exception)
    assert expect in str(r.exception) and "\n" not in str(r.exception)
