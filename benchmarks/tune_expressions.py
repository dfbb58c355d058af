"""Tuning aid: the pretrained FER2013 judge's reading of the cam1 apex faces, fast.

Renders only the first (neutral) and the apex frame of cam1 for N people x the expressions at
synth.size (default 256), with the same people, action-unit draws, noise and face crop as
`emogan synth` + `emogan synth-check` (training/evaluation/synth_check.py fer_accuracy: the apex is
cropped with the box detected on the neutral first frame, as the crop stage does, so a distorted apex
the detector would miss still counts), and prints per-class recall and the confusion matrix.
Tune ONLY on seeds 100-199; the untuned seeds in docs/DATASET.md are not for tuning. A recipe can be overridden for a trial without editing pipeline/synth.py:

    PYTHONPATH=$PWD .venv/bin/python benchmarks/tune_expressions.py --seed 100 --people 32 \
        --recipe 'surprise=AU1:0.6:1,AU2:1.2:1,AU5:1.2:0.9,AU26:0.8:1,AU27:1.3:1'
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import cv2
import numpy as np

from pipeline.schema import CLASS_NAMES, POSE_NAMES


def parse_recipe(text: str) -> tuple[str, list[tuple[str, float, float]]]:
    """'name=AU1:w:p,AU2:w:p' -> (name, [(AU1, w, p), ...]); an empty list is allowed ('neutral=')."""
    name, _, body = text.partition("=")
    aus = []
    for item in filter(None, body.split(",")):
        au, w, prob = item.split(":")
        aus.append((au, float(w), float(prob)))
    return name.strip(), aus


def frame(model, subject, gains, i: int, cam, bg, p, number: int, expr: str, pose: str) -> np.ndarray:
    """Frame i of cam1 exactly as `emogan synth` renders it (same noise draw)."""
    from pipeline.render import finish, render

    noise_rng = np.random.default_rng([p.seed, number, CLASS_NAMES.index(expr), POSE_NAMES.index(pose), i, 31])
    noise = noise_rng.standard_normal((p.size, p.size), dtype=np.float32) * p.noise_sigma
    return finish(render(model, subject, gains[i], np.zeros(5), cam, bg)[0], noise)


def _apex_faces(seed: int, people: int, size: int, expressions, poses, recipes, cache: dict):
    from pipeline.crop import crop_square, detect_face_box
    from pipeline.face_model import build_face_model
    from pipeline.params import load_params, section
    from pipeline.render import Camera, make_background
    from pipeline.synth import SequenceSpec, SynthParams, make_subject, sequence_motion
    import pipeline.synth as synth_mod

    params = load_params()
    p = dataclasses.replace(section(params, "synth", SynthParams), seed=seed, size=size, frames=2)
    margin = float(params["evaluate"]["fer2013_margin"])   # the judge's framing, as synth-check
    if "model" not in cache:
        cache["model"] = build_face_model()
    model = cache["model"]
    cam = Camera(size=p.size, face_frac=p.face_frac, focal_frac=p.focal_frac)
    saved = dict(synth_mod.EXPRESSION_AUS)
    synth_mod.EXPRESSION_AUS.update(recipes)
    crops, y, missed = [], [], 0
    try:
        for s in range(people):
            number = p.first_subject + s
            key = (seed, size, number)
            if key not in cache:
                subject = make_subject(model, number, p)
                cache[key] = (subject, make_background(subject, p.size))
            subject, bg = cache[key]
            for expr, pose in ((e, q) for e in expressions for q in poses):
                spec = SequenceSpec(number, "000", expr, pose)
                gains, _ = sequence_motion(spec, subject, p, cam.px_per_unit)
                first, apex = (frame(model, subject, gains, i, cam, bg, p, number, expr, pose) for i in (0, p.frames - 1))
                box = detect_face_box(first, margin=margin)  # the neutral face's box, as synth-check and crop
                if box is None:
                    missed += 1
                    continue
                crops.append(crop_square(apex, box, 128))
                y.append(CLASS_NAMES.index(expr))
    finally:
        synth_mod.EXPRESSION_AUS.clear()
        synth_mod.EXPRESSION_AUS.update(saved)
    return crops, np.array(y), missed


def labelled_tiles(crops, proba, cls: str = "surprise", side: int = 160) -> list[np.ndarray]:
    """Each face resized to side x side with the judge's label and its probability of `cls` written on it."""
    tiles = []
    for c, p in zip(crops, proba):
        t = cv2.resize(c, (side, side)).copy()
        cv2.putText(t, f"{CLASS_NAMES[p.argmax()][:4]} {p[CLASS_NAMES.index(cls)]:.2f}", (3, 14),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0), 1)
        tiles.append(t)
    return tiles


def judge(seed: int, people: int, size: int = 256, expressions=CLASS_NAMES, poses=("nothing",), recipes=None,
          cache=None) -> dict:
    """FER2013 recall per class of the cam1 apex faces of `people` people rendered with `recipes`
    (overrides of pipeline.synth.EXPRESSION_AUS), one apex per pose (cam1 is frontal whatever the pose, each
    pose its own action-unit draw, as in a synth set's cam1); `cache` (a dict) keeps people and models across calls."""
    from pipeline.params import load_params
    from pipeline.scoring import confusion
    from pipeline.weights import weights_path
    from training.models.fer2013 import load_fer2013, predict_proba

    cache = {} if cache is None else cache
    if "fer" not in cache:
        cache["fer"] = load_fer2013(weights_path("fer2013", load_params()))
    crops, y, missed = _apex_faces(seed, people, size, expressions, poses, recipes or {}, cache)
    pred = predict_proba(np.stack(crops), cache["fer"]).argmax(1)
    conf = confusion(y, pred)
    per_class = {c: float(conf[k, k] / conf[k].sum()) for k, c in enumerate(CLASS_NAMES) if conf[k].sum()}
    return {"accuracy": float(np.trace(conf) / max(conf.sum(), 1)), "per_class": per_class,
            "confusion": conf.tolist(), "faces_not_found": missed}


def show(res: dict) -> str:
    lines = [f"overall {res['accuracy']:.3f}  not found {res['faces_not_found']}",
             "  ".join(f"{c[:4]} {v:.2f}" for c, v in res["per_class"].items()),
             "true\\pred " + " ".join(f"{c[:4]:>4}" for c in CLASS_NAMES)]
    for k, row in enumerate(res["confusion"]):
        if sum(row):
            lines.append(f"{CLASS_NAMES[k][:9]:>9} " + " ".join(f"{v:4d}" for v in row))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=100, help="tuning seeds: 100-199")
    ap.add_argument("--people", type=int, default=32)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--expressions", default=",".join(CLASS_NAMES))
    ap.add_argument("--poses", default="nothing", help="comma-separated; each gives cam1 its own draw")
    ap.add_argument("--recipe", action="append", default=[], help="NAME=AU:weight:prob,... (repeatable)")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    recipes = dict(parse_recipe(r) for r in args.recipe)
    t0 = time.perf_counter()
    res = judge(args.seed, args.people, args.size, tuple(args.expressions.split(",")), tuple(args.poses.split(",")),
                recipes)
    print(show(res))
    print(f"{time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
