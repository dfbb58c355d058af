"""Real face photographs shipped by installed packages, composed into dataset frames for the crop tests."""
from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np

CANVAS = (288, 320)  # frame (H, W): the half-size photo plus room to move


@functools.cache
def astronaut() -> np.ndarray:
    """scikit-image's astronaut (Eileen Collins), RGB, halved to 256x256 to keep the tests fast."""
    import skimage.data

    return cv2.resize(skimage.data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)


@functools.cache
def grace_hopper() -> np.ndarray:
    """matplotlib's grace_hopper sample, RGB, halved to 256x300."""
    import matplotlib.cbook

    bgr = cv2.imread(str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    return cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (256, 300), interpolation=cv2.INTER_AREA)


def frame(face: np.ndarray, dx: int = 0, dy: int = 0, canvas: tuple[int, int] = CANVAS) -> np.ndarray:
    """The photo pasted on a grey canvas at offset (dx, dy) from the top-left corner (head motion)."""
    out = np.full(canvas + (3,), 110, np.uint8)
    h, w = min(face.shape[0], canvas[0] - dy), min(face.shape[1], canvas[1] - dx)
    out[dy:dy + h, dx:dx + w] = face[:h, :w]
    return out


def moving(face: np.ndarray, n: int, step: int = 8) -> list[np.ndarray]:
    """n frames of the photo drifting right and down by `step` pixels per frame."""
    return [frame(face, 4 + i * step, 4 + i * step // 2) for i in range(n)]


def write_rgb(path: Path, rgb: np.ndarray) -> Path:
    """Write an RGB image (any format cv2 knows by extension)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def write_video(path: Path, frames: list[np.ndarray], fps: int = 10) -> Path:
    """An MJPG AVI of RGB frames."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for f in frames:
        vw.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    vw.release()
    return path


def tree_digest(root: Path) -> dict[str, bytes]:
    """Every file under root (relative path -> bytes): two outputs are equal iff their digests are."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
