"""Trial (issue #14, tuning seeds only): surprise's FER2013 recall against AU27's oval width (face_model.OVAL_WIDTH,
set for this process only) and an optional surprise recipe override, on 32 people x 6 poses' cam1 apexes a seed
(benchmarks/tune_expressions.py's judge). Prints one JSON line (docs/results/issue14/oval_width.jsonl):

    PYTHONPATH=$PWD .venv/bin/python benchmarks/issue14/oval_width.py 0.85 126,127,128,129,130,131 \
        ['surprise=AU1:0.28:1,...']
"""
import json
import sys
import time
from pathlib import Path

import cv2

import pipeline.face_model as fm

width = float(sys.argv[1])
seeds = [int(s) for s in sys.argv[2].split(",")]
recipe = sys.argv[3] if len(sys.argv) > 3 else ""
fm.OVAL_WIDTH = width
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tune_expressions import judge, parse_recipe  # noqa: E402

cv2.setNumThreads(1)
recipes = dict([parse_recipe(recipe)]) if recipe else {}
poses = ("nothing", "tx", "yaw", "pitch", "roll", "diagonal")
cache: dict = {}
tot, hit = 0, 0
rows = []
for seed in seeds:
    t0 = time.time()
    res = judge(seed, 32, 256, ("surprise",), poses, recipes, cache)
    row = res["confusion"][6]
    tot += sum(row)
    hit += row[6]
    rows.append({"seed": seed, "surprise": res["per_class"].get("surprise"), "row": row})
print(json.dumps({"width": width, "recipe": recipe, "mean": hit / tot, "n": tot, "seeds": rows}))
