"""Neutral->apex frontalization by the chain of step-1 frontalizations (training/evaluation/chain.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.errors import EmoganError
from pipeline.schema import STRATEGY_NAMES
from pipeline.store import write_store
from training.data import sequence_step_rows
from training.evaluation.chain import chained_frontalization
from training.flowrep import compose

S, SRC, CLIP = 16, 64, 10.0   # model/store side, source crop side (4 source px per cell), clip
NA, F2F = STRATEGY_NAMES.index("neutral_apex"), STRATEGY_NAMES.index("frame_to_frame")


def uniform(u: float, v: float) -> torch.Tensor:
    return torch.stack([torch.full((S, S), float(u)), torch.full((S, S), float(v))])


def test_compose_adds_flows_where_the_pixel_has_moved():
    assert torch.allclose(compose([uniform(2, 0), uniform(3, -1), uniform(-1, 1)], SRC / S), uniform(4, 0), atol=1e-5)
    # the second flow grows along x: it must be read where the first one moved each pixel (2 px = 0.5 cells)
    xs = torch.arange(S, dtype=torch.float32).expand(S, S)
    second = torch.stack([0.4 * xs, torch.zeros(S, S)])
    out = compose([uniform(2, 0), second], SRC / S)
    assert torch.allclose(out[0, :, 2:-2], 2 + 0.4 * (xs[:, 2:-2] + 0.5), atol=1e-5)
    assert not torch.allclose(out[0], uniform(2, 0)[0] + second[0])   # a plain sum is not the composition


class IdentityRun:
    """A 'model' whose G_F returns the input flow: the chain must then compose the stored step flows."""

    size = S
    reads_face = False   # as checkpoint.RunModel: a flow-only G_F ignores the face it may be handed

    def frontalize(self, flow: torch.Tensor, face_u8: torch.Tensor | None = None) -> torch.Tensor:
        return flow.float()


def write_sequences(path, with_frame_t: bool = True):
    """Sequence 0: neutral_apex row + three step-1 rows (uniform 2, 3, -1 px in x), stored out of frame order;
    sequence 1: a neutral_apex row alone (no step-1 rows)."""
    flows = [(0, NA, 9, 0, 9.0), (0, F2F, 1, 2, -1.0), (0, F2F, 1, 0, 2.0), (0, F2F, 1, 1, 3.0), (1, NA, 9, 0, 5.0)]
    n = len(flows)
    fi = np.stack([uniform(u / CLIP, 0).numpy() for *_, u in flows]).astype(np.float16)
    arrays = {"flow_input": fi, "flow_target": fi.copy(), "neutral": np.zeros((n, 3, S, S), np.uint8),
              "target_image": np.zeros((n, 3, S, S), np.uint8), "input_image": np.zeros((n, 3, S, S), np.uint8),
              "label": np.ones(n, np.int16), "subject": np.zeros(n, np.int32),
              "sequence": np.array([f[0] for f in flows], np.int32), "pose": np.full(n, 2, np.int16),
              "strategy": np.array([f[1] for f in flows], np.int16), "step": np.array([f[2] for f in flows], np.int16)}
    if with_frame_t:
        arrays["frame_t"] = np.array([f[3] for f in flows], np.int16)
    attrs = {"representation": "cartesian", "clip": CLIP, "size": S, "source_size": SRC, "source_manifest_sha256": "t",
             "subject_ids": ["S001"], "params": {}}
    write_store(path, arrays, attrs, chunk_mib=0.01)
    return str(path)


def test_the_chain_composes_a_sequences_step1_rows_in_frame_order(tmp_path, caplog):
    store = write_sequences(tmp_path / "s.zarr")
    assert {k: list(v) for k, v in sequence_step_rows(store, np.array([0, 4])).items()} == {0: [2, 3, 1]}
    with caplog.at_level("WARNING"):
        out = chained_frontalization(IdentityRun(), store, np.array([0, 4]), batch_size=2)
    assert set(out) == {0} and "1 of 2 neutral_apex rows have no step-1" in caplog.text
    assert torch.allclose(out[0] * CLIP, uniform(4, 0), atol=1e-2)   # 2 + 3 - 1 px, not the stored 9 px


def test_evaluate_scores_the_chain_as_emotiongan_and_keeps_gf_direct(tmp_path):
    """evaluate_store with the identity model on the tiny store: neutral_apex rows score the chain's flow as
    `emotiongan` (EPE against the 9 px truth: |4 - 9| = 5 px) and G_F's own (`gf_direct`, 0 px)."""
    from training.evaluation.evaluate import _flows_of

    store = write_sequences(tmp_path / "s.zarr")
    chain = chained_frontalization(IdentityRun(), store, np.array([0]), batch_size=2)
    b = {"flow_input": torch.from_numpy(np.stack([uniform(0.9, 0).numpy(), uniform(0.2, 0).numpy()])),
         "flow_target": torch.from_numpy(np.stack([uniform(0.9, 0).numpy(), uniform(0.2, 0).numpy()])),
         "_rows": np.array([0, 2])}
    direct = IdentityRun().frontalize(b["flow_input"])   # G_F's output, as evaluate_store hands it over
    flows, _ = _flows_of(b, S, "cartesian", CLIP, None, None, chain, direct)
    assert torch.allclose(flows["emotiongan"][0] * CLIP, uniform(4, 0), atol=1e-2)
    assert torch.allclose(flows["gf_direct"][0] * CLIP, uniform(9, 0), atol=1e-2)
    assert torch.equal(flows["emotiongan"][1], flows["gf_direct"][1])   # a step-1 row: G_F's own output


def test_chain_border_zeroes_the_edges_only_and_removes_what_the_steps_add_up_there(tmp_path):
    """Each step flow carries the same spurious flow along the crop's edges (as Farneback's border handling does);
    the direct pair's truth has it once. The chain adds it up step after step; `border` (evaluate.chain_border)
    zeroes that band and leaves the face's motion inside untouched."""
    from training.flowrep import zero_border

    f = torch.randn(2, 2, S, S)
    z = zero_border(f, 2 / S)
    assert torch.equal(z[..., 2:-2, 2:-2], f[..., 2:-2, 2:-2]) and z[..., :2, :].abs().sum() == 0
    assert z[..., -2:, :].abs().sum() == 0 and z[..., :, :2].abs().sum() == 0 and z[..., :, -2:].abs().sum() == 0
    assert zero_border(f, 0.0) is f and zero_border(f, 0.01).equal(f)   # under half a cell: nothing to zero
    for bad in (-0.1, 0.5):
        with pytest.raises(EmoganError, match="chain border"):
            zero_border(f, bad)

    edge = torch.zeros(S, S, dtype=torch.bool)
    edge[:2, :], edge[-2:, :], edge[:, :2], edge[:, -2:] = True, True, True, True
    face = torch.zeros(2, S, S)
    face[1, 5:11, 5:11] = 1.0                                    # the mouth opens 3 px over three steps
    steps = [face + torch.stack([edge * 1.5, torch.zeros(S, S)]) for _ in range(3)]
    truth = 3 * face + torch.stack([edge * 1.5, torch.zeros(S, S)])   # Farneback's far pair: the edge flow once
    chained = compose(steps, SRC / S)

    def epe(x):
        return float((x - truth).norm(dim=0).mean())

    assert epe(zero_border(chained, 2 / S)) < 0.6 * epe(chained)   # 1.5 px left of 3 px (+ compose's reads)
    assert torch.allclose(zero_border(chained, 2 / S)[:, 4:12, 4:12], chained[:, 4:12, 4:12])
