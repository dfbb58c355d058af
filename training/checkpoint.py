"""Checkpoints (state_dicts + config, torch.load(weights_only=True)), exported weights (safetensors), and a
trained run loaded back for evaluation and inference (`load_run` -> TrainedRun).

Run folder layout: config.json, log.jsonl, checkpoints/epoch_###.pt (every epoch),
weights/<role>.safetensors (the final exported nets), metrics.json, dvclive/.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.errors import EmoganError
from training import flowrep
from training.config import ROLES, RunRecord
from training.models.networks import reads_face

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


# --- a trained run, loaded back -------------------------------------------------------------

@dataclass
class TrainedRun:
    """A trained eMotion-GAN in eval mode: nets by role and the conventions of the stores it learnt from."""

    config: dict[str, Any]
    nets: dict[str, nn.Module]
    representation: str
    clip: float
    size: int            # the model's side (flows and faces are resized to it)
    device: torch.device
    # frontalize(): the mean of G_F(x) and the mirror image of G_F(mirror image of x), in pixels (G_F trains on
    # mirrored rows too; evaluate.gf_mirror_mean and frontalize.gf_mirror_mean set it)
    mirror_mean: bool = False

    @property
    def gf(self) -> nn.Module:
        """G_F: (N,2,size,size) -> (N,2,size,size), store representation."""
        return self.nets["gf"]

    @property
    def gw(self) -> nn.Module:
        """G_W: flow (N,2,size,size), neutral (N,3,size,size) in [-1,1] -> face in [-1,1]."""
        return self.nets["gw"]

    def _flow_in(self, flow: torch.Tensor) -> torch.Tensor:
        f = torch.as_tensor(flow).to(self.device).float()
        return flowrep.resize_flow(f, self.size, self.representation, self.clip)

    @property
    def reads_face(self) -> bool:
        """Whether G_F needs the non-frontal face at each flow's end frame (`nets.gf.face`)."""
        return reads_face(self.gf)

    @torch.no_grad()
    def frontalize(self, flow: torch.Tensor, face_u8: torch.Tensor | None = None) -> torch.Tensor:
        """Non-frontal flows (N,2,S,S), store representation (any S multiple of size) -> frontalized (N,2,size,size).
        `face_u8` (N,3,H,W) uint8 RGB: the non-frontal face at each flow's end frame, for a G_F that reads it."""
        x = self._flow_in(flow)
        f = None
        if face_u8 is not None and self.reads_face:
            f = torch.as_tensor(face_u8).to(self.device).float() / 127.5 - 1.0
        y = self.gf(x, f).float()
        if not self.mirror_mean:
            return y
        rep, clip = self.representation, self.clip
        mirrored = flowrep.flip_flows(self.gf(flowrep.flip_flows(x, rep, clip), None if f is None else f.flip(-1)).float(),
                                      rep, clip)
        return flowrep.encode(0.5 * (flowrep.decode(y, rep, clip) + flowrep.decode(mirrored, rep, clip)), rep, clip)

    @torch.no_grad()
    def warp(self, flow: torch.Tensor, neutral_u8: torch.Tensor) -> torch.Tensor:
        """Frontal flows (N,2,S,S) and neutral faces (N,3,S,S) uint8 RGB -> expressive faces (N,3,size,size) uint8."""
        x = torch.as_tensor(neutral_u8).to(self.device).float() / 127.5 - 1.0
        if x.shape[-1] != self.size:
            x = torch.nn.functional.interpolate(x, size=(self.size, self.size), mode="area")
        y = self.gw(self._flow_in(flow), x).float()
        return ((y + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)

    def to_pixels(self, flow: torch.Tensor) -> torch.Tensor:
        """Store representation (N,2,H,W) -> Cartesian flow in source-crop pixels (N,2,H,W)."""
        return flowrep.decode(torch.as_tensor(flow), self.representation, self.clip)


def read_run_record(run_dir: Path | str) -> RunRecord:
    """A run folder's config.json, parsed (older run folders too); EmoganError when it is not a run folder."""
    d = Path(run_dir)
    cfg_p = d / "config.json"
    if not cfg_p.is_file():
        raise EmoganError(f"{d}: no config.json here: not a run folder of `emogan train`")
    return RunRecord.from_json(json.loads(cfg_p.read_text()), str(cfg_p))


def load_run(run_dir: Path | str, device: str | torch.device = "cpu", epoch: int | None = None) -> TrainedRun:
    """A trained run: exported weights (default), else its newest checkpoint, or checkpoint `epoch`."""
    from training.models.networks import build_nets

    d = Path(run_dir)
    rec = read_run_record(d)
    nets = build_nets(rec.nets)
    weights = {r: d / WEIGHTS_DIR / f"{r}.safetensors" for r in ROLES}
    if epoch is None and all(p.is_file() for p in weights.values()):
        for r in ROLES:
            nets[r].load_state_dict(load_weights(weights[r]))
    else:
        cks = dict(list_checkpoints(d))
        if not cks:
            raise EmoganError(f"{d}: neither exported weights nor checkpoints")
        e = max(cks) if epoch is None else epoch
        if e not in cks:
            raise EmoganError(f"{d}: no checkpoint of epoch {e}; have {sorted(cks)}")
        state = load_checkpoint(cks[e])
        for r in ROLES:
            nets[r].load_state_dict(state["nets"][r])
    dev = torch.device(device)
    for n in nets.values():
        n.to(dev).eval()
    store = rec.store_records[0]
    return TrainedRun(rec.config, nets, store["representation"], float(store["clip"]), int(rec.size or store["size"]),
                      dev)
