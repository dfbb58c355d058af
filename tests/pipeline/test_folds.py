"""pipeline/folds.py: subject-independent folds, on manifests and on stores."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs
from typer.testing import CliRunner

from pipeline import folds as fo
from pipeline import store as st
from emogan.cli import app
from pipeline.errors import EmoganError
from test_store import ATTRS, arrays
from conftest import params_of


@settings(max_examples=100, deadline=None)
@given(hs.lists(hs.text("SP0123456789", min_size=1, max_size=4), min_size=1, max_size=40), hs.integers(2, 12))
def test_folds_never_share_subjects_and_are_balanced(subjects, k):
    folds = fo.assign_folds(subjects, k)
    assert set(folds) == set(subjects) and all(0 <= f < k for f in folds.values())
    sizes = np.bincount(list(folds.values()), minlength=k)
    assert sizes.max() - sizes.min() <= 1  # dealt round-robin
    # rows of a manifest: test rows of fold f and train rows of the others never share a subject
    for f in range(k):
        test = {s for s in subjects if folds[s] == f}
        train = {s for s in subjects if folds[s] != f}
        assert not test & train


def test_subjects_are_sorted_naturally_and_dealt_round_robin():
    folds = fo.assign_folds(["S10", "S2", "S1", "S2", "S3"], 3)
    assert folds == {"S1": 0, "S2": 1, "S3": 2, "S10": 0}


def write_manifest(path, subjects):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["dataset", "subject", "sequence"])
        for i, s in enumerate(subjects):
            w.writerow(["d", s, f"{i:03d}"])


def test_folds_command_writes_csv_next_to_the_manifest(tmp_path):
    manifest = tmp_path / "tiny.csv"
    write_manifest(manifest, [f"S{i:03d}" for i in range(12) for _ in range(3)])
    out = tmp_path / "tiny_folds.csv"
    result = CliRunner().invoke(app, ["folds", str(manifest), "--k", "4"])
    assert result.exit_code == 0, result.output
    folds = fo.read_folds(out)
    assert len(folds) == 12 and folds["S000"] == 0 and folds["S005"] == 1
    assert out.read_text().splitlines()[0] == "subject,fold"


def test_folds_errors_name_the_file(tmp_path):
    with pytest.raises(EmoganError, match="absent.csv"):
        fo.make_folds(tmp_path / "absent.csv", tmp_path / "f.csv", params_of(fo.FoldsParams, "folds"))
    manifest = tmp_path / "m.csv"
    write_manifest(manifest, ["S1", "S2", "S3"])
    manifest.write_text("dataset,subject\nd,S1\nd,\n")
    with pytest.raises(EmoganError, match=r"m.csv.*empty subject on line\(s\) \[3\]"):
        fo.make_folds(manifest, tmp_path / "f.csv", params_of(fo.FoldsParams, "folds", k=2))
    manifest.write_text("dataset,sequence\nd,001\n")
    with pytest.raises(EmoganError, match="subject"):
        fo.make_folds(manifest, tmp_path / "f.csv", params_of(fo.FoldsParams, "folds", k=2))


def test_store_folds_follow_the_folds_file(tmp_path):
    data = arrays(n=9)
    data["subject"] = np.array([0, 0, 1, 1, 2, 2, 2, 0, 1], np.int32)
    g = st.write_store(tmp_path / "s.zarr", data, {**ATTRS, "subject_ids": ["S1", "S2", "S10"]})
    np.testing.assert_array_equal(fo.store_folds(g, k=2), [0, 0, 1, 1, 0, 0, 0, 0, 1])
    csv_path = tmp_path / "f.csv"
    fo.write_folds({"S1": 2, "S2": 0, "S10": 1, "S4": 3}, csv_path)
    np.testing.assert_array_equal(fo.store_folds(g, csv_path), [2, 2, 0, 0, 1, 1, 1, 2, 0])
    fo.write_folds({"S1": 2}, csv_path)
    with pytest.raises(EmoganError, match="no fold"):
        fo.store_folds(g, csv_path)


def test_fewer_subjects_than_folds_warns_and_leaves_folds_empty(tmp_path, caplog):
    manifest = tmp_path / "m.csv"
    write_manifest(manifest, ["S1", "S2", "S3"])
    folds = fo.make_folds(manifest, tmp_path / "f.csv", params_of(fo.FoldsParams, "folds", k=10))
    assert folds == {"S1": 0, "S2": 1, "S3": 2}
    assert "3 subject(s) for 10 folds" in caplog.text and str(manifest) in caplog.text
