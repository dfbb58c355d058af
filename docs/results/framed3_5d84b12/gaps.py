"""Per-fold issue #12 numbers from rows.csv: synth, large poses, per strategy and pooled."""
import csv
import statistics
import sys
from pathlib import Path

LARGE = {"yaw", "pitch", "roll", "diagonal"}
FOLDS = sorted(int(d.name[5:]) for d in Path(sys.argv[1]).glob("fold_*"))  # every fold_K folder
summary = {}
for k in FOLDS:
    rows = [r for r in csv.DictReader(open(f"{sys.argv[1]}/fold_{k}/rows.csv")) if r["dataset"] == "synth"]
    out = []
    for name, sel in (("NA", lambda r: r["strategy"] == "neutral_apex"), ("F2F", lambda r: r["strategy"] == "frame_to_frame"),
                      ("pooled", lambda r: True)):
        rs = [r for r in rows if r["pose"] in LARGE and sel(r)]
        acc = lambda c: sum(int(r[c] == r["label"]) for r in rs) / len(rs)
        a_in, a_gf, a_t = acc("flowcnn_nonfrontal"), acc("flowcnn_emotiongan"), acc("flowcnn_frontal_gt")
        epe = lambda c: sum(float(r[c]) for r in rs) / len(rs)
        summary.setdefault(f"{name} gap", []).append((a_gf - a_in) / (a_t - a_in))
        out.append(f"{name} {100*a_in:.1f}->{100*a_gf:.1f} (truth {100*a_t:.1f}) gap {(a_gf-a_in)/(a_t-a_in):.2f} "
                   f"EPE {epe('epe_emotiongan'):.3f}/{epe('epe_zero'):.3f}")
    print(f"fold {k}: " + "; ".join(out))
if len(FOLDS) > 1:
    print(f"{len(FOLDS)} folds, mean ± sample std: " + "; ".join(
        f"{n} {statistics.mean(v):.2f} ± {statistics.stdev(v):.2f}" for n, v in summary.items()))
