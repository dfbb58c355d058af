"""Per-fold FER2013 ratios (G_W's faces / real frontal faces) and Flow-CNN by pose, neutral->apex rows of synth;
G_W's false colour (grey levels) where rows.csv has it (`chroma_emotiongan`, evaluations since session 12)."""
import csv
import statistics
import sys
from pathlib import Path

base = sys.argv[1]
LARGE = {"yaw", "pitch", "roll", "diagonal"}
FOLDS = sorted(int(d.name[5:]) for d in Path(base).glob("fold_*"))  # every fold_K folder
summary = {}
for k in FOLDS:
    rows = [r for r in csv.DictReader(open(f"{base}/fold_{k}/rows.csv")) if r["dataset"] == "synth"]
    na = [r for r in rows if r["strategy"] == "neutral_apex" and r["pose"] in LARGE]
    acc = lambda col, rs: sum(int(r[col] == r["label"]) for r in rs) / len(rs)
    real, gf, gt = (acc(c, na) for c in ("fer2013_frontal_gt", "fer2013_emotiongan", "fer2013_gw_gt"))
    ss = sum(float(r["ssim_emotiongan"]) for r in na) / len(na)
    fc = sum(float(r["chroma_emotiongan"]) for r in na) / len(na) if "chroma_emotiongan" in na[0] else None
    if fc is not None:
        summary.setdefault("false colour", []).append(fc)
    no = [r for r in rows if r["pose"] == "nothing"]
    for n, v in (("G_F->G_W ratio", gf / real), ("GT->G_W ratio", gt / real), ("SSIM", ss),
                 ("nothing Δ pts", 100 * (acc("flowcnn_emotiongan", no) - acc("flowcnn_nonfrontal", no)))):
        summary.setdefault(n, []).append(v)
    print(f"fold {k}: large NA rows {len(na)} FER2013 real {real:.3f} G_F->G_W {gf:.3f} ({gf/real:.2f}x) "
          f"GT->G_W {gt:.3f} ({gt/real:.2f}x) SSIM {ss:.3f}" + (f" false colour {fc:.2f}" if fc is not None else "") +
          f"; pose nothing Flow-CNN input "
          f"{acc('flowcnn_nonfrontal', no):.3f} G_F {acc('flowcnn_emotiongan', no):.3f} ({len(no)} rows)")
if len(FOLDS) > 1:
    print(f"{len(FOLDS)} folds, mean ± sample std: " + "; ".join(
        f"{n} {statistics.mean(v):.2f} ± {statistics.stdev(v):.2f}" for n, v in summary.items()))
