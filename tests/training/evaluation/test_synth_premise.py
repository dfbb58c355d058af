"""The synthetic dataset does its job: expressions are easy from frontal flow, hard under head
rotation (the premise), and its apex faces read as expressions to a model trained on real faces."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.synth import SynthParams, synth
from pipeline.synth_check import load_flows, premise
from training.evaluation.synth_check import fer_accuracy
from conftest import ROOT, params_of, project_params
from pipeline.weights import weights_path


def test_premise_holds_on_a_small_set(tmp_path: Path):
    p = params_of(SynthParams, "synth", subjects=6, frames=2, size=192, poses=("nothing", "yaw", "diagonal"), workers=2)
    root = synth(p, tmp_path / "premise", progress=False)
    res = premise(load_flows(root), folds=3)
    assert res["sequences"] == 6 * 7 * 3
    assert res["cam1_accuracy"] >= 0.85, res
    assert res["cam2_rotating_accuracy"] <= res["cam1_accuracy"] - 0.15, res
    assert res["cam1_to_cam2_rotating_accuracy"] <= res["cam1_accuracy"] - 0.15, res
    # Without head motion cam2 is cam1: the gap comes from the head, not from the camera.
    assert res["cam2_accuracy_by_pose"]["nothing"] >= res["cam2_accuracy_by_pose"]["yaw"] + 0.3, res


@pytest.fixture(scope="module")
def apex_set(tmp_path_factory) -> Path:
    """12 people x 7 expressions, frontal, neutral and apex frames at 256 px (the issue's FER2013 check)."""
    p = params_of(SynthParams, "synth", subjects=12, frames=2, size=256, poses=("nothing",), workers=2)
    return synth(p, tmp_path_factory.mktemp("fer") / "fer", progress=False)


def test_fer2013_reads_synthetic_apex_faces_above_chance(apex_set: Path):
    root = apex_set
    res = fer_accuracy(root, ROOT / weights_path("fer2013", project_params()),
                       project_params()["evaluate"]["fer2013_margin"])
    # Measured on this set (seed 0, 84 apex faces, each cropped with its neutral first frame's box; the
    # recipes of issue #14's fourth round, the fifth round's dark mouth): overall 0.595: neutral 0.83, anger 0.50,
    # disgust 0, fear 0.92,
    # happiness 0.92, sadness 0.67, surprise 0.33 (12 faces a class: one face is 0.08; docs/DATASET.md has
    # the 32-people sets). A guard against regressions with room for a few predictions to flip across
    # platforms, not the bar. A neutral frontal face the detector misses is a regression.
    assert res["faces_not_found"] <= 1, res
    assert res["accuracy"] >= 0.45, res
    assert res["per_class"]["happiness"] >= 0.75 and res["per_class"]["neutral"] >= 0.6, res
    assert res["per_class"]["fear"] >= 0.5 and res["per_class"]["anger"] >= 0.25, res
    assert res["per_class"]["sadness"] >= 0.25, res


def test_fer2013_judges_an_apex_the_detector_would_miss(tmp_path: Path):
    """The apex is cropped with the neutral first frame's box: an apex mediapipe cannot find (here a
    flat grey frame) is still judged, never dropped (dropping such faces lifted recall)."""
    import numpy as np

    from pipeline.crop import detect_face_box, read_rgb, write_png

    p = params_of(SynthParams, "synth", subjects=1, frames=2, size=192, poses=("nothing",),
                  expressions=("neutral", "happiness"), workers=1)
    root = synth(p, tmp_path / "s", progress=False)
    apexes = sorted((root / "cam1").glob("*/*/img_002.png"))
    assert len(apexes) == 2
    grey = np.full_like(read_rgb(apexes[0]), 128)
    assert detect_face_box(grey, margin=0.1) is None
    write_png(apexes[0], grey)
    res = fer_accuracy(root, ROOT / weights_path("fer2013", project_params()),
                       project_params()["evaluate"]["fer2013_margin"])
    assert res["faces_not_found"] == 0 and int(np.sum(res["confusion"])) == 2, res


def test_fer2013_reads_store_framed_faces_as_it_reads_its_own_framing(apex_set: Path):
    """The store's faces are cropped with crop.margin (0.4: the face is 1/1.8 of the side) and shrunk to the
    model's 64 px; read whole, the FER2013 judge sees a small face and calls most of them happy or neutral.
    `emogan evaluate` lets it read their central part (frame_for), framed as synth-check frames the apex."""
    import csv

    import cv2
    import numpy as np

    from pipeline.crop import crop_square, detect_face_box, read_rgb
    from pipeline.schema import CLASS_NAMES
    from training.models.fer2013 import frame_for, load_fer2013, predict_proba

    prm = project_params()
    judge_margin, crop_margin = prm["evaluate"]["fer2013_margin"], prm["crop"]["margin"]
    weights = ROOT / weights_path("fer2013", prm)
    own = fer_accuracy(apex_set, weights, judge_margin)
    faces, y = [], []
    with open(apex_set / "labels.csv", newline="") as f:
        for row in csv.DictReader(f, delimiter=";"):
            first, apex = (read_rgb(q) for q in sorted((apex_set / "cam1" / row["subject"] / row["sequence"]).glob("img_*.png")))
            box = detect_face_box(first, margin=crop_margin)   # as the crop stage frames the store's faces
            assert box is not None, row
            faces.append(cv2.resize(crop_square(apex, box, 256), (64, 64), interpolation=cv2.INTER_AREA))
            y.append(CLASS_NAMES.index(row["expression"]))
    faces, y = np.stack(faces), np.array(y)
    whole = (predict_proba(faces, load_fer2013(weights)).argmax(1) == y).mean()
    framed = (predict_proba(faces, load_fer2013(weights, frame=frame_for(judge_margin, crop_margin))).argmax(1) == y).mean()
    # Measured (84 faces): whole 0.33 (37 called happy), framed 0.55, synth-check's own crops 0.57.
    assert framed >= own["accuracy"] - 0.08, (framed, own["accuracy"])
    assert whole <= framed - 0.12, (whole, framed)
