"""Fitting a classifier on store rows: the one loop shared by the own image e_FER (`emogan train-fer`, here)
and the motion-domain judge (`emogan train-flowcnn`, training/evaluation/flowcnn.py).

`fit_classifier`: cross-entropy, AdamW, every learning rate x lr_gamma after each epoch, the chunk-shuffling
stream of training/data.py, a random half of each batch mirrored when the spec's `hflip` is on (drawn by
MirrorDraws, the project's one seeding rule), a non-finite loss stops the run naming it.

`run_train_fer` writes the e_FER's output folder: fer.safetensors (state_dict), fer.json (net config,
class names, fold, stores, metrics), log.jsonl, metrics.json, without wall-clock time (a re-run writes the same
bytes; the seconds per epoch are in the returned metrics, which `--metrics` writes outside the folder). It is
trained on the frontal expressive faces of the training folds only (the held-out fold's subjects are never
seen), then saved frozen for the GAN and loaded by `training.models.efer.load_efer({"name": "own", "path": DIR})`.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from pipeline.console import progress_enabled
from pipeline.errors import EmoganError
from pipeline.params import as_dict
from pipeline.schema import CLASS_NAMES, STRATEGY_NAMES
from pipeline.scoring import accuracy, confusion, per_class_accuracy
from training.config import FerRunConfig
from training.data import (FER_ARRAYS, MirrorDraws, StoreInfo, StreamingStoreDataset, check_compatible, check_store,
                           iter_rows, make_loader, mirror_batch, raw_group, select_rows, split_folds)
from training.models.efer import FER_CONFIG, FER_INPUTS, FER_WEIGHTS, change_image

log = logging.getLogger(__name__)

# prepare(loader batch, draw) -> (inputs (M,...), labels (M,)); draw(M) gives the rows to mirror, None: no mirroring.
Prepare = Callable[[dict[str, torch.Tensor], Optional[Callable[[int], torch.Tensor]]], tuple[torch.Tensor, torch.Tensor]]


class ClassifierSpec(Protocol):
    """What fit_classifier reads of a params section (`train_fer`, `evaluate.flowcnn`)."""

    seed: int
    epochs: int
    batch_size: int
    steps_per_epoch: Optional[int]
    lr: float
    weight_decay: float
    lr_gamma: float
    hflip: bool
    buffer_chunks: int
    workers: int


def fit_classifier(model: torch.nn.Module, spec: ClassifierSpec, infos: Sequence[StoreInfo],
                   rows: Sequence[np.ndarray], arrays: Sequence[str], prepare: Prepare, device: torch.device,
                   where: str, after_epoch: Callable[[int, dict[str, Any]], None] | None = None,
                   class_weights: torch.Tensor | None = None) -> list[dict[str, Any]]:
    """Train `model` in place on `rows` of the stores; one record per epoch (loss, batches, seconds).

    `after_epoch(epoch, record)` runs after each epoch's scheduler step (it may add to the record);
    `class_weights` (C,) weigh the cross-entropy per true class (None: every class alike).
    """
    weight = None if class_weights is None else class_weights.float().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: spec.lr_gamma ** e)
    ds = StreamingStoreDataset([i.path for i in infos], list(rows), [i.chunk_rows for i in infos], tuple(arrays),
                               spec.batch_size, seed=spec.seed, buffer_chunks=spec.buffer_chunks, workers=spec.workers)
    loader = make_loader(ds)
    mirror = MirrorDraws(spec.seed)
    history: list[dict[str, Any]] = []
    for epoch in range(spec.epochs):
        ds.set_epoch(epoch)
        mirror.start_epoch(epoch)
        n_batches = ds.steps_in_epoch(epoch, spec.steps_per_epoch, where)
        model.train()
        tot, n, t0 = 0.0, 0, time.time()
        bar = tqdm(total=n_batches, desc=f"{where.rsplit(': ', 1)[-1]} epoch {epoch + 1}/{spec.epochs}", unit="step", leave=False,
                   disable=not progress_enabled())
        for _, batch in zip(range(n_batches), loader):
            bar.update(1)
            x, y = prepare(batch, mirror.draw if spec.hflip else None)
            loss = F.cross_entropy(model(x.to(device)), y.to(device), weight=weight)
            if not torch.isfinite(loss):
                raise EmoganError(f"{where}: loss became {loss.item()} at epoch {epoch + 1}; lower the learning rate")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += float(loss.item())
            n += 1
        bar.close()
        sched.step()
        rec = {"epoch": epoch, "loss": tot / max(n, 1), "batches": n, "seconds": time.time() - t0}
        if after_epoch is not None:
            after_epoch(epoch, rec)
        history.append(rec)
    model.eval()
    return history


def split_seconds(history: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[float]]:
    """A fit's epoch records without their wall-clock seconds (what an output folder may hold: a re-run then writes
    the same bytes, and DVC does not re-run the stages after it) and the seconds (for the `--metrics` file)."""
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history], [r["seconds"] for r in history]


@torch.no_grad()
def confusion_of(model: torch.nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                 device: torch.device) -> np.ndarray:
    """(C,C) confusion matrix (rows: true class) of `model` over (inputs, labels) batches; its mode is restored."""
    was = model.training
    model.eval()
    conf = np.zeros((len(CLASS_NAMES), len(CLASS_NAMES)), dtype=np.int64)
    for x, y in batches:
        pred = model(x.to(device)).argmax(1).cpu()
        conf += confusion(y.numpy(), pred.numpy())
    model.train(was)
    return conf


def save_weights(model: torch.nn.Module, path: Path) -> None:
    """A model's state_dict as safetensors (CPU, contiguous)."""
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(path))


# --- the own image e_FER --------------------------------------------------------------------

def fer_batch(batch: dict[str, torch.Tensor], add_neutral: bool, apex_code: int,
              fer_input: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (M,3,S,S) in [0,1] and labels (M,): expressive faces, plus neutral-apex rows' neutral faces as neutral.
    `fer_input` `change`: each face's change from the row's neutral face (models.efer.change_image) instead."""
    face, neutral = batch["target_image"].float() / 255.0, batch["neutral"].float() / 255.0
    imgs = [face if fer_input == "image" else change_image(face, neutral)]
    labels = [batch["label"]]
    if add_neutral:
        m = batch["strategy"] == apex_code
        if m.any():
            nm = neutral[m]
            imgs.append(nm if fer_input == "image" else change_image(nm, nm))
            labels.append(torch.zeros(int(m.sum()), dtype=torch.long))
    return torch.cat(imgs), torch.cat(labels)


def jitter_faces(x: torch.Tensor, amount: float, gen: torch.Generator) -> torch.Tensor:
    """Faces (M,3,S,S) each scaled by 1 +- `amount` and shifted by +- `amount` of the side (uniform draws from
    `gen`), borders repeated: the same expression a little further, nearer or off-centre."""
    if amount <= 0 or len(x) == 0:
        return x
    m = len(x)
    u = torch.rand(m, 3, generator=gen) * 2 - 1
    s = 1.0 + amount * u[:, 0]
    theta = torch.zeros(m, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / s             # output = input zoomed by s
    theta[:, :, 2] = 2.0 * amount * u[:, 1:]              # normalized coords span 2: a shift of amount * side
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def class_weights_of(infos: Sequence[StoreInfo], rows: Sequence[np.ndarray], add_neutral: bool) -> torch.Tensor:
    """(C,) inverse class frequency of the faces e_FER trains on (the rows' labels, plus one neutral face per
    neutral-apex row when `add_neutral`), scaled to mean 1 over the classes present; absent classes weigh 0."""
    counts = np.zeros(len(CLASS_NAMES), np.float64)
    apex = STRATEGY_NAMES.index("neutral_apex")
    for info, r in zip(infos, rows):
        g = raw_group(info.path)
        lab = np.asarray(g["label"][:])[r]
        counts += np.bincount(lab[lab >= 0], minlength=len(CLASS_NAMES))[:len(CLASS_NAMES)]
        if add_neutral:
            counts[0] += int((np.asarray(g["strategy"][:])[r] == apex).sum())
    w = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)
    return torch.from_numpy(w / w[counts > 0].mean())


def evaluate_fer(model: torch.nn.Module, infos: Sequence[StoreInfo], rows: Sequence[np.ndarray], add_neutral: bool,
                 device: torch.device, fer_input: str, batch_size: int = 64) -> dict[str, Any]:
    """Accuracy (overall and per class) of an image FER (reading `fer_input`: image or change) on the given rows."""
    apex = STRATEGY_NAMES.index("neutral_apex")
    batches = (fer_batch(b, add_neutral, apex, fer_input) for info, r in zip(infos, rows)
               for b in iter_rows(info.path, r, FER_ARRAYS, batch_size))
    conf = confusion_of(model, batches, device)
    per_class = per_class_accuracy(conf)
    recalls = [v for v in per_class.values() if v is not None]
    return {"accuracy": accuracy(conf) or 0.0, "balanced_accuracy": float(np.mean(recalls)) if recalls else 0.0,
            "per_class": per_class, "rows": int(conf.sum()), "confusion": conf.tolist()}


def run_train_fer(c: FerRunConfig) -> dict[str, Any]:
    """Train the own e_FER as config `c` says (config.resolve_fer_run); write the output folder; return its metrics."""
    from training.models.networks import build_from

    f = c.train_fer
    if f.input not in FER_INPUTS:
        raise EmoganError(f"train_fer.input {f.input!r}; expected one of {', '.join(FER_INPUTS)}")
    out = Path(c.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(c.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    infos = [check_store(s) for s in c.stores]
    check_compatible(infos)
    train, test = split_folds(infos, c.fold, c.folds_files, c.folds_k)
    train_rows = [select_rows(i.path, r, f.strategies) for i, r in zip(infos, train)]
    test_rows = [select_rows(i.path, r, f.strategies) for i, r in zip(infos, test)]
    if sum(len(r) for r in train_rows) == 0:
        raise EmoganError(f"no labeled rows of strategies {list(f.strategies)} in the training folds")
    torch.manual_seed(f.seed)
    model = build_from(f.net).to(device)
    apex = STRATEGY_NAMES.index("neutral_apex")
    rep, clip = infos[0].representation, infos[0].clip
    gen = torch.Generator().manual_seed(f.seed)
    weights = class_weights_of(infos, train_rows, f.add_neutral_frames) if f.class_balance else None

    def prepare(batch, draw):
        x, y = fer_batch(batch, f.add_neutral_frames, apex, f.input)
        if draw is not None:
            x = mirror_batch({"image": x}, draw(len(x)), rep, clip)["image"]
        return jitter_faces(x, f.jitter, gen), y

    log_path = out / "log.jsonl"
    log_path.write_text("")
    ev: dict[str, Any] = {}

    def after_epoch(epoch: int, rec: dict[str, Any]) -> None:
        nonlocal ev
        ev = evaluate_fer(model, infos, test_rows, f.add_neutral_frames, device, f.input)
        line = {"event": "epoch", "epoch": epoch, "loss": rec["loss"], "test_accuracy": ev["accuracy"],
                "test_balanced_accuracy": ev["balanced_accuracy"]}
        with log_path.open("a") as fh:
            fh.write(json.dumps(line) + "\n")
        log.info("e_FER epoch %d/%d: loss %.4f, held-out accuracy %.3f (balanced %.3f), %.1f s", epoch + 1, f.epochs,
                 rec["loss"], ev["accuracy"], ev["balanced_accuracy"], rec["seconds"])

    _, seconds = split_seconds(fit_classifier(model, f, infos, train_rows, FER_ARRAYS, prepare, device,
                                              f"{out}: e_FER (train_fer)", after_epoch, weights))
    save_weights(model, out / FER_WEIGHTS)
    metrics = {"test_accuracy": ev["accuracy"], "test_balanced_accuracy": ev["balanced_accuracy"],
               "test_per_class": ev["per_class"], "test_rows": ev["rows"],
               "train_rows": int(sum(len(r) for r in train_rows)), "fold": c.fold}
    meta = {**as_dict(c), "net": f.net, "class_names": list(CLASS_NAMES), "metrics": {**metrics, "confusion": ev["confusion"]}}
    (out / FER_CONFIG).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return {**metrics, "epoch_seconds": seconds}   # the seconds: for `--metrics`, outside the folder
