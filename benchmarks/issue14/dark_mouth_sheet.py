"""docs/images/synth_dark_mouth.png: surprise apexes (cam1) of tuning seed 132, people 5-12, poses nothing and yaw,
rendered with the fourth round's lit mouth interior (rows 1, 3) and the fifth round's dark one (rows 2, 4); each
face labelled with the FER2013 judge's class and its surprise probability (benchmarks/tune_expressions.py's crops).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/issue14/dark_mouth_sheet.py docs/images/synth_dark_mouth.png
"""
import sys
from pathlib import Path

import cv2
import numpy as np

import pipeline.render as rd
from pipeline.params import load_params
from pipeline.weights import weights_path
from training.models.fer2013 import load_fer2013, predict_proba

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tune_expressions import _apex_faces, labelled_tiles  # noqa: E402

cv2.setNumThreads(1)
fer = load_fer2013(weights_path("fer2013", load_params()))
rows, cache = {}, {}   # the people and backgrounds do not depend on the mouth's colours: rendered once
for name, mouth, tongue in (("lit", (52, 18, 22), (150, 62, 66)), ("dark", rd.MOUTH_COLOUR, rd.TONGUE_COLOUR)):
    rd.MOUTH_COLOUR, rd.TONGUE_COLOUR = mouth, tongue
    crops, _, _ = _apex_faces(132, 12, 256, ("surprise",), ("nothing", "yaw"), {}, cache)
    proba = predict_proba(np.stack(crops), fer)
    tiles = labelled_tiles(crops, proba)
    rows[name] = [np.concatenate(tiles[i:i + 8], 1) for i in (8, 16)]   # people 5-8, 9-12
img = np.concatenate([rows["lit"][0], rows["dark"][0], rows["lit"][1], rows["dark"][1]], 0)
cv2.imwrite(sys.argv[1], cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
