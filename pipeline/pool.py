"""The one process pool over sequences (synth, crop, flow's local path, the landmark baseline).

- Spawned processes, never forked: OpenCV and zarr threads do not survive a fork (PERF-NOTES).
- One OpenCV thread per worker: processes scale Farneback and remap, threads barely do.
- A worker that dies (killed, out of memory) raises PoolError instead of hanging (an executor,
  not `multiprocessing.Pool`, which waits forever for the lost task).
- Workers die with their parent (Linux PR_SET_PDEATHSIG), so `kill -9` of a stage leaves no
  orphan rendering on; SIGTERM of the parent cancels the queued tasks and stops the running ones.
- A progress bar (tqdm) counts finished tasks.
With `workers <= 1` or a single task everything runs in this process (the initializer too).
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
from typing import Any, Callable, Iterator, Mapping, Sequence

from pipeline.console import progress_enabled
from pipeline.errors import EmoganError

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class PoolError(EmoganError):
    """A worker process died, or the run was terminated: finished tasks are kept, queued ones are not run."""


def die_with_parent(parent_pid: int, *_: Any) -> None:
    """Ask Linux to SIGKILL this process when its parent exits; exit now if the parent is already gone.

    Every pool of the project calls it in its workers: this one, and the trainer's DataLoader workers
    (training/data.py make_loader's worker_init_fn; extra arguments, like the worker id, are ignored)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _worker_init(parent_pid: int, initializer: Callable[..., Any] | None, initargs: tuple[Any, ...]) -> None:
    die_with_parent(parent_pid)
    import cv2

    cv2.setNumThreads(1)
    if initializer is not None:
        initializer(*initargs)


@contextlib.contextmanager
def _environ(env: Mapping[str, str] | None) -> Iterator[None]:
    """Environment variables the workers are spawned with (this process's are restored after)."""
    if not env:
        yield
        return
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class _Terminated(BaseException):
    """Raised by the SIGTERM handler inside the parent while it waits for results."""


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """While the pool runs, SIGTERM raises _Terminated in the main thread (instead of killing it outright)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise _Terminated()

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def run(fn: Callable[[Any], Any], tasks: Sequence[Any], workers: int, desc: str, *,
        initializer: Callable[..., Any] | None = None, initargs: tuple[Any, ...] = (), progress: bool = True,
        done: int = 0, env: Mapping[str, str] | None = None) -> Iterator[tuple[int, Any]]:
    """Yield (index into tasks, fn(task)) as tasks finish, over `workers` spawned processes.

    `fn` and the initializer must be importable module-level functions (spawned workers import them).
    `done` counts tasks finished by an earlier run (the bar starts there); `env` is set in the workers.
    """
    from tqdm import tqdm

    bar = tqdm(total=len(tasks) + done, initial=done, desc=desc, unit="seq", disable=not progress_enabled(progress) or not tasks)
    try:
        if workers <= 1 or len(tasks) <= 1:
            if initializer is not None and tasks:
                initializer(*initargs)
            for i, task in enumerate(tasks):
                yield i, fn(task)
                bar.update()
            return
        yield from _run_pool(fn, tasks, workers, desc, initializer, initargs, env, bar)
    finally:
        bar.close()


def _run_pool(fn: Callable[[Any], Any], tasks: Sequence[Any], workers: int, desc: str,
              initializer: Callable[..., Any] | None, initargs: tuple[Any, ...], env: Mapping[str, str] | None,
              bar: Any) -> Iterator[tuple[int, Any]]:
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    ex = ProcessPoolExecutor(min(workers, len(tasks)), mp_context=mp.get_context("spawn"), initializer=_worker_init,
                             initargs=(os.getpid(), initializer, tuple(initargs)))
    ok = False
    try:
        with _sigterm_raises():
            with _environ(env):  # workers spawn on submit: they inherit these variables
                pending = {ex.submit(fn, t): i for i, t in enumerate(tasks)}
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    i = pending.pop(fut)
                    try:
                        result = fut.result()
                    except BrokenProcessPool:
                        raise PoolError(f"{desc}: a worker process died (killed, or out of memory) with "
                                        f"{len(pending) + 1} of {len(tasks)} task(s) unfinished; finished work is "
                                        "kept: run the stage again to resume") from None
                    bar.update()
                    yield i, result
        ok = True
    except _Terminated:
        raise PoolError(f"{desc}: terminated (SIGTERM); queued tasks cancelled, finished work is kept") from None
    finally:
        # Taken before shutdown, which forgets them. (No public way to stop them before Python 3.14.)
        procs = list((getattr(ex, "_processes", None) or {}).values())
        ex.shutdown(wait=ok, cancel_futures=True)
        if not ok:
            # Running tasks are stopped too: nothing keeps computing for a run that has ended.
            for proc in procs:
                with contextlib.suppress(Exception):
                    proc.terminate()
