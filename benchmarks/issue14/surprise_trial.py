"""Trial (issue #14, tuning seeds only): surprise's FER2013 recall with the mouth's geometry constants
(pipeline/face_model.py OVAL_DROP, OVAL_WIDTH, OVAL_RAISE) and the mouth interior's colours
(pipeline/render.py MOUTH_COLOUR, TONGUE_COLOUR) set for this process only, and an optional recipe override,
on 32 people x 6 poses' cam1 apexes a seed (benchmarks/tune_expressions.py's judge). Prints one JSON line
(docs/results/issue14/surprise_trial.jsonl):

    PYTHONPATH=$PWD .venv/bin/python benchmarks/issue14/surprise_trial.py 132,133,134 OVAL_DROP=0.15 \
        'MOUTH_COLOUR=30,10,12' 'recipe=surprise=AU1:0.28:1,...' [classes=surprise,fear]
"""
import json
import sys
from pathlib import Path

import cv2

import pipeline.face_model as fm
import pipeline.render as rd
from pipeline.schema import CLASS_NAMES

seeds = [int(s) for s in sys.argv[1].split(",")]
settings = dict(a.split("=", 1) for a in sys.argv[2:])
recipe = settings.pop("recipe", "")
classes = tuple(settings.pop("classes", "surprise").split(","))
for key, value in settings.items():
    if key.startswith("OVAL_"):
        setattr(fm, key, float(value))
    elif key in ("MOUTH_COLOUR", "TONGUE_COLOUR"):
        setattr(rd, key, tuple(int(v) for v in value.split(",")))
    else:
        raise SystemExit(f"unknown setting {key}")
# AU27's jaw group carries OVAL_DROP in the action-unit table, written at import: rewrite it.
(anchors, (dx, _, dz), radius), = fm._AU_TABLE["AU27"]
fm._AU_TABLE["AU27"] = [(anchors, (dx, fm.OVAL_DROP, dz), radius)]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tune_expressions import judge, parse_recipe  # noqa: E402

cv2.setNumThreads(1)
recipes = dict([parse_recipe(recipe)]) if recipe else {}
poses = ("nothing", "tx", "yaw", "pitch", "roll", "diagonal")
cache: dict = {}
out = {"settings": settings, "recipe": recipe, "seeds": []}
conf_sum = None
for seed in seeds:
    res = judge(seed, 32, 256, classes, poses, recipes, cache)
    out["seeds"].append({"seed": seed, "per_class": res["per_class"]})
    conf_sum = res["confusion"] if conf_sum is None else [[a + b for a, b in zip(r, s)] for r, s in zip(conf_sum, res["confusion"])]
out["recall"] = {c: round(conf_sum[k][k] / sum(conf_sum[k]), 3) for k, c in enumerate(CLASS_NAMES) if sum(conf_sum[k])}
out["confusion"] = {c: conf_sum[k] for k, c in enumerate(CLASS_NAMES) if sum(conf_sum[k])}
print(json.dumps(out))
