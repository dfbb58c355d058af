"""#16 defects 4 and 5: label codes are checked where they enter a store (pipeline.schema.check_label, in
flow), extra codes (CK+ contempt kept on request) are refused by the trainer with a message naming the
store and the option, and a bad code skips its row, never the whole flow run."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from emogan.cli import app
from flowdata import make_crops
from pipeline import flow as fl
from pipeline import store as st
from pipeline.errors import EmoganError, SequenceError
from pipeline.normalize import NormalizeParams, normalize_store
from pipeline.schema import check_label
from conftest import params_of

P = params_of(fl.FlowParams, "flow", size=32, workers=0, max_step=1)


def _edit_crops(crops: Path, **by_row: dict[str, str]) -> None:
    with open(crops / "crops.csv") as f:
        rows = list(csv.DictReader(f))
    for i, values in by_row.items():
        rows[int(i[1:])].update(values)
    with open(crops / "crops.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_check_label_accepts_consistent_codes_only():
    assert check_label("happiness", "4", "c.csv line 2") == 4
    assert check_label("", "", "c.csv line 2") == -1
    assert check_label("", "-1", "c.csv line 2") == -1
    assert check_label("contempt", "-1", "c.csv line 2") == -1     # excluded class, label kept
    assert check_label("contempt", "7", "c.csv line 2") == 7       # kept on request
    assert check_label(None, "3", "c.csv line 2") == 3             # no label column
    for label, code, why in (("happiness", "1", "anger"), ("happiness", "9", "happiness"), ("", "-2", "-1"),
                             ("anger", "1.5", "integer"), ("anger", "x", "integer"), ("contempt", "3", "fear")):
        with pytest.raises(SequenceError, match=why) as e:
            check_label(label, code, "c.csv line 2")
        assert e.value.file == "c.csv line 2"


@pytest.fixture
def contempt_store(tmp_path):
    """A training store whose sequence 1 is CK+ contempt kept as the extra code 7 (manifest.contempt)."""
    crops = make_crops(tmp_path / "crops", n_sequences=3, frames=2, side=32)
    _edit_crops(crops, r1={"label": "contempt", "label_code": "7"})
    fl.compute_flows(crops, tmp_path / "f.zarr", P, progress=False)
    normalize_store(tmp_path / "f.zarr", tmp_path / "s.zarr",
                    params_of(NormalizeParams, "normalize", size=32, chunk_mib=0.05))
    return tmp_path / "s.zarr"


@pytest.mark.parametrize("command", [["train-fer", "--out", "FER"], ["train", "--out", "RUN", "--efer-path", "FER"],
                                     ["train-flowcnn", "--out", "FC"]])
def test_trainers_refuse_extra_label_codes_naming_the_store_and_the_option(contempt_store, tmp_path, command):
    """Code 7 passed every stage and check_store, then training died: IndexError: Target 7 is out of bounds."""
    args = [a.replace("FER", str(tmp_path / "fer")).replace("RUN", str(tmp_path / "run")).replace(
        "FC", str(tmp_path / "fc")) for a in command]
    r = CliRunner().invoke(app, [args[0], str(contempt_store), "--fold", "0", *args[1:]])
    assert isinstance(r.exception, EmoganError), r.output + repr(r.exception)
    msg = str(r.exception)
    assert str(contempt_store) in msg and "manifest.contempt" in msg and "contempt" in msg and "\n" not in msg


def test_inconsistent_label_names_and_codes_skip_their_row(tmp_path):
    crops = make_crops(tmp_path / "crops", n_sequences=3, frames=2, side=32)
    _edit_crops(crops, r1={"label": "happiness", "label_code": "1"})
    rep = fl.compute_flows(crops, tmp_path / "f.zarr", P, progress=False)
    assert rep.n_sequences == 2 and [e["sequence"] for e in rep.errors] == ["002"]
    assert "crops.csv line 3" in rep.errors[0]["file"] and "anger" in rep.errors[0]["reason"]


@pytest.mark.parametrize("code", ["x", "1.5", "7.0"])
def test_a_non_integer_label_code_skips_its_row_not_the_run(tmp_path, code):
    """Every sequence was computed, then a ValueError traceback: no store, and the same on every re-run."""
    crops = make_crops(tmp_path / "crops", n_sequences=3, frames=2, side=32)
    _edit_crops(crops, r2={"label_code": code})
    rep = fl.compute_flows(crops, tmp_path / "f.zarr", P, progress=False)
    assert rep.n_sequences == 2 and [e["sequence"] for e in rep.errors] == ["003"]
    assert "integer" in rep.errors[0]["reason"]
    g = fl.open_flows(tmp_path / "f.zarr")
    assert set(np.unique(g["sequence"][...])) == {0, 1} and g.attrs["extra_class_names"] == []
