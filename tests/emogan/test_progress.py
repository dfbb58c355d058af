"""Progress bars (tqdm) on the long trainer commands and the report, none under `emogan -q` (pipeline.console.progress_enabled)."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from conftest import write_tiny_cv_params
from emogan.cli import app


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from training.fixture import write_fixture_store

    d = tmp_path_factory.mktemp("progress")
    params = write_tiny_cv_params(d, {"epochs": 1, "steps_per_epoch": 2, "batch_size": 16, "size": 32})
    store = write_fixture_store(d / "synth.zarr", n_subjects=6, rows_per_subject=8, size=32, chunk_mib=0.02)
    return d, store, params


def _run(tiny, *args):
    d, store, params = tiny
    r = CliRunner().invoke(app, [str(a) for a in args] + ["--params", str(params)])
    assert r.exit_code == 0, r.output + repr(r.exception)
    return r.output


def test_trainer_commands_draw_a_bar_and_quiet_hides_it(tiny):
    d, store, _ = tiny
    out = _run(tiny, "train-fer", store, "--fold", 0, "-o", d / "models/efer_fold0")
    assert "e_FER (train_fer) epoch 1/1" in out and "step" in out
    out = _run(tiny, "-q", "train-flowcnn", store, "--fold", 0)
    assert "epoch 1/1" not in out
    out = _run(tiny, "train-flowcnn", store, "--fold", 0, "-o", d / "models/flowcnn_b")
    assert "Flow-CNN (evaluate.flowcnn) epoch 1/1" in out
    run = d / "models/run_fold0"
    out = _run(tiny, "train", store, "--fold", 0, "-o", run, "--efer-path", d / "models/efer_fold0")
    assert "train epoch 1/1" in out
    out = _run(tiny, "evaluate", run, store)
    assert "evaluate synth" in out and "row" in out
    out = _run(tiny, "-q", "evaluate", run, store, "-o", d / "eval_quiet")
    assert "evaluate synth" not in out
    out = _run(tiny, "report", d / "metrics/eval")
    assert "report:" in out and "/6 [" in out and "part/s" in out and (d / "reports/REPORT.md").is_file()
    out = _run(tiny, "-q", "report", d / "metrics/eval", "-o", d / "quiet/REPORT.md")
    assert "part/s" not in out and (d / "quiet/REPORT.md").is_file()
