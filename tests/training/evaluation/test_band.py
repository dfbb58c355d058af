"""The report's error band (training/evaluation/band.py): a bootstrap over held-out SEQUENCES, not rows; another
run's headline is checked against it (`emogan report --compare`), and the tiny CV report carries it."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import EmoganError
from training.evaluation.band import bootstrap_band, compare_headline, outside_band

POSES = ["yaw", "pitch"]


def rows_frame(n_seq: int, rows_per_seq: int, seed: int = 0) -> pd.DataFrame:
    """Per-row results as rows.csv holds them: every row of a sequence alike (one label, one outcome)."""
    rng = np.random.default_rng(seed)
    out = []
    for s in range(n_seq):
        label = int(rng.integers(0, 7))
        right = rng.random(3) < (0.2, 0.6, 0.9)   # input, G_F, truth correct with these odds
        epe = rng.gamma(2.0, (1.0, 0.4, 0.5))
        for r in range(rows_per_seq):
            out.append({"dataset": "synth", "subject": f"S{s % 4:03d}", "sequence": s, "pose": POSES[s % 2],
                        "strategy": "neutral_apex" if r == 0 else "frame_to_frame", "label": label,
                        "flowcnn_nonfrontal": label if right[0] else (label + 1) % 7,
                        "flowcnn_emotiongan": label if right[1] else (label + 2) % 7,
                        "flowcnn_frontal_gt": label if right[2] else (label + 3) % 7,
                        "epe_nonfrontal": epe[0], "epe_emotiongan": epe[1], "epe_zero": epe[2], "fold": 0})
    return pd.DataFrame(out)


def test_the_band_holds_the_estimate_and_resamples_whole_sequences():
    rows = rows_frame(60, 4)
    band = bootstrap_band(rows, "synth", POSES, 400, 0.95, 0)
    assert set(band) == {"neutral_apex", "frame_to_frame", "pooled"}
    ff = rows[rows["strategy"] == "frame_to_frame"]
    acc = 100 * np.mean(ff["flowcnn_emotiongan"] == ff["label"])
    lo, hi = band["frame_to_frame"]["flowcnn_acc_gf_pct"]
    assert lo < acc < hi and hi - lo > 5
    # Copies of a sequence's rows add no information: a row bootstrap would narrow the band, this one does not.
    tripled = pd.concat([rows] * 3, ignore_index=True)
    band3 = bootstrap_band(tripled, "synth", POSES, 400, 0.95, 0)
    for key, (a, b) in band["frame_to_frame"].items():
        assert band3["frame_to_frame"][key] == pytest.approx([a, b]), key
    # More sequences: a narrower band.
    wide = bootstrap_band(rows_frame(600, 4, seed=1), "synth", POSES, 400, 0.95, 0)
    lo2, hi2 = wide["frame_to_frame"]["flowcnn_acc_gf_pct"]
    assert hi2 - lo2 < 0.6 * (hi - lo)


def test_another_runs_numbers_outside_the_band_are_named(tmp_path):
    band = {"pooled": {"flowcnn_acc_gf_pct": [40.0, 60.0], "epe_zero_px_mean": [0.2, 0.3]}}
    inside = {"pooled": {"flowcnn_acc_gf_pct": {"mean": 55.0, "std": 0.0}, "epe_zero_px_mean": 0.25}}
    assert outside_band(inside, band) == []
    moved = {"pooled": {"flowcnn_acc_gf_pct": {"mean": 62.5, "std": 0.0}, "epe_zero_px_mean": 0.25}}
    assert outside_band(moved, band) == ["pooled.flowcnn_acc_gf_pct = 62.5 outside [40, 60]"]
    f = tmp_path / "h.json"
    f.write_text(json.dumps(moved))
    assert compare_headline(f, band) == (2, outside_band(moved, band))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(EmoganError, match="bad.json"):
        compare_headline(tmp_path / "bad.json", band)
