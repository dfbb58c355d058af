"""The validation faces of the whole-trainer comparison (L_eFER on / off), from the runs' samples.npz (written by
`emogan evaluate`, not committed): neutral face, real frontal face, G_W from G_F's flow with L_eFER (the default)
and without it, drawn by benchmarks/probe_gw.py's contact sheet.
    python docs/results/issue13/session11/sheet.py EVAL_FULL EVAL_NOEFER OUT.png
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "benchmarks"))
from probe_gw import contact_sheet  # noqa: E402

full, noefer = (np.load(f"{d}/samples.npz") for d in sys.argv[1:3])
contact_sheet({"neutral": full["neutral"], "real frontal": full["image_frontal_gt"],
               "G_W, L_eFER 1 (default)": full["image_emotiongan"], "G_W, L_eFER 0": noefer["image_emotiongan"]},
              Path(sys.argv[3]))
