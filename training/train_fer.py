"""`emogan train-fer`: the project's own image e_FER, trained on the frontal expressive faces of the
training folds only (the held-out fold's subjects are never seen), then saved frozen for the GAN.

Output folder: fer.safetensors (state_dict), fer.json (net config, class names, fold, stores,
metrics), log.jsonl, metrics.json. Loaded by `training.models.efer.load_efer({"name": "own", "path": DIR})`.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.errors import EmoganError
from pipeline.params import as_dict
from pipeline.schema import CLASS_NAMES, STRATEGY_NAMES
from pipeline.scoring import accuracy, confusion, per_class_accuracy
from training.config import FerRunConfig
from training.data import FER_ARRAYS, StoreInfo, StreamingStoreDataset, raw_group, check_compatible, check_store, fold_rows, iter_rows, make_loader
from training.models.efer import FER_CONFIG, FER_WEIGHTS

log = logging.getLogger(__name__)


def _select(info: StoreInfo, rows: np.ndarray, strategies: Sequence[str]) -> np.ndarray:
    """Rows of the chosen strategies with a label (unlabeled sequences cannot teach a classifier)."""
    g = raw_group(info.path)
    names = list(info.attrs.get("strategy_names", STRATEGY_NAMES))
    codes = [names.index(s) for s in strategies]
    strat = np.asarray(g["strategy"][:])[rows]
    label = np.asarray(g["label"][:])[rows]
    return rows[np.isin(strat, codes) & (label >= 0)]


def fer_batch(batch: dict[str, torch.Tensor], add_neutral: bool, apex_code: int,
              flip: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (M,3,S,S) in [0,1] and labels (M,): expressive faces, plus neutral-apex rows' neutral faces as neutral."""
    imgs = [batch["target_image"].float() / 255.0]
    labels = [batch["label"]]
    if add_neutral:
        m = batch["strategy"] == apex_code
        if m.any():
            imgs.append(batch["neutral"][m].float() / 255.0)
            labels.append(torch.zeros(int(m.sum()), dtype=torch.long))
    x, y = torch.cat(imgs), torch.cat(labels)
    if flip is not None:
        f = flip[: len(x)]
        x = torch.where(f.view(-1, 1, 1, 1), x.flip(-1), x)
    return x, y


@torch.no_grad()
def evaluate_fer(model: torch.nn.Module, infos: Sequence[StoreInfo], rows: Sequence[np.ndarray], add_neutral: bool,
                 device: torch.device, batch_size: int = 64) -> dict[str, Any]:
    """Accuracy (overall and per class) of an image FER on the given rows."""
    was = model.training
    model.eval()
    conf = np.zeros((len(CLASS_NAMES), len(CLASS_NAMES)), dtype=np.int64)
    apex = STRATEGY_NAMES.index("neutral_apex")
    for info, r in zip(infos, rows):
        for b in iter_rows(info.path, r, FER_ARRAYS, batch_size):
            x, y = fer_batch(b, add_neutral, apex)
            pred = model(x.to(device)).argmax(1).cpu()
            conf += confusion(y.numpy(), pred.numpy())
    model.train(was)
    return {"accuracy": accuracy(conf) or 0.0, "per_class": per_class_accuracy(conf), "rows": int(conf.sum()),
            "confusion": conf.tolist()}


def run_train_fer(c: FerRunConfig) -> dict[str, Any]:
    """Train the own e_FER as config `c` says (resolve_fer_run); write the output folder; return its metrics."""
    from safetensors.torch import save_file

    from training.models.networks import build_from

    f = c.train_fer
    out = Path(c.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(c.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    infos = [check_store(s) for s in c.stores]
    check_compatible(infos)
    folds = [Path(x) if x else None for x in c.folds_files]
    train_rows = [_select(i, fold_rows(i, c.fold, "train", ff, c.folds_k), f.strategies)
                  for i, ff in zip(infos, folds)]
    test_rows = [_select(i, fold_rows(i, c.fold, "test", ff, c.folds_k), f.strategies)
                 for i, ff in zip(infos, folds)]
    if sum(len(r) for r in train_rows) == 0:
        raise EmoganError(f"no labeled rows of strategies {list(f.strategies)} in the training folds")
    torch.manual_seed(f.seed)
    model = build_from(f.net).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=f.lr, weight_decay=f.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: f.lr_gamma ** e)
    ds = StreamingStoreDataset(c.stores, train_rows, [i.chunk_rows for i in infos], FER_ARRAYS, f.batch_size,
                               seed=f.seed, buffer_chunks=f.buffer_chunks, workers=f.workers)
    loader = make_loader(ds)
    apex = STRATEGY_NAMES.index("neutral_apex")
    log_path = out / "log.jsonl"
    log_path.write_text("")
    ev: dict[str, Any] = {}
    for epoch in range(f.epochs):
        ds.set_epoch(epoch)
        n_batches = ds.batches_per_epoch(epoch)
        if f.steps_per_epoch:
            n_batches = min(n_batches, f.steps_per_epoch)
        gen = torch.Generator().manual_seed(f.seed * 1000 + epoch)
        tot, n, t0 = 0.0, 0, time.time()
        for _, batch in zip(range(n_batches), loader):
            flip = (torch.rand(2 * f.batch_size, generator=gen) < 0.5) if f.hflip else None
            x, y = fer_batch(batch, f.add_neutral_frames, apex, flip)
            loss = F.cross_entropy(model(x.to(device)), y.to(device))
            if not torch.isfinite(loss):
                raise EmoganError(f"{out}: e_FER loss became {loss.item()} at epoch {epoch + 1}; lower train_fer.lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += loss.item()
            n += 1
        sched.step()
        ev = evaluate_fer(model, infos, test_rows, f.add_neutral_frames, device)
        rec = {"event": "epoch", "epoch": epoch, "loss": tot / max(n, 1), "test_accuracy": ev["accuracy"],
               "seconds": time.time() - t0}
        with log_path.open("a") as fh:
            fh.write(json.dumps(rec) + "\n")
        log.info("e_FER epoch %d/%d: loss %.4f, held-out accuracy %.3f", epoch + 1, f.epochs, rec["loss"], ev["accuracy"])
    model.eval()
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(out / FER_WEIGHTS))
    metrics = {"test_accuracy": ev.get("accuracy", 0.0), "test_per_class": ev.get("per_class", {}),
               "test_rows": ev.get("rows", 0), "train_rows": int(sum(len(r) for r in train_rows)), "fold": c.fold}
    meta = {**as_dict(c), "net": f.net, "class_names": list(CLASS_NAMES), "metrics": {**metrics, "confusion": ev.get("confusion")}}
    (out / FER_CONFIG).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return metrics
