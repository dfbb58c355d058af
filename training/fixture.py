"""A small learnable training store (the real schema) for tests, benchmarks and smoke runs.

The frontal flow is a smooth class-dependent pattern (Gaussian bumps whose place and direction
depend on the expression), the non-frontal flow adds a rigid head motion (rotation about the
centre plus translation); faces are smooth per-subject textures warped by those flows. G_F can
learn to remove the rigid part, D_E to read the class, G_W to warp the texture.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.schema import CLASS_NAMES, POSE_NAMES, STRATEGY_NAMES

# Bump centres (fractions of the side) and directions (radians) per class: a fixed "face code".
_RNG = np.random.default_rng(1234)
_CENTRES = _RNG.uniform(0.25, 0.75, size=(len(CLASS_NAMES), 2, 2))
_ANGLES = _RNG.uniform(0, 2 * math.pi, size=(len(CLASS_NAMES), 2))


def expression_flow_px(label: int, amplitude: float, size: int, src: int) -> np.ndarray:
    """(2,size,size) frontal flow in source pixels: two Gaussian bumps set by the class."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    out = np.zeros((2, size, size))
    if label == 0:  # neutral: barely any motion
        amplitude *= 0.1
    for b in range(2):
        cx, cy = _CENTRES[label, b]
        g = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 0.12 ** 2))
        out[0] += amplitude * g * math.cos(_ANGLES[label, b])
        out[1] += amplitude * g * math.sin(_ANGLES[label, b])
    return out


def rigid_flow_px(angle_deg: float, tx: float, ty: float, size: int, src: int) -> np.ndarray:
    """(2,size,size) displacement of a rotation about the centre plus a translation, source pixels."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    x = (xx + 0.5) * src / size - src / 2
    y = (yy + 0.5) * src / size - src / 2
    a = math.radians(angle_deg)
    u = math.cos(a) * x - math.sin(a) * y - x + tx
    v = math.sin(a) * x + math.cos(a) * y - y + ty
    return np.stack([u, v])


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """(3,size,size) float in [0,1]: a smooth random RGB texture (a 'face')."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    img = np.zeros((3, size, size))
    for c in range(3):
        for _ in range(3):
            fx, fy, ph = rng.uniform(0.5, 3.0), rng.uniform(0.5, 3.0), rng.uniform(0, 2 * math.pi)
            img[c] += np.sin(2 * math.pi * (fx * xx + fy * yy) + ph)
    return (img - img.min()) / (img.max() - img.min() + 1e-9)


def _warp(img01: np.ndarray, flow_px: np.ndarray, src: int) -> np.ndarray:
    """Backward warp (3,S,S) by a flow in source pixels: out(p) = img(p - flow(p))."""
    size = img01.shape[-1]
    t = torch.from_numpy(img01[None]).float()
    f = torch.from_numpy(flow_px[None]).float() * size / src
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    gx = (xx - f[0, 0] + 0.5) / size * 2 - 1
    gy = (yy - f[0, 1] + 0.5) / size * 2 - 1
    out = F.grid_sample(t, torch.stack([gx, gy], -1)[None], align_corners=False, padding_mode="border")
    return out[0].numpy()


def make_arrays(n_subjects: int = 6, rows_per_subject: int = 16, size: int = 32, src: int = 128,
                representation: str = "polar", clip: float = 10.0, seed: int = 0,
                max_step: int = 5) -> dict[str, np.ndarray]:
    """The arrays of a learnable store, N = n_subjects * rows_per_subject, flows encoded as the store does.

    neutral_apex rows have step 9 (10-frame sequences), frame_to_frame rows a step drawn in 1..max_step."""
    rng = np.random.default_rng(seed)
    n = n_subjects * rows_per_subject
    out: dict[str, Any] = {k: [] for k in ("flow_input", "flow_target", "neutral", "target_image", "input_image",
                                           "label", "subject", "sequence", "pose", "strategy", "step")}
    for s in range(n_subjects):
        face = _texture(rng, size)
        for r in range(rows_per_subject):
            label = int(rng.integers(len(CLASS_NAMES)))
            pose = int(rng.integers(len(POSE_NAMES) - 1))  # not `augmented`
            strategy = int(rng.integers(len(STRATEGY_NAMES)))
            step = 9 if strategy == 0 else int(rng.integers(1, max_step + 1))
            target = expression_flow_px(label, rng.uniform(3.0, 6.0), size, src)
            if POSE_NAMES[pose] == "nothing":
                rigid = np.zeros_like(target)
            else:
                rigid = rigid_flow_px(rng.uniform(-5, 5), rng.uniform(-2.5, 2.5), rng.uniform(-2.5, 2.5), size, src)
            inp = target + rigid
            out["flow_target"].append(target)
            out["flow_input"].append(inp)
            out["neutral"].append(face)
            out["target_image"].append(_warp(face, target, src))
            out["input_image"].append(_warp(face, inp, src))
            out["label"].append(label)
            out["subject"].append(s)
            out["sequence"].append(s * rows_per_subject + r)
            out["pose"].append(pose)
            out["strategy"].append(strategy)
            out["step"].append(step)
    arrays: dict[str, np.ndarray] = {}
    from pipeline.normalize import normalize_flow

    for k in ("flow_input", "flow_target"):
        arrays[k] = normalize_flow(np.stack(out[k]), representation, clip).astype(np.float16)
    for k in ("neutral", "target_image", "input_image"):
        arrays[k] = np.clip(np.rint(np.stack(out[k]) * 255), 0, 255).astype(np.uint8)
    for k, dt in (("label", np.int16), ("subject", np.int32), ("sequence", np.int32), ("pose", np.int16),
                  ("strategy", np.int16), ("step", np.int16)):
        arrays[k] = np.asarray(out[k], dtype=dt)
    assert len(arrays["label"]) == n
    return arrays


def write_fixture_store(path: Path | str, n_subjects: int = 6, rows_per_subject: int = 16, size: int = 32,
                        src: int = 128, representation: str = "polar", clip: float = 10.0, seed: int = 0,
                        chunk_mib: float = 0.02, max_step: int = 5) -> Path:
    """Write a learnable store through pipeline/store.py's write_store (small chunks: several per store)."""
    from pipeline.store import write_store

    arrays = make_arrays(n_subjects, rows_per_subject, size, src, representation, clip, seed, max_step)
    attrs = {
        "representation": representation, "clip": float(clip), "size": size,
        "source_size": src,   # the flows are in pixels of a src x src crop (a warping G_W scales them by size/src)
        "source_manifest_sha256": "fixture", "subject_ids": [f"S{s:03d}" for s in range(n_subjects)],
        "params": {"fixture": {"n_subjects": n_subjects, "rows_per_subject": rows_per_subject, "src": src,
                               "seed": seed, "max_step": max_step}},
    }
    write_store(path, arrays, attrs, chunk_mib=chunk_mib)
    return Path(path)
