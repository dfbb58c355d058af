"""torchrun helpers: where this process sits in the job, and the few collectives the loop needs."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Dist:
    """Where this process sits in a torchrun job (world 1 without torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owned: bool = False  # this code created the process group (and destroys it at the end)

    @property
    def main(self) -> bool:
        """Rank 0 writes files."""
        return self.rank == 0


def init_distributed(device_kind: str) -> Dist:
    """Join the torchrun job when WORLD_SIZE > 1 (NCCL on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    owned = not dist.is_initialized()
    if owned:
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    return Dist(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", "0")),
                owned=owned)


def resolve_device(requested: str | None) -> torch.device:
    """The requested device, else CUDA when present, else CPU."""
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def all_true(flag: bool, d: Dist, device: torch.device) -> bool:
    """Whether `flag` holds on every rank (itself without torchrun)."""
    if d.world == 1:
        return flag
    import torch.distributed as dist

    t = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def broadcast_buffers(nets: dict[str, nn.Module], d: Dist) -> None:
    """Rank 0's buffers (BatchNorm running statistics) to every rank, as DDP does at each forward.

    D_E's running statistics follow each rank's own batches between forwards; at an epoch's end
    the ranks take rank 0's, so that checkpoints and the final nets are the same on every rank.
    """
    import torch.distributed as dist

    for net in nets.values():
        for b in net.buffers():
            dist.broadcast(b, src=0)


def ddp_checksums(nets: dict[str, nn.Module], d: Dist) -> list[float]:
    """Every rank's sum of all parameters and buffers (gathered): equal values mean the ranks hold the same weights."""
    import torch.distributed as dist

    s = torch.tensor([sum(float(p.detach().double().sum()) for net in nets.values()
                          for p in list(net.parameters()) + list(net.buffers()))], dtype=torch.float64)
    out = [torch.zeros(1, dtype=torch.float64) for _ in range(d.world)]
    dist.all_gather(out, s)
    return [float(x.item()) for x in out]
