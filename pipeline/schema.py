"""Conventions shared by the pipeline and the trainer: class and pose names, the store schema."""
from __future__ import annotations

import re

# Label codes are the indices of this tuple, in every store and every manifest.
CLASS_NAMES: tuple[str, ...] = (
    "neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise",
)
# SNaP-2DFe head-pose categories, plus `augmented` for synthetic rotations of frontal-only data.
POSE_NAMES: tuple[str, ...] = ("nothing", "tx", "yaw", "pitch", "roll", "diagonal", "augmented")
# Flow-pair strategies in a store's `strategy` array.
STRATEGY_NAMES: tuple[str, ...] = ("neutral_apex", "frame_to_frame")

SCHEMA_VERSION = 1

# The training store (one Zarr v3 group per dataset). All arrays share axis 0 (N),
# chunked along N only. S is the model size (128 by default, params `normalize.size`).
STORE_ARRAYS: dict[str, tuple[tuple[str, ...], str]] = {
    "flow_input": (("N", 2, "S", "S"), "float16"),    # non-frontal flow, normalized to [-1, 1]
    "flow_target": (("N", 2, "S", "S"), "float16"),   # frontal flow (ground truth), [-1, 1]
    "neutral": (("N", 3, "S", "S"), "uint8"),         # frontal face at t (what G_W warps), RGB
    "target_image": (("N", 3, "S", "S"), "uint8"),    # frontal face at t+dt, RGB
    "input_image": (("N", 3, "S", "S"), "uint8"),     # non-frontal face at t+dt, RGB
    "label": (("N",), "int16"),
    "subject": (("N",), "int32"),
    "sequence": (("N",), "int32"),
    "pose": (("N",), "int16"),
    "strategy": (("N",), "int16"),
    "step": (("N",), "int16"),
}
# Dimension names written into every store array (Zarr v3 `dimension_names`, read by xarray.open_zarr):
# one name per length, so flows (2 channels) and images (3 channels) do not share a channel axis.
CHANNEL_DIMS: dict[int, str] = {2: "uv", 3: "rgb"}


def dimension_names(shape: tuple[int, ...]) -> tuple[str, ...]:
    """("N", "uv"|"rgb", "y", "x") for (N, C, S, S) arrays, ("N",) for per-row values."""
    if len(shape) == 4:
        return ("N", CHANNEL_DIMS.get(shape[1], f"c{shape[1]}"), "y", "x")
    return ("N",) + tuple(f"d{i}_{n}" for i, n in enumerate(shape[1:], 1))


# Attributes every store carries; the trainer refuses a store that lacks one or disagrees.
STORE_ATTRS: tuple[str, ...] = (
    "schema_version", "class_names", "pose_names", "strategy_names", "representation",
    "clip", "size", "source_manifest_sha256", "params",
)


def label_code(name: str) -> int:
    """Code of a class name; ValueError naming the valid names otherwise."""
    try:
        return CLASS_NAMES.index(name)
    except ValueError:
        raise ValueError(f"unknown expression {name!r}; expected one of {', '.join(CLASS_NAMES)}") from None


def pose_code(name: str) -> int:
    """Code of a pose name; ValueError naming the valid names otherwise."""
    try:
        return POSE_NAMES.index(name)
    except ValueError:
        raise ValueError(f"unknown pose {name!r}; expected one of {', '.join(POSE_NAMES)}") from None


def check_label(label: str | None, code_text: str, where: object) -> int:
    """A row's `label_code` (text of a manifest or crops.csv) as an int, checked where labels enter a store.

    Valid: -1 (unlabeled, or a class outside CLASS_NAMES that is excluded: label kept), a CLASS_NAMES index
    whose name is the row's label (when a label is given), or a code >= len(CLASS_NAMES) for an extra class
    kept on request (CK+ contempt: 7) whose label is not a class name. SequenceError naming `where` otherwise.
    """
    from pipeline.errors import SequenceError

    t = (code_text or "").strip()
    if not t:
        return -1
    if not re.fullmatch(r"[+-]?\d+", t):
        raise SequenceError(where, f"label_code {code_text!r} is not an integer")
    code = int(t)
    if code < -1:
        raise SequenceError(where, f"label_code {code} is below -1 (the unlabeled code)")
    name = (label or "").strip().lower()
    if name in CLASS_NAMES and code != CLASS_NAMES.index(name) and code != -1:
        said = f" ({CLASS_NAMES[code]})" if code < len(CLASS_NAMES) else " (an extra, non-class code)"
        raise SequenceError(where, f"label {label!r} is class code {CLASS_NAMES.index(name)}, but label_code is "
                                   f"{code}{said}")
    if name and name not in CLASS_NAMES and 0 <= code < len(CLASS_NAMES):
        raise SequenceError(where, f"label {label!r} is not class {code} ({CLASS_NAMES[code]})")
    return code
