"""#16 defect 2: one writer per output. A second `emogan flow` (or any stage) on the same output is refused
with one line while the first runs (pipeline/lock.py); flow parts carry their params, checked at assembly."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from emogan.cli import app
from flowdata import make_crops
from pipeline import flow as fl
from pipeline.errors import EmoganError
from pipeline.lock import lock_path, writer_lock
from conftest import ROOT, params_of, write_params

P = params_of(fl.FlowParams, "flow", size=32, workers=0, max_step=2)


def test_a_held_lock_refuses_every_stage_with_one_line(tmp_path):
    from pipeline.augment import AugmentParams, augment_dataset
    from pipeline.crop import CropParams, crop_dataset
    from pipeline.normalize import NormalizeParams, normalize_store

    out = tmp_path / "out"
    calls = [lambda: fl.compute_flows(tmp_path / "crops", out, P, progress=False),
             lambda: crop_dataset(tmp_path / "m.csv", out, params_of(CropParams, "crop", workers=1), progress=False),
             lambda: augment_dataset(tmp_path / "crops", out, params_of(AugmentParams, "augment"), progress=False),
             lambda: normalize_store(tmp_path / "f.zarr", out, params_of(NormalizeParams, "normalize"))]
    with writer_lock(out):
        for call in calls:
            with pytest.raises(EmoganError, match="another emogan process") as e:
                call()
            assert str(out) in str(e.value) and str(os.getpid()) in str(e.value) and "\n" not in str(e.value)
    assert not out.exists()
    with writer_lock(out):  # released when its holder is done
        pass


def _slow_flow_script(crops: Path, out: Path, params: Path, max_step: int) -> str:
    """`emogan flow` in a subprocess, each sequence slowed down so that a second run overlaps it."""
    return textwrap.dedent(f"""
        import time
        import pipeline.flow as fl
        orig = fl.run_sequence_task
        def slow(*a, **k):
            time.sleep(0.4)
            return orig(*a, **k)
        fl.run_sequence_task = slow
        from emogan.cli import main
        import sys
        sys.argv = ["emogan", "flow", {str(crops)!r}, "--out", {str(out)!r}, "--params",
                    {str(params)!r}, "--workers", "0", "--max-step", "{max_step}", "--no-progress"]
        main()
    """)


def test_two_concurrent_flow_runs_leave_one_consistent_store_or_a_refusal(tmp_path):
    """A second run with another --max-step refilled the first's parts: a store mixing both settings, exit 0."""
    crops = make_crops(tmp_path / "crops", n_sequences=4, frames=3, side=32)
    params = write_params(tmp_path / "params.yaml", flow={"size": 16})
    out = tmp_path / "f.zarr"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    a = subprocess.Popen([sys.executable, "-c", _slow_flow_script(crops, out, params, 1)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (out.with_name(out.name + ".parts") / "key.json").exists():  # the first run is under way
        assert a.poll() is None and time.time() < deadline, a.communicate()
        time.sleep(0.05)
    b = subprocess.run([sys.executable, "-c", _slow_flow_script(crops, out, params, 2)], env=env,
                       capture_output=True, text=True)
    out_a, err_a = a.communicate(timeout=120)
    assert a.returncode == 0, err_a
    assert b.returncode == 2 and "another emogan process" in b.stderr and str(out) in b.stderr, b.stderr
    assert len([ln for ln in b.stderr.splitlines() if ln.strip()]) == 1, b.stderr
    g = fl.open_flows(out)
    assert g.attrs["params"]["flow"]["max_step"] == 1 and set(np.unique(g["step"][...])) <= {1, 2}
    # max_step 1 with 3 frames: pairs (0,1), (1,2) frame-to-frame (step 1) plus neutral-apex (step 2).
    assert g["step"].shape[0] == 4 * 3


def test_parts_carry_their_params_and_assembly_refuses_a_foreign_one(tmp_path, monkeypatch):
    crops = make_crops(tmp_path / "crops", n_sequences=3, frames=3, side=32)
    orig = fl._run_tasks

    def with_a_foreign_part(tasks, p, *a, **k):
        orig(tasks, p, *a, **k)
        # Another writer (no lock on that file system, or an old version) committed row 0 with max_step 1.
        other = dataclasses.replace(tasks[0], params={**tasks[0].params, "max_step": 1})
        assert fl.run_sequence_task(other)["error"] is None

    monkeypatch.setattr(fl, "_run_tasks", with_a_foreign_part)
    with pytest.raises(EmoganError, match="other flow params"):
        fl.compute_flows(crops, tmp_path / "f.zarr", P, progress=False)
    assert not (tmp_path / "f.zarr").exists()
    monkeypatch.setattr(fl, "_run_tasks", orig)
    rep = fl.compute_flows(crops, tmp_path / "f.zarr", P, progress=False)  # the stale part is redone
    assert rep.n_sequences == 3 and rep.n_resumed == 2


def test_the_lock_of_a_killed_writer_is_released(tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from pipeline.lock import writer_lock
        with writer_lock({str(out)!r}):
            print("locked", flush=True)
            time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(EmoganError):
        with writer_lock(out):
            pass
    holder.kill()
    holder.wait()
    with writer_lock(out):
        assert lock_path(out).is_file()
