"""#16 defect 6: no process of the project outlives a killed stage. After kill -9 or SIGTERM of
`crop --workers 2` (or `synth --workers 2`) the spawned workers kept writing into the output folder and
then idled forever; every pool's workers must die with their parent, and SIGTERM cancels queued work."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from face_images import astronaut, grace_hopper, moving, write_rgb
from pipeline.adapters.common import ManifestParams
from pipeline.manifest import MANIFEST_COLUMNS, build_manifest, write_csv
from conftest import ROOT, params_of, write_params

# Loaded by every Python process of the run (the parent and its spawned workers): slows the per-sequence
# task down so that the stage is surely mid-way when it is killed.
SITECUSTOMIZE = """
import os
if os.environ.get("EMOGAN_SLOW_TASKS"):
    import time
    import pipeline.crop as _crop
    import pipeline.synth as _synth
    def _slowed(f):
        def g(*a, **k):
            time.sleep(1.0)
            return f(*a, **k)
        return g
    _crop.crop_sequence = _slowed(_crop.crop_sequence)
    _synth.render_sequence = _slowed(_synth.render_sequence)
"""


def _marked(mark: str) -> set[int]:
    """Pids of live processes whose environment carries `mark` (the stage and anything it started)."""
    found = set()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            env = (d / "environ").read_bytes()
            stat = (d / "stat").read_text()
        except OSError:
            continue
        if f"EMOGAN_TEST_MARK={mark}".encode() in env and stat.rsplit(")", 1)[1].split()[0] != "Z":
            found.add(int(d.name))
    return found


@pytest.fixture
def manifest(tmp_path):
    root = tmp_path / "pairs"
    for k in range(8):
        face = astronaut() if k % 2 == 0 else grace_hopper()
        for cam in ("cam1", "cam2"):
            for i, f in enumerate(moving(face, 2)):
                write_rgb(root / cam / "S01" / f"{k:03d}" / f"img_{i + 1:03d}.png", f)
    (root / "labels.csv").write_text("")
    rows = build_manifest(root, "emotiongan", "pairs", params_of(ManifestParams, "manifest", labels=""), root="pairs")
    write_csv(tmp_path / "pairs.csv", MANIFEST_COLUMNS, rows)
    return tmp_path / "pairs.csv"


def _start(tmp_path: Path, args: list[str]) -> tuple[subprocess.Popen, str]:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    mark = uuid.uuid4().hex
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), "EMOGAN_SLOW_TASKS": "1",
           "EMOGAN_TEST_MARK": mark}
    # Files, not pipes: a surviving worker would hold a pipe open and hang the test instead of failing it.
    proc = subprocess.Popen([sys.executable, "-m", "emogan", *args], env=env, stdout=open(tmp_path / "out.log", "w"),
                            stderr=open(tmp_path / "err.log", "w"), text=True)
    proc.err_log = tmp_path / "err.log"  # type: ignore[attr-defined]
    return proc, mark


def _kill_and_check(proc: subprocess.Popen, mark: str, sig: int, out: Path) -> str:
    deadline = time.time() + 90
    while len(_marked(mark) - {proc.pid}) < 2 or not (out / ".partial").exists() and not any(
            p.name.endswith(".partial") for p in out.parent.iterdir()):
        assert proc.poll() is None, proc.err_log.read_text()
        assert time.time() < deadline, "the workers never started"
        time.sleep(0.1)
    time.sleep(1.5)  # the workers are inside their (slowed) tasks
    os.kill(proc.pid, sig)
    proc.wait(timeout=60)
    err = proc.err_log.read_text()
    left = _marked(mark)
    deadline = time.time() + 10
    while left and time.time() < deadline:
        time.sleep(0.2)
        left = _marked(mark)
    for pid in left:  # ours: do not leave them behind even when the test fails
        os.kill(pid, signal.SIGKILL)
    assert not left, f"{len(left)} process(es) outlived the killed stage"
    return err


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_no_crop_worker_outlives_a_killed_crop(manifest, tmp_path, sig):
    params = write_params(tmp_path / "params.yaml", crop={"size": 32})
    out = tmp_path / "crops"
    proc, mark = _start(tmp_path, ["crop", str(manifest), "--out", str(out), "--workers", "2", "--params", str(params)])
    err = _kill_and_check(proc, mark, sig, out)
    if sig == signal.SIGTERM:
        assert proc.returncode == 2 and "terminated" in err.strip().splitlines()[-1], err
    # Nothing keeps writing after the stage has gone: the output stops changing.
    before = sorted(str(p) for p in out.rglob("*"))
    time.sleep(1.5)
    assert sorted(str(p) for p in out.rglob("*")) == before


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_no_synth_worker_outlives_a_killed_synth(tmp_path, sig):
    params = write_params(tmp_path / "params.yaml", synth={"subjects": 4, "frames": 3, "size": 96, "workers": 2})
    out = tmp_path / "synth"
    proc, mark = _start(tmp_path, ["synth", "--out", str(out), "--params", str(params)])
    _kill_and_check(proc, mark, sig, out)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_no_dataloader_worker_outlives_a_killed_train(tmp_path, sig):
    """The trainer's pool: torch DataLoader workers (spawned, persistent) of `emogan train --workers 2`."""
    import copy

    import yaml
    from typer.testing import CliRunner

    from emogan.cli import app
    from training.fixture import write_fixture_store

    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    nets = {"gf": {"name": "gf", "ngf": 8, "max_ch": 16, "n_down": 2, "n_res_enc": 1, "n_res_dec": 1},
            "dp": {"name": "dp", "in_ch": 4, "ndf": 8, "n_layers": 2, "max_ch": 16},
            "de": {"name": "de", "channels": [8, 8, 8], "pool": 4, "hidden": 8, "dropout": 0.0},
            "gw": {"name": "gw", "ngf": 8, "max_ch": 16, "n_down": 2, "n_res_enc": 1, "n_res_dec": 1}}
    p["train"]["small"].update({"size": None, "nets": copy.deepcopy(nets), "epochs": 1000, "batch_size": 4,
                                "steps_per_epoch": None, "image_steps": None, "de_warmup_steps": 0})
    p["train_fer"].update({"net": {"name": "fer_cnn", "size": 32, "channels": [4, 8], "dropout": 0.0},
                           "epochs": 1, "steps_per_epoch": 1, "batch_size": 8})
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(p))
    store = write_fixture_store(tmp_path / "s.zarr", n_subjects=4, rows_per_subject=8, size=32, chunk_mib=0.01)
    r = CliRunner().invoke(app, ["train-fer", str(store), "--fold", "0", "--out", str(tmp_path / "fer"),
                                 "--params", str(params)])
    assert r.exit_code == 0, r.output
    out = tmp_path / "run"
    proc, mark = _start(tmp_path, ["train", str(store), "--fold", "0", "--out", str(out), "--efer-path",
                                   str(tmp_path / "fer"), "--workers", "2", "--params", str(params)])
    deadline = time.time() + 120
    while len(_marked(mark) - {proc.pid}) < 2 or not (out / "log.jsonl").exists():
        assert proc.poll() is None, proc.err_log.read_text()
        assert time.time() < deadline, "training never started"
        time.sleep(0.2)
    os.kill(proc.pid, sig)
    proc.wait(timeout=60)
    left = _marked(mark)
    deadline = time.time() + 20
    while left and time.time() < deadline:
        time.sleep(0.5)
        left = _marked(mark)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"{len(left)} process(es) outlived the killed training"
