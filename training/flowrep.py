"""Batched torch codec of the store's flow representations (docs/ARCHITECTURE.md, Conventions).

The trainer needs the store's inverse on device tensors, inside the loop (EPE in source pixels)
and to build learnable fixture stores; `tests/test_train_data.py` checks it against the
pipeline's `denormalize` when that exists. Flows are (N,2,H,W): channel 0 = u (x), 1 = v (y).

- polar:     c0 = 2 * min(|f|, clip) / clip - 1,  c1 = 2 * (atan2(v, u) mod 2pi) / (2pi) - 1
- cartesian: (u, v) / clip, the vector shortened to length clip first when longer.
"""
from __future__ import annotations

import math

import torch

from pipeline.errors import EmoganError

REPRESENTATIONS = ("polar", "cartesian")


def _check(representation: str) -> None:
    if representation not in REPRESENTATIONS:
        raise EmoganError(f"unknown flow representation {representation!r}; expected one of {', '.join(REPRESENTATIONS)}")


def encode(flow_px: torch.Tensor, representation: str, clip: float) -> torch.Tensor:
    """Cartesian flow in source pixels (N,2,H,W) -> normalized representation in [-1,1], (N,2,H,W)."""
    _check(representation)
    u, v = flow_px[:, 0], flow_px[:, 1]
    mag = torch.sqrt(u * u + v * v)
    if representation == "polar":
        ang = torch.remainder(torch.atan2(v, u), 2 * math.pi)
        c0 = 2.0 * mag.clamp(max=clip) / clip - 1.0
        c1 = (2.0 * ang / (2 * math.pi) - 1.0).clamp(-1.0, 1.0)
        return torch.stack([c0, c1], dim=1)
    scale = torch.where(mag > clip, clip / mag.clamp_min(1e-12), torch.ones_like(mag))
    return torch.stack([u * scale, v * scale], dim=1) / clip


def decode(flow_norm: torch.Tensor, representation: str, clip: float) -> torch.Tensor:
    """Normalized representation (N,2,H,W) -> Cartesian flow in source pixels (N,2,H,W), float32."""
    _check(representation)
    x = flow_norm.float()
    if representation == "polar":
        mag = (x[:, 0] + 1.0) * 0.5 * clip
        ang = (x[:, 1] + 1.0) * math.pi
        return torch.stack([mag * torch.cos(ang), mag * torch.sin(ang)], dim=1)
    return x * clip


def reclip(flow_norm: torch.Tensor, representation: str, clip_from: float, clip_to: float) -> torch.Tensor:
    """Normalized flows (N,2,H,W) encoded with clip `clip_from` -> the same flows encoded with `clip_to`
    (a store's input flows, `clip_input`, as its frontal flows are: for scores and judges)."""
    if clip_from == clip_to:
        return flow_norm
    return encode(decode(flow_norm, representation, clip_from), representation, clip_to)


def epe_px(pred_norm: torch.Tensor, target_norm: torch.Tensor, representation: str, clip: float) -> torch.Tensor:
    """Per-sample end-point error in source pixels, (N,): mean over pixels of |decode(pred) - decode(target)|."""
    d = decode(pred_norm, representation, clip) - decode(target_norm, representation, clip)
    return torch.linalg.vector_norm(d, dim=1).flatten(1).mean(1)
