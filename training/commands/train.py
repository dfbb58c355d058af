"""Thin typer commands of the trainer: `emogan train` and `emogan train-fer` (torch imported inside)."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import List, Optional

import typer

from pipeline.params import PARAMS_OPTION
from training.commands.choices import Ablation, Config, Device, Efer

log = logging.getLogger(__name__)

STORES_HELP = "training store(s) (Zarr, from `emogan normalize`); several are merged, each evaluated on its own"
FOLDS_HELP = ("folds file (subject,fold) per store, in store order; default <paths.manifests>/<dataset>_folds.csv, "
              "else the rule: subjects sorted, dealt round-robin over train.folds_k")


def train_command(
    stores: List[Path] = typer.Argument(..., help=STORES_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="run folder (e.g. models/RUN)"),
    fold: Optional[int] = typer.Option(None, "--fold", help="held-out test fold (default params train.fold)"),
    config: Optional[Config] = typer.Option(None, "--config", help="params.yaml train sub-config (default train.config)"),
    folds: Optional[List[Path]] = typer.Option(None, "--folds-file", help=FOLDS_HELP),
    efer: Optional[Efer] = typer.Option(None, "--efer", help="e_FER: the project's own, the FER2013 mini-Xception, or a file"),
    efer_path: Optional[Path] = typer.Option(None, "--efer-path", help="own: train-fer folder; file: .onnx "
                                             "(.pt/.ts/.pt2 with --trust-pickle)"),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="allow an e_FER file in a pickle-based format "
                                      "(TorchScript, torch.export): loading one runs its code; only for your own files"),
    efer_classes: Optional[str] = typer.Option(None, "--efer-classes", help="file: its class order, comma-separated"),
    epochs: Optional[int] = typer.Option(None, "--epochs"),
    gw_epochs: Optional[int] = typer.Option(None, "--gw-epochs", help="G_W's epochs: past --epochs it trains alone, "
                                            "the other nets frozen (params gw_epochs)"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size"),
    steps_per_epoch: Optional[int] = typer.Option(None, "--steps-per-epoch", help="cap batches per epoch"),
    workers: Optional[int] = typer.Option(None, "--workers", help="DataLoader worker processes (spawned)"),
    seed: Optional[int] = typer.Option(None, "--seed"),
    device: Optional[Device] = typer.Option(None, "--device", help="default: cuda when present"),
    live_dir: Optional[Path] = typer.Option(None, "--live-dir", help="dvclive folder (default OUT/dvclive)"),
    ablation: Optional[Ablation] = typer.Option(None, "--ablation", help="Table IV variant of params train.ablations: "
                                           "those L_GF terms are zeroed"),
    resume: bool = typer.Option(False, "--resume", help="continue from the run folder's last checkpoint"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the resolved config, check stores and folds, exit"),
    params_file: Optional[Path] = PARAMS_OPTION,
) -> None:
    """Train eMotion-GAN (G_F, D_P, D_E, G_W) on the training folds; multi-GPU with `torchrun ... -m emogan train`."""
    from pipeline.params import as_dict
    from training.config import resolve_run
    from training.data import describe_split

    c = resolve_run(params_file, stores=stores, out=out, config=config, fold=fold, folds=folds, live_dir=live_dir,
                    device=device, efer=efer, efer_path=efer_path, efer_classes=efer_classes, ablation=ablation,
                    resume=resume, trust_pickle=trust_pickle, epochs=epochs, gw_epochs=gw_epochs, batch_size=batch_size,
                    steps_per_epoch=steps_per_epoch,
                    workers=workers, seed=seed)
    if dry_run:
        typer.echo(json.dumps(as_dict(c), indent=2, sort_keys=True))
        typer.echo(describe_split(c.stores, c.fold, c.folds_files, c.folds_k))
        return
    from training.loop import run_training

    m = run_training(c)
    typer.echo("; ".join(f"{name}: held-out fold {c.fold} EPE {e['epe_frontalized_px']:.3f} px frontalized vs "
                         f"{e['epe_input_px']:.3f} px input ({100 * e['epe_reduction']:.1f}% lower; a zero flow: "
                         f"{e['epe_zero_px']:.3f} px)" for name, e in m.get("test", {}).items()))


def train_fer_command(
    stores: List[Path] = typer.Argument(..., help=STORES_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="output folder (fer.safetensors, fer.json)"),
    fold: Optional[int] = typer.Option(None, "--fold", help="held-out test fold: its subjects are never trained on"),
    folds: Optional[List[Path]] = typer.Option(None, "--folds-file", help=FOLDS_HELP),
    epochs: Optional[int] = typer.Option(None, "--epochs"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size"),
    steps_per_epoch: Optional[int] = typer.Option(None, "--steps-per-epoch"),
    seed: Optional[int] = typer.Option(None, "--seed"),
    device: Optional[Device] = typer.Option(None, "--device", help="default: cuda when present"),
    metrics: Optional[Path] = typer.Option(None, "--metrics", help="also write the metrics JSON here (DVC metrics)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the resolved config and exit"),
    params_file: Optional[Path] = PARAMS_OPTION,
) -> None:
    """Train the project's own image e_FER on the frontal expressive faces of the training folds, then freeze it."""
    from pipeline.params import as_dict
    from training.config import resolve_fer_run

    c = resolve_fer_run(params_file, stores=stores, out=out, fold=fold, folds=folds, device=device, epochs=epochs,
                        batch_size=batch_size, steps_per_epoch=steps_per_epoch, seed=seed)
    if dry_run:
        typer.echo(json.dumps(as_dict(c), indent=2, sort_keys=True))
        return
    from pipeline.lock import writer_lock
    from training.classifier import run_train_fer

    with writer_lock(c.out):  # one writer per output folder (pipeline/lock.py)
        m = run_train_fer(c)
    if metrics is not None:
        metrics.parent.mkdir(parents=True, exist_ok=True)
        metrics.write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")
    typer.echo(f"e_FER: held-out fold {c.fold} accuracy {m['test_accuracy']:.3f} (mean per-class recall "
               f"{m['test_balanced_accuracy']:.3f}) on {m['test_rows']} faces "
               f"(trained on {m['train_rows']} rows)")
