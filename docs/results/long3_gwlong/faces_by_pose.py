"""Faces FER2013 reads right on neutral->apex rows, by dataset and pose (or expression), the folds of each result
pooled: the real frontal faces, G_W's from G_F's flow and from the truth's flow (issue #13), for one result or two side
by side. `--by label` counts per expression instead, and `--large` keeps synth's large poses only (#13's ratios' rows).

    python docs/results/long3_gwlong/faces_by_pose.py docs/results/long3_gwtarget docs/results/long3_gwlong --folds 0 1 2
    python docs/results/long3_gwlong/faces_by_pose.py docs/results/long3_gwlong --by label --large --folds 7
"""
import argparse
import csv
from collections import defaultdict
from pathlib import Path

from pipeline.schema import CLASS_NAMES   # the project's label order (run with its .venv's python)

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("results", nargs="+", type=Path, help="result folders holding fold_K/rows.csv")
ap.add_argument("--folds", nargs="+", type=int, help="default: the folds every result has")
ap.add_argument("--by", choices=("pose", "label"), default="pose", help="count per pose or per expression")
ap.add_argument("--large", action="store_true", help="synth's large poses only (yaw, pitch, roll, diagonal)")
a = ap.parse_args()
have = [{int(d.name[5:]) for d in r.glob("fold_*")} for r in a.results]
folds = a.folds or sorted(set.intersection(*have))
COLS = ("fer2013_frontal_gt", "fer2013_emotiongan", "fer2013_gw_gt")
LARGE = {"yaw", "pitch", "roll", "diagonal"}
counts = []
for r in a.results:
    c = defaultdict(lambda: [0, 0, 0, 0])   # rows, then right per column of COLS
    for k in folds:
        for row in csv.DictReader(open(r / f"fold_{k}" / "rows.csv")):
            if row["strategy"] != "neutral_apex" or not row["fer2013_emotiongan"]:
                continue
            if a.large and (row["dataset"] != "synth" or row["pose"] not in LARGE):
                continue
            n = c[(row["dataset"], row["pose"] if a.by == "pose" else CLASS_NAMES[int(row["label"])])]
            n[0] += 1
            for i, col in enumerate(COLS, 1):
                n[i] += row[col] == row["label"]
    counts.append(c)
print(f"folds {folds}; " + " -> ".join(str(r) for r in a.results))
print("| rows | real frontal faces | G_W from G_F's flow | G_W from the truth's flow |\n|---|---:|---|---|")
for key in sorted(set().union(*counts)):
    n = [c[key] for c in counts]
    print(f"| {key[0]} {key[1]} ({n[0][0]}) | {' / '.join(str(x[1]) for x in n)} | "
          f"{' -> '.join(str(x[2]) for x in n)} | {' -> '.join(str(x[3]) for x in n)} |")
