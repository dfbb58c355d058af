"""Issue #12 diagnosis: per-class Flow-CNN accuracy of G_F's output and what neutral sequences are read as.

    PYTHONPATH=$PWD python benchmarks/issue12/neutral_rows.py DIR VARIANT [VARIANT ...]   # DIR/eval_VARIANT/rows.csv
    PYTHONPATH=$PWD python benchmarks/issue12/neutral_rows.py --rows A/rows.csv B/rows.csv ...   # rows files pooled

Prints, for large poses (yaw, pitch, roll, diagonal) per strategy and for frame-to-frame rows of pose
`nothing`: Flow-CNN accuracy on the input, on G_F's output (eMotion-GAN) and on the frontal truth, gap
closure, per-class accuracy on G_F's output; then the neutral frame-to-frame rows: what G_F's output and
the truth are read as, and G_F's EPE against a zero flow's (above it: G_F draws motion on a still face).
"""
from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from training.evaluation.metrics import gap_closure

LARGE = ("yaw", "pitch", "roll", "diagonal")


def summary(r: pd.DataFrame) -> list[str]:
    r = r[r.dataset == "synth"]
    lines = []
    groups = (("frame-to-frame, large", r[(r.strategy != "neutral_apex") & r.pose.isin(LARGE)]),
              ("neutral->apex, large", r[(r.strategy == "neutral_apex") & r.pose.isin(LARGE)]),
              ("frame-to-frame, nothing", r[(r.strategy != "neutral_apex") & (r.pose == "nothing")]))
    for name, d in groups:
        acc = {c: 100 * float((d[c] == d.label).mean()) for c in ("flowcnn_nonfrontal", "flowcnn_emotiongan", "flowcnn_frontal_gt")}
        closure = gap_closure(acc["flowcnn_emotiongan"], acc["flowcnn_nonfrontal"], acc["flowcnn_frontal_gt"])
        gap = "-" if closure is None else f"{closure:.2f}"
        per = (100 * (d.flowcnn_emotiongan == d.label).groupby(d.label).mean()).round().astype(int).tolist()
        lines.append(f"  {name} ({len(d)} rows): input {acc['flowcnn_nonfrontal']:.1f} -> G_F "
                     f"{acc['flowcnn_emotiongan']:.1f} % (truth {acc['flowcnn_frontal_gt']:.1f}), gap closure {gap}; "
                     f"G_F per class {per}")
    n = r[(r.label == 0) & (r.strategy != "neutral_apex")]
    lines.append(f"  neutral frame-to-frame rows ({len(n)}): G_F read as {np.bincount(n.flowcnn_emotiongan, minlength=7).tolist()}, "
                 f"truth read as {np.bincount(n.flowcnn_frontal_gt, minlength=7).tolist()}; EPE G_F "
                 f"{n.epe_emotiongan.mean():.3f} px, zero flow {n.epe_zero.mean():.3f} px")
    return lines


def main(argv: list[str], lines=summary, usage: str = __doc__) -> None:
    """DIR VARIANT... (DIR/eval_VARIANT/rows.csv, one block each) or --rows FILE... (pooled): `lines` of each."""
    if not argv:
        sys.exit(usage)
    if argv[0] == "--rows":
        print("pooled: " + ", ".join(argv[1:]))
        print("\n".join(lines(pd.concat([pd.read_csv(f) for f in argv[1:]]))))
        return
    for v in argv[1:]:
        print(v)
        print("\n".join(lines(pd.read_csv(f"{argv[0]}/eval_{v}/rows.csv"))))


if __name__ == "__main__":
    main(sys.argv[1:])
