"""Supervised G_F probe (issue #12): G_F alone with L_epe + L_char on tuning folds, judged on validation subjects.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/probe_gf.py --name NAME \
        --stores data/stores/synth.zarr data/stores/synth_ckplus.zarr \
        --folds data_manifests/tuning/synth_folds.csv data_manifests/tuning/synth_ckplus_folds.csv \
        --judge models/tuning/flowcnn_val3 --samples 60000 [-S nets.gf.output=residual ...]

A fast proxy for the GAN (docs/research/large_motion.md): the config's G_F, optimizer, batch size,
side, mirroring and reconstruction weights (params.yaml `train.<config>`, overridden by `-S key=value`,
values read as YAML), trained on the training folds of a tuning folds file (reserved test subjects
have fold -1 and are never read), then scored on its validation fold: EPE in source pixels of the
input, G_F's output and a zero flow against the frontal truth, and the Flow-CNN judge (trained by
`emogan train-flowcnn` on the same tuning training folds) on input, output and truth; per dataset,
strategy (neutral_apex, frame_to_frame by step) and pose. `--input-stores` reads the model input
from stores normalized with another clip (same flows, same rows): the separate-clips probe.
The frame_to_frame pair (0, n-1) that duplicates a sequence's neutral_apex pair is left out.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from pipeline.params import as_dict, load_params
from pipeline.schema import POSE_NAMES, STRATEGY_NAMES
from training import flowrep
from training import losses as L
from training.config import train_config
from training.data import check_store, fold_rows, raw_group
from training.flowcnn import flip_flows, load_flowcnn
from training.loop import make_optimizer, resize_flow
from training.registry import build_from

NA, F2F = STRATEGY_NAMES.index("neutral_apex"), STRATEGY_NAMES.index("frame_to_frame")
LARGE = ("yaw", "pitch", "roll", "diagonal")


def set_key(d: dict[str, Any], dotted: str, value: Any) -> None:
    """d['a']['b'] = value for 'a.b'."""
    keys = dotted.split(".")
    for k in keys[:-1]:
        d = d[k]
    d[keys[-1]] = value


def duplicate_pairs(strategy: np.ndarray, sequence: np.ndarray, step: np.ndarray, frame_t: np.ndarray) -> np.ndarray:
    """(N,) bool: frame_to_frame rows (0, n-1) that repeat their sequence's neutral_apex pair."""
    na_step = {int(s): int(k) for s, k in zip(sequence[strategy == NA], step[strategy == NA])}
    na_of_row = np.array([na_step.get(int(s), -1) for s in sequence])
    return (strategy == F2F) & (frame_t == 0) & (step == na_of_row)


def load_rows(target_store: str, input_store: str, rows: np.ndarray, size: int,
              landmark: str | None = None) -> dict[str, Any]:
    """Rows of a store pair at the model side: input (input store's clip), target (target store's clip), codes;
    with `landmark` (an `emogan baseline-landmark` file of the target store) its flows where it has the row."""
    it, ii = check_store(target_store), check_store(input_store)
    gt, gi = raw_group(target_store), raw_group(input_store)
    codes = {k: np.asarray(gt[k][:])[rows] for k in ("label", "subject", "sequence", "pose", "strategy", "step")}
    # frame_t is an extra array of pipeline stores (test fixtures lack it: no duplicate pairs there).
    codes["frame_t"] = np.asarray(gt["frame_t"][:])[rows] if "frame_t" in gt else np.ones(len(rows), np.int64)
    keep = ~duplicate_pairs(codes["strategy"], codes["sequence"], codes["step"], codes["frame_t"])
    rows, codes = rows[keep], {k: v[keep] for k, v in codes.items()}
    out = {"flow_input": [], "flow_target": []}
    chunk = 512
    for a in range(0, len(rows), chunk):
        r = rows[a:a + chunk]
        x = torch.from_numpy(np.asarray(gi["flow_input"].get_orthogonal_selection((r,)), np.float32))
        y = torch.from_numpy(np.asarray(gt["flow_target"].get_orthogonal_selection((r,)), np.float32))
        out["flow_input"].append(resize_flow(x, size, ii.representation, ii.clip).half())
        out["flow_target"].append(resize_flow(y, size, it.representation, it.clip).half())
    res = {k: torch.cat(v) for k, v in out.items()}
    res["lm_have"] = torch.zeros(len(rows), dtype=torch.bool)
    res["landmark"] = torch.zeros_like(res["flow_target"])
    if landmark:
        lm = np.load(landmark)
        where = {int(r): i for i, r in enumerate(lm["rows"])}
        have = np.array([int(r) in where for r in rows])
        if have.any():
            li = np.array([where[int(r)] for r in rows[have]])
            f = torch.from_numpy(lm["flow"][li].astype(np.float32))
            res["landmark"][torch.from_numpy(have)] = resize_flow(f, size, it.representation, it.clip).half()
        res["lm_have"] = torch.from_numpy(have)
    res.update({k: torch.from_numpy(v.astype(np.int64)) for k, v in codes.items()})
    res["dataset"] = Path(target_store.rstrip("/")).name.removesuffix(".zarr")
    res["clip_in"], res["clip"], res["rep_in"], res["rep"] = ii.clip, it.clip, ii.representation, it.representation
    return res


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Concatenate row sets of several stores (same clips), with a dataset index per row."""
    out = {k: torch.cat([p[k] for p in parts]) for k in parts[0] if isinstance(parts[0][k], torch.Tensor)}
    out["dataset_idx"] = torch.cat([torch.full((len(p["step"]),), i, dtype=torch.long) for i, p in enumerate(parts)])
    out["datasets"] = [p["dataset"] for p in parts]
    for k in ("clip_in", "clip", "rep_in", "rep"):
        vals = {p[k] for p in parts}
        assert len(vals) == 1, f"stores disagree on {k}: {vals}"
        out[k] = parts[0][k]
    return out


def row_weights(step: torch.Tensor, strategy: torch.Tensor, t: dict[str, Any], table: torch.Tensor | None) -> torch.Tensor | None:
    """Per-row weights of the flow losses (None: plain mean), as the trainer's `flow_loss_weighting`."""
    if table is None:
        return None
    return table[step.clamp(max=len(table) - 1)]


def evaluate(gf: torch.nn.Module, val: dict[str, Any], judge, batch: int = 256) -> dict[str, np.ndarray]:
    """Per-row EPE (px) of input, G_F and zero flow vs truth; judge predictions on input, G_F, truth."""
    gf.eval()
    rep, clip = val["rep"], val["clip"]
    rec: dict[str, list[np.ndarray]] = {k: [] for k in ("epe_input", "epe_gf", "epe_zero", "epe_landmark",
                                                        "pred_input", "pred_gf", "pred_truth", "pred_landmark")}
    with torch.no_grad():
        for a in range(0, len(val["step"]), batch):
            x = val["flow_input"][a:a + batch].float()
            y = val["flow_target"][a:a + batch].float()
            fr = gf(x).float()
            # The input as the project scores it: in the target's representation and clip.
            x_t = flowrep.encode(flowrep.decode(x, val["rep_in"], val["clip_in"]), rep, clip)
            y_px = flowrep.decode(y, rep, clip)
            rec["epe_input"].append(flowrep.epe_px(x_t, y, rep, clip).numpy())
            rec["epe_gf"].append(flowrep.epe_px(fr, y, rep, clip).numpy())
            rec["epe_zero"].append(torch.linalg.vector_norm(y_px, dim=1).flatten(1).mean(1).numpy())
            lm, have = val["landmark"][a:a + batch].float(), val["lm_have"][a:a + batch].numpy()
            rec["epe_landmark"].append(np.where(have, flowrep.epe_px(lm, y, rep, clip).numpy(), np.nan))
            for k, f in (("pred_input", x_t), ("pred_gf", fr), ("pred_truth", y), ("pred_landmark", lm)):
                p = judge.logits(f).argmax(1).numpy()
                rec[k].append(np.where(have, p, -1) if k == "pred_landmark" else p)
    gf.train()
    return {k: np.concatenate(v) for k, v in rec.items()}


def summarize(rec: dict[str, np.ndarray], val: dict[str, Any]) -> dict[str, Any]:
    """Accuracy and mean EPE by dataset x strategy group x pose (and the large-pose group)."""
    lab = val["label"].numpy()
    ds = val["dataset_idx"].numpy()
    strat, step, pose = val["strategy"].numpy(), val["step"].numpy(), val["pose"].numpy()
    sgroups = {"neutral_apex": strat == NA, "f2f_1": (strat == F2F) & (step == 1),
               "f2f_2-4": (strat == F2F) & (step >= 2) & (step <= 4), "f2f_5+": (strat == F2F) & (step >= 5),
               "f2f_all": strat == F2F, "all": np.ones(len(lab), bool)}
    out: dict[str, Any] = {}
    for di, dname in enumerate(val["datasets"]):
        present = sorted(set(pose[ds == di]))
        pgroups = {POSE_NAMES[p] if 0 <= p < len(POSE_NAMES) else str(p): pose == p for p in present}
        if any(POSE_NAMES[p] in LARGE for p in present if 0 <= p < len(POSE_NAMES)):
            pgroups["large"] = np.isin(pose, [POSE_NAMES.index(p) for p in LARGE])
        pgroups["all"] = np.ones(len(lab), bool)
        for sname, sm in sgroups.items():
            for pname, pm in pgroups.items():
                m = (ds == di) & sm & pm & (lab >= 0)
                if not m.any():
                    continue
                acc = {k: float((rec[f"pred_{k}"][m] == lab[m]).mean()) for k in ("input", "gf", "truth")}
                epe = {k: float(rec[f"epe_{k}"][m].mean()) for k in ("input", "gf", "zero")}
                ml = m & (rec["pred_landmark"] >= 0)
                if ml.any():  # the landmark baseline on the rows it has (neutral_apex by default)
                    acc["landmark"] = float((rec["pred_landmark"][ml] == lab[ml]).mean())
                    epe["landmark"] = float(np.nanmean(rec["epe_landmark"][ml]))
                gap = acc["truth"] - acc["input"]
                out[f"{dname}/{sname}/{pname}"] = {
                    "n": int(m.sum()), "acc": acc, "epe": epe,
                    "gap_closure": (acc["gf"] - acc["input"]) / gap if gap > 0 else None,
                    "epe_ratio_zero": epe["gf"] / epe["zero"] if epe["zero"] > 0 else None}
    return out


def table(summary: dict[str, Any], dataset: str, strategies: tuple[str, ...], poses: tuple[str, ...]) -> str:
    """Markdown lines: Flow-CNN input/G_F/truth and EPE input/G_F/zero per (strategy, pose)."""
    lines = ["| strategy | pose | n | FCNN input | FCNN landmark | FCNN G_F | FCNN truth | gap closure | EPE input | "
             "EPE landmark | EPE G_F | EPE zero |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in strategies:
        for p in poses:
            r = summary.get(f"{dataset}/{s}/{p}")
            if r is None:
                continue
            a, e = r["acc"], r["epe"]
            gc = "-" if r["gap_closure"] is None else f"{r['gap_closure']:.2f}"
            la = f"{100 * a['landmark']:.1f}" if "landmark" in a else "-"
            le = f"{e['landmark']:.2f}" if "landmark" in e else "-"
            lines.append(f"| {s} | {p} | {r['n']} | {100 * a['input']:.1f} | {la} | {100 * a['gf']:.1f} | "
                         f"{100 * a['truth']:.1f} | {gc} | {e['input']:.2f} | {le} | {e['gf']:.2f} | {e['zero']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--name", required=True)
    ap.add_argument("--stores", nargs="+", required=True, help="target stores (truth, judge's representation)")
    ap.add_argument("--input-stores", nargs="+", default=None, help="stores the input is read from (default: --stores)")
    ap.add_argument("--folds", nargs="+", required=True, help="tuning folds files, one per store")
    ap.add_argument("--val-fold", type=int, default=3)
    ap.add_argument("--judge", required=True, help="Flow-CNN folder trained with --fold val-fold on the tuning folds")
    ap.add_argument("--config", default="small")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--samples", type=int, default=60000)
    ap.add_argument("--evals", type=int, default=3, help="evaluations spread over the run (the last at the end)")
    ap.add_argument("--train-steps", default=None, help="only frame_to_frame rows with these steps, e.g. 1 or 1-4 "
                    "(neutral_apex rows always kept); default all")
    ap.add_argument("--no-na", action="store_true", help="leave the neutral_apex rows out of training")
    ap.add_argument("-S", "--set", action="append", default=[], help="train.<config> override key=value (YAML value)")
    ap.add_argument("--landmark", nargs="+", default=None, help="landmark-baseline .npz per store ('-': none)")
    ap.add_argument("--from-run", default=None, help="score this `emogan train` run's G_F instead of training one")
    ap.add_argument("--out", default="probes")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    params = load_params(a.params)
    t = as_dict(train_config(params, a.config))
    for kv in a.set:
        k, v = kv.split("=", 1)
        set_key(t, k, yaml.safe_load(v))
    run = None
    if a.from_run:
        from training.run import load_run

        run = load_run(a.from_run)
        rc = run.config
        assert int(rc["fold"]) == a.val_fold, f"{a.from_run} held out fold {rc['fold']}, not {a.val_fold}"
        assert [Path(f).resolve() for f in rc["folds_files"]] == [Path(f).resolve() for f in a.folds], \
            f"{a.from_run} was trained with folds files {rc['folds_files']}"
        t = rc["train"]
    size = int(t["size"] or 128)
    inputs = a.input_stores or a.stores
    assert len(inputs) == len(a.stores) == len(a.folds)

    assert a.val_fold not in (0, 1, 2), "folds 0, 1, 2 are the final test folds"
    train_parts, val_parts, subjects = [], [], {}
    t0 = time.time()
    lms = [None if x == "-" else x for x in (a.landmark or ["-"] * len(a.stores))]
    for ts, is_, ff, lm in zip(a.stores, inputs, a.folds, lms):
        info = check_store(ts)
        tr = fold_rows(info, a.val_fold, "train", Path(ff), 10)
        va = fold_rows(info, a.val_fold, "test", Path(ff), 10)
        ids = list(raw_group(ts).attrs["subject_ids"])
        sub = np.asarray(raw_group(ts)["subject"][:])
        subjects[ts] = {"train": sorted({ids[c] for c in np.unique(sub[tr])}),
                        "validation": sorted({ids[c] for c in np.unique(sub[va])})}
        train_parts.append(load_rows(ts, is_, tr, size) if not a.from_run else load_rows(ts, is_, tr[:1], size))
        val_parts.append(load_rows(ts, is_, va, size, lm))
    train, val = merge(train_parts), merge(val_parts)
    for ts, s in subjects.items():
        assert not set(s["train"]) & set(s["validation"])
    sel = torch.ones(len(train["step"]), dtype=torch.bool)
    if a.train_steps:
        lo, _, hi = a.train_steps.partition("-")
        lo, hi = int(lo), int(hi or lo)
        sel &= (train["strategy"] == NA) | ((train["step"] >= lo) & (train["step"] <= hi))
    if a.no_na:
        sel &= train["strategy"] != NA
    idx_all = torch.nonzero(sel).flatten()
    print(f"loaded {len(idx_all)} training rows, {len(val['step'])} validation rows in {time.time() - t0:.0f} s; "
          f"clips in/out {train['clip_in']}/{train['clip']}", flush=True)

    # Nets and optimizer as the trainer builds them; the residual's input scale from the two clips.
    gf_cfg = dict(t["nets"]["gf"])
    if gf_cfg.get("output") == "residual":
        gf_cfg["in_scale"] = train["clip_in"] / train["clip"]
    torch.manual_seed(t["seed"])
    gf = build_from(gf_cfg) if run is None else run.gf
    if run is not None:
        gf_cfg = t["nets"]["gf"]
        a.samples = 0
    opt = make_optimizer(gf.parameters(), t["optim"]["gf"], t["fused_optim"])
    epochs = int(t["epochs"])
    bs = int(t["batch_size"])
    steps = a.samples // bs
    per_epoch = max(1, steps // epochs)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: float(t["lr_gamma"]) ** e)
    lam = t["lambdas"]
    weighting = t.get("flow_loss_weighting", "none")
    table_w = L.step_weight_table(train["step"][idx_all].numpy(), weighting, t.get("flow_loss_weight_cap"))
    table_w = None if table_w is None else torch.from_numpy(table_w).float()
    judge = load_flowcnn(a.judge, fold=a.val_fold)
    assert (judge.representation, judge.clip) == (val["rep"], val["clip"]), "judge trained on other stores"
    gen = torch.Generator().manual_seed(t["seed"])
    out_dir = Path(a.out) / a.name
    out_dir.mkdir(parents=True, exist_ok=True)
    eval_at = sorted({int(round(steps * (i + 1) / a.evals)) for i in range(a.evals)})
    history = []
    if run is not None:
        rec = evaluate(gf, val, judge)
    cpu0, wall0 = time.process_time(), time.time()
    train_cpu = 0.0
    for step in range(1, steps + 1):
        c0 = time.process_time()
        idx = idx_all[torch.randint(len(idx_all), (bs,), generator=gen)]
        x = train["flow_input"][idx].float()
        y = train["flow_target"][idx].float()
        if t.get("hflip"):
            m = torch.rand(bs, generator=gen) < 0.5
            if m.any():
                x[m] = flip_flows(x[m], train["rep_in"], train["clip_in"])
                y[m] = flip_flows(y[m], train["rep"], train["clip"])
        w = row_weights(train["step"][idx], train["strategy"][idx], t, table_w)
        fr = gf(x).float()
        fl, yl = flowrep.decode(fr, train["rep"], 1.0), flowrep.decode(y, train["rep"], 1.0)
        loss = lam[1] * L.epe(fl, yl, w) + lam[2] * L.charbonnier(fl, yl, t["char_eps"], w)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % per_epoch == 0:
            sched.step()
        train_cpu += time.process_time() - c0
        if step in eval_at:
            rec = evaluate(gf, val, judge)
            s = summarize(rec, val)
            syn = s.get(f"{val['datasets'][0]}/neutral_apex/large", {})
            history.append({"samples": step * bs, "loss": float(loss), "synth_na_large": syn,
                            "synth_all_large": s.get(f"{val['datasets'][0]}/all/large", {})})
            print(json.dumps({"samples": step * bs, "loss": round(float(loss), 4),
                              "na_large_acc": syn.get("acc"), "na_large_epe": syn.get("epe"),
                              "cpu_s_per_1k": round(1000 * train_cpu / (step * bs), 2)}), flush=True)
    summary = summarize(rec, val)
    result = {"name": a.name, "config": a.config, "overrides": a.set, "train_steps": a.train_steps, "no_na": a.no_na,
              "samples": steps * bs, "train_rows": int(len(idx_all)), "val_rows": int(len(val["step"])),
              "subjects": subjects, "val_fold": a.val_fold, "stores": a.stores, "input_stores": inputs,
              "folds": a.folds, "judge": a.judge, "gf": gf_cfg, "gf_params": sum(p.numel() for p in gf.parameters()),
              "train_cpu_s": train_cpu, "cpu_s_per_1k_samples": 1000 * train_cpu / max(steps * bs, 1), "from_run": a.from_run,
              "wall_s": time.time() - wall0, "history": history, "summary": summary}
    (out_dir / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    np.savez_compressed(out_dir / "rows.npz", **rec, **{k: val[k].numpy() for k in ("label", "pose", "strategy",
                                                                                     "step", "subject", "dataset_idx")})
    syn = val["datasets"][0]
    md = [f"## {a.name}", f"overrides: {a.set or 'none'}; train steps: {a.train_steps or 'all'}; "
          f"samples {steps * bs}; CPU {result['cpu_s_per_1k_samples']:.1f} s per 1k samples", "",
          table(summary, syn, ("neutral_apex", "f2f_1", "f2f_2-4", "f2f_5+", "all"),
                ("nothing", "tx", "yaw", "pitch", "roll", "diagonal", "large"))]
    (out_dir / "table.md").write_text("\n".join(md) + "\n")
    print("\n".join(md), flush=True)


if __name__ == "__main__":
    main()
