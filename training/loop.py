"""The eMotion-GAN training loop (paper section III-D, IV-C): one RunConfig in, a trained run folder out.

Nets are built by name from the config (`training.models.networks.NETS`); the loop knows their roles
only: gf (G_F), dp (D_P), de (D_E), gw (G_W), plus the frozen e_FER and perceptual backbone. Each
step is `training.step.gan_step`. Under torchrun each rank holds DistributedDataParallel copies and
streams its own chunks; rank 0 writes. Checkpoints every epoch; `--resume` continues exactly.
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
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from pipeline.console import progress_enabled
from pipeline.errors import EmoganError
from pipeline.params import as_dict
from pipeline.store import StoreError
from training import checkpoint as ck
from training import flowrep
from training.config import ROLES, RunConfig, TrainConfig
from training.data import (DE_ARRAYS, GAN_ARRAYS, MirrorDraws, StoreInfo, StreamingStoreDataset, check_compatible,
                           check_store, content_sha256, iter_rows, raw_group, make_loader, mirror_batch,
                           reserved_subjects, split_folds, store_name, subjects_of, to_device)
from training.distributed import Dist, all_true, broadcast_buffers, ddp_checksums, init_distributed, resolve_device
from training.models import losses as L
from training.models.networks import build_nets, complete_gw_spec, reads_face
from training.step import (GW_LOSS_NAMES, LOSS_NAMES, ChainSequences, StepContext, autocast_ctx, check_image_rows,
                           de_step, gan_step, gw_step, gw_update_flow, make_optimizer)

log = logging.getLogger(__name__)


class TrainingDiverged(EmoganError):
    """A loss became NaN or infinite: the run stopped, its last good checkpoint is kept."""


# --- evaluation between epochs ---------------------------------------------------------------

@torch.no_grad()
def evaluate_epe(gf: nn.Module, store: str, rows: np.ndarray, representation: str, clip: float, batch_size: int,
                 device: torch.device, amp: Callable[[], Any], size: int | None = None) -> dict[str, float]:
    """EPE in source pixels on a store's rows: frontalized G_F(input) and the raw input, each vs the frontal truth.

    Also the EPE of a zero flow (the truth's mean magnitude): a frontalizer that only erases motion
    gets that; one that keeps the expression's motion goes below it. At the model's side `size`
    (flows resized as (u, v) first when it differs from the store's).
    """
    was = gf.training
    gf.eval()
    s_fr = s_in = s_zero = 0.0
    n = 0
    face = reads_face(gf)
    for b in iter_rows(store, rows, ("flow_input", "flow_target") + (("input_image",) if face else ()), batch_size):
        b = to_device(b, device, size, representation, clip)
        y, y_star = b["flow_input"], b["flow_target"]
        with amp():
            fr = gf(y, b.get("input_image"))
        s_fr += flowrep.epe_px(fr.float(), y_star, representation, clip).sum().item()
        s_in += flowrep.epe_px(y, y_star, representation, clip).sum().item()
        truth_px = flowrep.decode(y_star, representation, clip)
        s_zero += torch.linalg.vector_norm(truth_px, dim=1).flatten(1).mean(1).sum().item()
        n += len(y)
    gf.train(was)
    if not all(math.isfinite(v) for v in (s_in, s_zero)):  # the truth or the input: the store, not the model
        raise StoreError(f"{store}: non-finite flow values among the held-out rows (a corrupt store); "
                         "rebuild it with `emogan normalize`")
    fr, inp = s_fr / max(n, 1), s_in / max(n, 1)
    return {"epe_frontalized_px": fr, "epe_input_px": inp, "epe_zero_px": s_zero / max(n, 1),
            "epe_reduction": (1.0 - fr / inp) if inp > 0 else 0.0, "rows": n}


def spread_subset(rows: np.ndarray, n: int | None) -> np.ndarray:
    """At most n of the rows, evenly spread over them (every pose and subject), sorted; all when n is None."""
    if n is None or len(rows) <= n:
        return rows
    return np.unique(rows[np.linspace(0, len(rows) - 1, n).round().astype(np.int64)])


def evaluate_stores(gf: nn.Module, infos: list[StoreInfo], rows: list[np.ndarray], t: TrainConfig,
                    device: torch.device, amp: Callable[[], Any],
                    max_rows: int | None = None) -> dict[str, dict[str, float]]:
    """evaluate_epe on each store's held-out rows (at most max_rows of them), keyed by dataset name."""
    return {store_name(info.path): evaluate_epe(gf, info.path, spread_subset(r, max_rows), info.representation,
                                                info.clip, t.eval_batch_size, device, amp, t.size)
            for info, r in zip(infos, rows)}


# --- the run's parts -------------------------------------------------------------------------

@dataclass
class Session:
    """One training run in progress: its config, data, nets and where it writes."""

    c: RunConfig
    d: Dist
    device: torch.device
    out: Path
    infos: list[StoreInfo]
    train_rows: list[np.ndarray]
    test_rows: list[np.ndarray]
    nets: dict[str, nn.Module]
    optims: dict[str, torch.optim.Optimizer]
    scheds: dict[str, Any]
    ctx: StepContext
    mirror: MirrorDraws
    runtime: dict[str, Any]
    live: Any = None

    @property
    def t(self) -> TrainConfig:
        """The training config."""
        return self.c.train

    @property
    def log_path(self) -> Path:
        """The run's jsonl log."""
        return self.out / "log.jsonl"

    def dataset(self, arrays: tuple[str, ...]) -> StreamingStoreDataset:
        """The training rows streamed for this rank (same rows and order for every `arrays`)."""
        return StreamingStoreDataset(self.c.stores, self.train_rows, [i.chunk_rows for i in self.infos], arrays,
                                     self.t.batch_size, seed=self.t.seed, buffer_chunks=self.t.buffer_chunks,
                                     workers=self.t.workers, rank=self.d.rank, world=self.d.world)

    def prepare(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Loader batch -> device batch, a random half mirrored when `hflip`."""
        rep, clip = self.ctx.representation, self.ctx.clip
        b = to_device(batch, self.device, self.t.size, rep, clip)
        return mirror_batch(b, self.mirror.draw(len(b["label"])), rep, clip) if self.t.hflip else b

    def jsonl(self, rec: dict[str, Any]) -> None:
        """Append a record to log.jsonl (rank 0)."""
        if self.d.main:
            with self.log_path.open("a") as f:
                f.write(json.dumps(rec) + "\n")


def _set_seed(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


def open_session(c: RunConfig) -> Session:
    """Devices, the run folder, the stores and their fold rows, the nets, e_FER, optimizers: ready to train."""
    t = c.train
    kind = torch.device(c.device).type if c.device else ("cuda" if torch.cuda.is_available() else "cpu")
    d = init_distributed(kind)
    # Under torchrun each rank takes its own GPU, whatever single device was asked for.
    device = torch.device("cuda", d.local_rank) if (kind == "cuda" and d.world > 1) else resolve_device(c.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
    out = Path(c.out)
    if not c.resume and ck.list_checkpoints(out):  # every rank sees the same folder: all stop together
        raise EmoganError(f"{out}: holds checkpoints of an earlier run; pass --resume to continue it "
                          "or choose another --out")
    if d.main:
        out.mkdir(parents=True, exist_ok=True)

    # Data: every store checked against the schema, rows chosen by fold.
    infos = [check_store(s) for s in c.stores]
    check_compatible(infos)
    train_rows, test_rows = split_folds(infos, c.fold, c.folds_files, c.folds_k)
    rep, clip = infos[0].representation, infos[0].clip
    if t.nets.gf.get("output", "direct") in ("residual", "gated") and rep != "cartesian":
        raise EmoganError(f"{infos[0].path}: nets.gf.output {t.nets.gf['output']} adds and subtracts flows, which "
                          f"needs a cartesian store, not {rep}")
    if t.size is not None and infos[0].size % t.size:
        raise EmoganError(f"train.size {t.size} does not divide the stores' size {infos[0].size}")

    steps = np.concatenate([np.asarray(raw_group(i.path)["step"][:])[r] for i, r in zip(infos, train_rows)])
    n_image_rows = check_image_rows(steps, t.image_steps, f"train.{c.config_name} ({', '.join(c.stores)})")
    # A warping G_W measures flows in the stores' units: their representation, clip and source crop side go into
    # its spec (and so into config.json, checkpoints and bundles).
    t.nets.gw = complete_gw_spec(t.nets.gw, infos)

    # Nets (same seed on every rank; DDP broadcasts rank 0's anyway), frozen judges.
    _set_seed(t.seed)
    nets = {r: m.to(device) for r, m in build_nets(dict(t.nets.items())).items()}
    from training.models.efer import load_efer, perceptual_backbone

    efer, efer_info = load_efer(as_dict(t.efer), fold=c.fold, trust_pickle=c.trust_pickle)
    efer = efer.to(device)
    if t.alphas[2] and not getattr(efer, "differentiable", True):
        raise EmoganError(f"e_FER {efer_info.get('path')} is an ONNX model: it cannot pass gradients to G_W "
                          "(L_eFER). Use a TorchScript export, `own`, or `fer2013` for training (ONNX is fine "
                          "for evaluation)")
    perc_fn, perc_mod, perc_info = perceptual_backbone(t.perceptual, efer, c.fer2013_weights, c.fer2013_frame)
    if perc_mod is not None:
        perc_mod.to(device)
    optims = {r: make_optimizer(nets[r].parameters(), getattr(t.optim, r), t.fused_optim) for r in ROLES}
    gamma = float(t.lr_gamma)
    scheds = {r: torch.optim.lr_scheduler.LambdaLR(o, lambda e, g=t.gw_gamma if r == "gw" else gamma: g ** e)
              for r, o in optims.items()}
    amp = autocast_ctx(t, device)
    runtime = {
        "world_size": d.world, "device": str(device), "torch": torch.__version__, "python": platform.python_version(),
        "amp_bf16": amp is not contextlib.nullcontext, "efer": efer_info, "perceptual": perc_info,
        "image_rows": n_image_rows,
        "stores": [{"path": i.path, "rows": i.n, "size": i.size, "representation": i.representation, "clip": i.clip,
                    "schema_version": i.attrs.get("schema_version"), "params": i.attrs.get("params"),
                    "source_manifest_sha256": i.attrs.get("source_manifest_sha256"),
                     "content_sha256": content_sha256(i.path),
                     "train_rows": int(len(tr)), "test_rows": int(len(te)),
                     # Who the run held out (validation subjects in a tuning split) and who it never read.
                     "held_out_subjects": subjects_of(i.path, te),
                     "reserved_subjects": reserved_subjects(i.path, ff, c.folds_k)}
                    for i, tr, te, ff in zip(infos, train_rows, test_rows, c.folds_files)],
    }
    wrapped: dict[str, nn.Module] = dict(nets)
    if d.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        wrapped = {r: DDP(m, device_ids=ids) for r, m in nets.items()}
    w = L.step_weight_table(steps, t.flow_loss_weighting)
    chain = None
    if t.chain_weight > 0:
        if d.world > 1:   # L_chain runs G_F a second time per update, outside DDP's one forward per backward
            raise EmoganError(f"train.{c.config_name}.chain_weight > 0 trains on one process only, not {d.world}")
        chain = ChainSequences(c.stores, train_rows, t.size, t.seed, t.chain_sequences)
        runtime["chain_sequences"] = len(chain.items)
    ctx = StepContext(nets, wrapped, optims, efer, perc_fn, t, amp, d, device, rep, clip,
                      None if w is None else torch.from_numpy(w), chain)
    return Session(c, d, device, out, infos, train_rows, test_rows, nets, optims, scheds, ctx,
                   MirrorDraws(t.seed, d.rank), runtime)


def config_drift(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Keys of the training config that differ between a checkpoint and this run (those that change results)."""
    free = {"epochs", "workers", "log_every", "keep_checkpoints", "eval_batch_size", "eval_rows"}

    def norm(k: str, v: Any) -> Any:
        # An e_FER spec written before every key was recorded lists only the ones it used.
        return {a: b for a, b in v.items() if b is not None} if k == "efer" and isinstance(v, dict) else v
    diff = [f"train.{k}" for k in set(old["train"]) | set(new["train"])
            if k not in free and norm(k, old["train"].get(k)) != norm(k, new["train"].get(k))]
    for k in ("stores", "fold", "folds_files", "folds_k"):
        if old.get(k) != new.get(k):
            diff.append(k)
    return sorted(diff)


def _restore(s: Session) -> tuple[int, int]:
    """Load the last checkpoint into nets, optimizers, schedulers and the RNG; (completed epochs, global step)."""
    cks = ck.list_checkpoints(s.out)
    if not cks:
        raise EmoganError(f"{s.out}: --resume but no checkpoint in {s.out / ck.CKPT_DIR}")
    path = cks[-1][1]
    state = ck.load_checkpoint(path)
    drift = config_drift(state["config"], as_dict(s.c))
    now = [x["content_sha256"] for x in s.runtime["stores"]]
    if "stores_content" in state and list(state["stores_content"]) != now:  # same paths, other data
        drift.append("stores (their content: " + ", ".join(i.path for i, a, b in zip(s.infos, state["stores_content"], now)
                                                          if a != b) + ")")
    if drift:
        raise EmoganError(f"{path}: cannot resume exactly, the config changed: {', '.join(drift)}")
    for r in ROLES:
        s.nets[r].load_state_dict(state["nets"][r])
        s.optims[r].load_state_dict(state["optims"][r])
        s.scheds[r].load_state_dict(state["scheds"][r])
    rng = state["rng"]
    torch.set_rng_state(rng["torch"][min(s.d.rank, len(rng["torch"]) - 1)])
    if s.device.type == "cuda" and rng.get("cuda"):
        torch.cuda.set_rng_state(rng["cuda"][min(s.d.rank, len(rng["cuda"]) - 1)])
    log.info("resuming %s after epoch %d (step %d)", s.out, int(state["epoch"]), int(state["global_step"]))
    return int(state["epoch"]), int(state["global_step"])


def _state(s: Session, epoch: int, step: int) -> dict[str, Any]:
    """A checkpoint: state_dicts of nets, optimizers and schedulers, the RNG, the config (no pickled objects)."""
    return {
        "format": 1, "config": as_dict(s.c), "epoch": epoch, "global_step": step,
        "stores_content": [x["content_sha256"] for x in s.runtime["stores"]],
        "nets": {r: m.state_dict() for r, m in s.nets.items()},
        "optims": {r: o.state_dict() for r, o in s.optims.items()},
        "scheds": {r: x.state_dict() for r, x in s.scheds.items()},
        "rng": {"torch": [torch.get_rng_state()],
                "cuda": [torch.cuda.get_rng_state(s.device)] if s.device.type == "cuda" else []},
    }


def _truncate_log(path: Path, start_epoch: int) -> None:
    """On resume: drop the records of epochs the checkpoint does not hold (they are run again)."""
    if not path.is_file():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln).get("epoch", -1) < start_epoch]
    path.write_text("".join(k + "\n" for k in keep))


def start(s: Session) -> tuple[int, int]:
    """Resume from the last checkpoint or seed a fresh run; write config.json, the log's first record, dvclive."""
    if s.c.resume:
        start_epoch, step = _restore(s)
    else:
        start_epoch, step = 0, 0
        # Per-rank randomness (dropout) after the identical initialisation.
        torch.manual_seed(s.t.seed + 1000003 * s.d.rank)
    if s.d.main:
        (s.out / "config.json").write_text(json.dumps({**as_dict(s.c), "runtime": s.runtime}, indent=2,
                                                      sort_keys=True) + "\n")
        if s.c.resume:
            _truncate_log(s.log_path, start_epoch)
        s.jsonl({"event": "resume" if s.c.resume else "start", "epoch": start_epoch, "step": step,
                 "time": time.time(), "world_size": s.d.world, "device": str(s.device),
                 "perceptual": s.runtime["perceptual"]["backbone"], "gw": s.t.nets.gw["name"]})
        from dvclive import Live

        s.live = Live(dir=s.c.live_dir, resume=s.c.resume, save_dvc_exp=False, dvcyaml=None)
        if not s.c.resume:
            s.live.log_params({"config_name": s.c.config_name, "fold": s.c.fold, "stores": s.c.stores,
                               "perceptual": s.runtime["perceptual"]["backbone"], "efer": s.runtime["efer"]["name"]})
    return start_epoch, step


def warm_up_de(s: Session) -> None:
    """D_E learns the expressions of real frontal flows first (de_warmup_steps), so that from G_F's first step
    its L_GAN term says which expression a flow shows instead of a random classifier's opinion. Same rows
    and order as the GAN's first epoch, but only the arrays D_E reads; mirroring draws of "epoch -1"."""
    warm = s.t.de_warmup_steps
    ds = s.dataset(DE_ARRAYS)
    ds.set_epoch(0)
    s.mirror.start_epoch(-1)
    losses: list[float] = []
    while len(losses) < warm:
        for batch in make_loader(ds, pin_memory=s.device.type == "cuda"):
            losses.append(float(de_step(s.prepare(batch), s.ctx)))
            if not all_true(math.isfinite(losses[-1]), s.d, s.device):
                s.jsonl({"event": "diverged", "phase": "de_warmup", "step": len(losses), "loss_de": losses[-1]})
                raise TrainingDiverged(f"{s.out}: non-finite D_E loss in the warm-up (step {len(losses)} of {warm}): "
                                       "NaN or inf in the training rows' flows? check the stores "
                                       f"({', '.join(i.path for i in s.infos)}); no checkpoint was written")
            if len(losses) >= warm:
                break
    last = sum(losses[-20:]) / len(losses[-20:])
    s.jsonl({"event": "de_warmup", "steps": warm, "de_first": losses[0], "de_last": last})
    if s.d.main:
        log.info("D_E warm-up: %d steps, loss %.3f -> %.3f", warm, losses[0], last)


def _check_finite(s: Session, vec: torch.Tensor, epoch: int, step: int) -> None:
    """Stop the run (every rank) at a non-finite loss; the last good checkpoint stays."""
    if all_true(bool(torch.isfinite(vec).all()), s.d, s.device):
        return
    bad = [k for k, v in zip(LOSS_NAMES, vec.tolist()) if not math.isfinite(v)]
    last = ck.list_checkpoints(s.out)
    keep = str(last[-1][1]) if last else "none (diverged in the first epoch)"
    s.jsonl({"event": "diverged", "epoch": epoch, "step": step, "losses": dict(zip(LOSS_NAMES, vec.tolist())),
             "last_good": keep})
    if s.live is not None:
        s.live.end()
    raise TrainingDiverged(f"{s.out}: non-finite loss ({', '.join(bad) or 'on another rank'}) at epoch "
                           f"{epoch + 1}, step {step}; stopped. Last good checkpoint: {keep}")


def train_epoch(s: Session, ds: StreamingStoreDataset, loader: Any, epoch: int, step: int) -> tuple[int, dict[str, float], int]:
    """One epoch of GAN steps, or of G_W's alone past `epochs`: (global step after it, mean losses, batches run)."""
    ds.set_epoch(epoch)
    s.mirror.start_epoch(epoch)
    n_batches = ds.steps_in_epoch(epoch, s.t.steps_per_epoch, f"{s.out}: train")
    sums = {k: 0.0 for k in LOSS_NAMES}
    gw_rows = 0.0
    gw_only = s.t.gw_alone(epoch)
    bar = tqdm(total=n_batches, desc=f"train epoch {epoch + 1}/{s.t.total_epochs}{' (G_W)' if gw_only else ''}",
               unit="step", leave=False,
               disable=not progress_enabled() or s.d.rank != 0)   # `emogan -q`: none; rank 0 only
    for i, batch in zip(range(n_batches), loader):
        bar.update(1)
        s.ctx.step = step
        losses = (gw_step if gw_only else gan_step)(s.prepare(batch), epoch, s.ctx)
        gw_rows += float(losses["gw_rows"])
        vec = torch.stack([losses[k].float() for k in LOSS_NAMES]).cpu()
        _check_finite(s, vec, epoch, step)
        vals = dict(zip(LOSS_NAMES, vec.tolist()))
        for k, v in vals.items():
            sums[k] += v
        step += 1
        if i % max(1, s.t.log_every) == 0 or i == n_batches - 1:
            s.jsonl({"event": "step", "epoch": epoch, "step": step, **vals})
    bar.close()
    if all_true(gw_rows == 0, s.d, s.device):
        raise EmoganError(f"{s.out}: epoch {epoch + 1} fed G_W no image rows (image_steps {s.t.image_steps} over "
                          f"{n_batches} batches): its loss would be silently absent. Widen image_steps or raise "
                          "steps_per_epoch")
    sums["gw_rows"] = gw_rows
    for x in s.scheds.values():
        x.step()
    return step, {k: v if k == "gw_rows" else v / max(n_batches, 1) for k, v in sums.items()}, n_batches


def end_epoch(s: Session, epoch: int, step: int, means: dict[str, float], n_batches: int,
              seconds: float) -> dict[str, Any]:
    """Held-out EPE, log record, dvclive, checkpoint (rank 0); ranks' buffers made equal under DDP."""
    last, gw_only = epoch == s.t.total_epochs - 1, s.t.gw_alone(epoch)
    gw_rows = int(means.get("gw_rows", 0))   # rows G_W trained on (train_epoch's count, not a mean)
    # G_W's own epochs: its losses only (the others are not computed there), in log.jsonl and dvclive alike
    means = {k: v for k, v in means.items() if k != "gw_rows" and (not gw_only or k in GW_LOSS_NAMES)}
    # Between epochs a spread subset of the held-out rows tracks progress; the last epoch uses them all.
    # G_F does not change in G_W's own epochs: evaluated again at the last one only.
    ev = evaluate_stores(s.nets["gf"], s.infos, s.test_rows, s.t, s.device, s.ctx.amp,
                         None if last else s.t.eval_rows) if s.d.main and (last or not gw_only) else {}
    checks = None
    if s.d.world > 1:
        broadcast_buffers(s.nets, s.d)
        checks = ddp_checksums(s.nets, s.d)
    if s.d.main:
        rec = {"event": "epoch", "epoch": epoch, "step": step, "batches": n_batches,
               "gw_rows": gw_rows, "gw_flow": gw_update_flow(s.t, epoch), "trains": "gw" if gw_only else "all",
               "samples_per_s": n_batches * s.t.batch_size * s.d.world / max(seconds, 1e-9), "loss": means, "test": ev}
        if checks is not None:
            rec["ddp_param_sums"] = checks
        s.jsonl(rec)
        for k, v in means.items():
            s.live.log_metric(f"train/loss_{k}", v)
        for name, e in ev.items():
            for k in ("epe_frontalized_px", "epe_input_px", "epe_zero_px", "epe_reduction"):
                s.live.log_metric(f"test/{name}/{k}", e[k])
        s.live.next_step()
        ck.save_checkpoint(ck.checkpoint_path(s.out, epoch + 1), _state(s, epoch + 1, step))
        ck.prune_checkpoints(s.out, s.t.keep_checkpoints)
        log.info("epoch %d/%d: %s; %s", epoch + 1, s.t.total_epochs, " ".join(
                     f"L_{k.upper()} {means[k]:.4f}" for k in ("gf", "epe", "dp", "de", "gw") if k in means),
                 "; ".join(f"{k} EPE {e['epe_frontalized_px']:.3f} px vs input {e['epe_input_px']:.3f} px"
                           for k, e in ev.items()))
    if s.d.world > 1:
        import torch.distributed as dist

        dist.barrier()
    return ev


def finish(s: Session, final: dict[str, Any]) -> dict[str, Any]:
    """Exported weights and metrics.json (rank 0); the final metrics."""
    if not final:  # resumed a finished run: evaluate what it holds
        final = evaluate_stores(s.nets["gf"], s.infos, s.test_rows, s.t, s.device, s.ctx.amp)
    ck.export_weights(s.out, s.nets, {**as_dict(s.c), "runtime": s.runtime})
    metrics: dict[str, Any] = {"fold": s.c.fold, "epochs": s.t.epochs, "gw_epochs": s.t.total_epochs, "test": final}
    if final:
        tot = sum(e["rows"] for e in final.values())
        fr, inp, zero = (sum(e[k] * e["rows"] for e in final.values()) / tot
                         for k in ("epe_frontalized_px", "epe_input_px", "epe_zero_px"))
        metrics.update({"epe_frontalized_px": fr, "epe_input_px": inp, "epe_zero_px": zero,
                        "epe_reduction": 1.0 - fr / inp if inp > 0 else 0.0})
        s.live.summary.update({k: metrics[k] for k in ("epe_frontalized_px", "epe_input_px", "epe_zero_px",
                                                       "epe_reduction")})
    (s.out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    s.live.end()
    return metrics


def run_training(c: RunConfig,
                 on_finish: Callable[[dict[str, nn.Module], Dist], None] | None = None) -> dict[str, Any]:
    """Train eMotion-GAN as RunConfig `c` says (training.config.resolve_run); returns the final metrics.

    `on_finish(nets, dist)` runs on every rank with the trained bare nets (e.g. to inspect DDP ranks).
    One writer per run folder (pipeline/lock.py): rank 0 (the one that writes) holds its lock.
    """
    from pipeline.lock import writer_lock

    lock = writer_lock(c.out) if int(os.environ.get("RANK", "0")) == 0 else contextlib.nullcontext()
    with lock:
        return _run_training(c, on_finish)


def _run_training(c: RunConfig, on_finish: Callable[[dict[str, nn.Module], Dist], None] | None) -> dict[str, Any]:
    s = open_session(c)
    start_epoch, step = start(s)
    if s.t.de_warmup_steps and start_epoch == 0:
        warm_up_de(s)
    ds = s.dataset(GAN_ARRAYS + (("input_image",) if reads_face(s.nets["gf"]) else ()))
    loader = make_loader(ds, pin_memory=s.device.type == "cuda")
    final: dict[str, Any] = {}
    for epoch in range(start_epoch, s.t.total_epochs):
        t0 = time.time()
        step, means, n_batches = train_epoch(s, ds, loader, epoch, step)
        ev = end_epoch(s, epoch, step, means, n_batches, time.time() - t0)
        if epoch == s.t.total_epochs - 1:
            final = ev
    if on_finish is not None:
        on_finish(s.nets, s.d)
    metrics = finish(s, final) if s.d.main else {}
    if s.d.owned:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return metrics
