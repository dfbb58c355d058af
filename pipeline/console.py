"""What reaches the console: `emogan --quiet/--verbose` levels, progress bars, and third-party noise.

mediapipe's TF Lite and absl write lines such as "Created TensorFlow Lite XNNPACK delegate" straight to
the process's stderr (file descriptor 2, from C++), OpenCV its own warnings: by default they are kept off
the console (environment settings inherited by spawned workers, and fd 2 pointed at /dev/null while a
mediapipe solution makes its first call, when those lines come). `--verbose` shows them.
"""
from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator

VERBOSE_ENV = "EMOGAN_VERBOSE"  # set by `emogan --verbose`; spawned workers inherit it
QUIET_ENV = "EMOGAN_QUIET"      # set by `emogan --quiet`: warnings and errors only, no progress bars
NATIVE_QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "GLOG_minloglevel": "2", "OPENCV_LOG_LEVEL": "ERROR"}
NOISY_LOGGERS = ("absl", "distributed", "matplotlib", "PIL", "h5py", "fsspec", "urllib3", "asyncio", "numexpr")


def configure(verbosity: int) -> None:
    """-1 quiet (warnings and errors), 0 our INFO lines, 1 also third-party lines."""
    root = logging.getLogger()
    root.setLevel(logging.WARNING if verbosity < 0 else logging.INFO)
    os.environ.pop(VERBOSE_ENV, None)
    os.environ.pop(QUIET_ENV, None)
    if verbosity < 0:
        os.environ[QUIET_ENV] = "1"
    if verbosity > 0:
        os.environ[VERBOSE_ENV] = "1"
        return
    for key, value in NATIVE_QUIET_ENV.items():
        os.environ.setdefault(key, value)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    if "cv2" in sys.modules:  # OpenCV read OPENCV_LOG_LEVEL when it was imported
        sys.modules["cv2"].setLogLevel(2)  # 2 = errors


def progress_enabled(progress: bool = True) -> bool:
    """Whether a progress bar is drawn: asked for, and not `emogan --quiet`."""
    return progress and not os.environ.get(QUIET_ENV)


@contextmanager
def native_stderr_quiet() -> Iterator[None]:
    """File descriptor 2 pointed at /dev/null for the block (C++ libraries write there), unless --verbose."""
    if os.environ.get(VERBOSE_ENV):
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def mediapipe_solution(factory: Callable[..., Any], **kwargs: Any) -> Any:
    """A mediapipe solution (e.g. FaceDetection), built and given one blank picture with its native log
    lines kept off the console: they come from the graph's threads while it starts and at the first call. Solutions in static-image mode keep no state
    between pictures, so the blank one changes no result."""
    import numpy as np

    with native_stderr_quiet():  # building starts the graph's threads, which log too
        solution = factory(**kwargs)
        solution.process(np.zeros((64, 64, 3), np.uint8))
    return solution
