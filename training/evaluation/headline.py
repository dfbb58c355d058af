"""The headline metrics: the few numbers `dvc metrics show` lists (at most HEADLINE_MAX), written by
`emogan report` beside the full breakdown (cv.json, a plain output). On the large poses of the acceptance
dataset, per strategy (neutral_apex, frame_to_frame, pooled): Flow-CNN accuracy (%) of the input and of
G_F's flows, gap closure, EPE (source-crop px) of the input and of G_F, each as mean and std over the
folds; the references (Flow-CNN on the frontal truth, EPE of a zero flow) as their mean."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

HEADLINE_MAX = 40   # numbers in the file, so that `dvc metrics show` stays readable (issue #15)
STRATEGIES = {"neutral_apex": "neutral_apex", "frame_to_frame": "frame_to_frame", "pooled": "all"}
# headline name -> (breakdown key, scale): mean and std over folds
BANDED = {
    "flowcnn_acc_input_pct": ("flowcnn.accuracy.nonfrontal", 100.0),
    "flowcnn_acc_gf_pct": ("flowcnn.accuracy.emotiongan", 100.0),
    "gap_closure": ("flowcnn.gap_closure.emotiongan", 1.0),
    "epe_input_px": ("epe_px.nonfrontal", 1.0),
    "epe_gf_px": ("epe_px.emotiongan", 1.0),
}
# references that do not depend on the model: their mean only
REFERENCES = {
    "flowcnn_acc_truth_pct_mean": ("flowcnn.accuracy.frontal_gt", 100.0),
    "epe_zero_px_mean": ("epe_px.zero", 1.0),
}


def headline(full: Mapping[str, Mapping[str, Mapping[str, float]]], dataset: str, n_folds: int,
             acceptance_passed: bool, decimals: int = 4) -> dict[str, Any]:
    """The headline dict from the full model's aggregate (group `<dataset>/<pose>/<strategy>` -> metric ->
    {mean, std, n}, report.aggregate); a metric without rows is left out, never written as 0."""
    out: dict[str, Any] = {"folds": n_folds, "acceptance_passed": bool(acceptance_passed)}
    for name, strategy in STRATEGIES.items():
        g = full.get(f"{dataset}/large/{strategy}")
        if not g:
            continue
        s: dict[str, Any] = {}
        for key, (src, k) in BANDED.items():
            if src in g:
                s[key] = {"mean": round(k * g[src]["mean"], decimals), "std": round(k * g[src]["std"], decimals)}
        for key, (src, k) in REFERENCES.items():
            if src in g:
                s[key] = round(k * g[src]["mean"], decimals)
        out[name] = s
    return out


def count_numbers(d: Any) -> int:
    """Numbers (booleans included) among the leaves of a JSON value, as `dvc metrics show` lists them."""
    if isinstance(d, Mapping):
        return sum(count_numbers(v) for v in d.values())
    if isinstance(d, (list, tuple)):
        return sum(count_numbers(v) for v in d)
    return int(isinstance(d, (int, float)))


def write_headline(h: Mapping[str, Any], out: Path | str) -> Path:
    """Write the headline JSON (sorted keys); refuses more than HEADLINE_MAX numbers."""
    n = count_numbers(h)
    if n > HEADLINE_MAX:
        raise ValueError(f"{out}: {n} headline numbers, more than {HEADLINE_MAX}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(h, indent=1, sort_keys=True) + "\n")
    return out
