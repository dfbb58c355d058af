"""Optical flow drawn with the standard colour wheel (Baker et al., "A Database and Evaluation
Methodology for Optical Flow", IJCV 2011): hue = direction, saturation = magnitude.

The wheel has 55 colours on six ramps (red->yellow 15, yellow->green 6, green->cyan 4,
cyan->blue 11, blue->magenta 13, magenta->red 6): motion to the right is red, to the left
cyan, downwards (+v, image rows) yellow, upwards violet, as in the Middlebury figures.
Flows are (2,H,W) Cartesian in pixels (channel 0 = u along x, 1 = v along y, docs/ARCHITECTURE.md);
a store's normalized flow is decoded with `pipeline.normalize.denormalize` first. Shared by `emogan report` (figures like the paper's Fig. 1 and 5) and `emogan frontalize`.
"""
from __future__ import annotations

import math

import numpy as np

# Ramp lengths of the wheel: red-yellow, yellow-green, green-cyan, cyan-blue, blue-magenta, magenta-red.
RAMPS: tuple[int, ...] = (15, 6, 4, 11, 13, 6)


def colour_wheel() -> np.ndarray:
    """The wheel's colours, (55,3) float in [0,1], RGB, in the order the angle walks them."""
    # Each ramp moves one channel between 0 and 1 while another stays at 1.
    # (channel that stays at 1, channel that ramps, ramp direction up (+1) or down (-1))
    plan = ((0, 1, +1), (1, 0, -1), (1, 2, +1), (2, 1, -1), (2, 0, +1), (0, 2, -1))
    rows = []
    for n, (full, moving, sign) in zip(RAMPS, plan):
        t = np.arange(n, dtype=np.float64) / n
        c = np.zeros((n, 3))
        c[:, full] = 1.0
        c[:, moving] = t if sign > 0 else 1.0 - t
        rows.append(c)
    return np.concatenate(rows)


def flow_to_rgb(flow_px: np.ndarray, max_px: float | None = None) -> np.ndarray:
    """(2,H,W) flow in pixels -> (H,W,3) uint8 RGB; magnitude `max_px` (default: the flow's largest) is full colour."""
    f = np.asarray(flow_px, dtype=np.float64)
    if f.ndim != 3 or f.shape[0] != 2:
        raise ValueError(f"expected a (2,H,W) flow, got shape {f.shape}")
    u, v = np.nan_to_num(f[0]), np.nan_to_num(f[1])
    mag = np.hypot(u, v)
    scale = float(max_px) if max_px is not None else float(mag.max())
    rad = mag / scale if scale > 0 else np.zeros_like(mag)
    wheel = colour_wheel()
    n = len(wheel)
    # The reversed vector's angle in [-1, 1] walks the wheel (the Middlebury convention: rightward is red).
    a = np.arctan2(-v, -u) / math.pi
    pos = (a + 1.0) / 2.0 * (n - 1)
    k0 = np.floor(pos).astype(np.int64)
    k1 = (k0 + 1) % n
    w = (pos - k0)[..., None]
    col = (1.0 - w) * wheel[k0] + w * wheel[k1]
    r = rad[..., None]
    inside = r <= 1.0
    # Inside the unit disc: blend from white (no motion) to the full colour; beyond it: darkened.
    col = np.where(inside, 1.0 - r * (1.0 - col), col * 0.75)
    return np.clip(np.round(col * 255.0), 0, 255).astype(np.uint8)


def wheel_legend(size: int = 64) -> np.ndarray:
    """(size,size,3) uint8: the colour of every direction and magnitude up to 1 (the key of the figures)."""
    c = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    xx, yy = np.meshgrid(c, c)
    img = flow_to_rgb(np.stack([xx, yy]), max_px=1.0)
    img[np.hypot(xx, yy) > 1.0] = 255
    return img
