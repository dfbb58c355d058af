"""The motion-domain FER judge (paper section V-A.2): a Flow-CNN trained on the frontal ground-truth
flows of the TRAINING folds only, then used by `emogan evaluate` to score ground-truth frontal,
non-frontal, landmark-frontalized and G_F-frontalized flows of the held-out fold.

It is the paper's D_E architecture ("de" in the registry) but trained on its own, independently of
any GAN run, so that every method and ablation of a fold is judged by the same classifier.
Output folder: flowcnn.safetensors (state_dict), flowcnn.json (net, side, representation, clip,
fold, stores, folds files, training subjects per store, metrics).
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pipeline.errors import EmoganError
from pipeline.schema import CLASS_NAMES, STRATEGY_NAMES
from pipeline.scoring import accuracy, confusion

log = logging.getLogger(__name__)
WEIGHTS = "flowcnn.safetensors"
CONFIG = "flowcnn.json"
ARRAYS = ("flow_target", "label", "strategy")


@dataclass
class FlowCnnParams:
    """params.yaml `evaluate.flowcnn`: the motion-domain judge and how it is trained."""

    net: dict[str, Any]
    size: int  # flows are area-averaged (as (u, v)) to this side
    input: str  # store: the store's representation (as D_E); cartesian: (u, v)/clip
    strategies: tuple[str, ...]
    seed: int
    epochs: int
    batch_size: int
    steps_per_epoch: int | None  # cap on batches per epoch; null: all training rows
    lr: float
    weight_decay: float
    lr_gamma: float  # learning rate x lr_gamma after each epoch
    hflip: bool  # mirror half the flows (u negated): expressions are near-symmetric
    buffer_chunks: int
    workers: int


def judge_input(flow_norm, size: int, representation: str, clip: float, input_kind: str):
    """Normalized flows (N,2,S,S) -> the judge's input (N,2,size,size): resized as (u, v), re-encoded if asked."""
    from training import flowrep

    x = flowrep.resize_flow(flow_norm.float(), size, representation, clip)
    return flowrep.convert(x, representation, "cartesian", clip) if input_kind == "cartesian" else x


def select_rows(path: str, rows: np.ndarray, strategies: Sequence[str]) -> np.ndarray:
    """Rows (of `rows`) with a label and one of `strategies`."""
    from training.data import raw_group

    g = raw_group(path)
    codes = [STRATEGY_NAMES.index(s) for s in strategies]
    strat = np.asarray(g["strategy"][:])[rows]
    label = np.asarray(g["label"][:])[rows]
    return rows[np.isin(strat, codes) & (label >= 0)]


def subjects_of(path: str, rows: np.ndarray) -> list[str]:
    """Subject ids (store attr subject_ids) present in `rows`, sorted."""
    from training.data import raw_group

    g = raw_group(path)
    ids = list(g.attrs["subject_ids"])
    codes = np.unique(np.asarray(g["subject"][:])[rows])
    return sorted(ids[int(c)] for c in codes)


class FlowJudge:
    """A trained Flow-CNN: predict(flows in the store representation, any side) -> (N,7) logits."""

    def __init__(self, net, meta: dict[str, Any]):
        self.net = net.eval()
        self.meta = meta
        self.size = int(meta["size"])
        self.representation = str(meta["representation"])
        self.clip = float(meta["clip"])

    def logits(self, flow_norm) -> "Any":
        """(N,2,S,S) normalized flows (torch) -> (N,7) logits (torch, CPU)."""
        import torch

        with torch.no_grad():
            x = judge_input(flow_norm, self.size, self.representation, self.clip, self.meta.get("input", "store"))
            return self.net(x).float()


def load_flowcnn(folder: Path | str, fold: int | None = None) -> FlowJudge:
    """A trained Flow-CNN judge; refuses one trained with another held-out fold (it saw the test subjects)."""
    from safetensors.torch import load_file

    from training.models.networks import build_from

    d = Path(folder)
    if not (d / CONFIG).is_file() or not (d / WEIGHTS).is_file():
        raise EmoganError(f"{d}: no {CONFIG} and {WEIGHTS} here; train it with `emogan train-flowcnn STORE... "
                          f"--fold K --out {d}`")
    meta = json.loads((d / CONFIG).read_text())
    if fold is not None and int(meta["fold"]) != int(fold):
        raise EmoganError(f"{d}: this Flow-CNN held out fold {meta['fold']}, not {fold}: it has seen the test "
                          f"subjects. Train one with --fold {fold}")
    net = build_from(meta["net"])
    net.load_state_dict(load_file(str(d / WEIGHTS)))
    return FlowJudge(net, meta)


def train_flowcnn(stores: Sequence[str], fold: int, folds_files: Sequence[str | None], k: int, p: FlowCnnParams,
                  out: Path | str, device: str = "cpu") -> dict[str, Any]:
    """Train the judge on the frontal flows of the training folds of `stores`; write `out`; return its metrics."""
    import torch
    import torch.nn.functional as F
    from safetensors.torch import save_file

    from training.data import StreamingStoreDataset, check_compatible, check_store, fold_rows, iter_rows, make_loader
    from training.flowrep import flip_flows, resize_flow
    from training.models.networks import build_from

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    infos = [check_store(s) for s in stores]
    check_compatible(infos)
    rep, clip = infos[0].representation, infos[0].clip
    ffs = [Path(f) if f else None for f in folds_files]
    train_rows = [select_rows(i.path, fold_rows(i, fold, "train", f, k), p.strategies) for i, f in zip(infos, ffs)]
    test_rows = [select_rows(i.path, fold_rows(i, fold, "test", f, k), p.strategies) for i, f in zip(infos, ffs)]
    if p.input not in ("store", "cartesian"):
        raise EmoganError(f"evaluate.flowcnn.input is store or cartesian, not {p.input!r}")
    if sum(len(r) for r in train_rows) == 0:
        raise EmoganError(f"no labeled rows of strategies {list(p.strategies)} in the training folds of fold {fold}")
    torch.manual_seed(p.seed)
    dev = torch.device(device)
    net = build_from(p.net).to(dev)
    opt = torch.optim.AdamW(net.parameters(), lr=p.lr, weight_decay=p.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: p.lr_gamma ** e)
    ds = StreamingStoreDataset([i.path for i in infos], train_rows, [i.chunk_rows for i in infos], ARRAYS,
                               p.batch_size, seed=p.seed, buffer_chunks=p.buffer_chunks, workers=p.workers)
    loader = make_loader(ds)
    gen = torch.Generator().manual_seed(p.seed)
    history = []
    for epoch in range(p.epochs):
        ds.set_epoch(epoch)
        n_batches = ds.batches_per_epoch(epoch)
        if p.steps_per_epoch:
            n_batches = min(n_batches, int(p.steps_per_epoch))
        net.train()
        tot, n, t0 = 0.0, 0, time.time()
        for _, b in zip(range(n_batches), loader):
            x = resize_flow(b["flow_target"].float(), p.size, rep, clip)
            if p.hflip:
                m = torch.rand(len(x), generator=gen) < 0.5
                if m.any():
                    x[m] = flip_flows(x[m], rep, clip)
            x = judge_input(x, p.size, rep, clip, p.input)
            loss = F.cross_entropy(net(x.to(dev)), b["label"].to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += float(loss.item())
            n += 1
        sched.step()
        history.append({"epoch": epoch, "loss": tot / max(n, 1), "batches": n, "seconds": time.time() - t0})
        log.info("Flow-CNN fold %d epoch %d/%d: loss %.4f (%d batches, %.1f s)", fold, epoch + 1, p.epochs,
                 history[-1]["loss"], n, history[-1]["seconds"])
    net.eval()
    # Accuracy on the held-out fold's frontal ground truth: the judge's ceiling, reported, never used to select.
    conf = np.zeros((len(CLASS_NAMES),) * 2, np.int64)
    with torch.no_grad():
        for info, rows in zip(infos, test_rows):
            if len(rows) == 0:
                continue
            for b in iter_rows(info.path, rows, ARRAYS, 256):
                x = judge_input(b["flow_target"], p.size, rep, clip, p.input)
                pred = net(x.to(dev)).argmax(1).cpu().numpy()
                conf += confusion(b["label"].numpy(), pred)
    acc = accuracy(conf)
    save_file({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, str(out / WEIGHTS))
    from pipeline.params import as_dict

    metrics = {"fold": fold, "test_accuracy_frontal_gt": acc, "test_rows": int(conf.sum()),
               "train_rows": int(sum(len(r) for r in train_rows)), "history": history}
    meta = {"net": p.net, "size": p.size, "input": p.input, "representation": rep, "clip": clip, "fold": fold,
            "stores": [i.path for i in infos], "folds_files": [str(f) if f else None for f in ffs], "folds_k": k,
            "train_subjects": {i.path: subjects_of(i.path, r) for i, r in zip(infos, train_rows)},
            "class_names": list(CLASS_NAMES), "params": as_dict(p), "metrics": {**metrics, "confusion": conf.tolist()}}
    (out / CONFIG).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return metrics
