"""docs/images/synth_surprise_brows.png: surprise apexes (cam1, pose nothing) of tuning seed 132, the eight people
whose surprise the FER2013 judge read least often in session 15's diagnosis (docs/results/issue14/surprise_by_person),
rendered with the fifth round's brows (AU1 0.28, AU2 1.61: row 1) and the sixth round's level ones (AU1 0.5,
AU2 0.7: row 2); each face labelled with the judge's class and its surprise probability.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/issue14/brows_sheet.py docs/images/synth_surprise_brows.png
"""
import json
import sys
from pathlib import Path

import cv2
import numpy as np

import pipeline.synth as synth
from pipeline.params import load_params
from pipeline.weights import weights_path
from training.models.fer2013 import load_fer2013, predict_proba

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from tune_expressions import _apex_faces, labelled_tiles  # noqa: E402

cv2.setNumThreads(1)
faces = [json.loads(line) for line in (ROOT / "docs/results/issue14/surprise_by_person/faces.jsonl").open()]
reads: dict[int, int] = {}
for f in faces:
    if f["seed"] == 132:
        reads[f["number"]] = reads.get(f["number"], 0) + (f["pred"] == "surprise")
people = sorted(sorted(reads), key=lambda n: reads[n])[:8]
fer = load_fer2013(weights_path("fer2013", load_params()))
now = dict(synth.EXPRESSION_AUS)["surprise"]
old = [("AU1", 0.28, 1.0), ("AU2", 1.61, 1.0)] + [a for a in now if a[0] not in ("AU1", "AU2")]
rows, cache = [], {}
for recipe in (old, now):
    crops, _, _ = _apex_faces(132, max(people), 256, ("surprise",), ("nothing",), {"surprise": recipe}, cache)
    picked = [crops[n - 1] for n in people]          # one face per person (pose nothing), people 1..max in order
    proba = predict_proba(np.stack(picked), fer)
    tiles = labelled_tiles(picked, proba)
    rows.append(np.concatenate(tiles, 1))
cv2.imwrite(sys.argv[1], cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR))
print("people", people)
