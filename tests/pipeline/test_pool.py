"""pipeline/pool.py: results and order, in-process runs, a dead worker raises, workers die with their parent
(kill -9), SIGTERM cancels queued tasks."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipeline import pool

HERE = Path(__file__).resolve().parent
ROOT = next(d for d in HERE.parents if (d / "pipeline" / "pool.py").is_file())  # the repository


# Tasks: module-level, so that spawned workers can import them.
def square(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


def die_on(x: int) -> int:
    if x == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def mark_and_sleep(args: tuple[str, int, float]) -> int:
    folder, i, seconds = args
    Path(folder, f"{i}.{os.getpid()}").write_text("")
    time.sleep(seconds)
    return i


def test_every_task_once_in_worker_processes():
    got = dict(pool.run(square, list(range(7)), 2, "test", progress=False))
    assert sorted(got) == list(range(7))
    assert all(got[i][0] == i * i for i in got)
    pids = {pid for _, pid in got.values()}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2


def test_one_worker_runs_in_this_process():
    got = dict(pool.run(square, [3, 4], 1, "test", progress=False))
    assert got == {0: (9, os.getpid()), 1: (16, os.getpid())}


def test_a_dead_worker_raises_a_clear_error():
    with pytest.raises(pool.PoolError, match="worker process died"):
        list(pool.run(die_on, [0, 1, 2, 3], 2, "die", progress=False))


def _parent_script(folder: Path, n_tasks: int, workers: int, seconds: float) -> str:
    """A parent process running the pool on mark_and_sleep tasks (it prints nothing until it ends)."""
    return textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(ROOT)!r}, {str(HERE)!r}]
        from pipeline import pool
        from test_pool import mark_and_sleep
        if __name__ == "__main__":
            tasks = [({str(folder)!r}, i, {seconds}) for i in range({n_tasks})]
            try:
                for _ in pool.run(mark_and_sleep, tasks, {workers}, "sleep", progress=False):
                    pass
            except pool.PoolError as e:
                print("PoolError:", e, flush=True)
                sys.exit(2)
    """)


def _wait_for_marks(folder: Path, n: int, timeout: float = 60.0) -> list[Path]:
    t0 = time.time()
    while time.time() - t0 < timeout:
        marks = list(folder.iterdir())
        if len(marks) >= n:
            return marks
        time.sleep(0.1)
    raise AssertionError(f"only {len(list(folder.iterdir()))} of {n} tasks started in {timeout} s")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead, only not yet reaped (its new parent may be slow to do it).
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
def test_workers_die_with_a_killed_parent(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    parent = subprocess.Popen([sys.executable, "-c", _parent_script(marks, 4, 2, 120.0)])
    try:
        workers = {int(m.suffix[1:]) for m in _wait_for_marks(marks, 2)}
        assert len(workers) == 2 and all(_alive(w) for w in workers)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        t0 = time.time()
        while any(_alive(w) for w in workers) and time.time() - t0 < 20:
            time.sleep(0.1)
        assert not any(_alive(w) for w in workers), "a worker outlived its killed parent"
    finally:
        parent.kill()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals as on Linux")
def test_sigterm_cancels_queued_tasks_and_stops_running_ones(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    parent = subprocess.Popen([sys.executable, "-c", _parent_script(marks, 8, 2, 120.0)], stdout=subprocess.PIPE,
                              text=True)
    try:
        workers = {int(m.suffix[1:]) for m in _wait_for_marks(marks, 2)}
        parent.send_signal(signal.SIGTERM)
        out, _ = parent.communicate(timeout=60)
        assert parent.returncode == 2 and "SIGTERM" in out
        time.sleep(1.0)
        assert len(list(marks.iterdir())) == 2, "queued tasks started after SIGTERM"
        t0 = time.time()
        while any(_alive(w) for w in workers) and time.time() - t0 < 20:
            time.sleep(0.1)
        assert not any(_alive(w) for w in workers)
    finally:
        parent.kill()
