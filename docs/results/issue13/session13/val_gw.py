"""G_W on validation (tuning split, fold 3): neutral->apex rows of synth at large poses, per run folder of
val_neutral.sh (W/eval_NAME/rows.csv): FER2013 ratio to the real faces from G_F's and the truth's flow, SSIM,
false colour (grey levels), and the same for the whole set of neutral->apex rows.
    python docs/results/issue13/session13/val_gw.py W NAME...
"""
import csv
import sys

LARGE = {"yaw", "pitch", "roll", "diagonal"}
W = sys.argv[1]
for name in sys.argv[2:]:
    rows = [r for r in csv.DictReader(open(f"{W}/eval_{name}/rows.csv")) if r["dataset"] == "synth"
            and r["strategy"] == "neutral_apex" and r["pose"] in LARGE]
    acc = lambda c: sum(int(r[c] == r["label"]) for r in rows) / len(rows)   # noqa: E731
    mean = lambda c: sum(float(r[c]) for r in rows) / len(rows)              # noqa: E731
    real = acc("fer2013_frontal_gt")
    print(f"{name:16s} rows {len(rows)} FER2013 real {real:.3f} | G_F->G_W {acc('fer2013_emotiongan') / real:.2f}x "
          f"GT->G_W {acc('fer2013_gw_gt') / real:.2f}x | SSIM {mean('ssim_emotiongan'):.3f} / {mean('ssim_gw_gt'):.3f}"
          f" | false colour {mean('chroma_emotiongan'):.2f} / {mean('chroma_gw_gt'):.2f}"
          f" (non-frontal face {mean('chroma_nonfrontal'):.2f})")
