"""Issue #12: how low can a neutral->apex EPE go without the row's own motion? Reference predictors on the
held-out fold's neutral->apex rows, each against the frontal truth, as a ratio of a zero flow's EPE (the bar is
<= 0.5x), beside G_F's own ratio from an evaluation's rows.csv (the configured chain, `gf_rows_csv`, and G_F on the
far pair's own flow, `gf_direct_rows_csv`).

- class mean (oracle label): the mean frontal truth of the training folds' neutral->apex rows of the row's class
  (every pose: the truth is frontal whatever the pose). It knows the expression and nothing of the person or the
  row's action-unit draw: what a frontalizer reaches that reads only the class from the input.
- class mean, best scale: the same mean times the one scalar per row that minimises the squared error (knows
  the row's amount of motion; an optimistic bound for "the right pattern, scaled").
- same person and class, another pose: the truth of the same person's same expression in another pose's
  sequence (its own action-unit draw): how much a person's expression varies from one recording to the next.

Evaluated as `emogan evaluate` does: flows resized to the model side (64) with training.flowrep.resize_flow,
decoded to pixels, EPE per row = mean over pixels of the end-point error.

    python benchmarks/issue12/epe_floor.py data/stores/synth.zarr data_manifests/synth_folds.csv \
        --folds 0 1 2 5 6 7 --rows docs/results/long3     # rows.csv of G_F per fold (optional)
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

LARGE = ("yaw", "pitch", "roll", "diagonal")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store")
    ap.add_argument("folds_file")
    ap.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--size", type=int, default=64, help="evaluation grid side (the small config's model side)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--rows", type=Path, default=None, help="results folder with fold_K/rows.csv (G_F's EPE)")
    ap.add_argument("--out", type=Path, default=None, help="also write the table as JSON here")
    args = ap.parse_args()

    import torch

    from pipeline.schema import CLASS_NAMES, POSE_NAMES
    from training import flowrep
    from training.data import check_store, fold_rows, iter_rows, select_rows
    from training.evaluation.metrics import epe_px, read_rows_csv

    info = check_store(args.store)
    rep, clip = info.representation, info.clip
    out: dict = {"store": args.store, "size": args.size, "folds": {}}
    for k in args.folds:
        tr = select_rows(args.store, fold_rows(info, k, "train", args.folds_file, args.k), ["neutral_apex"])
        te = select_rows(args.store, fold_rows(info, k, "test", args.folds_file, args.k), ["neutral_apex"])

        def read(rows):
            parts = list(iter_rows(args.store, rows, ("flow_target", "label", "pose", "subject", "sequence"), 256))
            f = torch.cat([flowrep.resize_flow(b["flow_target"].float(), args.size, rep, clip) for b in parts])
            px = flowrep.decode(f, rep, clip).numpy().astype(np.float64)
            meta = {a: torch.cat([b[a] for b in parts]).numpy() for a in ("label", "pose", "subject")}
            return px, meta

        tr_px, tr_m = read(tr)
        te_px, te_m = read(te)
        means = {c: tr_px[tr_m["label"] == c].mean(0) for c in np.unique(tr_m["label"])}
        pred = np.stack([means[c] for c in te_m["label"]])
        dot = (pred * te_px).reshape(len(pred), -1).sum(1)
        nrm = (pred * pred).reshape(len(pred), -1).sum(1)
        scaled = pred * (dot / np.maximum(nrm, 1e-12))[:, None, None, None]
        # same person and class, another pose's sequence (the first other one found)
        other = np.full(len(te_px), -1)
        for i in range(len(te_px)):
            j = np.flatnonzero((te_m["subject"] == te_m["subject"][i]) & (te_m["label"] == te_m["label"][i])
                               & (te_m["pose"] != te_m["pose"][i]))
            other[i] = j[0] if len(j) else -1
        large = np.isin(np.asarray(POSE_NAMES)[te_m["pose"]], LARGE)
        zero = epe_px(np.zeros_like(te_px), te_px)
        res = {"n_large": int(large.sum()), "epe_zero_px": float(zero[large].mean())}
        for name, p in (("class_mean", pred), ("class_mean_best_scale", scaled)):
            e = epe_px(p, te_px)
            res[name] = float(e[large].mean() / zero[large].mean())
        ok = large & (other >= 0)
        res["same_person_other_pose"] = float(epe_px(te_px[other[ok]], te_px[ok]).mean() / zero[ok].mean())
        nonneutral = large & (te_m["label"] != CLASS_NAMES.index("neutral"))
        res["class_mean_expressive_only"] = float(epe_px(pred[nonneutral], te_px[nonneutral]).mean()
                                                  / zero[nonneutral].mean())
        if args.rows is not None:
            r = read_rows_csv(args.rows / f"fold_{k}" / "rows.csv")
            sel = (r["strategy"] == "neutral_apex") & np.isin(r["pose"], LARGE) & (r["dataset"] == Path(args.store).stem)
            res["gf_rows_csv"] = float(np.nanmean(r["epe_emotiongan"][sel]) / np.nanmean(r["epe_zero"][sel]))
            res["gf_direct_rows_csv"] = float(np.nanmean(r["epe_gf_direct"][sel]) / np.nanmean(r["epe_zero"][sel]))
            res["epe_zero_px_rows_csv"] = float(np.nanmean(r["epe_zero"][sel]))
        out["folds"][k] = res
        print(f"fold {k}: " + ", ".join(f"{a} {b:.3f}" if isinstance(b, float) else f"{a} {b}" for a, b in res.items()),
              flush=True)
    keys = [a for a in next(iter(out["folds"].values())) if a != "n_large"]
    out["mean"] = {a: float(np.mean([f[a] for f in out["folds"].values()])) for a in keys}
    out["std"] = {a: float(np.std([f[a] for f in out["folds"].values()], ddof=1)) if len(out["folds"]) > 1 else 0.0
                  for a in keys}
    print("mean: " + ", ".join(f"{a} {out['mean'][a]:.3f} ± {out['std'][a]:.3f}" for a in keys))
    if args.out is not None:
        args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
