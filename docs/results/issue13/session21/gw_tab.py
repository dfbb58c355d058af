"""G_W's faces on validation neutral->apex rows (synth, all poses and large poses): FER2013 accuracy of the real
frontal face, G_W from G_F's flow and from the ground-truth flow (and their ratio to the real faces'), SSIM of
each against the frontal face, and per-class FER2013 recall on G_W's faces from the truth's flow.
    python gw_tab.py EVAL_DIR [EVAL_DIR ...]      # each holds rows.csv (emogan evaluate --out)"""
import sys

import pandas as pd

LARGE = ("yaw", "pitch", "roll", "diagonal")
CLASSES = ("neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise")
for d in sys.argv[1:]:
    r = pd.read_csv(f"{d}/rows.csv")
    r = r[(r.dataset == "synth") & (r.strategy == "neutral_apex") & (r.fer2013_frontal_gt >= 0)]
    out = []
    for name, g in (("all poses", r), ("large", r[r.pose.isin(LARGE)])):
        acc = {m: (g[f"fer2013_{m}"] == g.label).mean() for m in ("frontal_gt", "emotiongan", "gw_gt")}
        out.append(f"{name} ({len(g)}): real {acc['frontal_gt']:.3f} G_F->G_W {acc['emotiongan']:.3f} "
                   f"({acc['emotiongan'] / acc['frontal_gt']:.2f}x) GT->G_W {acc['gw_gt']:.3f} "
                   f"({acc['gw_gt'] / acc['frontal_gt']:.2f}x) SSIM {g.ssim_emotiongan.mean():.3f}/{g.ssim_gw_gt.mean():.3f}")
    rec = (r.fer2013_gw_gt == r.label).groupby(r.label).mean()
    out.append("GT->G_W recall " + " ".join(f"{CLASSES[int(k)][:4]} {v:.2f}" for k, v in rec.items()))
    print(d.rstrip("/").split("/")[-1] + ": " + " | ".join(out))
