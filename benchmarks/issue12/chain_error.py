"""Issue #12: where the chained neutral->apex flow's EPE comes from (diagnosis on validation subjects).

For the neutral->apex rows of the large poses of one run's held-out fold, against the frontal truth (Farneback on
the frontal neutral->apex pair), as a ratio of a zero flow's EPE (the bar is <= 0.5x):
- chain: the configured `evaluate.neutral_apex` (G_F's step-1 outputs composed, training/evaluation/chain.py);
- direct: G_F on the far pair's own flow;
- chain of the truths: the frontal step-1 truths composed the same way (what a perfect step-1 G_F would give:
  the composition's own floor against Farneback's direct flow);
- chain x a: the chain scaled by the one scalar that fits these rows best (is it only too strong?);
- chain blurred: Gaussian sigma in grid cells (is the excess high-frequency?);
- chain minus the low-order part of its error: the affine / quadratic field fitted to chain - truth inside the
  4-cell band (minimising its mean end-point norm), taken away; an oracle: how much of the error a global smooth
  correction (a head motion G_F left in, rigid or near-rigid) could remove at best;
- chain of the step errors: per sequence, |sum of step errors| against the sum of |step errors| (do G_F's
  step errors add up (a bias) or cancel (noise)?);
- the same with a band of b cells along each edge set to zero (b = 0, 2, 4, 8 of 64: evaluate.chain_border),
  and G_F's step-1 error by the step's place in the sequence, inside a 4-cell band (`by_step`).
G_F as `emogan evaluate` runs it (evaluate.gf_mirror_mean of --params).
Also a figure of the mean error per pixel (chain, direct, chain of truths) beside the truth's mean magnitude.

Evaluated as `emogan evaluate` does: flows resized to the model side, decoded to pixels, EPE = mean end-point
error over pixels. Run on validation folds only (the tuning split's fold 3): nothing here is a test-fold figure.

    python benchmarks/issue12/chain_error.py RUN_DIR data/stores/synth.zarr --fold 3 \
        --folds-file VAL/synth_tuning.csv --out docs/results/issue12/session19/chain_error_val3.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

LARGE = ("yaw", "pitch", "roll", "diagonal")


def _blur(f, sigma: float):
    import torch
    import torch.nn.functional as F

    r = int(3 * sigma + 0.5)
    x = torch.arange(-r, r + 1, dtype=f.dtype)
    k = torch.exp(-x ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    c = f.shape[1]
    f = F.conv2d(F.pad(f, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(f, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def _low_order_part(err, order: int, band: int, iters: int = 30):
    """The polynomial field of `order` (1 affine, 2 quadratic) in x, y, per row of err (N, 2, H, W), that
    minimises the mean end-point norm of err minus it over the pixels inside a band of `band` cells (iteratively
    reweighted least squares; a least-squares fit is pulled by the mouth's large errors and adds error elsewhere),
    evaluated everywhere."""
    import torch

    n = err.shape[-1]
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, n), torch.linspace(-1, 1, n), indexing="ij")
    terms = [torch.ones_like(xx), xx, yy] + ([xx * xx, xx * yy, yy * yy] if order >= 2 else [])
    basis = torch.stack(terms, -1).double()                                   # H, W, m
    inside = torch.zeros(n, n, dtype=torch.bool)
    inside[band:n - band, band:n - band] = True
    a = basis[inside]                                                          # P, m
    y = err.double()[:, :, inside].transpose(1, 2)                            # N, P, 2
    w = torch.ones(y.shape[:2], dtype=torch.float64)                          # N, P
    for _ in range(iters):
        sw = w.sqrt()[..., None]
        coef = torch.linalg.lstsq(a[None] * sw, y * sw).solution              # N, m, 2
        w = 1.0 / (y - a[None] @ coef).norm(dim=-1).clamp(min=1e-3)
    return torch.einsum("hwm,nmc->nchw", basis, coef).to(err.dtype)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("store")
    ap.add_argument("--fold", type=int, required=True)
    ap.add_argument("--folds-file", required=True)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--params", default="params.yaml", help="evaluate.gf_mirror_mean is read from here")
    ap.add_argument("--out", type=Path, required=True, help="JSON; the figure beside it (.png)")
    args = ap.parse_args()

    import torch

    from pipeline.schema import POSE_NAMES
    from training import flowrep
    from training.checkpoint import load_run
    from training.data import check_store, fold_rows, iter_rows, raw_group, select_rows
    from training.data import sequence_step_rows
    from training.evaluation.chain import chained_frontalization
    from training.evaluation.metrics import epe_px
    from training.flowrep import zero_border

    from pipeline.params import load_params

    run = load_run(args.run_dir)
    run.mirror_mean = bool(load_params(args.params)["evaluate"]["gf_mirror_mean"])
    info = check_store(args.store)
    rep, clip = info.representation, info.clip
    g = raw_group(args.store)
    source = int(g.attrs["source_size"])
    size = int(run.size) if hasattr(run, "size") else 64
    na = select_rows(args.store, fold_rows(info, args.fold, "test", args.folds_file, args.k), ["neutral_apex"])
    pose = np.asarray(g["pose"][:])[na]
    na = na[np.isin([POSE_NAMES[int(p)] for p in pose], LARGE)]
    steps = sequence_step_rows(args.store, na)
    na = np.array([r for r in na if int(r) in steps])
    chain = chained_frontalization(run, args.store, na, 32)

    def read(rows, arr):
        return torch.cat([b[arr].float() for b in iter_rows(args.store, np.asarray(rows), (arr,), 64)])

    def px(f_norm):
        return flowrep.decode(flowrep.resize_flow(f_norm, size, rep, clip), rep, clip)

    truth = px(read(na, "flow_target"))
    with torch.no_grad():
        direct = px(torch.cat([run.frontalize(read(na[i:i + 32], "flow_input")).cpu() for i in range(0, len(na), 32)]))
    ch = px(torch.stack([chain[int(r)] for r in na]))
    # the step-1 truths and G_F's step-1 outputs, in source px on the store's grid, composed as chain.py does
    cht, bias_ratio = [], []
    inner = None
    step_err: dict[str, np.ndarray] = {}
    step_zero: dict[str, np.ndarray] = {}
    pose_of = np.asarray(g["pose"][:])
    for r in na:
        rows = steps[int(r)]
        t_norm = read(rows, "flow_target")
        with torch.no_grad():
            o_norm = run.frontalize(read(rows, "flow_input")).cpu()
        t_px = flowrep.decode(t_norm, rep, clip)
        cht.append(flowrep.encode(flowrep.compose(list(t_px), source / t_px.shape[-1])[None], rep, clip)[0])
        o_px = flowrep.decode(o_norm, rep, clip)   # G_F's side; its step errors on that grid
        e = (o_px - flowrep.decode(flowrep.resize_flow(t_norm, o_px.shape[-1], rep, clip), rep, clip)).double()
        bias_ratio.append(float(e.sum(0).norm(dim=0).mean() / e.norm(dim=1).sum(0).mean()))
        if inner is None:
            inner = torch.zeros(o_px.shape[-2:], dtype=torch.float64)
            inner[4:-4, 4:-4] = 1
        p = POSE_NAMES[int(pose_of[r])]
        t_side = flowrep.decode(flowrep.resize_flow(t_norm, o_px.shape[-1], rep, clip), rep, clip).double()
        err = ((e.norm(dim=1) * inner).mean((1, 2))).numpy()
        zer = ((t_side.norm(dim=1) * inner).mean((1, 2))).numpy()
        step_err.setdefault(p, np.zeros(len(err)))[:len(err)] += err[:len(step_err[p])]
        step_zero.setdefault(p, np.zeros(len(zer)))[:len(zer)] += zer[:len(step_zero[p])]
    cht = px(torch.stack(cht))
    zero = torch.zeros_like(truth)
    e0 = epe_px(zero.numpy(), truth.numpy())

    def ratio(pred) -> float:
        return float(np.mean(epe_px(pred.numpy(), truth.numpy())) / np.mean(e0))

    a = float((ch * truth).sum() / (ch * ch).sum())
    res = {"run": str(args.run_dir), "fold": args.fold, "rows": int(len(na)), "zero_epe_px": float(np.mean(e0)),
           "chain": ratio(ch), "direct": ratio(direct), "chain_of_truths": ratio(cht),
           "chain_vs_chain_of_truths": float(np.mean(epe_px(ch.numpy(), cht.numpy())) / np.mean(e0)),
           "chain_best_scale": a, "chain_scaled": ratio(a * ch),
           "chain_blur": {str(s): ratio(_blur(ch, s)) for s in (1.0, 2.0, 4.0)},
           "chain_direct_mean": ratio((ch + direct) / 2),
           # oracle, a 4-cell band zeroed (compare border_cells["4"]["chain"])
           "chain_minus_low_order_error": {name: ratio(zero_border(ch - _low_order_part(ch - truth, o, 4), 4 / size))
                                           for name, o in (("affine", 1), ("quadratic", 2))},
           "magnitude_px": {k: float(v.norm(dim=1).mean()) for k, v in
                            (("truth", truth), ("chain", ch), ("direct", direct), ("chain_of_truths", cht))},
           "step_error_sum_over_sum_of_norms": float(np.mean(bias_ratio)),
           "border_cells": {str(b): {k: ratio(zero_border(v, b / size)) for k, v in
                                     (("chain", ch), ("direct", direct), ("chain_of_truths", cht))}
                            for b in (0, 2, 4, 8)},
           "by_step": {p: [round(float(a / max(z, 1e-12)), 3) for a, z in zip(step_err[p], step_zero[p])]
                       for p in step_err},
           "by_pose": {}}
    poses = np.array([POSE_NAMES[int(p)] for p in np.asarray(g["pose"][:])[na]])
    for p in LARGE:
        m = torch.from_numpy(poses == p)
        if m.any():
            z = np.mean(e0[m.numpy()])
            res["by_pose"][p] = {k: float(np.mean(epe_px(v[m].numpy(), truth[m].numpy())) / z)
                                 for k, v in (("chain", ch), ("direct", direct), ("chain_of_truths", cht))}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    maps = [("truth |F|", truth.norm(dim=1).mean(0)), ("chain error", (ch - truth).norm(dim=1).mean(0)),
            ("direct error", (direct - truth).norm(dim=1).mean(0)),
            ("chain-of-truths error", (cht - truth).norm(dim=1).mean(0))]
    vmax = max(float(m.max()) for _, m in maps)
    fig, ax = plt.subplots(1, 4, figsize=(12, 3.4))
    for a_, (t, m) in zip(ax, maps):
        im = a_.imshow(m.numpy(), vmin=0, vmax=vmax, cmap="magma")
        a_.set_title(f"{t}\nmean {float(m.mean()):.2f} px", fontsize=9)
        a_.axis("off")
    fig.colorbar(im, ax=ax, fraction=0.02)
    fig.suptitle(f"neutral->apex, large poses, fold {args.fold} ({len(na)} rows): mean per pixel, px", fontsize=10)
    fig.savefig(args.out.with_suffix(".png"), dpi=90, bbox_inches="tight")


if __name__ == "__main__":
    main()
