"""Issue #14 diagnosis (tuning seeds only): which people's surprise the pretrained FER2013 judge reads, and what
they share. Renders each person's cam1 neutral and apex of one expression in the six poses (the judge's framing,
as benchmarks/tune_expressions.py), then prints the recall per person group (leading photograph, lower-face
photograph, glasses) and per quartile of the person's face proportions (from the person's neutral mesh:
brow-to-eye height, mouth width, lower-face length, face length / width, nose-to-mouth height) and of the
person's action-unit style gains. Writes one JSON line per face and a summary:

    PYTHONPATH=$PWD .venv/bin/python benchmarks/issue14/surprise_by_person.py 132,133,134 --out DIR \
        [--expression surprise] [--closed-mouth biden]

--closed-mouth NAME[,NAME] overrides which photographs may give a person's lower face (a diagnosis: it shifts
the people's random draws too).
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import sys
from pathlib import Path

import cv2
import numpy as np

POSES = ("nothing", "tx", "yaw", "pitch", "roll", "diagonal")


def proportions(shape: np.ndarray) -> dict[str, float]:
    """Face proportions of a neutral mesh (MediaPipe FaceMesh vertex numbers)."""
    fh, fw = shape[152, 1] - shape[10, 1], shape[454, 0] - shape[234, 0]
    mouth_y = shape[[13, 14], 1].mean()
    return {"brow_eye": float((shape[[159, 386], 1].mean() - shape[[105, 66, 107, 334, 296, 336], 1].mean()) / fh),
            "mouth_width": float((shape[291, 0] - shape[61, 0]) / fw),
            "lower_face_length": float((shape[152, 1] - mouth_y) / fh),
            "face_length_by_width": float(fh / fw),
            "nose_to_mouth": float((mouth_y - shape[1, 1]) / fh)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("seeds", help="comma-separated tuning seeds (100-199)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--expression", default="surprise")
    ap.add_argument("--people", type=int, default=32)
    ap.add_argument("--closed-mouth", default=None)
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tune_expressions import frame

    from pipeline.crop import crop_square, detect_face_box
    from pipeline.face_model import AU_NAMES, build_face_model
    from pipeline.params import load_params, section
    from pipeline.render import Camera, make_background
    from pipeline.schema import CLASS_NAMES
    from pipeline.synth import EXPRESSION_AUS, SequenceSpec, SynthParams, make_subject, sequence_motion
    from pipeline.weights import weights_path
    from training.models.fer2013 import load_fer2013, predict_proba

    cv2.setNumThreads(1)
    params = load_params()
    fer = load_fer2013(weights_path("fer2013", params))
    margin = float(params["evaluate"]["fer2013_margin"])
    model = build_face_model()
    if args.closed_mouth:
        model.closed_mouth = tuple(args.closed_mouth.split(","))
    expr, aus = args.expression, [a for a, _, _ in EXPRESSION_AUS[args.expression]]
    args.out.mkdir(parents=True, exist_ok=True)
    faces = []
    for seed in (int(s) for s in args.seeds.split(",")):
        p = dataclasses.replace(section(params, "synth", SynthParams), seed=seed, size=256, frames=2)
        cam = Camera(size=p.size, face_frac=p.face_frac, focal_frac=p.focal_frac)
        for number in range(p.first_subject, p.first_subject + args.people):
            subject = make_subject(model, number, p)
            bg = make_background(subject, p.size)
            person = {"seed": seed, "number": number, **{k: subject.recipe[k] for k in ("photo", "lower_face", "glasses")},
                      **proportions(subject.shape), **{f"style_{a}": float(subject.style[AU_NAMES.index(a)]) for a in aus}}
            for pose in POSES:
                gains, _ = sequence_motion(SequenceSpec(number, "000", expr, pose), subject, p, cam.px_per_unit)
                first, apex = (frame(model, subject, gains, i, cam, bg, p, number, expr, pose) for i in (0, 1))
                box = detect_face_box(first, margin=margin)
                if box is None:
                    continue
                pred = CLASS_NAMES[int(predict_proba(crop_square(apex, box, 128)[None], fer)[0].argmax())]
                faces.append({**person, "pose": pose, "pred": pred})
            print(f"seed {seed} person {number}: {sum(f['pred'] == expr for f in faces[-len(POSES):])} of "
                  f"{len(POSES)} read as {expr}", flush=True)
    (args.out / "faces.jsonl").write_text("".join(json.dumps(f) + "\n" for f in faces))
    ok = np.array([f["pred"] == expr for f in faces])
    people = collections.defaultdict(list)
    for f, k in zip(faces, ok):
        people[(f["seed"], f["number"])].append(k)
    rate = {key: float(np.mean(v)) for key, v in people.items()}
    summary = {"expression": expr, "seeds": args.seeds, "closed_mouth": args.closed_mouth, "faces": len(faces),
               "recall": float(ok.mean()), "predicted": dict(collections.Counter(f["pred"] for f in faces)),
               "people_by_faces_read": dict(sorted(collections.Counter(int(sum(v)) for v in people.values()).items())),
               "groups": {}, "quartiles": {}}
    for key in ("photo", "lower_face", "glasses"):
        g = collections.defaultdict(list)
        for f, k in zip(faces, ok):
            g[str(f[key])].append(k)
        summary["groups"][key] = {name: [len(v), round(float(np.mean(v)), 3)] for name, v in sorted(g.items())}
    first = {key: next(f for f in faces if (f["seed"], f["number"]) == key) for key in people}
    numeric = [k for k, v in faces[0].items() if isinstance(v, float)]
    r = np.array([rate[key] for key in people])
    for key in numeric:
        x = np.array([first[p][key] for p in people])
        q = np.quantile(x, [0, 0.25, 0.5, 0.75, 1])
        summary["quartiles"][key] = {"correlation": round(float(np.corrcoef(x, r)[0, 1]), 3),
                                     "recall_by_quartile": [round(float(r[(x >= q[i]) & (x <= q[i + 1])].mean()), 3)
                                                            for i in range(4)]}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
