"""The tuning protocol (issue #12): validation subjects from the training folds, never a test fold's."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as hs
from typer.testing import CliRunner

from emogan.cli import app
from pipeline import folds as fo
from pipeline.errors import EmoganError
from pipeline.params import ParamsError
from training.data import FoldError, check_store, fold_rows, subjects_of
from training.fixture import write_fixture_store
from conftest import params_of
from test_train_loop import write_params


@settings(max_examples=60, deadline=None)
@given(n=hs.integers(3, 40), k=hs.integers(3, 12), data=hs.data())
def test_validation_subjects_never_overlap_test_subjects(n, k, data):
    folds = fo.assign_folds([f"S{i:03d}" for i in range(n)], k)
    order = data.draw(hs.permutations(list(range(k))))
    n_res = data.draw(hs.integers(0, k - 1))
    reserve, rest = order[:n_res], order[n_res:]
    validation = rest[:data.draw(hs.integers(1, len(rest)))]
    if not {f for s, f in folds.items() if f in validation}:
        with pytest.raises(EmoganError, match="hold no subject"):
            fo.tuning_folds(folds, reserve, validation, k)
        return
    t = fo.tuning_folds(folds, reserve, validation, k)
    test = {s for s, f in folds.items() if f in reserve}
    val = {s for s, f in t.items() if f == validation[0]}
    assert val and not (val & test)
    assert val == {s for s, f in folds.items() if f in validation}
    assert {s for s, f in t.items() if f < 0} == test
    assert all(t[s] == f for s, f in folds.items() if f not in reserve and f not in validation)


def test_overlapping_validation_and_reserve_is_refused():
    with pytest.raises(ParamsError, match="overlap the reserved"):
        fo.load_folds_params({"folds": {"k": 10, "reserve": [0, 1, 2], "validation": [2, 3]}})
    with pytest.raises(EmoganError, match="not among the reserved"):
        fo.tuning_folds({"a": 0, "b": 1}, [0], [0], 2)
    with pytest.raises(EmoganError, match="k=2"):
        fo.tuning_folds({"a": 0, "b": 1}, [0], [3], 2)
    assert params_of(fo.FoldsParams, "folds").reserve == (0, 1, 2)  # the committed results' test folds


def test_a_tuning_run_never_reads_the_reserved_subjects_and_records_them(tmp_path):
    store = write_fixture_store(tmp_path / "fx.zarr", n_subjects=8, rows_per_subject=6, size=32, chunk_mib=0.02)
    ids = [f"S{s:03d}" for s in range(8)]
    (tmp_path / "m.csv").write_text("subject\n" + "\n".join(ids) + "\n")
    params = write_params(tmp_path / "params.yaml", epochs=1, steps_per_epoch=2)
    p = yaml.safe_load(params.read_text())
    p["folds"].update({"k": 10, "reserve": [0, 1, 2], "validation": [3, 4]})
    params.write_text(yaml.safe_dump(p))
    ff = tmp_path / "tuning.csv"
    r = CliRunner().invoke(app, ["folds", str(tmp_path / "m.csv"), "--out", str(ff), "--tuning",
                                 "--params", str(params)])
    assert r.exit_code == 0, r.output
    assert "validation fold 3: S003, S004" in r.output
    assert fo.read_folds(ff) == {"S000": -1, "S001": -1, "S002": -1, "S003": 3, "S004": 3, "S005": 5, "S006": 6,
                                 "S007": 7}
    info = check_store(store)
    train, val = fold_rows(info, 3, "train", ff, 10), fold_rows(info, 3, "test", ff, 10)
    assert subjects_of(store, train) == ["S005", "S006", "S007"] and subjects_of(store, val) == ["S003", "S004"]
    with pytest.raises(FoldError, match="reserved"):
        fold_rows(info, -1, "test", ff, 10)
    # the e_FER and the GAN of a tuning run: trained without the reserved subjects, which the run records
    common = ["--fold", "3", "--folds-file", str(ff), "--params", str(params)]
    r = CliRunner().invoke(app, ["train-fer", str(store), "--out", str(tmp_path / "fer"), *common])
    assert r.exit_code == 0, r.output + repr(r.exception)
    r = CliRunner().invoke(app, ["train", str(store), "--out", str(tmp_path / "run"), "--efer-path",
                                 str(tmp_path / "fer"), *common])
    assert r.exit_code == 0, r.output + repr(r.exception)
    rec = json.loads((tmp_path / "run" / "config.json").read_text())
    s = next(iter(rec["runtime"]["stores"])) if isinstance(rec.get("runtime"), dict) else None
    assert s is not None, sorted(rec)
    assert s["held_out_subjects"] == ["S003", "S004"] and s["reserved_subjects"] == ["S000", "S001", "S002"]
    assert s["train_rows"] == 18 and s["test_rows"] == 12
    assert not set(s["held_out_subjects"]) & set(s["reserved_subjects"])
    assert np.isin(np.asarray(check_store(store).attrs["subject_ids"]), ids).all()


def test_report_numbers_gap_closure_points_and_a_zero_flow_reference():
    from training.evaluation import metrics as mt

    assert mt.gap_closure(0.6, 0.2, 1.0) == pytest.approx(0.5)
    assert mt.gap_closure(0.2, 0.2, 0.9) == 0.0 and mt.gap_closure(0.5, 0.5, 0.4) is None
    lab = np.array([0, 1, 2, 3])
    rec = {"label": lab, "epe_nonfrontal": np.array([4.0, 4, 4, 4]), "epe_emotiongan": np.array([1.0, 1, 1, 1]),
           "epe_zero": np.array([2.0, 2, 2, 2]), "flowcnn_frontal_gt": lab, "flowcnn_nonfrontal": np.array([0, 0, 0, 0]),
           "flowcnn_emotiongan": np.array([0, 1, 0, 0])}
    s = mt.summarize(rec, np.ones(4, bool))
    assert s["epe_px"]["zero"] == pytest.approx(2.0)
    assert s["flowcnn"]["gain_pts"]["emotiongan"] == pytest.approx(25.0)       # points
    assert s["flowcnn"]["delta_percent"]["emotiongan"] == pytest.approx(100.0)  # relative change
    assert s["flowcnn"]["gap_closure"]["emotiongan"] == pytest.approx(1 / 3)


def test_report_cells_say_when_a_method_covers_fewer_folds_than_the_report():
    from training.evaluation.report import aggregate, cell

    def fold(landmark: bool) -> dict:
        acc = {"frontal_gt": 0.8, "emotiongan": 0.7, **({"landmark": 0.3} if landmark else {})}
        return {"groups": {"synth/large/all": {"n": 28, "flowcnn": {"accuracy": acc}}}}
    agg = aggregate({0: fold(True), 1: fold(False), 2: fold(False)})
    g = "synth/large/all"
    assert cell(agg, g, "flowcnn.accuracy.landmark", 100, 1) == "30.0 (1 of 3 folds)"   # one fold: no spread
    assert cell(agg, g, "flowcnn.accuracy.emotiongan", 100, 1) == "70.0 ± 0.0"
    assert cell(agg, g, "flowcnn.accuracy.gw_gt") == "–"


def test_the_acceptance_table_says_on_how_many_folds_the_landmark_baseline_ran():
    from training.evaluation.report import ReportParams, acceptance, aggregate

    def fold(k: int, landmark: bool) -> dict:
        fc = {"accuracy": {"nonfrontal": 0.2, "emotiongan": 0.6, "frontal_gt": 0.9}, "gain_pts": {"emotiongan": 40.0},
              "gap_closure": {"emotiongan": 0.57}}
        if landmark:
            fc["gain_pts"]["landmark"] = 10.0 + 4 * k
        return {"groups": {f"synth/{p}/all": {"n": 28, "flowcnn": fc, "epe_px": {"nonfrontal": 4.0, "emotiongan": 1.0}}
                           for p in ("large", "yaw")}}
    rp = params_of(ReportParams, "report", acceptance_poses=["yaw"])
    one = acceptance(aggregate({0: fold(0, True), 1: fold(1, False), 2: fold(2, False)}), rp)[0]
    assert "| 10.0 (1 of 3 folds) |" in one and "± 0.0" not in one
    every = acceptance(aggregate({k: fold(k, True) for k in range(3)}), rp)[0]
    assert "| 14.0 ± 4.0 |" in every and "of 3 folds" not in every
