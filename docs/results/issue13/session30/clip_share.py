"""How much of the flows a store's clip cuts (issue #13 session 30): per flow (input, target), step and pose, the
share of the face's pixels (the crop's central 88/128) whose motion exceeds each clip, and the 99th percentile, in
pixels of the source crop; then per expression the mouth box's at the apex (neutral->apex rows of the largest step).
Reads the flow stage's store (pixels, unclipped); 40 rows per cell, evenly drawn with a fixed seed.
    python docs/results/issue13/session30/clip_share.py data/flows/synth.zarr --clips 5 15
"""
from __future__ import annotations

import argparse

import numpy as np
import zarr

from pipeline.schema import CLASS_NAMES, POSE_NAMES

MOUTH = (0.58, 0.82, 0.30, 0.70)   # benchmarks/issue13/mouth_swap.py's mouth box (rows y0, y1, columns x0, x1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("flows")
    ap.add_argument("--clips", type=float, nargs="+", default=[5.0, 15.0])
    ap.add_argument("--rows", type=int, default=40)
    a = ap.parse_args()
    g = zarr.open_group(a.flows, mode="r")
    step, pose, lab = (np.asarray(g[k][:]) for k in ("step", "pose", "label"))
    rng = np.random.default_rng(0)
    head = " | ".join(f"> {c:g} px" for c in a.clips)
    print(f"| flow | step | pose | {head} | p99 px |\n|---" + "|---:" * (len(a.clips) + 3) + "|")
    for key in ("flow_input_px", "flow_target_px"):
        for st in (1, int(step.max())):
            for p in np.unique(pose):
                rows = np.flatnonzero((step == st) & (pose == p))
                rows = np.sort(rng.choice(rows, min(a.rows, len(rows)), replace=False))
                f = np.asarray(g[key].get_orthogonal_selection((rows,)), np.float32)
                n = f.shape[-1]
                m = np.hypot(f[:, 0], f[:, 1])[:, n * 5 // 32: n * 27 // 32, n * 5 // 32: n * 27 // 32]
                cells = " | ".join(f"{(m > c).mean():.3f}" for c in a.clips)
                print(f"| {key[:-3]} | {st} | {POSE_NAMES[p]} | {cells} | {np.percentile(m, 99):.1f} |")
    print(f"\nMouth box at the apex (flow_target, step {int(step.max())}, all poses):\n\n| expression | "
          + " | ".join(f"> {c:g} px" for c in a.clips) + " | largest per row (mean) px |\n|---" + "|---:" * (len(a.clips) + 1) + "|")
    for c, name in enumerate(CLASS_NAMES):
        rows = np.flatnonzero((lab == c) & (step == step.max()))
        if not len(rows):
            continue
        rows = np.sort(rng.choice(rows, min(a.rows, len(rows)), replace=False))
        f = np.asarray(g["flow_target_px"].get_orthogonal_selection((rows,)), np.float32)
        n = f.shape[-1]
        y0, y1, x0, x1 = (round(v * n) for v in MOUTH)
        m = np.hypot(f[:, 0], f[:, 1])[:, y0:y1, x0:x1]
        print(f"| {name} | " + " | ".join(f"{(m > k).mean():.3f}" for k in a.clips) + f" | {m.max((1, 2)).mean():.1f} |")


if __name__ == "__main__":
    main()
