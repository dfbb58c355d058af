"""Neutral->apex motion frontalized as the chain of G_F's frame-to-frame frontalizations (issue #12).

G_F frontalizes one-frame motion well and erases the large neutral->apex motion of a turning head (docs/
EVALUATION.md). A recording holds every frame, and so does a store with frame_to_frame step-1 rows: the
neutral->apex frontal flow is then composed from G_F's outputs on the consecutive pairs,
F_0->n(x) = F_0->1(x) + F_1->n(x + F_0->1(x)), each next flow sampled (bilinear) where the pixel has moved so
far. `evaluate.neutral_apex: chain` scores that flow as eMotion-GAN's on neutral_apex rows (and G_W warps it);
`direct` scores G_F on the neutral->apex flow itself. Both are in rows.csv (`emotiongan`, `gf_direct`).
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch


from training.flowrep import compose

NEUTRAL_APEX_MODES = ("direct", "chain")
log = logging.getLogger(__name__)


@torch.no_grad()
def chained_frontalization(run: Any, store: str, na_rows: np.ndarray, batch_size: int,
                           border: float = 0.0) -> dict[int, torch.Tensor]:
    """{neutral_apex row: the chained frontal flow (2,size,size), the store's representation} for `na_rows`;
    a band of `border` x the side along each edge is set to zero (flowrep.zero_border; `evaluate.chain_border`)."""
    from training import flowrep
    from training.data import iter_rows, raw_group, sequence_step_rows

    if len(na_rows) == 0:
        return {}
    g = raw_group(store)
    rep, clip, source = str(g.attrs["representation"]), float(g.attrs["clip"]), g.attrs.get("source_size")
    steps = sequence_step_rows(store, na_rows) if source else {}
    if len(steps) < len(na_rows):
        log.warning("%s: %d of %d neutral_apex rows have no step-1 frame_to_frame rows to chain (%s): scored `direct`",
                    store, len(na_rows) - len(steps), len(na_rows),
                    "no source_size attribute" if not source else "flow.strategies / max_step")
    if not steps:
        return {}
    source = int(source)
    need = np.unique(np.concatenate(list(steps.values())))
    frontal: dict[int, torch.Tensor] = {}
    pos = 0
    arrays = ("flow_input", "input_image") if run.reads_face else ("flow_input",)
    for b in iter_rows(store, need, arrays, batch_size):
        n = len(b["flow_input"])
        px = flowrep.decode(run.frontalize(b["flow_input"].float(), b.get("input_image")).cpu(), rep, clip)
        for i in range(n):
            frontal[int(need[pos + i])] = px[i]
        pos += n
    size = next(iter(frontal.values())).shape[-1]
    chains = {r: flowrep.zero_border(compose([frontal[int(x)] for x in rows], source / size), border)
              for r, rows in steps.items()}
    return {r: flowrep.encode(f[None], rep, clip)[0] for r, f in chains.items()}
