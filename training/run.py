"""Loading a trained run for evaluation and inference: nets rebuilt by name from config.json, weights from
weights/*.safetensors (or a checkpoint), plus the store conventions (representation, clip, size).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.errors import EmoganError
from training import checkpoint as ck
from training import flowrep
from training.config import ROLES


@dataclass
class TrainedRun:
    """A trained eMotion-GAN in eval mode: nets by role and the conventions of the stores it learnt from."""

    config: dict[str, Any]
    nets: dict[str, nn.Module]
    representation: str
    clip: float
    size: int            # the model's side (flows and faces are resized to it)
    device: torch.device
    clip_input: float | None = None   # clip of G_F's input flows (the stores' clip_input); None: `clip`

    @property
    def input_clip(self) -> float:
        """The clip G_F's input flows are encoded with."""
        return self.clip if self.clip_input is None else self.clip_input

    @property
    def gf(self) -> nn.Module:
        """G_F: (N,2,size,size) -> (N,2,size,size), store representation."""
        return self.nets["gf"]

    @property
    def gw(self) -> nn.Module:
        """G_W: flow (N,2,size,size), neutral (N,3,size,size) in [-1,1] -> face in [-1,1]."""
        return self.nets["gw"]

    def _flow_in(self, flow: torch.Tensor, clip: float | None = None) -> torch.Tensor:
        from training.loop import resize_flow

        f = torch.as_tensor(flow).to(self.device).float()
        return resize_flow(f, self.size, self.representation, self.clip if clip is None else clip)

    @torch.no_grad()
    def frontalize(self, flow: torch.Tensor) -> torch.Tensor:
        """Non-frontal flows (N,2,S,S), store representation with the input clip (any S multiple of size)
        -> frontalized (N,2,size,size), encoded with `clip`."""
        return self.gf(self._flow_in(flow, self.input_clip)).float()

    @torch.no_grad()
    def warp(self, flow: torch.Tensor, neutral_u8: torch.Tensor) -> torch.Tensor:
        """Frontal flows (N,2,S,S) and neutral faces (N,3,S,S) uint8 RGB -> expressive faces (N,3,size,size) uint8."""
        x = torch.as_tensor(neutral_u8).to(self.device).float() / 127.5 - 1.0
        if x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="area")
        y = self.gw(self._flow_in(flow), x).float()
        return ((y + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)

    def to_pixels(self, flow: torch.Tensor) -> torch.Tensor:
        """Store representation (N,2,H,W) -> Cartesian flow in source-crop pixels (N,2,H,W)."""
        return flowrep.decode(torch.as_tensor(flow), self.representation, self.clip)


def load_run(run_dir: Path | str, device: str | torch.device = "cpu", epoch: int | None = None) -> TrainedRun:
    """A trained run: exported weights (default), else its newest checkpoint, or checkpoint `epoch`."""
    from training.loop import build_nets

    d = Path(run_dir)
    cfg_p = d / "config.json"
    if not cfg_p.is_file():
        raise EmoganError(f"{d}: no config.json here: not a run folder of `emogan train`")
    config = json.loads(cfg_p.read_text())
    nets = build_nets(config["train"])
    weights = {r: d / ck.WEIGHTS_DIR / f"{r}.safetensors" for r in ROLES}
    if epoch is None and all(p.is_file() for p in weights.values()):
        for r in ROLES:
            nets[r].load_state_dict(ck.load_weights(weights[r]))
    else:
        cks = dict(ck.list_checkpoints(d))
        if not cks:
            raise EmoganError(f"{d}: neither exported weights nor checkpoints")
        e = max(cks) if epoch is None else epoch
        if e not in cks:
            raise EmoganError(f"{d}: no checkpoint of epoch {e}; have {sorted(cks)}")
        state = ck.load_checkpoint(cks[e])
        for r in ROLES:
            nets[r].load_state_dict(state["nets"][r])
    dev = torch.device(device)
    for n in nets.values():
        n.to(dev).eval()
    store = config["runtime"]["stores"][0]
    size = config["train"].get("size") or store["size"]
    return TrainedRun(config, nets, store["representation"], float(store["clip"]), int(size), dev,
                      float(store.get("clip_input", store["clip"])))
