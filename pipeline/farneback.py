"""Farneback flows of one sequence's crops, the pure part of the flow stage (pipeline/flow.py) that the
landmark baseline and inference share: frame pairs, flows in pixels of the crop, area averaging.

Conventions (docs/ARCHITECTURE.md): flow t -> t+dt = cv2.calcOpticalFlowFarneback(prev=gray frame t,
next=gray frame t+dt); channel 0 = u (x), 1 = v (y); averaged down in Cartesian form (INTER_AREA on
(u, v)), the vectors NOT rescaled: values stay in pixels of the source crop.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from pipeline.errors import SequenceError
from pipeline.schema import STRATEGY_NAMES

FRAME_GLOB = "img_*.png"


class Pair(NamedTuple):
    """One flow pair of a sequence: frames t and t2 = t + step (0-based indices)."""

    strategy: int
    step: int
    t: int
    t2: int


def kept_frames(n_frames: int, frames: int | None) -> list[int]:
    """Indices of the frames a sequence's pairs are drawn from: all (`frames` None or >= n_frames), else
    `frames` of them evenly spaced from the first (neutral) to the last (apex), both always kept."""
    if frames is None or frames >= n_frames:
        return list(range(n_frames))
    return sorted({int(round(x)) for x in np.linspace(0, n_frames - 1, max(frames, 2))})


def frame_pairs(n_frames: int, strategies: Sequence[str], max_step: int | None,
                frames: int | None = None) -> list[Pair]:
    """The pairs of a sequence of n_frames: neutral_apex (first -> last) and/or frame_to_frame pairs.

    frame_to_frame: every pair (t, t2) of kept frames (`kept_frames`), t < t2, with t2 - t <= max_step
    (None: no limit, the paper's every step 1..n-1), ordered by step then t; t, t2 and step count the
    sequence's own frames. The first -> last pair is the neutral-apex pair: when both strategies are
    asked for it is stored once, as neutral_apex (it would otherwise be a second, identical row).
    """
    kept = kept_frames(n_frames, frames)
    pairs: list[Pair] = []
    for name in strategies:
        code = STRATEGY_NAMES.index(name)
        if name == "neutral_apex":
            if n_frames >= 2:
                pairs.append(Pair(code, n_frames - 1, 0, n_frames - 1))
        elif name == "frame_to_frame":
            f2f = [Pair(code, kept[j] - kept[i], kept[i], kept[j])
                   for i in range(len(kept)) for j in range(i + 1, len(kept))
                   if max_step is None or kept[j] - kept[i] <= max_step]
            if "neutral_apex" in strategies:
                f2f = [q for q in f2f if (q.t, q.t2) != (0, n_frames - 1)]
            pairs.extend(sorted(f2f, key=lambda q: (q.step, q.t)))
        else:
            raise ValueError(f"unknown strategy {name!r}")
    return pairs


def farneback_px(prev_gray: np.ndarray, next_gray: np.ndarray, p: Any) -> np.ndarray:
    """Flow prev -> next, (H, W, 2) float32 in pixels: [..., 0] = u (x), [..., 1] = v (y); p: FlowParams."""
    import cv2

    return cv2.calcOpticalFlowFarneback(prev_gray, next_gray, None, p.pyr_scale, p.levels, p.winsize,
                                        p.iterations, p.poly_n, p.poly_sigma, p.flags)


def downsample_flow_px(flow_hw2: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 2) flow -> (2, size, size) float32 by area averaging of (u, v); values stay in source pixels."""
    import cv2

    if flow_hw2.shape[0] != size or flow_hw2.shape[1] != size:
        # INTER_AREA averages the vectors of each output cell (exact box mean at integer factors).
        # No multiplication by size/H: the convention keeps source-crop pixels until normalize.
        flow_hw2 = cv2.resize(flow_hw2, (size, size), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(flow_hw2.transpose(2, 0, 1), dtype=np.float32)


def downsample_rgb(bgr_hw3: np.ndarray, size: int) -> np.ndarray:
    """An OpenCV BGR image (H, W, 3) uint8 -> RGB (3, size, size) uint8 by area averaging."""
    import cv2

    if bgr_hw3.shape[0] != size or bgr_hw3.shape[1] != size:
        bgr_hw3 = cv2.resize(bgr_hw3, (size, size), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(bgr_hw3[:, :, ::-1].transpose(2, 0, 1))


def read_frame(path: Path | str) -> np.ndarray:
    """A crop as a BGR (H, W, 3) uint8 array; SequenceError naming the file if missing or unreadable."""
    import cv2

    if not os.path.isfile(path):
        raise SequenceError(path, "missing frame file")
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise SequenceError(path, "unreadable image (cv2.imread failed: corrupt or not an image)")
    return img


def list_frames(cam_dir: Path) -> list[Path]:
    """The frames of one camera of a sequence, sorted by name (= time)."""
    if not cam_dir.is_dir():
        raise SequenceError(cam_dir, "missing camera directory")
    frames = sorted(cam_dir.glob(FRAME_GLOB))
    if len(frames) < 2:
        raise SequenceError(cam_dir, f"{len(frames)} frame(s) matching {FRAME_GLOB}; a flow needs at least 2")
    return frames


def compute_sequence(frontal: Sequence[Path | str], nonfrontal: Sequence[Path | str],
                     p: Any) -> dict[str, np.ndarray]:
    """All flow pairs of one sequence (p: FlowParams): the flow store's rows (pipeline.flow.FLOW_ARRAYS) except
    the per-sequence codes, plus the source size."""
    import cv2

    if len(frontal) != len(nonfrontal):
        raise SequenceError(Path(frontal[0]).parent,
                            f"{len(frontal)} frontal frames but {len(nonfrontal)} non-frontal ones")
    pairs = frame_pairs(len(frontal), p.strategies, p.max_step, p.frames)
    used = sorted({q.t for q in pairs} | {q.t2 for q in pairs})  # frames left out by `frames` are not read
    gray: dict[int, dict[int, np.ndarray]] = {1: {}, 2: {}}
    small: dict[int, dict[int, np.ndarray]] = {1: {}, 2: {}}
    shape = None
    for cam, paths in ((1, frontal), (2, nonfrontal)):
        for i in used:
            path = paths[i]
            bgr = read_frame(path)
            if shape is None:
                shape = bgr.shape
                if shape[0] != shape[1]:
                    raise SequenceError(path, f"crop is {shape[1]}x{shape[0]}, expected a square crop")
                if shape[0] < p.size:
                    raise SequenceError(path, f"crop side {shape[0]} is smaller than flow.size {p.size}")
            elif bgr.shape != shape:
                raise SequenceError(path, f"frame is {bgr.shape[1]}x{bgr.shape[0]}, the sequence's first is "
                                          f"{shape[1]}x{shape[0]}")
            gray[cam][i] = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
            small[cam][i] = downsample_rgb(bgr, p.size)
    flows: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    for pair in pairs:
        if (pair.t, pair.t2) not in flows:
            flows[pair.t, pair.t2] = tuple(  # type: ignore[assignment]
                downsample_flow_px(farneback_px(gray[cam][pair.t], gray[cam][pair.t2], p), p.size)
                .astype(np.float16) for cam in (2, 1))
    return {
        "flow_input_px": np.stack([flows[q.t, q.t2][0] for q in pairs]),
        "flow_target_px": np.stack([flows[q.t, q.t2][1] for q in pairs]),
        "neutral": np.stack([small[1][q.t] for q in pairs]),
        "target_image": np.stack([small[1][q.t2] for q in pairs]),
        "input_image": np.stack([small[2][q.t2] for q in pairs]),
        "strategy": np.array([q.strategy for q in pairs], np.int16),
        "step": np.array([q.step for q in pairs], np.int16),
        "frame_t": np.array([q.t for q in pairs], np.int16),
        "source_size": np.array(shape[0], np.int32),
    }
