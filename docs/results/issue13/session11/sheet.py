"""The validation faces of the whole-trainer comparison (L_eFER on / off), from the runs' samples.npz (written by
`emogan evaluate`, not committed): neutral face, real frontal face, G_W from G_F's flow with L_eFER (the default)
and without it.
    python docs/results/issue13/session11/sheet.py EVAL_FULL EVAL_NOEFER OUT.png
"""
import sys

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

full, noefer = (np.load(f"{d}/samples.npz") for d in sys.argv[1:3])
rows = [("neutral", full["neutral"]), ("real frontal", full["image_frontal_gt"]),
        ("G_W, L_eFER 1 (default)", full["image_emotiongan"]), ("G_W, L_eFER 0", noefer["image_emotiongan"])]
n = min(8, len(full["neutral"]))
fig, axes = plt.subplots(len(rows), n, figsize=(1.2 * n, 1.35 * len(rows)), squeeze=False)
for r, (name, faces) in enumerate(rows):
    for j in range(n):
        axes[r, j].imshow(faces[j].transpose(1, 2, 0))
        axes[r, j].axis("off")
    axes[r, 0].set_title(name, fontsize=7, loc="left")
fig.tight_layout()
fig.savefig(sys.argv[3], dpi=80)
