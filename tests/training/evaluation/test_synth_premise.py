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


def test_fer2013_reads_synthetic_apex_faces_above_chance(tmp_path: Path):
    p = params_of(SynthParams, "synth", subjects=12, frames=2, size=256, poses=("nothing",), workers=2)
    root = synth(p, tmp_path / "fer", progress=False)
    res = fer_accuracy(root, ROOT / weights_path("fer2013", project_params()))
    # Measured on this set (seed 0, 84 apex faces; the recipes of issue #14's second round): 3 faces
    # not found by mediapipe (surprise's wide-open mouths); overall 0.506: neutral 0.83, anger 0.42,
    # disgust 0, fear 0.67, happiness 1.00, sadness 0.42, surprise 0.11 (12 faces a class: one face is
    # 0.08; docs/DATASET.md has the 32-people sets). A guard against regressions with room for a few
    # predictions to flip across platforms, not the bar.
    assert res["faces_not_found"] <= 6, res
    assert res["accuracy"] >= 0.45, res
    assert res["per_class"]["happiness"] >= 0.75 and res["per_class"]["neutral"] >= 0.6, res
    assert res["per_class"]["fear"] >= 0.5 and res["per_class"]["anger"] >= 0.25, res
    assert res["per_class"]["sadness"] >= 0.25, res
