"""Trial (issue #14, tuning seeds only): surprise's FER2013 recall with two changes to the people, patched in for
this process only, on 32 people x 6 poses' cam1 apexes a seed (benchmarks/tune_expressions.py's judge). Prints one
JSON line (docs/results/issue14/people_trial.jsonl; its two lines were run with the fifth round's surprise, AU1 0.28
and AU2 1.61, against 0.368 on seeds 132-134):

    PYTHONPATH=$PWD .venv/bin/python benchmarks/issue14/people_trial.py 132,133,134 lowermix
    PYTHONPATH=$PWD .venv/bin/python benchmarks/issue14/people_trial.py 132,133,134 mouthnorm 1.0

- lowermix: every person's lower face from the mean (in normalised colours) of both closed-mouth photographs'
  lower faces, not from one of them (surprise read 0.47 on Biden's lower face, 0.25 on Grace Hopper's).
- mouthnorm K: in AU27 (mouth stretch) the lips around the mouth are drawn in by (canonical width / the person's
  mouth width)^K - 1 of their distance from the mouth's centre (wide mouths read as anger or happiness).
"""
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).resolve().parents[1])]
import pipeline.people as people
import pipeline.render as rd
import pipeline.face_model as fm
from pipeline.schema import CLASS_NAMES
seeds = [int(s) for s in sys.argv[1].split(",")]
variant = sys.argv[2]
k = float(sys.argv[3]) if len(sys.argv) > 3 else 0.5
classes = tuple(sys.argv[4].split(",")) if len(sys.argv) > 4 else ("surprise",)

if "lowermix" in variant:
    orig_tex = people._texture_of
    def tex_of(model, rng, ident, p):
        closed = list(model.closed_mouth)
        saved = {n: model.textures[n] for n in closed}
        # normalised mix of both closed-mouth photographs' textures, put back into each one's own colours
        skin = model.regions["skin"] * (1.0 - model.regions["eyes"])
        zs = {}
        for n in closed:
            t = model.textures[n].astype(np.float32); m, s = people._skin_stats(t, skin)
            zs[n] = (t - m, s, m)
        mixz = sum((zs[n][0] / zs[n][1]) for n in closed) / len(closed)
        low = model.regions["lower"][..., None]
        try:
            for n in closed:
                z0, s, m = zs[n]
                new = (z0 / s) * (1 - low) + mixz * low
                model.textures[n] = np.clip(new * s + m, 0, 255).astype(np.uint8)
            return orig_tex(model, rng, ident, p)
        finally:
            for n in closed:
                model.textures[n] = saved[n]
    people._texture_of = tex_of

if "mouthnorm" in variant:
    orig_ev = rd.expression_vertices
    def ev(model, subject, au_gains):
        out = orig_ev(model, subject, au_gains)
        a = fm.AU_NAMES.index("AU27")
        g = float(au_gains[a].sum()) * 0.5
        if g <= 0:
            return out
        sh, can = subject.shape, model.shape
        L, R = 78, 308
        wp = abs(sh[R, 0] - sh[L, 0]); w0 = abs(can[R, 0] - can[L, 0])
        cx = sh[list(fm.INNER_LIPS), 0].mean()
        mouth = sh[list(fm.INNER_LIPS), :2].mean(0)
        d = np.sqrt(((sh[:, :2] - mouth) ** 2).sum(1))
        wgt = np.exp(-0.5 * (d / 0.06) ** 2)
        factor = (w0 / wp) ** k - 1.0     # k=1: the person's mouth as wide as the canonical one
        out[:, 0] += g * wgt * (sh[:, 0] - cx) * factor
        return out
    rd.expression_vertices = ev

from tune_expressions import judge
cv2.setNumThreads(1)
poses = ("nothing", "tx", "yaw", "pitch", "roll", "diagonal")
cache = {}
res_all = []
conf_sum = None
for seed in seeds:
    res = judge(seed, 32, 256, classes, poses, {}, cache)
    res_all.append({"seed": seed, "per_class": {c: round(v, 3) for c, v in res["per_class"].items()}})
    conf_sum = res["confusion"] if conf_sum is None else [[a + b for a, b in zip(r, s)] for r, s in zip(conf_sum, res["confusion"])]
out = {"variant": variant, "k": k, "seeds": res_all,
       "recall": {c: round(conf_sum[i][i] / sum(conf_sum[i]), 3) for i, c in enumerate(CLASS_NAMES) if sum(conf_sum[i])},
       "confusion": {c: conf_sum[i] for i, c in enumerate(CLASS_NAMES) if sum(conf_sum[i])}}
print(json.dumps(out))
