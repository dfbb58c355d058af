"""Batched torch codec of the store's flow representations (docs/ARCHITECTURE.md, Conventions), and every
other operation on normalized flows: resizing, mirroring, converting between representations.

The trainer needs the store's inverse on device tensors, inside the loop (EPE in source pixels)
and to build learnable fixture stores; the tests check it against the pipeline's `denormalize`.
Flows are (N,2,H,W): channel 0 = u (x), 1 = v (y). Resizing and mirroring go through Cartesian
pixels: a flow is averaged as (u, v), never as magnitude/angle, and a mirror negates u.

- polar:     c0 = 2 * min(|f|, clip) / clip - 1,  c1 = 2 * (atan2(v, u) mod 2pi) / (2pi) - 1
- cartesian: (u, v) / clip, the vector shortened to length clip first when longer.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

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


def epe_px(pred_norm: torch.Tensor, target_norm: torch.Tensor, representation: str, clip: float) -> torch.Tensor:
    """Per-sample end-point error in source pixels, (N,): mean over pixels of |decode(pred) - decode(target)|."""
    d = decode(pred_norm, representation, clip) - decode(target_norm, representation, clip)
    return torch.linalg.vector_norm(d, dim=1).flatten(1).mean(1)


def resize_flow(flow: torch.Tensor, size: int, representation: str, clip: float) -> torch.Tensor:
    """(N,2,S,S) normalized flow -> (N,2,size,size): averaged as Cartesian (u, v), never as magnitude/angle."""
    if flow.shape[-1] == size:
        return flow
    px = decode(flow, representation, clip)
    px = F.interpolate(px, size=(size, size), mode="area")
    return encode(px, representation, clip)


def flip_flows(flow_norm: torch.Tensor, representation: str, clip: float) -> torch.Tensor:
    """Left-right mirror of normalized flows (N,2,H,W): columns reversed, u negated (through pixels)."""
    px = decode(flow_norm, representation, clip).flip(-1)
    px = px * px.new_tensor([-1.0, 1.0]).view(1, 2, 1, 1)
    return encode(px, representation, clip)


def convert(flow_norm: torch.Tensor, representation: str, to: str, clip: float) -> torch.Tensor:
    """Normalized flows of one representation as another (same clip); unchanged when they agree."""
    if to == representation:
        return flow_norm
    return encode(decode(flow_norm, representation, clip), to, clip)


def compose_all(steps_px: Sequence[torch.Tensor], px_per_cell: float) -> list[torch.Tensor]:
    """Chain flows (each (2,S,S) in source px, frame t -> t+1 on frame t's grid): the flows frame 0 -> 1, 0 -> 2,
    ..., 0 -> n on frame 0's grid, each next flow sampled (bilinear) where the pixel has moved so far;
    `px_per_cell` source pixels per grid cell."""
    total = torch.zeros_like(steps_px[0])
    s = total.shape[-1]
    ys, xs = torch.meshgrid(torch.arange(s, dtype=total.dtype), torch.arange(s, dtype=total.dtype), indexing="ij")
    out = []
    for f in steps_px:
        gx = (xs + total[0] / px_per_cell) / (s - 1) * 2 - 1
        gy = (ys + total[1] / px_per_cell) / (s - 1) * 2 - 1
        grid = torch.stack([gx, gy], -1)[None]
        total = total + F.grid_sample(f[None], grid, mode="bilinear", padding_mode="border", align_corners=True)[0]
        out.append(total)
    return out


def compose(steps_px: Sequence[torch.Tensor], px_per_cell: float) -> torch.Tensor:
    """The flow frame 0 -> n chained from the step flows (compose_all's last)."""
    return compose_all(steps_px, px_per_cell)[-1]


def zero_border(flow: torch.Tensor, frac: float) -> torch.Tensor:
    """`flow` (..., S, S) with a band of round(frac * S) cells along each edge set to zero (a copy when frac > 0).

    The chain composes nine step flows: Farneback's flow along a crop's edges (its border handling, black padding
    where the crop leaves the frame, noise on flat background) adds up there step after step, where a direct
    pair's flow has it once; the face is not in that band (docs/EVALUATION.md, "Where the chain's EPE comes from")."""
    if not 0.0 <= frac < 0.5:
        raise EmoganError(f"chain border {frac}: expected a fraction of the side in [0, 0.5)")
    b = int(round(frac * flow.shape[-1]))
    if b == 0:
        return flow
    out = flow.clone()
    out[..., :b, :] = 0
    out[..., -b:, :] = 0
    out[..., :, :b] = 0
    out[..., :, -b:] = 0
    return out
