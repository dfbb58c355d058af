"""Validation faces of the whole-trainer comparison, from the runs' samples.npz (written by `emogan evaluate`, not
committed): neutral face, real frontal face, then G_W from G_F's flow of each run, drawn by
benchmarks/probe_gw.py's contact sheet.
    python docs/results/issue13/session13/sheet.py OUT.png LABEL=EVAL_DIR...
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "benchmarks"))
from probe_gw import contact_sheet  # noqa: E402

runs = [a.split("=", 1) for a in sys.argv[2:]]
first = np.load(f"{runs[0][1]}/samples.npz")
faces = {"neutral": first["neutral"], "real frontal": first["image_frontal_gt"]}
for label, d in runs:
    faces[label] = np.load(f"{d}/samples.npz")["image_emotiongan"]
contact_sheet(faces, Path(sys.argv[1]))
