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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from pipeline.errors import EmoganError
from pipeline.schema import CLASS_NAMES
from pipeline.scoring import accuracy

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

    from pipeline.params import as_dict
    from training.classifier import confusion_of, fit_classifier, save_weights, split_seconds
    from training.data import check_compatible, check_store, iter_rows, mirror_batch, select_rows, split_folds, subjects_of
    from training.flowrep import resize_flow
    from training.models.networks import build_from

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    infos = [check_store(s) for s in stores]
    check_compatible(infos)
    rep, clip = infos[0].representation, infos[0].clip
    train, test = split_folds(infos, fold, folds_files, k)
    train_rows = [select_rows(i.path, r, p.strategies) for i, r in zip(infos, train)]
    test_rows = [select_rows(i.path, r, p.strategies) for i, r in zip(infos, test)]
    if p.input not in ("store", "cartesian"):
        raise EmoganError(f"evaluate.flowcnn.input is store or cartesian, not {p.input!r}")
    if sum(len(r) for r in train_rows) == 0:
        raise EmoganError(f"no labeled rows of strategies {list(p.strategies)} in the training folds of fold {fold}")
    torch.manual_seed(p.seed)
    dev = torch.device(device)
    net = build_from(p.net).to(dev)

    def prepare(b, draw):
        x = resize_flow(b["flow_target"].float(), p.size, rep, clip)
        if draw is not None:
            x = mirror_batch({"flow": x}, draw(len(x)), rep, clip)["flow"]
        return judge_input(x, p.size, rep, clip, p.input), b["label"]

    def after_epoch(epoch: int, rec: dict[str, Any]) -> None:
        log.info("Flow-CNN fold %d epoch %d/%d: loss %.4f (%d batches, %.1f s)", fold, epoch + 1, p.epochs,
                 rec["loss"], rec["batches"], rec["seconds"])

    history, seconds = split_seconds(fit_classifier(net, p, infos, train_rows, ARRAYS, prepare, dev,
                                                    f"{out}: Flow-CNN (evaluate.flowcnn)", after_epoch))
    # Accuracy on the held-out fold's frontal ground truth: the judge's ceiling, reported, never used to select.
    batches = ((judge_input(b["flow_target"], p.size, rep, clip, p.input), b["label"])
               for info, rows in zip(infos, test_rows) if len(rows) for b in iter_rows(info.path, rows, ARRAYS, 256))
    conf = confusion_of(net, batches, dev)
    acc = accuracy(conf)
    save_weights(net, out / WEIGHTS)
    metrics = {"fold": fold, "test_accuracy_frontal_gt": acc, "test_rows": int(conf.sum()),
               "train_rows": int(sum(len(r) for r in train_rows)), "history": history}
    meta = {"net": p.net, "size": p.size, "input": p.input, "representation": rep, "clip": clip, "fold": fold,
            "stores": [i.path for i in infos], "folds_files": [str(f) if f else None for f in folds_files], "folds_k": k,
            "train_subjects": {i.path: subjects_of(i.path, r) for i, r in zip(infos, train_rows)},
            "class_names": list(CLASS_NAMES), "params": as_dict(p), "metrics": {**metrics, "confusion": conf.tolist()}}
    (out / CONFIG).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return {**metrics, "epoch_seconds": seconds}   # the seconds: for `--metrics`, outside the folder
