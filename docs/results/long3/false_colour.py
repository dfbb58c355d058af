"""False colour of the faces in each fold's samples.npz (Fig. 1's rows, written by `emogan evaluate` beside rows.csv;
not committed here): mean |chroma - the real frontal face's chroma| in grey levels (training/evaluation/metrics.py
chroma_u8, the `false colour` column of Table I since session 12).

    python docs/results/long3/false_colour.py EVAL_DIR     (the run's $OUT/eval/full, holding fold_K/samples.npz)
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from training.evaluation.metrics import chroma_u8 as false_colour  # noqa: E402

SOURCES = {"neutral": "neutral face", "image_emotiongan": "G_W from G_F's flow", "image_gw_gt": "G_W from the truth's flow"}
for d in sorted(Path(sys.argv[1]).glob("fold_*"), key=lambda p: int(p.name[5:])):
    z = np.load(d / "samples.npz")
    ref = z["image_frontal_gt"]
    print(f"{d.name} ({len(ref)} faces): " + ", ".join(
        f"{label} {false_colour(z[k], ref).mean():.2f}" for k, label in SOURCES.items()))
