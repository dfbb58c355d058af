"""Stage `normalize`: clip flow magnitudes, map them to [-1, 1] (polar or Cartesian), write the training store.

Flows arrive in pixels of the source crop, (..., 2, H, W) with channel 0 = u (x), 1 = v (y).
Representations (both exactly invertible by `denormalize`, up to the float16 rounding of the store):
- polar (the paper's): channel 0 = 2 * min(|f|, clip) / clip - 1, channel 1 = 2 * angle / (2 pi) - 1,
  angle = atan2(v, u) taken in [0, 2 pi). ONE affine map x -> 2x - 1 takes both [0, 1] quantities
  to [-1, 1]; a zero vector has angle 0 (channel 1 = -1).
- cartesian: (u, v) * min(1, clip / |f|) / clip, so |output| <= 1 (clipped by magnitude, not per axis).
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional, Union

import numpy as np
import typer

from pipeline import store as st
from pipeline.errors import EmoganError
from pipeline.lock import writer_lock
from pipeline.params import PARAMS_OPTION, ParamsError, as_dict, load_params, params_hash, path_param, section

log = logging.getLogger(__name__)

TWO_PI = 2.0 * math.pi
AFFINE_MAP = "x -> 2x - 1 (x = magnitude/clip in [0,1] or angle/(2 pi) in [0,1))"


@dataclass
class NormalizeParams:
    """params.yaml `normalize`: clip (pixels of the source crop, or "q3" = stats' Q3), representation, size."""

    clip: Union[float, str]
    representation: str
    size: int  # model side; <= flow.size (a smaller one is area-averaged down)
    chunk_mib: float  # least chunk size of the store's flow/image arrays
    clevel: int  # blosc lz4 level

    def __post_init__(self) -> None:
        if isinstance(self.clip, str):
            if self.clip.strip().lower() != "q3":
                try:
                    self.clip = float(self.clip)
                except ValueError:
                    raise ValueError(f"clip = {self.clip!r}: expected a positive number or 'q3'") from None
            else:
                self.clip = "q3"
        if not isinstance(self.clip, str) and (isinstance(self.clip, bool) or not float(self.clip) > 0):
            raise ValueError(f"clip = {self.clip!r}: expected a positive number or 'q3'")
        if self.representation not in st.REPRESENTATIONS:
            raise ValueError(f"representation = {self.representation!r}: expected one of {list(st.REPRESENTATIONS)}")
        if not isinstance(self.size, int) or self.size < 8:
            raise ValueError(f"size = {self.size!r}: expected an integer >= 8")
        if not self.chunk_mib > 0 or not isinstance(self.clevel, int) or self.clevel < 0:
            raise ValueError("chunk_mib must be positive and clevel an integer >= 0")


def load_normalize_params(params: dict[str, Any], **overrides: Any) -> NormalizeParams:
    """params.yaml `normalize` section; ParamsError naming the file otherwise."""
    try:
        return section(params, "normalize", NormalizeParams, **overrides)
    except ValueError as e:
        raise ParamsError(f"{params.get('__file__', 'params')}: section 'normalize': {e}") from None


# ---------------------------------------------------------------- pure, vectorized maps

def clip_flow_px(flow_px: np.ndarray, clip: float) -> np.ndarray:
    """(..., 2, H, W) flow with each vector shortened to magnitude <= clip (direction kept), float32."""
    f = np.asarray(flow_px, dtype=np.float32)
    mag = np.hypot(f[..., 0, :, :], f[..., 1, :, :])
    scale = np.float32(clip) / np.maximum(mag, np.float32(clip))  # 1 below the clip, clip/|f| above
    return f * scale[..., None, :, :]


def to_polar(flow_px: np.ndarray, clip: float) -> np.ndarray:
    """(..., 2, H, W) flow in pixels -> polar in [-1, 1]: (magnitude/clip, angle/2pi) mapped by 2x - 1."""
    f = np.asarray(flow_px, dtype=np.float32)
    u, v = f[..., 0, :, :], f[..., 1, :, :]
    m = np.minimum(np.hypot(u, v), np.float32(clip)) / np.float32(clip)
    a = np.arctan2(v, u) / np.float32(TWO_PI)      # in [-0.5, 0.5]
    a = np.where(a < 0, a + np.float32(1), a)      # [0, 1]; -0.0 and tiny negatives may round to 1
    a = np.where(a >= 1, np.float32(0), a)         # ... fold 1 back to 0 so the range is [0, 1)
    return np.stack([2 * m - 1, 2 * a - 1], axis=-3).astype(np.float32)


def from_polar(polar: np.ndarray, clip: float) -> np.ndarray:
    """Inverse of to_polar: (..., 2, H, W) in [-1, 1] -> clipped flow in pixels, float32."""
    x = np.asarray(polar, dtype=np.float32)
    m = (x[..., 0, :, :] + 1) * np.float32(clip / 2)
    a = (x[..., 1, :, :] + 1) * np.float32(math.pi)  # (x + 1) / 2 * 2 pi
    return np.stack([m * np.cos(a), m * np.sin(a)], axis=-3)


def to_cartesian(flow_px: np.ndarray, clip: float) -> np.ndarray:
    """(..., 2, H, W) flow in pixels -> (u, v)/clip after clipping the magnitude, in the unit disc."""
    return clip_flow_px(flow_px, clip) / np.float32(clip)


def from_cartesian(cart: np.ndarray, clip: float) -> np.ndarray:
    """Inverse of to_cartesian: -> clipped flow in pixels, float32."""
    return np.asarray(cart, dtype=np.float32) * np.float32(clip)


def normalize_flow(flow_px: np.ndarray, representation: str, clip: float) -> np.ndarray:
    """Flow in pixels (..., 2, H, W) -> the store's [-1, 1] representation, float32."""
    if representation == "polar":
        return to_polar(flow_px, clip)
    if representation == "cartesian":
        return to_cartesian(flow_px, clip)
    raise ValueError(f"unknown representation {representation!r}; expected one of {st.REPRESENTATIONS}")


def denormalize(flow_norm: np.ndarray, representation: str, clip: float) -> np.ndarray:
    """The store's representation (..., 2, H, W) -> Cartesian flow in source-crop pixels (float32)."""
    if representation == "polar":
        return from_polar(flow_norm, clip)
    if representation == "cartesian":
        return from_cartesian(flow_norm, clip)
    raise ValueError(f"unknown representation {representation!r}; expected one of {st.REPRESENTATIONS}")


def area_resize(x: np.ndarray, size: int) -> np.ndarray:
    """(N, C, H, W) -> (N, C, size, size) by area averaging (flows: Cartesian, vectors not rescaled)."""
    import cv2

    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    out = [cv2.resize(np.ascontiguousarray(s.transpose(1, 2, 0)), (size, size), interpolation=cv2.INTER_AREA)
           for s in x]
    return np.stack([o.reshape(size, size, -1).transpose(2, 0, 1) for o in out]).astype(x.dtype)


# ---------------------------------------------------------------- the stage

def resolve_clip(clip: float | str, stats_path: Path | str | None) -> tuple[float, str]:
    """The clip value in source pixels and where it came from ("params" or the stats file)."""
    if clip != "q3":
        return float(clip), "params"
    if stats_path is None or not Path(stats_path).is_file():
        raise EmoganError(f"{stats_path}: normalize.clip is 'q3' but the stats metrics file is missing "
                          "(run `emogan stats` first)")
    try:
        q3 = float(json.loads(Path(stats_path).read_text())["suggested_clip"])
    except (ValueError, KeyError, TypeError) as e:
        raise EmoganError(f"{stats_path}: no usable suggested_clip ({e})") from None
    if not q3 > 0:
        raise EmoganError(f"{stats_path}: suggested_clip {q3} is not positive (all flows zero?)")
    return q3, f"q3 from {stats_path}"


# Arrays copied from the flow store unchanged (after an optional resize of the images).
_COPIED = ("label", "subject", "sequence", "pose", "strategy", "step", "frame_t")
_EXTRA_ARRAYS = {"frame_t": (("N",), "int16")}  # provenance: 0-based index of frame t in its sequence


def normalize_store(flows: Path | str, out: Path | str, p: NormalizeParams, *,
                    stats_path: Path | str | None = None) -> dict[str, Any]:
    """Flow store -> training store at `out` (schema of pipeline/schema.py, atomic); returns its attrs."""
    with writer_lock(out):  # one writer per store (pipeline/lock.py)
        return _normalize_store(flows, out, p, stats_path)


def _normalize_store(flows: Path | str, out: Path | str, p: NormalizeParams,
                     stats_path: Path | str | None) -> dict[str, Any]:
    from pipeline.flow import open_flows

    src = open_flows(flows)
    fa = dict(src.attrs)
    if p.size > int(fa["size"]):
        raise EmoganError(f"{flows}: flows are {fa['size']}x{fa['size']}, normalize.size {p.size} is larger; "
                          "raise flow.size and re-run `emogan flow`")
    clip, clip_source = resolve_clip(p.clip, stats_path)
    recorded = {"flow": fa["params"]["flow"], "normalize": {**as_dict(p), "clip": clip}}
    attrs = {
        "representation": p.representation, "clip": clip, "clip_source": clip_source,
        "clip_units": f"pixels of the source crop ({fa['source_size']}x{fa['source_size']})",
        "affine_map": AFFINE_MAP, "flow_convention": fa["flow_convention"],
        "source_size": fa["source_size"], "dataset": fa["dataset"],
        "source_manifest": fa["source_manifest"], "source_manifest_sha256": fa["source_manifest_sha256"],
        "params": recorded, "params_sha256": params_hash(recorded),
        "extra_class_names": fa.get("extra_class_names", []),
        "subject_ids": fa["subject_ids"], "sequence_ids": fa["sequence_ids"],
        "label_unlabeled": st.UNLABELED, "errors": fa.get("errors", []),
    }
    n = int(src["flow_input_px"].shape[0])
    step = int(src["flow_input_px"].chunks[0])
    # The 1-D arrays are small and stored in long chunks: read each once, not once per row chunk.
    codes = {k: src[k][...] for k in _COPIED}
    with st.atomic_dir(out) as tmp:
        g = st.create_store(tmp, n, p.size, attrs, extra_arrays=_EXTRA_ARRAYS, chunk_mib=p.chunk_mib,
                            clevel=p.clevel)
        writer = st.RowWriter(g, list(st.STORE_ARRAYS) + list(_EXTRA_ARRAYS))
        for a in range(0, n, step):  # aligned with the source chunks: each is read once
            b = min(n, a + step)
            rows = {k: v[a:b] for k, v in codes.items()}
            for name, src_name in (("flow_input", "flow_input_px"), ("flow_target", "flow_target_px")):
                raw = st.read_rows(src[src_name], a, b, flows)
                st.check_finite({src_name: raw}, flows, a)  # a training store is finite: nothing is written
                # Resize (if any) in Cartesian pixels first, then convert: angles are never averaged.
                f = area_resize(raw.astype(np.float32), p.size)
                rows[name] = normalize_flow(f, p.representation, clip).astype(np.float16)
            for name in ("neutral", "target_image", "input_image"):
                rows[name] = area_resize(st.read_rows(src[name], a, b, flows), p.size)
            writer.append(rows)
        writer.close()
    return st.check_store(out)


def cli(
    flows: Path = typer.Argument(..., help="flow store (from `emogan flow`); its stem is the dataset name (DATASET)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="training store (default <paths.stores>/DATASET.zarr)"),
    stats: Optional[Path] = typer.Option(None, help="stats metrics, read when clip is q3 "
                                         "(default <paths.metrics>/stats_DATASET.json)"),
    params_file: Optional[Path] = PARAMS_OPTION,
    clip: Optional[str] = typer.Option(None, help="clip in source pixels, or q3"),
    representation: Optional[Literal["polar", "cartesian"]] = typer.Option(
        None, help="polar (the paper) or cartesian (default params normalize.representation)"),
) -> None:
    """Clip and normalize the flows to [-1, 1] and write the training store (Zarr v3)."""
    params = load_params(params_file)
    p = load_normalize_params(params, clip=clip, representation=representation)
    dataset = flows.stem
    out = out or path_param(params, "stores") / f"{dataset}.zarr"
    stats = stats or path_param(params, "metrics") / f"stats_{dataset}.json"
    attrs = normalize_store(flows, out, p, stats_path=stats)
    typer.echo(f"{out}: {attrs['representation']} flows clipped at {attrs['clip']:g} px ({attrs['clip_source']})")
