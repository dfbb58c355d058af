"""G_W probe (issue #13): G_W alone on the ground-truth flows, judged on held-out neutral->apex rows.

A research tool, not a stage: it answers "which G_W keeps the person and shows the expression" in minutes on a
CPU, with the project's own G_W nets (training/models/), the step's G_W losses (training.step._gw_losses: L_1,
L_perc on the run's perceptual backbone, L_eFER) and the FER2013 mini-Xception as the independent judge. Use it on
a tuning split (`emogan folds MANIFEST --tuning`): `--fold` is then the validation fold and the reserved test
subjects are read by nothing (the probe refuses a split that would train on them).

    python benchmarks/probe_gw.py STORE --folds-file F --fold 3 --steps 300 --out probe.json \
        --gw '{"name": "gw_warp", "ngf": 16, "max_ch": 128, "n_down": 3, "n_res": 2}'

It trains as `train.<--config>` says (size, batch, G_W optimizer, L_1 and L_perc weights, image_steps, perceptual,
hflip), G_W's flow the ground truth (gw_flow's first phase). The judge (FER2013) never trains the faces it reads:
L_eFER is off, or, with --efer-path, comes from an own e_FER trained on the split (`emogan train-fer --fold`).
Prints one JSON object: rows, seconds, and per face source (real frontal face, the neutral face, the warp alone
for gw_warp, G_W of the ground-truth flow) the SSIM against the real frontal face, FER2013's accuracy and its ratio to the real faces',
the checkerboard ratio (Nyquist share against the neutral face's), and the false colour: the mean absolute difference
of the colour (each channel minus the pixel's mean of the three, grey levels 0-255) from the real frontal face's,
which FER2013 and SSIM, both on grey, cannot see. --sheet PNG draws 8 validation faces of each source.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.folds import read_folds
from pipeline.params import as_dict, load_params
from pipeline.schema import CLASS_NAMES, STRATEGY_NAMES
from pipeline.weights import weights_path
from training import flowrep
from training.config import fer2013_frame, train_config
from training.data import MirrorDraws, check_store, fold_rows, mirror_batch, raw_group
from training.distributed import Dist
from training.evaluation.metrics import accuracy, chroma_u8, ssim_u8
from training.models.efer import load_efer, perceptual_backbone
from training.models.fer2013 import load_fer2013
from training.models.gw_warp import nyquist_share
from training.models import losses as L
from training.models.networks import build, build_from, complete_gw_spec
from training.step import StepContext, _gw_losses, image_rows, make_optimizer

ROOT = Path(__file__).resolve().parents[1]


def load_rows(store: str, rows: np.ndarray, size: int, rep: str, clip: float) -> dict[str, torch.Tensor]:
    """Rows at the model side: flow_target (normalized), neutral and target_image in [-1, 1], label, step."""
    g = raw_group(store)
    out: dict[str, torch.Tensor] = {k: torch.from_numpy(np.asarray(g[k][:])[rows].astype(np.int64))
                                    for k in ("label", "step", "strategy")}
    flow = torch.from_numpy(np.asarray(g["flow_target"].get_orthogonal_selection((rows,)), np.float32))
    out["flow_target"] = flowrep.resize_flow(flow, size, rep, clip)
    for k in ("neutral", "target_image"):
        x = torch.from_numpy(np.asarray(g[k].get_orthogonal_selection((rows,)))).float() / 127.5 - 1
        out[k] = F.interpolate(x, size=(size, size), mode="area") if x.shape[-1] != size else x
    return out


def u8(x: torch.Tensor) -> np.ndarray:
    return ((x.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()


def residual_classifier(gw: torch.nn.Module, tr: dict[str, torch.Tensor], te: dict[str, torch.Tensor], seed: int,
                        log: Any, steps: int = 400) -> torch.nn.Module:
    """A small image classifier of what the warp cannot explain: (face - warped neutral face) / 2 + 1/2 of the
    training rows (mirrored at random, classes balanced), frozen; logs its accuracy on the training and held-out rows."""
    torch.manual_seed(seed)
    with torch.no_grad():
        res_tr = (tr["target_image"] - gw.warp(tr["flow_target"], tr["neutral"])[0]) * 0.5 + 0.5
        res_te = (te["target_image"] - gw.warp(te["flow_target"], te["neutral"])[0]) * 0.5 + 0.5
    y = tr["label"]
    net = build("fer_cnn", size=res_tr.shape[-1], channels=[16, 32, 64, 128], dropout=0.3)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    w = 1.0 / torch.bincount(y, minlength=len(CLASS_NAMES)).clamp_min(1).float()
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(y), (32,), generator=gen)
        x = res_tr[idx]
        flip = torch.rand(len(idx), generator=gen) < 0.5
        x[flip] = x[flip].flip(-1)
        loss = F.cross_entropy(net(x), y[idx], weight=w / w.mean())
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        a_tr = float((net(res_tr).argmax(1) == y).float().mean())
        a_te = float((net(res_te).argmax(1) == te["label"]).float().mean())
    log(f"residual classifier: accuracy {a_tr:.3f} on the training rows, {a_te:.3f} on the held-out rows")
    return net


def train_gw(tr: dict[str, torch.Tensor], t: Any, gw: torch.nn.Module, steps: int, fer: torch.nn.Module,
             perc: Any, rep: str, clip: float, log: Any, focus: float = 0.0, adv: float = 0.0,
             res_net: torch.nn.Module | None = None, res_weight: float = 0.0) -> None:
    """G_W on the ground-truth flows of the training image rows, the step's losses (plus, with `focus` > 0, an
    L_1 weighted where the warp alone misses the target; with `adv` > 0, that weight times a conditional PatchGAN's
    adversarial loss, the discriminator trained beside it; with `res_net`, `res_weight` times the cross-entropy of
    that classifier on G_W's correction (face - warp)), t.optim.gw."""
    opt = make_optimizer(gw.parameters(), t.optim.gw, fused=False)
    disc = build("dp", in_ch=6, ndf=32, n_layers=3, max_ch=256) if adv else None
    opt_d = torch.optim.Adam(disc.parameters(), lr=2e-4, betas=(0.5, 0.999)) if disc is not None else None
    ctx = StepContext({"gw": gw}, {"gw": gw}, {"gw": opt}, fer, perc, t, contextlib.nullcontext,
                      Dist(), torch.device("cpu"), rep, clip)
    gen = torch.Generator().manual_seed(t.seed)
    mirror = MirrorDraws(t.seed)
    n = len(tr["label"])
    for s in range(steps):
        mirror.start_epoch(s)
        idx = torch.randint(0, n, (min(t.batch_size, n),), generator=gen)
        b = {k: v[idx] for k, v in tr.items()}
        if t.hflip:
            b = mirror_batch(b, mirror.draw(len(idx)), rep, clip)
        parts = gw.parts(b["flow_target"], b["neutral"]) if hasattr(gw, "parts") else {"out": gw(b["flow_target"],
                                                                                                      b["neutral"])}
        losses = _gw_losses(parts["out"], b["target_image"], b["label"], ctx, b["neutral"])
        total = losses["gw"]
        if focus and "warped" in parts:
            # L_1 again, weighted by how far the warp alone is from the target (what the refinement must paint):
            # the mouth interior, teeth, creases; weights have mean 1 per face.
            d = (b["target_image"] - parts["warped"]).abs().mean(1, keepdim=True).detach()
            w = d / d.mean(dim=(2, 3), keepdim=True).clamp_min(1e-6)
            total = total + t.alphas[0] * focus * (w * (parts["out"] - b["target_image"]).abs()).mean()
        if res_net is not None and "warped" in parts:
            res = (parts["out"] - parts["warped"].detach()) * 0.5 + 0.5
            total = total + res_weight * F.cross_entropy(res_net(res), b["label"])
        if disc is not None:
            # A conditional PatchGAN on (neutral face, face): real frontal apexes against G_W's; G_W is rewarded
            # for faces it calls real (texture a pixel or feature distance to one target does not ask for).
            fake = parts["out"]
            d_loss = L.dp_loss(disc(torch.cat([b["neutral"], b["target_image"]], 1)),
                               disc(torch.cat([b["neutral"], fake.detach()], 1)))
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            total = total + adv * L.bce_logits(disc(torch.cat([b["neutral"], fake], 1)), True)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        if s % 50 == 0 or s == steps - 1:
            log(f"step {s + 1}/{steps}: " + " ".join(f"{k} {float(v.detach()):.4f}" for k, v in losses.items()))


@torch.no_grad()
def score(gw: torch.nn.Module, te: dict[str, torch.Tensor], fer: torch.nn.Module,
          batch: int = 32) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Per face source: SSIM vs the real frontal face, FER2013 accuracy (and / the real faces', and per class),
    checkerboard, false colour; and the faces (uint8) per source."""
    gw.eval()
    faces: dict[str, list[np.ndarray]] = {"frontal_gt": [], "neutral": [], "gw_gt": []}
    if hasattr(gw, "warp"):
        faces["warp_gt"] = []
    for i in range(0, len(te["label"]), batch):
        fl, nu, tg = (te[k][i:i + batch] for k in ("flow_target", "neutral", "target_image"))
        faces["frontal_gt"].append(u8(tg))
        faces["neutral"].append(u8(nu))
        faces["gw_gt"].append(u8(gw(fl, nu)))
        if "warp_gt" in faces:
            faces["warp_gt"].append(u8(gw.warp(fl, nu)[0]))
    a = {k: np.concatenate(v) for k, v in faces.items()}
    labels = te["label"].numpy()
    preds = {k: fer(torch.from_numpy(v).float() / 255).argmax(1).numpy() for k, v in a.items()}
    acc = {k: accuracy(labels, p) for k, p in preds.items()}
    nyq_ref = float(nyquist_share(torch.from_numpy(a["neutral"]).float()).mean())
    recall = {k: {CLASS_NAMES[c]: float((p[labels == c] == c).mean()) for c in np.unique(labels)}
              for k, p in preds.items()}
    return {k: {"ssim": float(ssim_u8(a[k], a["frontal_gt"]).mean()), "fer2013": acc[k],
                "fer2013_vs_real": acc[k] / acc["frontal_gt"] if acc["frontal_gt"] else None,
                "fer2013_recall": recall[k],
                "checkerboard": float(nyquist_share(torch.from_numpy(a[k]).float()).mean()) / max(nyq_ref, 1e-12),
                "false_colour": float(chroma_u8(a[k], a["frontal_gt"]).mean())}
            for k in a}, a


def contact_sheet(faces: dict[str, np.ndarray], out: Path, n: int = 8) -> None:
    """One row per face source: n of its faces side by side, evenly spaced through the set (the first n when it
    holds fewer than 2n)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(faces), n, figsize=(1.2 * n, 1.3 * len(faces)), squeeze=False)
    for r, (k, v) in enumerate(faces.items()):
        for j in range(n):
            axes[r, j].imshow(v[min(j * (len(v) // n), len(v) - 1)].transpose(1, 2, 0))
            axes[r, j].axis("off")
        axes[r, 0].set_title(k, fontsize=7, loc="left")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store")
    ap.add_argument("--folds-file", required=True, help="folds CSV (a tuning split)")
    ap.add_argument("--fold", type=int, required=True, help="held-out (validation) fold")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--config", default="small", help="params.yaml train.<config> to train as")
    ap.add_argument("--gw", default=None, help="JSON G_W spec (default: the config's nets.gw)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--perc-frame", type=float, default=None,
                    help="central fraction of the faces the FER2013 perceptual backbone reads (default: training's, "
                         "training.config.fer2013_frame; 1 = the whole crop, as training read it before)")
    ap.add_argument("--seed", type=int, default=None, help="G_W's seed (default: the config's)")
    ap.add_argument("--judge-grad", default=None, choices=("rgb", "grey"),
                    help="the gradient L_perc and L_eFER send back (default: the config's judge_grad)")
    ap.add_argument("--alphas", default=None, help="L_1,L_perc weights (default: the config's alphas)")
    ap.add_argument("--focus", type=float, default=0.0,
                    help="weight of an extra L_1 focused where the warp alone misses the target (gw_warp only)")
    ap.add_argument("--adv", type=float, default=0.0,
                    help="weight of an adversarial loss from a conditional PatchGAN on (neutral face, face)")
    ap.add_argument("--efer-path", default=None,
                    help="an own e_FER (`emogan train-fer` on this split, this --fold held out) for L_eFER; the third "
                         "--alphas weight (default 0) then weighs it. Without it L_eFER is off")
    ap.add_argument("--residual-efer", type=float, default=0.0,
                    help="weight of a cross-entropy on G_W's correction (face - warp) by a classifier trained here on "
                         "the training rows' real residuals (face - warp of the neutral face): gw_warp only")
    ap.add_argument("--out", required=True)
    ap.add_argument("--sheet", default=None, help="PNG: 8 validation faces of each source, evenly spaced")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t0 = time.time()
    if min(read_folds(a.folds_file).values()) >= 0 or a.fold < 0:
        raise SystemExit(f"{a.folds_file}: not a tuning split (no reserved fold -1): write one with "
                         "`emogan folds MANIFEST --tuning` and hold out its validation fold")
    params = load_params(a.params)
    t = train_config(params, a.config)
    a1, a2, *a3 = (float(v) for v in a.alphas.split(",")) if a.alphas else t.alphas[:2]
    if a3 and a3[0] and not a.efer_path:
        raise SystemExit("--alphas gives L_eFER a weight: give --efer-path too (FER2013 is the judge, not e_FER)")
    t = dataclasses.replace(t, alphas=(a1, a2, a3[0] if a3 else 0.0), seed=t.seed if a.seed is None else a.seed,
                            judge_grad=a.judge_grad or t.judge_grad)
    if a.perc_frame is None:
        a.perc_frame = fer2013_frame(params)
    info = check_store(a.store)
    rep, clip = info.representation, info.clip
    size = t.size or info.size
    tr_rows = fold_rows(info, a.fold, "train", Path(a.folds_file), a.k)
    te_rows = fold_rows(info, a.fold, "test", Path(a.folds_file), a.k)
    g = raw_group(a.store)
    step, strat = np.asarray(g["step"][:]), np.asarray(g["strategy"][:])
    tr_rows = tr_rows[image_rows(torch.from_numpy(step[tr_rows].astype(np.int64)), t.image_steps).numpy()]
    te_rows = te_rows[strat[te_rows] == STRATEGY_NAMES.index("neutral_apex")]
    tr, te = load_rows(a.store, tr_rows, size, rep, clip), load_rows(a.store, te_rows, size, rep, clip)
    # The judge reads the faces framed as `emogan evaluate` frames them (evaluate.fer2013_margin); the perceptual
    # backbone (auto -> FER2013 without VGG16) reads --perc-frame of them.
    fer_file = weights_path("fer2013", params)
    fer = load_fer2013(fer_file, frame=fer2013_frame(params))
    perc, _, perc_info = perceptual_backbone(t.perceptual, load_fer2013(fer_file, frame=a.perc_frame), fer_file)
    efer = fer
    if a.efer_path:
        efer = load_efer({"name": "own", "path": a.efer_path}, fold=a.fold)[0]
    spec = complete_gw_spec(json.loads(a.gw) if a.gw else as_dict(t.nets)["gw"], [info])
    torch.manual_seed(t.seed)
    gw = build_from(spec)
    log = (lambda m: print(f"[{time.time() - t0:.0f}s] {m}", flush=True))
    log(f"train image rows {len(tr_rows)}, validation neutral->apex rows {len(te_rows)}, size {size}, G_W {spec}, "
        f"perceptual {perc_info['backbone']}")
    res_net = residual_classifier(gw, tr, te, t.seed, log) if a.residual_efer else None
    train_gw(tr, t, gw, a.steps, efer, perc, rep, clip, log, a.focus, a.adv, res_net, a.residual_efer)
    res, faces = score(gw, te, fer)
    if a.sheet:
        contact_sheet(faces, Path(a.sheet))
    rec = {"args": vars(a), "gw": spec, "perceptual": perc_info["backbone"], "train_rows": int(len(tr_rows)),
           "val_rows": int(len(te_rows)), "seconds": time.time() - t0, "faces": res}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(rec, indent=1) + "\n")
    for k, v in res.items():
        log(f"{k}: SSIM {v['ssim']:.3f} FER2013 {v['fer2013']:.3f} ({v['fer2013_vs_real'] or 0:.2f}x) "
            f"checkerboard {v['checkerboard']:.2f} false colour {v['false_colour']:.2f}; "
            + " ".join(f"{c[:4]} {r:.2f}" for c, r in v["fer2013_recall"].items()))


if __name__ == "__main__":
    main()
