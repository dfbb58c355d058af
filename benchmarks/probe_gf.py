"""Supervised G_F probe (issue #12): G_F alone on L_epe + L_char, judged per strategy and pose on held-out rows.

A research tool, not a stage: it answers "which G_F design learns large motion" in minutes on a CPU, with the
project's own G_F (training/models/networks.py), losses and step weights, and the fold's Flow-CNN judge
(`emogan train-flowcnn`). Use it on a tuning split (`emogan folds --tuning`): `--fold` is then the validation
fold and the reserved test subjects are read by nothing.

    python benchmarks/probe_gf.py STORE --folds-file F --fold 3 --flowcnn DIR --steps 2000 --out probe.json \
        --gf '{"output": "residual"}' --weighting step

`--input-store` feeds G_F the same rows from a store normalized with a larger clip (a separate input clip:
`emogan normalize --clip 40 --out ...`), in STORE's units ((u, v)/clip, so magnitudes reach clip_in/clip);
the targets, the judge and the input's reference figures stay on STORE's clip. `--apex-fraction` draws that fraction of every batch from the neutral->apex rows (per-strategy
row sampling).

Prints one JSON object: per strategy (neutral_apex, frame_to_frame, all) x pose group (large, nothing, tx,
each large pose): rows, Flow-CNN accuracy on the input, G_F's output and the truth, gap closure, and the EPE
(source pixels) of the input, the output and a zero flow.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.schema import POSE_NAMES, STRATEGY_NAMES
from training import flowrep
from training.data import check_store, fold_rows, raw_group
from training.evaluation.flowcnn import load_flowcnn
from training.models import losses as L
from training.models.networks import build_from

SMALL_GF = {"name": "gf", "ngf": 16, "max_ch": 128, "n_down": 3, "n_res_enc": 1, "n_res_dec": 2}
LARGE = ("yaw", "pitch", "roll", "diagonal")


def load_rows(store: str, rows: np.ndarray) -> dict[str, np.ndarray]:
    """The arrays a probe reads, for `rows` (all in memory: a tuning fold's rows at 64 px are ~100 MB)."""
    g = raw_group(store)
    out = {k: np.asarray(g[k][:])[rows] for k in ("step", "strategy", "pose", "label")}
    for k in ("flow_input", "flow_target"):
        out[k] = np.asarray(g[k].get_orthogonal_selection((rows,)), np.float32)
    return out


def train_gf(tr: dict[str, np.ndarray], gf_spec: dict[str, Any], steps: int, batch: int, lr: float, rep: str,
             clip: float, weighting: str, hflip: bool, seed: int, lambdas: tuple[float, float] = (1.0, 1.0),
             char_eps: float = 1e-3, log: Any = None, clip_in: float | None = None,
             apex_fraction: float = 0.0, pixel_weight: float = 0.0) -> torch.nn.Module:
    """G_F trained on (G_F input -> flow_target) rows by L_epe + L_char on (u, v)/clip, Adam(0.5, 0.999).

    G_F's input is `tr["gf_input"]` (normalized at `clip_in`) when present, else `flow_input` (at `clip`);
    `apex_fraction` of each batch is drawn from the neutral->apex rows, the rest from the other rows.
    `pixel_weight` K > 0 weighs each pixel of L_epe and L_char by 1 + K |target| / clip (magnitude-weighted
    losses, normalized to mean 1 over the batch), so that the still background cannot outvote the moving face.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    gf = build_from(gf_spec)
    opt = torch.optim.Adam(gf.parameters(), lr=lr, betas=(0.5, 0.999))
    table = L.step_weight_table(tr["step"], weighting)
    w_all = None if table is None else table[tr["step"]]
    x_all, y_all = torch.from_numpy(tr.get("gf_input", tr["flow_input"])), torch.from_numpy(tr["flow_target"])
    clip_in = clip if clip_in is None else clip_in
    n = len(x_all)
    apex = np.flatnonzero(tr["strategy"] == STRATEGY_NAMES.index("neutral_apex"))
    other = np.flatnonzero(tr["strategy"] != STRATEGY_NAMES.index("neutral_apex"))
    n_apex = int(round(apex_fraction * batch))
    for it in range(steps):
        if n_apex > 0:
            idx = np.concatenate([rng.choice(apex, n_apex), rng.choice(other, batch - n_apex)])
        else:
            idx = rng.integers(0, n, batch)
        x, y = x_all[idx], y_all[idx]
        if hflip:
            sel = torch.from_numpy(rng.random(batch) < 0.5)
            if sel.any():
                x[sel] = (flowrep.flip_flows(x[sel], rep, clip) if clip_in == clip else
                          x[sel].flip(-1) * x.new_tensor([-1.0, 1.0]).view(1, 2, 1, 1))  # Cartesian, unclipped
                y[sel] = flowrep.flip_flows(y[sel], rep, clip)
        w = None if w_all is None else torch.from_numpy(w_all[idx])
        out = gf(x)
        a, b = flowrep.decode(out, rep, clip) / clip, flowrep.decode(y, rep, clip) / clip
        if pixel_weight > 0:
            wp = 1.0 + pixel_weight * torch.linalg.vector_norm(b, dim=1, keepdim=True)
            wp = wp / wp.mean()
            l_epe = L._masked_mean((torch.linalg.vector_norm(b - a, dim=1, keepdim=True) * wp).flatten(1).mean(1), w)
            l_char = L._masked_mean((torch.sqrt((b - a) ** 2 + char_eps ** 2) * wp).flatten(1).mean(1), w)
            loss = lambdas[0] * l_epe + lambdas[1] * l_char
        else:
            loss = lambdas[0] * L.epe(a, b, w) + lambdas[1] * L.charbonnier(a, b, char_eps, w)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if log is not None and (it % 250 == 0 or it == steps - 1):
            log(f"step {it} loss {loss.item():.4f}")
    return gf.eval()


@torch.no_grad()
def score(gf: torch.nn.Module | None, te: dict[str, np.ndarray], judge: Any, rep: str, clip: float,
          batch: int = 64) -> dict[str, np.ndarray]:
    """Per row: EPE (px) of input, output, zero flow against the truth; judge predictions of each."""
    rec: dict[str, list[np.ndarray]] = {k: [] for k in ("epe_in", "epe_out", "epe_zero", "p_in", "p_out", "p_gt")}
    for s in range(0, len(te["step"]), batch):
        x = torch.from_numpy(te["flow_input"][s:s + batch])
        y = torch.from_numpy(te["flow_target"][s:s + batch])
        xg = torch.from_numpy(te["gf_input"][s:s + batch]) if "gf_input" in te else x
        o = gf(xg).float() if gf is not None else torch.zeros_like(y)
        rec["epe_in"].append(flowrep.epe_px(x, y, rep, clip).numpy())
        rec["epe_out"].append(flowrep.epe_px(o, y, rep, clip).numpy())
        rec["epe_zero"].append(torch.linalg.vector_norm(flowrep.decode(y, rep, clip), dim=1).flatten(1).mean(1).numpy())
        for k, f in (("p_in", x), ("p_out", o), ("p_gt", y)):
            rec[k].append(judge.logits(f).argmax(1).numpy())
    return {k: np.concatenate(v) for k, v in rec.items()}


def summarize(te: dict[str, np.ndarray], r: dict[str, np.ndarray]) -> dict[str, Any]:
    """Per strategy x pose group: n, accuracies (%), gap closure, EPEs (px)."""
    out: dict[str, Any] = {}
    pose = np.array([POSE_NAMES[int(p)] if p >= 0 else "unknown" for p in te["pose"]])
    strat = np.array([STRATEGY_NAMES[int(s)] for s in te["strategy"]])
    lab = te["label"]
    for sname in ("neutral_apex", "frame_to_frame", "all"):
        ms = np.ones(len(lab), bool) if sname == "all" else strat == sname
        for gname, poses in (("large", LARGE), ("nothing", ("nothing",)), ("tx", ("tx",)),
                             *((p, (p,)) for p in LARGE)):
            m = ms & np.isin(pose, poses) & (lab >= 0)
            if not m.any():
                continue
            acc = {k: 100.0 * float((r[f"p_{k}"][m] == lab[m]).mean()) for k in ("in", "out", "gt")}
            gap = acc["gt"] - acc["in"]
            out[f"{sname}/{gname}"] = {
                "n": int(m.sum()), "acc_in": acc["in"], "acc_out": acc["out"], "acc_gt": acc["gt"],
                "delta_pts": acc["out"] - acc["in"], "gap_closure": (acc["out"] - acc["in"]) / gap if gap > 0 else None,
                "epe_in": float(r["epe_in"][m].mean()), "epe_out": float(r["epe_out"][m].mean()),
                "epe_zero": float(r["epe_zero"][m].mean())}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store")
    ap.add_argument("--folds-file", required=True, help="folds CSV (a tuning split)")
    ap.add_argument("--fold", type=int, required=True, help="held-out (validation) fold")
    ap.add_argument("--flowcnn", required=True, help="the fold's Flow-CNN (emogan train-flowcnn --fold)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--gf", default="{}", help="JSON overrides of the small G_F spec")
    ap.add_argument("--weighting", default="none", choices=["none", "step"])
    ap.add_argument("--input-store", default=None, help="G_F's inputs from this store (same rows, another clip)")
    ap.add_argument("--apex-fraction", type=float, default=0.0, help="share of each batch from neutral->apex rows")
    ap.add_argument("--pixel-weight", type=float, default=0.0, help="K: pixel weight 1 + K |target|/clip")
    ap.add_argument("--strategies", default="neutral_apex,frame_to_frame", help="training rows' strategies")
    ap.add_argument("--max-step", type=int, default=None, help="training rows with step <= this (apex rows kept)")
    ap.add_argument("--no-hflip", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t0 = time.time()
    info = check_store(a.store)
    rep, clip = info.representation, info.clip
    tr_rows = fold_rows(info, a.fold, "train", Path(a.folds_file), a.k)
    te_rows = fold_rows(info, a.fold, "test", Path(a.folds_file), a.k)
    tr = load_rows(a.store, tr_rows)
    te = load_rows(a.store, te_rows)
    clip_in = None
    if a.input_store is not None:
        info_in = check_store(a.input_store)
        if info_in.n != info.n or info_in.representation != rep:
            raise SystemExit(f"{a.input_store}: {info_in.n} rows ({info_in.representation}), "
                             f"{a.store} has {info.n} ({rep}): not the same rows")
        if rep != "cartesian":
            raise SystemExit(f"--input-store needs Cartesian stores, not {rep}")
        clip_in = info_in.clip
        for d, rows in ((tr, tr_rows), (te, te_rows)):
            other = load_rows(a.input_store, rows)
            for k in ("step", "strategy", "pose", "label"):
                if not np.array_equal(other[k], d[k]):
                    raise SystemExit(f"{a.input_store}: column {k} differs from {a.store}'s: not the same rows")
            # in the target's units ((u, v)/clip), clipped at clip_in instead of clip: magnitudes up to clip_in/clip
            d["gf_input"] = other["flow_input"] * np.float32(clip_in / clip)
    keep = np.isin(tr["strategy"], [STRATEGY_NAMES.index(s) for s in a.strategies.split(",")])
    if a.max_step is not None:
        keep &= (tr["step"] <= a.max_step) | (tr["strategy"] == STRATEGY_NAMES.index("neutral_apex"))
    tr = {k: v[keep] for k, v in tr.items()}
    judge = load_flowcnn(a.flowcnn, fold=a.fold)
    gf_spec = {**SMALL_GF, **json.loads(a.gf)}
    log = (lambda m: print(f"[{time.time() - t0:.0f}s] {m}", flush=True))
    log(f"train rows {len(tr['step'])}, validation rows {len(te['step'])}, G_F {gf_spec}, weighting {a.weighting}, "
        f"input clip {clip_in or clip}, apex fraction {a.apex_fraction}, pixel weight {a.pixel_weight}")
    gf = train_gf(tr, gf_spec, a.steps, a.batch, a.lr, rep, clip, a.weighting, not a.no_hflip, a.seed, log=log,
                  clip_in=clip_in, apex_fraction=a.apex_fraction, pixel_weight=a.pixel_weight)
    res = summarize(te, score(gf, te, judge, rep, clip))
    rec = {"args": vars(a), "gf": gf_spec, "train_rows": int(len(tr["step"])), "seconds": time.time() - t0,
           "groups": res}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(rec, indent=1))
    for g in ("neutral_apex/large", "frame_to_frame/large", "all/large", "all/nothing"):
        if g in res:
            v = res[g]
            log(f"{g}: n {v['n']} acc in/out/gt {v['acc_in']:.1f}/{v['acc_out']:.1f}/{v['acc_gt']:.1f} "
                f"EPE in/out/zero {v['epe_in']:.2f}/{v['epe_out']:.2f}/{v['epe_zero']:.2f}")


if __name__ == "__main__":
    main()
