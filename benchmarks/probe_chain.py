"""Probe (issue #12): neutral->apex motion frontalized as the chain of frame-to-frame frontalizations.

G_F frontalizes one-frame motion (frame_to_frame rows) but erases neutral->apex motion of a turning head. A
recording holds every frame, so the neutral->apex frontal flow can also be composed from G_F's step-1 outputs:
F_0->n(x) = F_0->1(x) + F_1->n(x + F_0->1(x)), warping each next flow by the displacement so far. This script
scores, on the neutral->apex rows of a run's held-out fold, EPE (source-crop px) and the Flow-CNN judge's
accuracy for: the input, G_F on the neutral->apex flow (direct), the chain of G_F's step-1 outputs, the chain of
the step-1 frontal truths (the chain's own ceiling), the frontal truth, and a zero flow; per pose.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/probe_chain.py RUN STORE --folds-file F.csv --flowcnn DIR \
        [--fold K] [--out probe.json]

Use it on validation folds of a tuning split (`emogan folds --tuning`) when choosing; the demo's fold 0 is a
test fold: numbers there may be reported, never used to choose.
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def compose(steps_px: list[torch.Tensor], px_per_cell: float) -> torch.Tensor:
    """Chain flows (each (2,S,S) in source px, frame t -> t+1, on frame t's grid) into frame 0 -> n on frame 0's grid."""
    total = torch.zeros_like(steps_px[0])
    s = total.shape[-1]
    ys, xs = torch.meshgrid(torch.arange(s, dtype=torch.float32), torch.arange(s, dtype=torch.float32), indexing="ij")
    for f in steps_px:
        # where each frame-0 pixel is now, in grid cells; sample the next flow there (bilinear, border-clamped)
        gx = (xs + total[0] / px_per_cell) / (s - 1) * 2 - 1
        gy = (ys + total[1] / px_per_cell) / (s - 1) * 2 - 1
        grid = torch.stack([gx, gy], -1)[None]
        total = total + F.grid_sample(f[None], grid, mode="bilinear", padding_mode="border", align_corners=True)[0]
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("store")
    ap.add_argument("--folds-file", required=True)
    ap.add_argument("--flowcnn", required=True)
    ap.add_argument("--fold", type=int, default=None, help="default: the run's held-out fold")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--out", default=None)
    ap.add_argument("--params", default="params.yaml", help="for the FER2013 weights' path")
    a = ap.parse_args()

    from pipeline.params import load_params
    from pipeline.weights import weights_path
    from training import flowrep
    from training.checkpoint import load_run, read_run_record
    from training.config import fer2013_frame
    from training.data import check_store, fold_rows, iter_rows, raw_group
    from training.evaluation.evaluate import load_judges, run_efer_spec

    run = load_run(a.run, device="cpu")
    fold = read_run_record(a.run).fold if a.fold is None else a.fold
    params = load_params(a.params)
    judges = load_judges(run, fold, a.flowcnn, weights_path("fer2013", params), fer2013_frame(params),
                         run_efer_spec(run, a.run, None, False), False)
    g = raw_group(a.store)
    rep, clip, src = str(g.attrs["representation"]), float(g.attrs["clip"]), int(g.attrs["source_size"])
    size = run.size
    px_per_cell = src / size
    rows = fold_rows(check_store(a.store), fold, "test", a.folds_file, a.k)
    seq = np.asarray(g["sequence"][:])[rows]
    pose_names = list(g.attrs["pose_names"])
    by_seq: dict[int, dict[str, object]] = defaultdict(dict)
    arrays = ("flow_input", "flow_target", "label", "pose", "sequence", "strategy", "step", "frame_t")
    with torch.no_grad():
        for b in iter_rows(a.store, np.sort(rows), arrays, 64):
            gf = run.frontalize(b["flow_input"].float())
            tgt = flowrep.resize_flow(b["flow_target"].float(), size, rep, clip)
            inp = flowrep.resize_flow(b["flow_input"].float(), size, rep, clip)
            for i in range(len(b["label"])):
                d = by_seq[int(b["sequence"][i])]
                d["label"], d["pose"] = int(b["label"][i]), pose_names[int(b["pose"][i])]
                if int(b["strategy"][i]) == 0:
                    d["na"] = (inp[i], gf[i], tgt[i])
                elif int(b["step"][i]) == 1:
                    d.setdefault("f2f", {})[int(b["frame_t"][i])] = (gf[i], tgt[i])
    fc = judges.flowcnn
    methods = ("input", "direct", "chain", "chain_truth", "truth", "zero")
    res: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for s, d in sorted(by_seq.items()):
        if "na" not in d or len(d.get("f2f", {})) == 0:
            continue
        inp, direct, tgt = d["na"]
        steps = [d["f2f"][t] for t in sorted(d["f2f"])]
        chain = compose([flowrep.decode(x[0][None], rep, clip)[0] for x in steps], px_per_cell)
        chain_t = compose([flowrep.decode(x[1][None], rep, clip)[0] for x in steps], px_per_cell)
        norm = {"input": inp, "direct": direct, "truth": tgt, "zero": torch.zeros_like(tgt),
                "chain": flowrep.encode(chain[None], rep, clip)[0], "chain_truth": flowrep.encode(chain_t[None], rep, clip)[0]}
        tgt_px = flowrep.decode(tgt[None], rep, clip)[0]
        for m in methods:
            px = flowrep.decode(norm[m][None], rep, clip)[0]
            epe = float(torch.linalg.vector_norm(px - tgt_px, dim=0).mean())
            ok = float(fc.logits(norm[m][None]).argmax(1).item() == d["label"])
            for group in ("all", d["pose"], "large" if d["pose"] in ("yaw", "pitch", "roll", "diagonal") else "small"):
                res[group][f"epe_{m}"].append(epe)
                res[group][f"acc_{m}"].append(ok)
    out = {grp: {k: float(np.mean(v)) for k, v in ms.items()} | {"n": len(ms["acc_input"])} for grp, ms in res.items()}
    for grp in ("large", "small", "yaw", "pitch", "roll", "diagonal", "nothing", "tx", "all"):
        if grp in out:
            o = out[grp]
            gap = {m: (o[f"acc_{m}"] - o["acc_input"]) / max(o["acc_truth"] - o["acc_input"], 1e-9) for m in ("direct", "chain")}
            o.update({f"gap_{m}": v for m, v in gap.items()})
            print(f"{grp:9s} n={o['n']:3d} acc% " + " ".join(f"{m} {100 * o[f'acc_{m}']:.0f}" for m in methods)
                  + f" | gap direct {gap['direct']:.2f} chain {gap['chain']:.2f} | EPE px "
                  + " ".join(f"{m} {o[f'epe_{m}']:.2f}" for m in methods))
    if a.out:
        Path(a.out).write_text(json.dumps({"fold": fold, "run": a.run, "store": a.store, "results": out}, indent=1))


if __name__ == "__main__":
    main()
