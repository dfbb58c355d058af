"""One writer per output: an exclusive lock beside each stage's output folder (and its parts folder).

`writer_lock(out)` takes `flock` on `<parent>/.<name>.lock` without waiting: a second process that
would write the same output (another `emogan flow` on the same store, a second `emogan train --out RUN`)
is refused with one line naming the output and the holder's pid, before it touches anything. The kernel
drops the lock when its holder exits, even by kill -9, so a crashed run never leaves a stale lock; the
small lock file stays (deleting it would let two processes lock two different files). An I/O error
inside the block (a full disk) becomes one line naming the output and the file, instead of a traceback.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from pipeline.errors import EmoganError


def lock_path(out: Path | str) -> Path:
    """The lock file of an output: a hidden sibling, so it is never part of a DVC output."""
    out = Path(out)
    return out.parent / f".{out.name}.lock"


@contextlib.contextmanager
def writer_lock(out: Path | str) -> Iterator[Path]:
    """Hold the output's writer lock for the block; EmoganError at once if another process holds it."""
    import fcntl

    path = lock_path(out)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise EmoganError(f"{out}: cannot create the output folder ({e.strerror})") from None
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise EmoganError(f"{out}: the folder {path.parent} is not writable (lock file {path.name}: "
                          f"{e.strerror})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            raise EmoganError(f"{out}: another emogan process{f' (pid {holder})' if holder else ''} is writing "
                              "this output; wait for it to finish, or write elsewhere") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield path
        except OSError as e:  # a full disk, a vanished mount: one line naming the output and the file
            import errno

            on = f" on {e.filename}" if e.filename else ""
            hint = "the disk is full: free space" if e.errno == errno.ENOSPC else "fix it"
            raise EmoganError(f"{out}: I/O error{on}: {e.strerror or e}; {hint} and run again (finished work "
                              "is kept, nothing half-written is used)") from None
    finally:
        os.close(fd)  # closing releases the lock
