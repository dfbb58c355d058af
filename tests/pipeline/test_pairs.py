"""The pairs a sequence gives (issue #12): every step 1..n-1, a frame subset, the neutral-apex pair once."""
from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import pytest

from flowdata import make_crops
from pipeline import farneback as fb
from pipeline import flow as fl
from pipeline.schema import STRATEGY_NAMES
from conftest import params_of

APEX, F2F = STRATEGY_NAMES.index("neutral_apex"), STRATEGY_NAMES.index("frame_to_frame")
BOTH = ["neutral_apex", "frame_to_frame"]


@pytest.mark.parametrize("n", [2, 3, 6, 10])
def test_every_step_lists_each_frame_pair_once(n):
    pairs = fb.frame_pairs(n, BOTH, None)
    spans = Counter((q.t, q.t2) for q in pairs)
    assert set(spans) == {(t, t2) for t in range(n) for t2 in range(t + 1, n)}  # all n(n-1)/2, steps 1..n-1
    assert max(spans.values()) == 1  # the first -> last pair is not also a frame_to_frame row
    assert [q for q in pairs if (q.t, q.t2) == (0, n - 1)] == [fb.Pair(APEX, n - 1, 0, n - 1)]
    assert all(q.step == q.t2 - q.t for q in pairs)


def test_duplicate_apex_pair_only_when_both_strategies_ask():
    # max_step >= n-1 used to store (0, n-1) twice: as neutral_apex and as frame_to_frame step n-1
    both = fb.frame_pairs(5, BOTH, 4)
    assert sum((q.t, q.t2) == (0, 4) for q in both) == 1
    assert len(both) == 10
    # frame_to_frame alone keeps its longest step (nothing else stores that pair)
    alone = fb.frame_pairs(5, ["frame_to_frame"], None)
    assert fb.Pair(F2F, 4, 0, 4) in alone and len(alone) == 10
    # a limited max_step never reaches it: nothing to drop
    assert len(fb.frame_pairs(5, BOTH, 2)) == 1 + 4 + 3


def test_frames_subset_keeps_neutral_and_apex_and_counts_steps_in_the_sequence():
    assert fb.kept_frames(10, None) == list(range(10))
    assert fb.kept_frames(10, 4) == [0, 3, 6, 9]
    assert fb.kept_frames(3, 8) == [0, 1, 2]
    pairs = fb.frame_pairs(10, BOTH, None, frames=4)
    assert len(pairs) == 6  # 4 frames: 4*3/2 pairs, the apex pair once
    assert {(q.t, q.t2) for q in pairs} == {(0, 3), (3, 6), (6, 9), (0, 6), (3, 9), (0, 9)}
    assert sorted(q.step for q in pairs if q.strategy == F2F) == [3, 3, 3, 6, 6]
    assert [q.step for q in fb.frame_pairs(10, ["frame_to_frame"], 3, frames=4)] == [3, 3, 3]


def test_store_of_every_step_has_no_duplicate_rows(tmp_path):
    crops = make_crops(tmp_path / "crops", n_sequences=2, frames=5, side=64)
    p = dataclasses.replace(params_of(fl.FlowParams, "flow", size=32, workers=0), max_step=None)
    fl.compute_flows(crops, tmp_path / "f.zarr", p, progress=False)
    g = fl.open_flows(tmp_path / "f.zarr")
    seq, t, step, strat = (np.asarray(g[k][:]) for k in ("sequence", "frame_t", "step", "strategy"))
    assert len(seq) == 2 * 10
    keys = list(zip(seq.tolist(), t.tolist(), step.tolist()))
    assert len(set(keys)) == len(keys)
    apex = strat == APEX
    assert apex.sum() == 2 and (step[apex] == 4).all() and (t[apex] == 0).all()
    assert ((strat == F2F) & (step == 4)).sum() == 0
    # each row's flows are those of its own frames: the translation grows with the step (make_crops: k*shift)
    fin = np.asarray(g["flow_input_px"][:], np.float32)[:, :, 8:-8, 8:-8].mean(axis=(2, 3))
    np.testing.assert_allclose(fin[:, 0], -0.75 * step, atol=0.35)
    # a frames subset reads fewer frames and stores fewer rows, steps still in the sequence's frames
    q = dataclasses.replace(p, frames=3)
    fl.compute_flows(crops, tmp_path / "f3.zarr", q, progress=False)
    g3 = fl.open_flows(tmp_path / "f3.zarr")
    assert sorted(np.asarray(g3["step"][:]).tolist()) == [2, 2, 2, 2, 4, 4]
    assert g3.attrs["params"]["flow"]["frames"] == 3 and g3.attrs["params"]["flow"]["max_step"] is None
