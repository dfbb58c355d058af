"""The eMotion-GAN training loop (paper section III-D, IV-C): one config dict in, a trained run folder out.

Nets are built by name from the config (`training.registry`); the loop knows their roles only:
gf (G_F), dp (D_P), de (D_E), gw (G_W), plus the frozen e_FER and perceptual backbone. One
step: G_F forward; D_P and D_E update on real vs generated flows; G_W update on its image
rows; G_F update on L_GF (with L_GW through G_W from epoch e_c on). Under torchrun each rank
holds DistributedDataParallel copies; discriminators and G_W are called through their bare
modules inside G_F's loss so that only G_F's gradients are synchronized there.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.errors import EmoganError
from training import checkpoint as ck
from training import flowrep
from training import losses as L
from training.config import ROLES
from training.data import DE_ARRAYS, GAN_ARRAYS, StreamingStoreDataset, check_compatible, check_store, fold_rows, iter_rows, make_loader
from training.flowcnn import flip_flows

log = logging.getLogger(__name__)
LOSS_NAMES = ("gf", "gan", "epe", "char", "gw", "gw_l1", "gw_perc", "gw_fer", "dp", "de")


class TrainingDiverged(EmoganError):
    """A loss became NaN or infinite: the run stopped, its last good checkpoint is kept."""


# --- distributed -----------------------------------------------------------------------------

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


def _all_true(flag: bool, d: Dist, device: torch.device) -> bool:
    if d.world == 1:
        return flag
    import torch.distributed as dist

    t = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


# --- building --------------------------------------------------------------------------------

def build_nets(t: dict[str, Any]) -> dict[str, nn.Module]:
    """The four trained nets of a config's `nets` mapping, by role."""
    from training.registry import build_from

    return {role: build_from(t["nets"][role]) for role in ROLES}


def make_optimizer(params: Any, spec: dict[str, Any], fused: bool = True) -> torch.optim.Optimizer:
    """Adam or SGD from a config mapping ({kind, lr, betas | momentum, weight_decay})."""
    kind = spec["kind"]
    wd = float(spec.get("weight_decay", 0.0))
    if kind == "adam":
        # PERF-NOTES: the default Adam took 698 ms/step on CPU for 160.7M params, fused 51 ms.
        extra = {"fused": True} if fused else {"foreach": True}
        return torch.optim.Adam(params, lr=float(spec["lr"]), betas=tuple(spec.get("betas", (0.9, 0.999))),
                                weight_decay=wd, **extra)
    return torch.optim.SGD(params, lr=float(spec["lr"]), momentum=float(spec.get("momentum", 0.0)),
                           weight_decay=wd, foreach=True)


def resolve_device(requested: str | None) -> torch.device:
    """The requested device, else CUDA when present, else CPU."""
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast_ctx(t: dict[str, Any], device: torch.device) -> Callable[[], Any]:
    """bf16 autocast on CUDA (amp auto|on), on CPU only when amp is on."""
    on = t["amp"] == "on" or (t["amp"] == "auto" and device.type == "cuda")
    if not on:
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)


# --- one step --------------------------------------------------------------------------------

def resize_flow(flow: torch.Tensor, size: int, representation: str, clip: float) -> torch.Tensor:
    """(N,2,S,S) normalized flow -> (N,2,size,size): averaged as Cartesian (u, v), never as magnitude/angle."""
    if flow.shape[-1] == size:
        return flow
    px = flowrep.decode(flow, representation, clip)
    px = F.interpolate(px, size=(size, size), mode="area")
    return flowrep.encode(px, representation, clip)


def to_device(batch: dict[str, torch.Tensor], device: torch.device, size: int | None = None,
              representation: str = "polar", clip: float = 10.0,
              clip_input: float | None = None) -> dict[str, torch.Tensor]:
    """Batch from the loader to the device: flows float32, images float in [-1,1], codes int64; resized to `size`.

    `flow_input` is encoded with `clip_input` (the store's, None: `clip`), the other flows with `clip`."""
    out = {}
    for k, v in batch.items():
        v = v.to(device, non_blocking=True)
        if v.dtype == torch.uint8:
            v = v.float() / 127.5 - 1.0
            if size is not None and v.shape[-1] != size:
                v = F.interpolate(v, size=(size, size), mode="area")
        elif v.is_floating_point():
            v = v.float()
            if size is not None and v.ndim == 4:
                c = clip_input if (k == "flow_input" and clip_input is not None) else clip
                v = resize_flow(v, size, representation, c)
        out[k] = v
    return out


def mirror_batch(batch: dict[str, torch.Tensor], representation: str, clip: float,
                 gen: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Device batch with a random half of its rows mirrored left-right: flows through (u, v) with u negated,
    faces flipped. A mirrored face makes the same expression, so labels stay."""
    n = batch["label"].shape[0]
    sel = torch.rand(n, generator=gen) < 0.5
    if not bool(sel.any()):
        return batch
    idx = torch.nonzero(sel).flatten().to(batch["label"].device)
    out = dict(batch)
    for k, v in batch.items():
        if v.ndim != 4:
            continue
        part = v.index_select(0, idx)
        if k.startswith("flow"):
            part = flip_flows(part, representation, clip)
        else:
            part = part.flip(-1)
        out[k] = v.index_copy(0, idx, part.to(v.dtype))
    return out


def de_step(batch: dict[str, torch.Tensor], c: "StepContext") -> torch.Tensor:
    """One D_E update on real frontal flows (the warm-up before the GAN steps); its loss, detached."""
    with c.amp():
        logits = c.wrapped["de"](batch["flow_target"]).float()
    loss = L.de_loss(logits, batch["label"])
    c.optims["de"].zero_grad(set_to_none=True)
    loss.backward()
    c.optims["de"].step()
    return loss.detach()


def image_rows(step: torch.Tensor, image_steps: list[int] | None) -> torch.Tensor:
    """(N,) bool: rows whose step lo < step <= hi feed the image losses (all rows when None)."""
    if image_steps is None:
        return torch.ones_like(step, dtype=torch.bool)
    lo, hi = image_steps
    return (step > lo) & (step <= hi)


@dataclass
class StepContext:
    """Everything a GAN step needs besides the batch."""

    nets: dict[str, nn.Module]      # bare modules
    wrapped: dict[str, nn.Module]   # DDP wrappers (or the bare modules)
    optims: dict[str, torch.optim.Optimizer]
    efer: nn.Module
    perc: Callable[[torch.Tensor], list[torch.Tensor]]
    t: dict[str, Any]
    amp: Callable[[], Any]
    dist: Dist
    device: torch.device
    representation: str = "polar"   # the stores' flow representation and clip (source pixels)
    clip: float = 10.0
    step_weights: torch.Tensor | None = None   # (max_step + 1,) weight of L_epe/L_char rows by pair step


def loss_space(flow: torch.Tensor, c: StepContext) -> torch.Tensor:
    """Flows (N,2,H,W) as L_epe and L_char see them: Cartesian (u, v)/clip, or the store's representation.

    An end-point error is a distance between vectors; in the polar representation a difference of
    angles is not one, and the angle of a pixel that does not move is noise the net cannot learn.
    Decoding first weights angle errors by the motion's magnitude. For Cartesian stores both agree.
    """
    if c.t["flow_loss_space"] == "representation":
        return flow
    return flowrep.decode(flow, c.representation, c.clip) / c.clip


def flow_row_weights(step: torch.Tensor, c: StepContext) -> torch.Tensor | None:
    """(N,) weights of the batch's rows in L_epe and L_char (`flow_loss_weighting`); None: a plain mean."""
    if c.step_weights is None:
        return None
    table = c.step_weights.to(step.device)
    return table[step.clamp(0, len(table) - 1)]


def step_weights_for(infos: list[Any], rows: list[np.ndarray], t: dict[str, Any]) -> torch.Tensor | None:
    """The step-weight table of `flow_loss_weighting` from the training rows' pair steps (None for `none`)."""
    from training.data import raw_group

    steps = np.concatenate([np.asarray(raw_group(i.path)["step"][:])[r] for i, r in zip(infos, rows)])
    w = L.step_weight_table(steps, t.get("flow_loss_weighting", "none"), t.get("flow_loss_weight_cap"))
    return None if w is None else torch.from_numpy(w)


def _gw_losses(x_gen: torch.Tensor, x_star: torch.Tensor, labels: torch.Tensor, c: StepContext) -> dict[str, torch.Tensor]:
    """L_1, L_perc, L_eFER and L_GW for generated faces (N,3,S,S) in [-1,1]."""
    a = c.t["alphas"]
    x_gen = x_gen.float()
    gen01, star01 = (x_gen + 1) * 0.5, (x_star + 1) * 0.5
    l1 = L.l1_image(x_gen, x_star)
    with c.amp():
        perc = L.perceptual(c.perc, gen01, star01) if a[1] else x_gen.new_zeros(())
        fer = L.efer_loss(c.efer(gen01), labels) if a[2] else x_gen.new_zeros(())
    return {"gw_l1": l1, "gw_perc": perc.float(), "gw_fer": fer.float(),
            "gw": L.total_gw(l1, perc.float(), fer.float(), a)}


def _image_selection(mask: torch.Tensor, c: StepContext) -> tuple[torch.Tensor | None, float]:
    """Indices of the image rows and their weight (1, or 0 for a stand-in row); None when no rank has any."""
    idx = torch.nonzero(mask).flatten()
    has = idx.numel() > 0
    # Every rank must agree on running G_W, or DDP's collective calls would not match.
    if _all_true(not has, c.dist, c.device):
        return None, 0.0
    if not has:
        # This rank has no image rows but another has: one stand-in row, weighted 0.
        return torch.zeros(1, dtype=torch.long, device=c.device), 0.0
    return idx, 1.0


@contextlib.contextmanager
def frozen_batch_stats(net: nn.Module) -> Iterator[None]:
    """BatchNorm layers keep normalizing with batch statistics but stop updating their running ones.

    D_E judges G_F's flows inside L_GF: its running statistics stay those of real frontal flows
    (and identical across DDP ranks, which only synchronize them in D_E's own forward).
    """
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, v in zip(bns, saved):
            m.momentum = v


def gan_step(batch: dict[str, torch.Tensor], epoch: int, c: StepContext) -> dict[str, torch.Tensor]:
    """One optimisation step of D_P, D_E, G_W and G_F on a device batch; the (detached) losses."""
    t, w, n, o = c.t, c.wrapped, c.nets, c.optims
    y, y_star = batch["flow_input"], batch["flow_target"]
    x_t, x_star, labels = batch["neutral"], batch["target_image"], batch["label"]
    cond = t["dp_conditional"]
    out: dict[str, torch.Tensor] = {}

    with c.amp():
        fake = w["gf"](y)
    fake = fake.float()

    # D_P (sigmoid cross-entropy, real vs generated) and D_E (cross-entropy on real frontal flows).
    real_in = torch.cat([y, y_star], 1) if cond else y_star
    fake_in = torch.cat([y, fake.detach()], 1) if cond else fake.detach()
    with c.amp():
        logits = w["dp"](torch.cat([real_in, fake_in], 0)).float()
        de_logits = w["de"](y_star).float()
    out["dp"] = L.dp_loss(logits[: len(y)], logits[len(y):])
    out["de"] = L.de_loss(de_logits, labels)
    o["dp"].zero_grad(set_to_none=True)
    o["de"].zero_grad(set_to_none=True)
    (out["dp"] + out["de"]).backward()
    o["dp"].step()
    o["de"].step()

    # G_W on its image rows: warps G_F's (detached) output, or the ground truth flow.
    idx, weight = _image_selection(image_rows(batch["step"], t["image_steps"]), c)
    connected = epoch >= t["e_c"]
    if idx is not None:
        flow_w = (fake.detach() if t["gw_flow"] == "generated" else y_star).index_select(0, idx)
        with c.amp():
            x_gen = w["gw"](flow_w, x_t.index_select(0, idx))
        gw = _gw_losses(x_gen, x_star.index_select(0, idx), labels.index_select(0, idx), c)
        o["gw"].zero_grad(set_to_none=True)
        (gw["gw"] * weight).backward()
        o["gw"].step()
        out.update({k: v.detach() * weight for k, v in gw.items()})
    else:
        out.update({k: torch.zeros((), device=c.device) for k in ("gw", "gw_l1", "gw_perc", "gw_fer")})

    # G_F: L_GF = l1 L_GAN + l2 L_epe + l3 L_char + 1[epoch >= e_c] l4 L_GW.
    fake_cond = torch.cat([y, fake], 1) if cond else fake
    with c.amp(), frozen_batch_stats(n["de"]):
        dp_fake = n["dp"](fake_cond).float()
        de_fake = n["de"](fake).float()
    gan = L.gan_loss_gf(dp_fake, de_fake, labels, t.get("gan_weights", (1.0, 1.0)))
    fake_l, star_l = loss_space(fake, c), loss_space(y_star, c)
    w_rows = flow_row_weights(batch["step"], c)
    l_epe = L.epe(fake_l, star_l, w_rows)
    l_char = L.charbonnier(fake_l, star_l, t["char_eps"], w_rows)
    l_gw = None
    if connected and idx is not None:
        with c.amp():
            x_gen2 = n["gw"](fake.index_select(0, idx), x_t.index_select(0, idx))
        l_gw = _gw_losses(x_gen2, x_star.index_select(0, idx), labels.index_select(0, idx), c)["gw"] * weight
    total = L.total_gf(gan, l_epe, l_char, l_gw, t["lambdas"], connected)
    o["gf"].zero_grad(set_to_none=True)
    # Only G_F's parameters: the discriminators' and G_W's gradients from this loss are not wanted.
    total.backward(inputs=list(n["gf"].parameters()))
    o["gf"].step()
    out.update({"gf": total.detach(), "gan": gan.detach(), "epe": l_epe.detach(), "char": l_char.detach()})
    return out


# --- evaluation ------------------------------------------------------------------------------

@torch.no_grad()
def evaluate_epe(gf: nn.Module, store: str, rows: np.ndarray, representation: str, clip: float, batch_size: int,
                 device: torch.device, amp: Callable[[], Any], size: int | None = None,
                 clip_input: float | None = None) -> dict[str, float]:
    """EPE in source pixels on a store's rows: frontalized G_F(input) and the raw input, each vs the frontal truth.

    Also the EPE of a zero flow (the truth's mean magnitude): a frontalizer that only erases motion
    gets that; one that keeps the expression's motion goes below it. At the model's side `size`
    (flows resized as (u, v) first when it differs from the store's).
    """
    was = gf.training
    gf.eval()
    s_fr = s_in = s_zero = 0.0
    n = 0
    for b in iter_rows(store, rows, ("flow_input", "flow_target"), batch_size):
        b = to_device(b, device, size, representation, clip, clip_input)
        y, y_star = b["flow_input"], b["flow_target"]
        with amp():
            fr = gf(y)
        s_fr += flowrep.epe_px(fr.float(), y_star, representation, clip).sum().item()
        # The input scored as the frontal flows are encoded (clipped at `clip`), as `emogan evaluate` does.
        y_c = flowrep.reclip(y, representation, clip_input or clip, clip)
        s_in += flowrep.epe_px(y_c, y_star, representation, clip).sum().item()
        truth_px = flowrep.decode(y_star, representation, clip)
        s_zero += torch.linalg.vector_norm(truth_px, dim=1).flatten(1).mean(1).sum().item()
        n += len(y)
    gf.train(was)
    fr, inp = s_fr / max(n, 1), s_in / max(n, 1)
    return {"epe_frontalized_px": fr, "epe_input_px": inp, "epe_zero_px": s_zero / max(n, 1),
            "epe_reduction": (1.0 - fr / inp) if inp > 0 else 0.0, "rows": n}


def spread_subset(rows: np.ndarray, n: int | None) -> np.ndarray:
    """At most n of the rows, evenly spread over them (every pose and subject), sorted; all when n is None."""
    if n is None or len(rows) <= n:
        return rows
    return np.unique(rows[np.linspace(0, len(rows) - 1, n).round().astype(np.int64)])


def evaluate_stores(gf: nn.Module, infos: list[Any], rows: list[np.ndarray], t: dict[str, Any], device: torch.device,
                    amp: Callable[[], Any], max_rows: int | None = None) -> dict[str, dict[str, float]]:
    """evaluate_epe on each store's held-out rows (at most max_rows of them), keyed by dataset name (the store's stem)."""
    out = {}
    for info, r in zip(infos, rows):
        r = spread_subset(r, max_rows)
        name = Path(info.path.rstrip("/")).name.removesuffix(".zarr")
        out[name] = evaluate_epe(gf, info.path, r, info.representation, info.clip, t["eval_batch_size"], device, amp,
                                 t["size"], info.input_clip)
    return out


# --- the loop --------------------------------------------------------------------------------

def _set_seed(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


def _jsonl(path: Path, rec: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(rec) + "\n")


def _truncate_log(path: Path, start_epoch: int) -> None:
    """On resume: drop the records of epochs the checkpoint does not hold (they are run again)."""
    if not path.is_file():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln).get("epoch", -1) < start_epoch]
    path.write_text("".join(k + "\n" for k in keep))


def _config_drift(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Keys of the training config that differ between a checkpoint and this run (those that change results)."""
    free = {"epochs", "workers", "log_every", "keep_checkpoints", "eval_batch_size", "eval_rows"}
    diff = [f"train.{k}" for k in set(old["train"]) | set(new["train"])
            if k not in free and old["train"].get(k) != new["train"].get(k)]
    for k in ("stores", "fold", "folds_files", "folds_k"):
        if old.get(k) != new.get(k):
            diff.append(k)
    return sorted(diff)


def _broadcast_buffers(nets: dict[str, nn.Module], d: Dist) -> None:
    """Rank 0's buffers (BatchNorm running statistics) to every rank, as DDP does at each forward.

    D_E's running statistics follow each rank's own batches between forwards; at an epoch's end
    the ranks take rank 0's, so that checkpoints and the final nets are the same on every rank.
    """
    import torch.distributed as dist

    for net in nets.values():
        for b in net.buffers():
            dist.broadcast(b, src=0)


def _ddp_checksums(nets: dict[str, nn.Module], d: Dist) -> list[float]:
    """Every rank's sum of all parameters and buffers (gathered): equal values mean the ranks hold the same weights."""
    import torch.distributed as dist

    s = torch.tensor([sum(float(p.detach().double().sum()) for net in nets.values()
                          for p in list(net.parameters()) + list(net.buffers()))], dtype=torch.float64)
    out = [torch.zeros(1, dtype=torch.float64) for _ in range(d.world)]
    dist.all_gather(out, s)
    return [float(x.item()) for x in out]


def _restore(path: Path, c: dict[str, Any], nets: dict[str, nn.Module], optims: dict[str, Any],
             scheds: dict[str, Any], d: Dist, device: torch.device) -> tuple[int, int]:
    """Load a checkpoint into nets, optimizers, schedulers and the RNG; (completed epochs, global step)."""
    state = ck.load_checkpoint(path)
    drift = _config_drift(state["config"], c)
    if drift:
        raise EmoganError(f"{path}: cannot resume exactly, the config changed: {', '.join(drift)}")
    for r in ROLES:
        nets[r].load_state_dict(state["nets"][r])
        optims[r].load_state_dict(state["optims"][r])
        scheds[r].load_state_dict(state["scheds"][r])
    rng = state["rng"]
    torch.set_rng_state(rng["torch"][min(d.rank, len(rng["torch"]) - 1)])
    if device.type == "cuda" and rng.get("cuda"):
        torch.cuda.set_rng_state(rng["cuda"][min(d.rank, len(rng["cuda"]) - 1)])
    return int(state["epoch"]), int(state["global_step"])


def _state(c: dict[str, Any], epoch: int, step: int, nets: dict[str, nn.Module], optims: dict[str, Any],
           scheds: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """A checkpoint: state_dicts of nets, optimizers and schedulers, the RNG, the config (no pickled objects)."""
    return {
        "format": 1, "config": c, "epoch": epoch, "global_step": step,
        "nets": {r: m.state_dict() for r, m in nets.items()},
        "optims": {r: o.state_dict() for r, o in optims.items()},
        "scheds": {r: s.state_dict() for r, s in scheds.items()},
        "rng": {"torch": [torch.get_rng_state()],
                "cuda": [torch.cuda.get_rng_state(device)] if device.type == "cuda" else []},
    }


def run_training(c: dict[str, Any],
                 on_finish: Callable[[dict[str, nn.Module], Dist], None] | None = None) -> dict[str, Any]:
    """Train eMotion-GAN as config dict `c` says (see training.config.resolve_run); returns the final metrics.

    `on_finish(nets, dist)` runs on every rank with the trained bare nets (e.g. to inspect DDP ranks).
    """
    t = c["train"]
    requested = c.get("device")
    kind = torch.device(requested).type if requested else ("cuda" if torch.cuda.is_available() else "cpu")
    d = init_distributed(kind)
    # Under torchrun each rank takes its own GPU, whatever single device was asked for.
    device = torch.device("cuda", d.local_rank) if (kind == "cuda" and d.world > 1) else resolve_device(requested)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
    out = Path(c["out"])
    resume = bool(c.get("resume"))
    if not resume and ck.list_checkpoints(out):  # every rank sees the same folder: all stop together
        raise EmoganError(f"{out}: holds checkpoints of an earlier run; pass --resume to continue it "
                          "or choose another --out")
    if d.main:
        out.mkdir(parents=True, exist_ok=True)

    # Data: every store checked against the schema, rows chosen by fold.
    infos = [check_store(s) for s in c["stores"]]
    check_compatible(infos)
    k = c["folds_k"]
    folds = [Path(f) if f else None for f in c["folds_files"]]
    train_rows = [fold_rows(i, c["fold"], "train", f, k) for i, f in zip(infos, folds)]
    test_rows = [fold_rows(i, c["fold"], "test", f, k) for i, f in zip(infos, folds)]
    rep, clip = infos[0].representation, infos[0].clip
    if t["size"] is not None and infos[0].size % t["size"]:
        raise EmoganError(f"train.size {t['size']} does not divide the stores' size {infos[0].size}")
    clip_in = infos[0].input_clip
    if t["nets"]["gf"].get("output", "direct") == "residual":
        if rep != "cartesian":
            raise EmoganError(f"{infos[0].path}: nets.gf.output residual subtracts flows, which needs a cartesian "
                              f"store, not {rep}")
        # The input is encoded with clip_input, the output with clip: G_F rescales its identity path.
        # Set here, so config.json (and every model loaded from it) holds it.
        t["nets"]["gf"]["in_scale"] = clip_in / clip

    # Nets (same seed on every rank; DDP broadcasts rank 0's anyway), frozen judges.
    _set_seed(t["seed"])
    nets = {r: m.to(device) for r, m in build_nets(t).items()}
    from training.efer import load_efer, perceptual_backbone

    efer, efer_info = load_efer(t["efer"], fold=c["fold"])
    efer = efer.to(device)
    if t["alphas"][2] and not getattr(efer, "differentiable", True):
        raise EmoganError(f"e_FER {efer_info.get('path')} is an ONNX model: it cannot pass gradients to G_W "
                          "(L_eFER). Use a TorchScript export, `own`, or `fer2013` for training (ONNX is fine "
                          "for evaluation)")
    perc_fn, perc_mod, perc_info = perceptual_backbone(t["perceptual"], efer)
    if perc_mod is not None:
        perc_mod.to(device)
    optims = {r: make_optimizer(nets[r].parameters(), t["optim"][r], t["fused_optim"]) for r in ROLES}
    gamma = float(t["lr_gamma"])
    scheds = {r: torch.optim.lr_scheduler.LambdaLR(o, lambda e: gamma ** e) for r, o in optims.items()}

    runtime = {
        "world_size": d.world, "device": str(device), "torch": torch.__version__, "python": platform.python_version(),
        "amp_bf16": autocast_ctx(t, device) is not contextlib.nullcontext,
        "efer": efer_info, "perceptual": perc_info,
        "stores": [{"path": i.path, "rows": i.n, "size": i.size, "representation": i.representation, "clip": i.clip,
                    "clip_input": i.input_clip,
                    "schema_version": i.attrs.get("schema_version"), "params": i.attrs.get("params"),
                    "source_manifest_sha256": i.attrs.get("source_manifest_sha256"),
                    "train_rows": int(len(tr)), "test_rows": int(len(te))}
                   for i, tr, te in zip(infos, train_rows, test_rows)],
    }

    start_epoch, global_step = 0, 0
    log_path = out / "log.jsonl"
    if resume:
        cks = ck.list_checkpoints(out)
        if not cks:
            raise EmoganError(f"{out}: --resume but no checkpoint in {out / ck.CKPT_DIR}")
        start_epoch, global_step = _restore(cks[-1][1], c, nets, optims, scheds, d, device)
        log.info("resuming %s after epoch %d (step %d)", out, start_epoch, global_step)
    else:
        # Per-rank randomness (dropout) after the identical initialisation.
        torch.manual_seed(t["seed"] + 1000003 * d.rank)

    cfg_record = {**c, "runtime": runtime}
    if d.main:
        (out / "config.json").write_text(json.dumps(cfg_record, indent=2, sort_keys=True) + "\n")
        if resume:
            _truncate_log(log_path, start_epoch)
        _jsonl(log_path, {"event": "resume" if resume else "start", "epoch": start_epoch, "step": global_step,
                          "time": time.time(), "world_size": d.world, "device": str(device)})

    wrapped: dict[str, nn.Module] = dict(nets)
    if d.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        wrapped = {r: DDP(m, device_ids=ids) for r, m in nets.items()}

    ds = StreamingStoreDataset(c["stores"], train_rows, [i.chunk_rows for i in infos], GAN_ARRAYS, t["batch_size"],
                               seed=t["seed"], buffer_chunks=t["buffer_chunks"], workers=t["workers"],
                               rank=d.rank, world=d.world)
    loader = make_loader(ds, pin_memory=device.type == "cuda")
    amp = autocast_ctx(t, device)
    ctx = StepContext(nets, wrapped, optims, efer, perc_fn, t, amp, d, device, rep, clip,
                      step_weights_for(infos, train_rows, t))
    live = None
    if d.main:
        from dvclive import Live

        live = Live(dir=c["live_dir"], resume=resume, save_dvc_exp=False, dvcyaml=None)
        if not resume:
            live.log_params({"config_name": c["config_name"], "fold": c["fold"], "stores": c["stores"],
                             "perceptual": perc_info["backbone"], "efer": efer_info["name"]})

    flip_gen = torch.Generator()

    def prepare(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Loader batch -> device batch, a random half mirrored when `hflip`."""
        b = to_device(batch, device, t["size"], rep, clip, clip_in)
        # Mirroring decodes and re-encodes each flow with one clip: exact for any clip (|flow| is kept).
        return mirror_batch(b, rep, clip, flip_gen) if t.get("hflip") else b

    def seed_flips(epoch: int) -> None:
        """Mirroring draws seeded per epoch (the warm-up is epoch -1): a resumed run mirrors what an
        uninterrupted one does."""
        flip_gen.manual_seed(t["seed"] + 7919 * (d.rank + 1) + 104729 * (epoch + 1))

    warm = int(t.get("de_warmup_steps") or 0)
    if warm and start_epoch == 0:
        # D_E learns the expressions of real frontal flows first, so that from G_F's first step its
        # L_GAN term says which expression a flow shows instead of a random classifier's opinion.
        # Same rows and order as the GAN's first epoch, but only the arrays D_E reads.
        warm_ds = StreamingStoreDataset(c["stores"], train_rows, [i.chunk_rows for i in infos], DE_ARRAYS,
                                        t["batch_size"], seed=t["seed"], buffer_chunks=t["buffer_chunks"],
                                        workers=t["workers"], rank=d.rank, world=d.world)
        warm_ds.set_epoch(0)
        seed_flips(-1)
        de_losses: list[float] = []
        while len(de_losses) < warm:
            for batch in make_loader(warm_ds, pin_memory=device.type == "cuda"):
                de_losses.append(float(de_step(prepare(batch), ctx)))
                if len(de_losses) >= warm:
                    break
        if d.main:
            last = sum(de_losses[-20:]) / len(de_losses[-20:])
            _jsonl(log_path, {"event": "de_warmup", "steps": warm, "de_first": de_losses[0], "de_last": last})
            log.info("D_E warm-up: %d steps, loss %.3f -> %.3f", warm, de_losses[0], last)

    final: dict[str, Any] = {}
    for epoch in range(start_epoch, t["epochs"]):
        ds.set_epoch(epoch)
        seed_flips(epoch)
        n_batches = ds.batches_per_epoch(epoch)
        if t.get("steps_per_epoch"):
            n_batches = min(n_batches, int(t["steps_per_epoch"]))
        sums = {k: 0.0 for k in LOSS_NAMES}
        t0 = time.time()
        for i, batch in zip(range(n_batches), loader):
            losses = gan_step(prepare(batch), epoch, ctx)
            vec = torch.stack([losses[k].float() for k in LOSS_NAMES]).cpu()
            ok = bool(torch.isfinite(vec).all())
            if not _all_true(ok, d, device):
                bad = [k for k, v in zip(LOSS_NAMES, vec.tolist()) if not math.isfinite(v)]
                last = ck.list_checkpoints(out)
                keep = str(last[-1][1]) if last else "none (diverged in the first epoch)"
                if d.main:
                    _jsonl(log_path, {"event": "diverged", "epoch": epoch, "step": global_step,
                                      "losses": dict(zip(LOSS_NAMES, vec.tolist())), "last_good": keep})
                    if live is not None:
                        live.end()
                raise TrainingDiverged(f"{out}: non-finite loss ({', '.join(bad) or 'on another rank'}) at epoch "
                                       f"{epoch + 1}, step {global_step}; stopped. Last good checkpoint: {keep}")
            vals = dict(zip(LOSS_NAMES, vec.tolist()))
            for kk, v in vals.items():
                sums[kk] += v
            global_step += 1
            if d.main and (i % max(1, t["log_every"]) == 0 or i == n_batches - 1):
                _jsonl(log_path, {"event": "step", "epoch": epoch, "step": global_step, **vals})
        for s in scheds.values():
            s.step()
        dt = time.time() - t0
        means = {k: v / max(n_batches, 1) for k, v in sums.items()}
        last = epoch == t["epochs"] - 1
        # Between epochs a spread subset of the held-out rows tracks progress; the last epoch uses them all.
        ev = evaluate_stores(nets["gf"], infos, test_rows, t, device, amp,
                             None if last else t.get("eval_rows")) if d.main else {}
        checks = None
        if d.world > 1:
            _broadcast_buffers(nets, d)
            checks = _ddp_checksums(nets, d)
        if d.main:
            rec = {"event": "epoch", "epoch": epoch, "step": global_step, "batches": n_batches,
                   "samples_per_s": n_batches * t["batch_size"] * d.world / max(dt, 1e-9),
                   "loss": means, "test": ev}
            if checks is not None:
                rec["ddp_param_sums"] = checks
            _jsonl(log_path, rec)
            for kk, v in means.items():
                live.log_metric(f"train/loss_{kk}", v)
            for name, e in ev.items():
                for kk in ("epe_frontalized_px", "epe_input_px", "epe_zero_px", "epe_reduction"):
                    live.log_metric(f"test/{name}/{kk}", e[kk])
            live.next_step()
            ck.save_checkpoint(ck.checkpoint_path(out, epoch + 1),
                               _state(c, epoch + 1, global_step, nets, optims, scheds, device))
            ck.prune_checkpoints(out, t["keep_checkpoints"])
            log.info("epoch %d/%d: L_GF %.4f (epe %.4f) D_P %.4f D_E %.4f L_GW %.4f; %s", epoch + 1, t["epochs"],
                     means["gf"], means["epe"], means["dp"], means["de"], means["gw"],
                     "; ".join(f"{kk} EPE {e['epe_frontalized_px']:.3f} px vs input {e['epe_input_px']:.3f} px"
                               for kk, e in ev.items()))
            if last:
                final = ev
        if d.world > 1:
            import torch.distributed as dist

            dist.barrier()

    if on_finish is not None:
        on_finish(nets, d)
    if d.main:
        if not final:  # resumed a finished run: evaluate what it holds
            final = evaluate_stores(nets["gf"], infos, test_rows, t, device, amp)
        ck.export_weights(out, nets, cfg_record)
        metrics = {"fold": c["fold"], "epochs": t["epochs"], "test": final}
        if final:
            tot = sum(e["rows"] for e in final.values())
            fr, inp, zero = (sum(e[k] * e["rows"] for e in final.values()) / tot
                             for k in ("epe_frontalized_px", "epe_input_px", "epe_zero_px"))
            metrics.update({"epe_frontalized_px": fr, "epe_input_px": inp, "epe_zero_px": zero,
                            "epe_reduction": 1.0 - fr / inp if inp > 0 else 0.0})
            live.summary.update({k: metrics[k] for k in ("epe_frontalized_px", "epe_input_px", "epe_zero_px",
                                                         "epe_reduction")})
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        live.end()
    if d.owned:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return metrics if d.main else {}
