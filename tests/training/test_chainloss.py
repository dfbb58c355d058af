"""L_chain (training/step.py `ChainSequences`, `chain_loss`; issue #12): G_F's step-1 outputs of a training sequence, chained as
evaluation chains them, scored against the neutral->apex truth while training."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import zarr
from torch import nn
from typer.testing import CliRunner

from emogan.cli import app
from pipeline.schema import STRATEGY_NAMES
from pipeline.store import write_store
from training.step import ChainSequences, chain_loss
from training.fixture import write_fixture_store
from test_train_loop import write_params

S, SRC, CLIP = 16, 64, 10.0
NA, F2F = STRATEGY_NAMES.index("neutral_apex"), STRATEGY_NAMES.index("frame_to_frame")


def uniform(u: float) -> np.ndarray:
    return np.stack([np.full((S, S), u / CLIP), np.zeros((S, S))]).astype(np.float16)


def write_sequences(path) -> str:
    """Sequence 0 (subject 0): neutral_apex truth 3 px in x, three step-1 rows of 2 px each, out of frame order;
    sequence 1 (subject 1): the same; sequence 2: a neutral_apex row without step rows."""
    rows = []   # (sequence, subject, strategy, step, frame_t, u px)
    for q in (0, 1):
        rows += [(q, q, NA, 3, 0, 3.0), (q, q, F2F, 1, 2, 2.0), (q, q, F2F, 1, 0, 2.0), (q, q, F2F, 1, 1, 2.0)]
    rows.append((2, 0, NA, 3, 0, 5.0))
    n = len(rows)
    fl = np.stack([uniform(r[5]) for r in rows])
    arrays = {"flow_input": fl, "flow_target": fl.copy(), "neutral": np.zeros((n, 3, S, S), np.uint8),
              "target_image": np.zeros((n, 3, S, S), np.uint8), "input_image": np.zeros((n, 3, S, S), np.uint8),
              "label": np.ones(n, np.int16), "subject": np.array([r[1] for r in rows], np.int32),
              "sequence": np.array([r[0] for r in rows], np.int32), "pose": np.full(n, 2, np.int16),
              "strategy": np.array([r[2] for r in rows], np.int16), "step": np.array([r[3] for r in rows], np.int16),
              "frame_t": np.array([r[4] for r in rows], np.int16)}
    attrs = {"representation": "cartesian", "clip": CLIP, "size": S, "source_size": SRC, "source_manifest_sha256": "t",
             "subject_ids": ["S001", "S002"], "params": {}}
    write_store(path, arrays, attrs, chunk_mib=0.01)
    return str(path)


class Scale(nn.Module):
    """A G_F that multiplies its input by one learnt number (starts as the identity)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return self.a * x


def test_chain_sequences_are_the_training_rows_sequences_and_the_loss_scores_their_chain(tmp_path):
    store = write_sequences(tmp_path / "s.zarr")
    train_rows = np.arange(4)                       # subject 0's sequence 0 only (sequence 1 is held out)
    seqs = ChainSequences([store], [train_rows], None, seed=0, per_step=2)
    assert len(seqs.items) == 1 and seqs.items[0].steps.shape == (3, 2, S, S)
    assert seqs.draw(5)[0] is seqs.items[0]
    # the identity composes 2 + 2 + 2 = 6 px against the far pair's 3 px: |6 - 3| / clip
    loss = chain_loss(nn.Identity(), seqs.items, "cartesian", CLIP, torch.device("cpu"))
    assert loss.item() == pytest.approx(3.0 / CLIP, abs=1e-2)
    both = ChainSequences([store], [np.arange(8)], None, seed=0, per_step=1)
    assert len(both.items) == 2 and len(both.draw(0)) == 1
    assert [len(both.draw(k)) for k in range(3)] == [1, 1, 1]
    assert all(both.draw(k)[0] is both.draw(k)[0] for k in range(5))   # the same draw for the same step


def test_chain_loss_teaches_g_f_the_far_pairs_motion_not_the_sum_of_its_steps(tmp_path):
    """Steps whose sum overshoots the far pair's flow (as the composed Farneback steps do): trained on L_chain
    alone, G_F learns to shrink each step so that the chain lands on the truth (a -> 1/2), which L_epe on the
    steps (each step's own truth, 2 px) would never ask for."""
    store = write_sequences(tmp_path / "s.zarr")
    seqs = ChainSequences([store], [np.arange(8)], None, seed=0, per_step=2)
    gf = Scale()
    opt = torch.optim.SGD(gf.parameters(), lr=0.05)   # an L1 loss: steps of lr x 0.6, no shrinking gradient
    first = None
    for step in range(60):
        loss = chain_loss(gf, seqs.draw(step), "cartesian", CLIP, torch.device("cpu"))
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert gf.a.item() == pytest.approx(0.5, abs=0.05)
    assert loss.item() < 0.1 * first


def test_training_with_l_chain_logs_it_and_a_store_without_sequences_says_what_to_fix(tmp_path):
    store = write_fixture_store(tmp_path / "fx.zarr", n_subjects=6, rows_per_subject=12, size=32,
                                representation="cartesian", chunk_mib=0.02, max_step=1)
    params = write_params(tmp_path / "params.yaml", chain_weight=5.0, chain_sequences=2, epochs=1)
    r = CliRunner().invoke(app, ["train-fer", str(store), "--fold", "0", "--out", str(tmp_path / "fer"), "--params",
                                 str(params)])
    assert r.exit_code == 0, r.output + repr(r.exception)
    args = ["train", str(store), "--fold", "0", "--efer-path", str(tmp_path / "fer"), "--params", str(params)]
    # every fixture row is its own sequence: no neutral_apex row has step-1 rows to chain
    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "none")])
    assert r.exit_code != 0 and "needs training sequences with a neutral_apex row" in r.output + str(r.exception)
    # group each subject's rows into 3 sequences: now every one has neutral_apex and step-1 rows
    g = zarr.open_group(str(store), mode="r+")
    subj = np.asarray(g["subject"][:])
    g["sequence"][:] = (subj * 3 + np.arange(len(subj)) % 3).astype(np.int32)
    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output + repr(r.exception)
    steps = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    chain = [x["chain"] for x in steps if x.get("event") == "step"]
    assert chain and all(np.isfinite(chain)) and min(chain) > 0
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["runtime"]["chain_sequences"] > 0
