"""One eMotion-GAN step (paper section III-D), split into the updates it performs.

G_F's forward pass, then `update_discriminators` (D_P on real vs generated flow pairs, D_E on real
frontal flows), `update_gw` (G_W on the image rows), `update_gf` (L_GF, with L_GW through G_W from
epoch e_c on, and L_chain: `ChainSequences`, `chain_loss` at the end). Under torchrun `wrapped` holds the
DDP copies; inside G_F's loss the discriminators and G_W are called through their bare modules, so that
only G_F's gradients are synchronized there.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from pipeline.errors import EmoganError
from training import flowrep
from training.config import AdamSpec, OptimSpec, TrainConfig
from training.distributed import Dist, all_true
from training.models import losses as L
from training.models.efer import classify

GW_LOSS_NAMES = ("gw", "gw_l1", "gw_perc", "gw_fer")   # G_W's own terms (all G_W-only epochs compute)
LOSS_NAMES = ("gf", "gan", "epe", "char", "chain", *GW_LOSS_NAMES, "dp", "de")


def make_optimizer(params: Any, spec: OptimSpec, fused: bool = True) -> torch.optim.Optimizer:
    """Adam or SGD from its typed spec."""
    if isinstance(spec, AdamSpec):
        # PERF-NOTES: the default Adam took 698 ms/step on CPU for 160.7M params, fused 51 ms.
        extra = {"fused": True} if fused else {"foreach": True}
        return torch.optim.Adam(params, lr=float(spec.lr), betas=tuple(spec.betas), weight_decay=0.0, **extra)
    return torch.optim.SGD(params, lr=float(spec.lr), momentum=float(spec.momentum), weight_decay=0.0, foreach=True)


def autocast_ctx(t: TrainConfig, device: torch.device) -> Callable[[], Any]:
    """bf16 autocast on CUDA (amp auto|on), on CPU only when amp is on."""
    on = t.amp == "on" or (t.amp == "auto" and device.type == "cuda")
    if not on:
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)


@dataclass
class StepContext:
    """Everything a GAN step needs besides the batch."""

    nets: dict[str, nn.Module]      # bare modules
    wrapped: dict[str, nn.Module]   # DDP wrappers (or the bare modules)
    optims: dict[str, torch.optim.Optimizer]
    efer: nn.Module
    perc: Callable[[torch.Tensor], list[torch.Tensor]]
    t: TrainConfig
    amp: Callable[[], Any]
    dist: Dist
    device: torch.device
    representation: str             # the stores' flow representation and clip (source pixels)
    clip: float
    step_weights: torch.Tensor | None = None   # (max_step + 1,) weight of L_epe/L_char rows by pair step
    chain: Any = None               # ChainSequences (below) when chain_weight > 0
    step: int = 0                   # global step of the batch being trained (L_chain's draw)


def image_rows(step: torch.Tensor, image_steps: tuple[int, ...] | None) -> torch.Tensor:
    """(N,) bool: rows whose step lo < step <= hi feed the image losses (all rows when None)."""
    if image_steps is None:
        return torch.ones_like(step, dtype=torch.bool)
    lo, hi = image_steps
    return (step > lo) & (step <= hi)


def check_image_rows(steps: np.ndarray, image_steps: tuple[int, ...] | None, where: str) -> int:
    """Number of training rows (their pair `steps`) that feed G_W; none is an error naming the steps there are."""
    n = int(image_rows(torch.from_numpy(np.asarray(steps, dtype=np.int64)), image_steps).sum())
    if n == 0:
        lo, hi = image_steps if image_steps is not None else (None, None)
        raise EmoganError(f"{where}: image_steps {list(image_steps or [])} ({lo} < step <= {hi}) selects none of "
                          f"the training rows, whose steps are {sorted(set(np.asarray(steps).tolist()))}: G_W would "
                          "never train. Choose a range these stores hold, or null (all rows)")
    return n


def gw_update_flow(t: TrainConfig, epoch: int) -> str:
    """Which flow G_W's own update warps this epoch: `target` (ground truth) or `generated` (G_F's, detached).

    `target_then_generated` (the authors' code): the ground truth until the connection epoch e_c, so that G_W
    learns to warp real motion before G_F's output is worth warping, then G_F's output.
    """
    if t.gw_flow == "target_then_generated":
        return "target" if epoch < t.e_c else "generated"
    return t.gw_flow


def loss_space(flow: torch.Tensor, c: StepContext) -> torch.Tensor:
    """Flows (N,2,H,W) as L_epe and L_char see them: Cartesian (u, v)/clip, or the store's representation.

    An end-point error is a distance between vectors; in the polar representation a difference of
    angles is not one, and the angle of a pixel that does not move is noise the net cannot learn.
    Decoding first weights angle errors by the motion's magnitude. For Cartesian stores both agree.
    """
    if c.t.flow_loss_space == "representation":
        return flow
    return flowrep.decode(flow, c.representation, c.clip) / c.clip


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


def de_step(batch: dict[str, torch.Tensor], c: StepContext) -> torch.Tensor:
    """One D_E update on real frontal flows (the warm-up before the GAN steps); its loss, detached."""
    with c.amp():
        logits = c.wrapped["de"](batch["flow_target"]).float()
    loss = L.de_loss(logits, batch["label"])
    c.optims["de"].zero_grad(set_to_none=True)
    loss.backward()
    c.optims["de"].step()
    return loss.detach()


def update_discriminators(batch: dict[str, torch.Tensor], fake: torch.Tensor, c: StepContext) -> dict[str, torch.Tensor]:
    """D_P (sigmoid cross-entropy, real vs generated) and D_E (cross-entropy on real frontal flows), one step."""
    w, o = c.wrapped, c.optims
    y, y_star = batch["flow_input"], batch["flow_target"]
    real_in = torch.cat([y, y_star], 1) if c.t.dp_conditional else y_star
    fake_in = torch.cat([y, fake.detach()], 1) if c.t.dp_conditional else fake.detach()
    with c.amp():
        logits = w["dp"](torch.cat([real_in, fake_in], 0)).float()
        de_logits = w["de"](y_star).float()
    out = {"dp": L.dp_loss(logits[: len(y)], logits[len(y):]), "de": L.de_loss(de_logits, batch["label"])}
    o["dp"].zero_grad(set_to_none=True)
    o["de"].zero_grad(set_to_none=True)
    (out["dp"] + out["de"]).backward()
    o["dp"].step()
    o["de"].step()
    return out


def _gw_losses(x_gen: torch.Tensor, x_star: torch.Tensor, labels: torch.Tensor, c: StepContext,
               neutral: torch.Tensor) -> dict[str, torch.Tensor]:
    """L_1, L_perc, L_eFER and L_GW for generated faces (N,3,S,S) in [-1,1]; `neutral` (N,3,S,S) in [-1,1] is the
    neutral face they were made from (an e_FER that reads the change from it, `train_fer.input: change`, needs it)."""
    a = c.t.alphas
    x_gen = x_gen.float()
    gen01, star01 = (x_gen + 1) * 0.5, (x_star + 1) * 0.5
    l1 = L.l1_image(x_gen, x_star)
    judged01 = L.grey_gradient(gen01) if c.t.judge_grad == "grey" else gen01   # what L_perc and L_eFER read
    with c.amp():
        perc = L.perceptual(c.perc, judged01, star01) if a[1] else x_gen.new_zeros(())
        fer = (L.efer_loss(classify(c.efer, judged01, (neutral.float() + 1) * 0.5), labels) if a[2]
               else x_gen.new_zeros(()))
    return {"gw_l1": l1, "gw_perc": perc.float(), "gw_fer": fer.float(),
            "gw": L.total_gw(l1, perc.float(), fer.float(), a)}


@dataclass
class ImageRows:
    """The rows of a batch that feed the image losses, and their weight (1, or 0 for a stand-in row)."""

    idx: torch.Tensor
    weight: float


def image_selection(batch: dict[str, torch.Tensor], c: StepContext) -> ImageRows | None:
    """The batch's image rows (t.image_steps); None when no rank has any."""
    idx = torch.nonzero(image_rows(batch["step"], c.t.image_steps)).flatten()
    has = idx.numel() > 0
    # Every rank must agree on running G_W, or DDP's collective calls would not match.
    if all_true(not has, c.dist, c.device):
        return None
    if not has:
        # This rank has no image rows but another has: one stand-in row, weighted 0.
        return ImageRows(torch.zeros(1, dtype=torch.long, device=c.device), 0.0)
    return ImageRows(idx, 1.0)


def update_gw(batch: dict[str, torch.Tensor], fake: torch.Tensor, rows: ImageRows | None, epoch: int,
              c: StepContext) -> dict[str, torch.Tensor]:
    """G_W on its image rows: warps G_F's (detached) output or the ground-truth flow (gw_update_flow); the
    losses and `gw_rows`, the number of (real) rows it trained on."""
    if rows is None:
        return {k: torch.zeros((), device=c.device) for k in (*GW_LOSS_NAMES, "gw_rows")}
    idx = rows.idx
    flow = (batch["flow_target"] if gw_update_flow(c.t, epoch) == "target" else fake.detach()).index_select(0, idx)
    neutral = batch["neutral"].index_select(0, idx)
    with c.amp():
        x_gen = c.wrapped["gw"](flow, neutral)
    gw = _gw_losses(x_gen, batch["target_image"].index_select(0, idx), batch["label"].index_select(0, idx), c,
                    neutral)
    c.optims["gw"].zero_grad(set_to_none=True)
    (gw["gw"] * rows.weight).backward()
    c.optims["gw"].step()
    return {**{k: v.detach() * rows.weight for k, v in gw.items()},
            "gw_rows": torch.tensor(float(idx.numel()) * rows.weight, device=c.device)}


def update_gf(batch: dict[str, torch.Tensor], fake: torch.Tensor, rows: ImageRows | None, epoch: int,
              c: StepContext) -> dict[str, torch.Tensor]:
    """G_F on L_GF = l1 L_GAN + l2 L_epe + l3 L_char + 1[epoch >= e_c] l4 L_GW (+ chain_weight L_chain)."""
    n, t = c.nets, c.t
    y, y_star, labels = batch["flow_input"], batch["flow_target"], batch["label"]
    connected = epoch >= t.e_c
    fake_cond = torch.cat([y, fake], 1) if t.dp_conditional else fake
    with c.amp(), frozen_batch_stats(n["de"]):
        dp_fake = n["dp"](fake_cond).float()
        de_fake = n["de"](fake).float()
    gan = L.gan_loss_gf(dp_fake, de_fake, labels, t.gan_weights)
    fake_l, star_l = loss_space(fake, c), loss_space(y_star, c)
    w_rows = L.flow_row_weights(batch["step"], labels, c.step_weights, t.flow_loss_neutral_weight)
    l_epe = L.epe(fake_l, star_l, w_rows)
    l_char = L.charbonnier(fake_l, star_l, t.char_eps, w_rows)
    l_gw = None
    if connected and rows is not None and t.lambdas[3] != 0:   # L_GW at weight 0: G_W is not run for G_F's loss
        idx = rows.idx
        neutral = batch["neutral"].index_select(0, idx)
        with c.amp():
            x_gen = n["gw"](fake.index_select(0, idx), neutral)
        l_gw = _gw_losses(x_gen, batch["target_image"].index_select(0, idx), labels.index_select(0, idx),
                          c, neutral)["gw"] * rows.weight
    total = L.total_gf(gan, l_epe, l_char, l_gw, t.lambdas, connected)
    l_chain = torch.zeros((), device=c.device)
    if c.chain is not None:   # set only when chain_weight > 0 (loop.open_session)
        with c.amp():
            l_chain = chain_loss(n["gf"], c.chain.draw(c.step), c.representation, c.clip, c.device)
        total = total + t.chain_weight * l_chain
    c.optims["gf"].zero_grad(set_to_none=True)
    # Only G_F's parameters: the discriminators' and G_W's gradients from this loss are not wanted.
    total.backward(inputs=list(n["gf"].parameters()))
    c.optims["gf"].step()
    return {"gf": total.detach(), "gan": gan.detach(), "epe": l_epe.detach(), "char": l_char.detach(),
            "chain": l_chain.detach()}


def gan_step(batch: dict[str, torch.Tensor], epoch: int, c: StepContext) -> dict[str, torch.Tensor]:
    """One optimisation step of D_P, D_E, G_W and G_F on a device batch; the (detached) losses and gw_rows."""
    with c.amp():
        fake = c.wrapped["gf"](batch["flow_input"], batch.get("input_image"))
    fake = fake.float()
    out = update_discriminators(batch, fake, c)
    rows = image_selection(batch, c)
    out.update(update_gw(batch, fake, rows, epoch, c))
    out.update(update_gf(batch, fake, rows, epoch, c))
    return out


def gw_step(batch: dict[str, torch.Tensor], epoch: int, c: StepContext) -> dict[str, torch.Tensor]:
    """One step of G_W alone (the epochs past `epochs` up to `gw_epochs`): D_P, D_E and G_F are not updated; G_F
    runs, without gradients and with its running statistics kept, only when G_W's update warps its output."""
    fake = batch["flow_target"]
    if gw_update_flow(c.t, epoch) != "target":
        with torch.no_grad(), frozen_batch_stats(c.nets["gf"]), c.amp():
            fake = c.nets["gf"](batch["flow_input"], batch.get("input_image")).float()
    out = {k: torch.zeros((), device=c.device) for k in LOSS_NAMES}
    out.update(update_gw(batch, fake, image_selection(batch, c), epoch, c))
    return out


# --- L_chain (issue #12): G_F's step-1 outputs of whole training sequences, chained, scored against the
# neutral->apex truth while training.
#
# Evaluation frontalizes neutral->apex motion as the chain of G_F's frame-to-frame outputs
# (training/evaluation/chain.py). G_F learns each step alone (L_epe), and its step errors share a direction from
# one step to the next, so over a sequence's nine steps they add up (docs/EVALUATION.md, "Session 19"). With
# `chain_weight` > 0 each G_F update also draws `chain_sequences` training sequences, runs G_F on their step-1
# input flows, composes the outputs as evaluation does (training/flowrep.py `compose`, differentiable) and adds
# `chain_weight` x the end-point error of the composed flow against the sequence's frontal neutral->apex flow, on
# (u, v)/clip as L_epe, to L_GF. The sequences' flows are read once, at the model's side, and kept in memory.

@dataclass
class ChainSequence:
    steps: torch.Tensor        # (k,2,S,S) float16: the step-1 input flows in frame order, normalized, model side
    target: torch.Tensor       # (2,S,S) float16: the frontal neutral->apex flow, normalized, model side
    px_per_cell: float         # source pixels per grid cell


class ChainSequences:
    """The training sequences that have a neutral_apex row and step-1 frame_to_frame rows, ready for L_chain."""

    def __init__(self, stores: Sequence[str], train_rows: Sequence[np.ndarray], size: int | None, seed: int,
                 per_step: int):
        from training.data import iter_rows, raw_group, select_rows, sequence_step_rows

        self.seed, self.per_step = int(seed), int(per_step)
        self.items: list[ChainSequence] = []
        for store, rows in zip(stores, train_rows):
            g = raw_group(store)
            if not g.attrs.get("source_size"):
                continue
            rep, clip, side = str(g.attrs["representation"]), float(g.attrs["clip"]), int(g.attrs["size"])
            s = int(size or side)
            na = select_rows(store, np.asarray(rows), ["neutral_apex"])
            steps = sequence_step_rows(store, na)
            if not steps:
                continue
            order = np.array(sorted(steps))
            need = np.unique(np.concatenate([steps[int(r)] for r in order]))

            def read(r: np.ndarray, arr: str) -> dict[int, torch.Tensor]:
                out, pos = {}, 0
                for b in iter_rows(store, r, (arr,), 256):
                    f = flowrep.resize_flow(b[arr].float(), s, rep, clip).half()
                    for i in range(len(f)):
                        out[int(r[pos + i])] = f[i]
                    pos += len(f)
                return out

            inputs, targets = read(need, "flow_input"), read(order, "flow_target")
            ppc = float(g.attrs["source_size"]) / s
            self.items += [ChainSequence(torch.stack([inputs[int(x)] for x in steps[int(r)]]), targets[int(r)], ppc)
                           for r in order]
        if not self.items:
            raise EmoganError(f"{', '.join(stores)}: chain_weight > 0 needs training sequences with a neutral_apex row "
                              "and step-1 frame_to_frame rows (flow.strategies both, flow.max_step >= 1); none found")

    def draw(self, step: int) -> list[ChainSequence]:
        """`per_step` sequences for global step `step` (the same draw on a resumed run)."""
        rng = np.random.default_rng([self.seed, int(step), 7])
        return [self.items[i] for i in rng.choice(len(self.items), min(self.per_step, len(self.items)), replace=False)]


def chain_loss(gf: nn.Module, seqs: Sequence[ChainSequence], representation: str, clip: float,
               device: torch.device) -> torch.Tensor:
    """Mean over `seqs` of the end-point error, on (u, v)/clip, between the composed G_F outputs and the truth."""
    x = torch.cat([q.steps for q in seqs]).to(device).float()
    px = flowrep.decode(gf(x).float(), representation, clip)
    errs, pos = [], 0
    for q in seqs:
        k = len(q.steps)
        total = flowrep.compose(list(px[pos:pos + k]), q.px_per_cell)
        pos += k
        pred = flowrep.encode(total[None], "cartesian", clip)
        truth = flowrep.convert(q.target[None].to(device).float(), representation, "cartesian", clip)
        errs.append(torch.linalg.vector_norm(pred - truth, dim=1).mean())
    return torch.stack(errs).mean()
