"""Checkpoints (state_dicts + config, torch.load(weights_only=True)) and exported weights (safetensors).

Run folder layout: config.json, log.jsonl, checkpoints/epoch_###.pt (every epoch),
weights/<role>.safetensors (the final exported nets), metrics.json, dvclive/.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.errors import EmoganError

CKPT_DIR = "checkpoints"
WEIGHTS_DIR = "weights"
_CKPT_RE = re.compile(r"^epoch_(\d{3,})\.pt$")


def checkpoint_path(run_dir: Path, epoch: int) -> Path:
    """Path of the checkpoint written after `epoch` completed epochs."""
    return Path(run_dir) / CKPT_DIR / f"epoch_{epoch:03d}.pt"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(epoch, path) of the run's checkpoints, oldest first."""
    d = Path(run_dir) / CKPT_DIR
    if not d.is_dir():
        return []
    out = [(int(m.group(1)), p) for p in d.iterdir() if (m := _CKPT_RE.match(p.name))]
    return sorted(out)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write a checkpoint atomically (temp file + rename): a kill mid-write never leaves a broken one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with weights_only=True (no pickled code runs); a clear error when unreadable."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise EmoganError(f"{path}: checkpoint not found") from None
    except Exception as e:  # noqa: BLE001 - torch raises many types for a corrupt file
        raise EmoganError(f"{path}: cannot read this checkpoint ({type(e).__name__}: {e})") from None


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """Keep the newest `keep` checkpoints (0 or less keeps all)."""
    if keep <= 0:
        return
    for _, p in list_checkpoints(run_dir)[:-keep]:
        p.unlink(missing_ok=True)


def export_weights(run_dir: Path, nets: dict[str, nn.Module], config: dict[str, Any]) -> dict[str, str]:
    """Write each net's state_dict as weights/<role>.safetensors (config JSON in the metadata)."""
    from safetensors.torch import save_file

    d = Path(run_dir) / WEIGHTS_DIR
    d.mkdir(parents=True, exist_ok=True)
    meta = {"config": json.dumps(config, sort_keys=True)}
    out = {}
    for role, net in nets.items():
        sd = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
        p = d / f"{role}.safetensors"
        tmp = p.with_name(f".{p.name}.tmp")
        save_file(sd, str(tmp), metadata={**meta, "role": role})
        os.replace(tmp, p)
        out[role] = str(p)
    return out


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors state_dict; a clear error when missing."""
    from safetensors.torch import load_file

    if not Path(path).is_file():
        raise EmoganError(f"{path}: weights file not found (did the run finish? checkpoints are in {CKPT_DIR}/)")
    return load_file(str(path))
