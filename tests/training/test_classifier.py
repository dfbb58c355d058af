"""The classifier judges' output folders (training/classifier.py: the own e_FER; training/evaluation/flowcnn.py:
the Flow-CNN) hold only what the seed and the data determine. They held each epoch's wall-clock seconds, so a
re-run of `train-fer` gave another folder hash and `dvc repro` retrained the GAN on an identical e_FER."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from typer.testing import CliRunner

from conftest import dump_params, tiny_trainer_params


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_a_rerun_writes_the_judges_folders_byte_for_byte_and_keeps_the_seconds_outside(tmp_path):
    from emogan.cli import app
    from training.fixture import write_fixture_store

    prm = tiny_trainer_params(train_fer={"epochs": 2, "batch_size": 8, "workers": 0})
    prm["evaluate"]["flowcnn"].update({"epochs": 2, "batch_size": 8, "workers": 0})
    params = dump_params(prm, tmp_path / "p.yaml")
    store = write_fixture_store(tmp_path / "s.zarr", n_subjects=4, rows_per_subject=8, size=32, chunk_mib=0.01)
    for command, folder in (("train-fer", tmp_path / "fer"), ("train-flowcnn", tmp_path / "fc")):
        digests = []
        for k in range(2):
            metrics = tmp_path / f"{command}_{k}.json"
            r = CliRunner().invoke(app, [command, str(store), "--fold", "0", "--out", str(folder),
                                         "--metrics", str(metrics), "--params", str(params)])
            assert r.exit_code == 0, r.output + repr(r.exception)
            digests.append(_digest(folder))
            m = json.loads(metrics.read_text())
            assert len(m["epoch_seconds"]) == 2 and all(s > 0 for s in m["epoch_seconds"]), m
        assert len(digests[0]) >= 2 and digests[0] == digests[1], (command, digests)
        assert "seconds" not in "".join(p.read_text() for p in folder.iterdir() if p.suffix in (".json", ".jsonl"))
