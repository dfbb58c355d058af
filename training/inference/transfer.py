"""Motion transfer's source from a training store: the (frame 0 -> frame t) rows of one sequence, as
`emogan transfer --store S --sequence ID` feeds them to the networks (training/inference/frontalize.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import EmoganError


def store_sequence(store: Path | str, sequence: str,
                   meta: dict[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The (frame 0 -> frame t) rows of one store sequence: input flows (T,2,S,S), input images (T,3,S,S), attrs.

    With a bundle's sidecar `meta`, a store of another representation, clip or class set is refused first.
    """
    from pipeline.schema import CLASS_NAMES
    from pipeline.store import open_store
    from training.inference.bundle import check_compatible

    g = open_store(store)
    attrs = dict(g.attrs)
    if meta is not None:
        check_compatible(meta, f"store {store}", representation=attrs["representation"], clip=float(attrs["clip"]),
                         class_names=attrs.get("class_names", CLASS_NAMES))
    ids = list(attrs.get("sequence_ids") or [])
    if sequence not in ids:
        raise EmoganError(f"{store}: no sequence {sequence!r}; it has {', '.join(ids[:8])}{' ...' if len(ids) > 8 else ''}")
    seq = g["sequence"][...]
    frame_t = g["frame_t"][...] if "frame_t" in g else None
    if frame_t is None:
        raise EmoganError(f"{store}: no frame_t array (made before frame indices were stored): re-run `emogan normalize`")
    rows = np.flatnonzero((seq == ids.index(sequence)) & (frame_t == 0))
    steps = g["step"].get_orthogonal_selection((rows,)) if rows.size else np.zeros(0)
    _, pick = np.unique(steps, return_index=True)  # the apex pair may be listed by two strategies
    rows = rows[pick]
    if rows.size == 0:
        raise EmoganError(f"{store}: sequence {sequence!r} has no pair starting at its first frame")
    return (np.asarray(g["flow_input"].get_orthogonal_selection((rows,)), np.float32),
            np.asarray(g["input_image"].get_orthogonal_selection((rows,))), attrs)
