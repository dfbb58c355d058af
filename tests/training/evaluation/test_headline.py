"""`dvc metrics show` lists the headline numbers only (issue #15): `emogan report` writes at most 40 of them
(per strategy, large poses, mean and std over folds), and dvc.yaml declares no other metrics file."""
from __future__ import annotations

import json

import pytest
import yaml

from conftest import ROOT
from training.evaluation.headline import HEADLINE_MAX, count_numbers, headline, write_headline
from training.evaluation.report import aggregate

GROUP = {"n": 10, "labeled": 10,
         "flowcnn": {"accuracy": {"nonfrontal": 0.4, "emotiongan": 0.7, "frontal_gt": 0.8, "landmark": 0.5},
                     "gain_pts": {"emotiongan": 30.0}, "gap_closure": {"emotiongan": 0.75}},
         "epe_px": {"nonfrontal": 1.8, "emotiongan": 0.3, "zero": 2.0, "landmark": 1.0},
         "ssim": {"nonfrontal": 0.5, "emotiongan": 0.8}, "rmse": {"nonfrontal": 20.0, "emotiongan": 9.0}}


def tiny_folds(n_folds: int = 3) -> dict[int, dict]:
    """Breakdowns of a tiny CV report: every dataset/pose/strategy group, numbers moving with the fold."""
    folds = {}
    for k in range(n_folds):
        groups = {}
        for ds in ("all", "synth", "synth_ckplus"):
            for pose in ("all", "large", "small", "yaw", "pitch", "roll", "diagonal", "tx"):
                for strategy in ("all", "neutral_apex", "frame_to_frame"):
                    g = json.loads(json.dumps(GROUP))
                    g["flowcnn"]["accuracy"]["emotiongan"] += 0.01 * k
                    g["epe_px"]["emotiongan"] += 0.1 * k
                    groups[f"{ds}/{pose}/{strategy}"] = g
        folds[k] = {"groups": groups}
    return folds


def test_the_headline_of_a_tiny_report_has_at_most_40_numbers(tmp_path):
    full = aggregate(tiny_folds())
    assert sum(count_numbers(m) for m in full.values()) > 1000   # what cv.json holds: far too many to show
    h = headline(full, "synth", 3, True)
    assert set(h) == {"folds", "acceptance_passed", "neutral_apex", "frame_to_frame", "pooled"}
    assert count_numbers(h) <= HEADLINE_MAX == 40
    pooled = h["pooled"]
    assert pooled["flowcnn_acc_gf_pct"]["mean"] == pytest.approx(71.0)
    assert pooled["flowcnn_acc_gf_pct"]["std"] == pytest.approx(1.0)      # sample std over the 3 folds
    assert pooled["epe_gf_px"]["mean"] == pytest.approx(0.4) and pooled["epe_input_px"]["std"] == 0
    assert pooled["gap_closure"]["mean"] == 0.75 and pooled["epe_zero_px_mean"] == 2.0
    assert pooled["flowcnn_acc_truth_pct_mean"] == pytest.approx(80.0)
    out = write_headline(h, tmp_path / "headline.json")
    assert json.loads(out.read_text()) == h


def test_a_strategy_without_rows_is_left_out_and_too_many_numbers_are_refused(tmp_path):
    full = aggregate(tiny_folds(1))
    del full["synth/large/frame_to_frame"]
    h = headline(full, "synth", 1, False)
    assert "frame_to_frame" not in h and h["neutral_apex"]["epe_gf_px"]["std"] == 0.0
    with pytest.raises(ValueError, match="more than 40"):
        write_headline({f"m{i}": float(i) for i in range(41)}, tmp_path / "h.json")


def test_dvc_yaml_declares_the_headline_as_its_only_metrics_file():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    declared = []
    for name, st in stages.items():
        body = st.get("do", st)
        for m in body.get("metrics", []):
            declared.append((name, next(iter(m)) if isinstance(m, dict) else m))
    assert declared == [("report", "${paths.metrics}/headline.json")], declared
    report = stages["report"]
    assert "--headline ${paths.metrics}/headline.json" in report["cmd"]
    assert any("cv.json" in (next(iter(o)) if isinstance(o, dict) else o) for o in report["outs"])
    # the per-run evaluation folders (rows.csv, samples.npz) are DVC-cached outputs, not files in git
    for name in ("evaluate", "evaluate-ablation"):
        body = stages[name].get("do", stages[name])
        assert all(isinstance(o, str) for o in body["outs"]), f"{name}: its outs must be cached (no cache: false)"
