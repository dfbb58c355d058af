"""The report's figures (training/evaluation/figures.py): G_W's faces per expression, the image judge's reading
under each; and which fold's faces the report draws."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.schema import CLASS_NAMES
from training.evaluation.figures import EXPRESSION_COLUMNS, expression_grid, expression_picks, pick_samples


def _samples(labels, poses, judge="fer2013"):
    n = len(labels)
    rng = np.random.default_rng(0)
    s = {"dataset": np.array(["synth"] * (n - 1) + ["synth_ckplus"]), "pose": np.array(poses),
         "label": np.array(labels), "subject": np.array([f"S{i:03d}" for i in range(n)])}
    for key in EXPRESSION_COLUMNS:
        s[key] = rng.integers(0, 256, (n, 3, 16, 16), dtype=np.uint8)
        if key.startswith("image_"):
            s[f"{judge}_{key[len('image_'):]}"] = np.array(labels)   # reads every face right
    return s


def test_expression_picks_one_face_per_expression_of_the_pose_in_class_order():
    #              0 yaw  1 yaw  2 pitch  3 yaw  4 yaw  5 yaw (ckplus)
    s = _samples([6, 3, 3, 3, 0, 1], ["yaw", "yaw", "pitch", "yaw", "yaw", "yaw"])
    assert expression_picks(s, "synth", "yaw") == [1, 0]      # fear (first kept), then surprise; no neutral
    assert expression_picks(s, "synth", "pitch") == [2]
    assert expression_picks(s, "synth_ckplus", "yaw") == [5]
    assert expression_picks(s, "synth", "roll") == []
    assert pick_samples(s, "synth", ["pitch", "yaw"]) == [2, 0]   # Fig. 1's: one per pose, as before


@pytest.mark.parametrize("judge", ["fer2013", "efer"])
def test_expression_grid_draws_every_expression_with_the_judges_reading(tmp_path, judge, monkeypatch):
    labels = list(range(1, len(CLASS_NAMES)))
    s = _samples(labels + [2], ["yaw"] * len(labels) + ["yaw"], judge)
    s[f"{judge}_emotiongan"] = np.array([1] * len(labels) + [2])     # G_W's faces all read as anger
    import matplotlib.axes

    xlabels = []
    orig = matplotlib.axes.Axes.set_xlabel

    def record(ax, text, *a, **kw):
        xlabels.append((text, kw.get("color")))
        return orig(ax, text, *a, **kw)

    monkeypatch.setattr(matplotlib.axes.Axes, "set_xlabel", record)
    picks = expression_picks(s, "synth", "yaw")
    out = expression_grid(s, picks, 32, tmp_path / "f.png", "title")
    assert out.stat().st_size > 1000 and len(picks) == len(labels)
    # Four judged faces per row (the neutral face is not judged): right in green, G_W's wrong ones in red.
    assert len(xlabels) == 4 * len(labels)
    red = [t for t, c in xlabels if c == "red"]
    assert red == [f"{judge}: anger"] * (len(labels) - 1)
    assert all(t.startswith(f"{judge}: ") for t, _ in xlabels)
