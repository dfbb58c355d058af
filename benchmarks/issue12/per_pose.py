"""Issue #12 diagnosis: Flow-CNN accuracy and gap closure per large pose and strategy (synth rows).

    PYTHONPATH=$PWD python benchmarks/issue12/per_pose.py DIR VARIANT [VARIANT ...]    # DIR/eval_VARIANT/rows.csv
    PYTHONPATH=$PWD python benchmarks/issue12/per_pose.py --rows A/rows.csv B/rows.csv ...   # rows files pooled

One line per pose (tx, yaw, pitch, roll, diagonal) and strategy: rows, Flow-CNN accuracy on the input, on G_F's
output (eMotion-GAN) and on the frontal truth, gap closure, and G_F's EPE as a multiple of a zero flow's. The pooled
gap closure of the acceptance table is 9 parts frame-to-frame; this shows which pose holds it back.
"""
from __future__ import annotations

import sys

import neutral_rows  # beside this script
import pandas as pd

from training.evaluation.metrics import gap_closure

POSES = ("tx", "yaw", "pitch", "roll", "diagonal")


def table(r: pd.DataFrame) -> list[str]:
    r = r[r.dataset == "synth"]
    lines = []
    for strategy in ("frame_to_frame", "neutral_apex"):
        for pose in POSES:
            d = r[(r.strategy == strategy) & (r.pose == pose)]
            if not len(d):
                continue
            acc = {m: 100 * float((d[f"flowcnn_{m}"] == d.label).mean()) for m in ("nonfrontal", "emotiongan", "frontal_gt")}
            closure = gap_closure(acc["emotiongan"], acc["nonfrontal"], acc["frontal_gt"])
            lines.append(f"  {strategy:14s} {pose:9s} {len(d):4d} rows: input {acc['nonfrontal']:5.1f} -> G_F "
                         f"{acc['emotiongan']:5.1f} % (truth {acc['frontal_gt']:5.1f}), gap closure "
                         f"{'-' if closure is None else f'{closure:.2f}'}, EPE {d.epe_emotiongan.mean() / d.epe_zero.mean():.2f}x zero")
    return lines


if __name__ == "__main__":
    neutral_rows.main(sys.argv[1:], table, __doc__)
