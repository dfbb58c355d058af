"""The report's own error band: how far its headline numbers would move on other held-out people.

The headline numbers (training/evaluation/headline.py) are means over a few held-out sequences (one fold in
the demo), so their sampling error is large. The band is a percentile bootstrap over held-out SEQUENCES (each
resample draws whole sequences with replacement, all of a sequence's rows together: rows of one sequence are
not independent), computed from the per-row results (`metrics/eval/full/fold_*/rows.csv`). A re-run, on this
machine or another, whose headline numbers fall inside the band is consistent with this one
(`emogan report --compare OTHER/headline.json` says which do not); docs/EVALUATION.md says what is exact and
what is only within the band.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from pipeline.errors import EmoganError
from training.evaluation.headline import BANDED, REFERENCES, STRATEGIES
from training.evaluation.metrics import gap_closure


# headline name -> how one row set gives it (the headline's own definitions, recomputed from rows.csv)
def _metrics(r: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Headline numbers of one set of rows (arrays of equal length): accuracy in %, EPE in px, gap closure."""
    out: dict[str, float] = {}
    lab = r["label"]
    acc = {}
    for m in ("nonfrontal", "emotiongan", "frontal_gt"):
        pred = r[f"flowcnn_{m}"]
        ok = pred >= 0
        if ok.any():
            acc[m] = 100.0 * float(np.mean(pred[ok] == lab[ok]))
    if "nonfrontal" in acc:
        out["flowcnn_acc_input_pct"] = acc["nonfrontal"]
    if "emotiongan" in acc:
        out["flowcnn_acc_gf_pct"] = acc["emotiongan"]
    if "frontal_gt" in acc:
        out["flowcnn_acc_truth_pct_mean"] = acc["frontal_gt"]
    closure = gap_closure(acc.get("emotiongan"), acc.get("nonfrontal"), acc.get("frontal_gt"))
    if closure is not None:
        out["gap_closure"] = closure
    for key, col in (("epe_input_px", "epe_nonfrontal"), ("epe_gf_px", "epe_emotiongan"), ("epe_zero_px_mean", "epe_zero")):
        v = r[col]
        v = v[np.isfinite(v)]
        if v.size:
            out[key] = float(v.mean())
    return out


def load_rows(variant_dir: Path | str) -> "Any":
    """Every fold's rows.csv of one variant folder (`metrics/eval/full`), one pandas frame."""
    import pandas as pd

    files = sorted(Path(variant_dir).glob("fold_*/rows.csv"))
    if not files:
        raise EmoganError(f"{variant_dir}: no fold_*/rows.csv (per-row results of `emogan evaluate`)")
    return pd.concat([pd.read_csv(f).assign(fold=int(f.parent.name.split("_")[1])) for f in files], ignore_index=True)


def bootstrap_band(rows: "Any", dataset: str, poses: Sequence[str], resamples: int, level: float,
                   seed: int) -> dict[str, dict[str, list[float]]]:
    """{headline strategy: {headline key: [low, high]}} on `dataset`'s rows of `poses`: the central `level`
    percentile interval of `resamples` bootstrap draws of the held-out sequences (params.yaml report.band_*)."""
    keep = rows[(rows["dataset"] == dataset) & rows["pose"].isin(list(poses))]
    rng = np.random.default_rng(seed)
    lo_q, hi_q = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    names = [k for k in BANDED] + [k for k in REFERENCES]
    out: dict[str, dict[str, list[float]]] = {}
    for name, strategy in STRATEGIES.items():
        sub = keep if strategy == "all" else keep[keep["strategy"] == strategy]
        if sub.empty:
            continue
        seq = (sub["fold"].astype(str) + "/" + sub["subject"].astype(str) + "/" + sub["sequence"].astype(str)).to_numpy()
        ids, inverse = np.unique(seq, return_inverse=True)
        cols = {c: sub[c].to_numpy(dtype=float) for c in ("label", "flowcnn_nonfrontal", "flowcnn_emotiongan",
                                                          "flowcnn_frontal_gt", "epe_nonfrontal", "epe_emotiongan", "epe_zero")}
        members = [np.flatnonzero(inverse == i) for i in range(len(ids))]
        draws: dict[str, list[float]] = {k: [] for k in names}
        for _ in range(resamples):
            pick = np.concatenate([members[i] for i in rng.integers(0, len(ids), len(ids))])
            for k, v in _metrics({c: a[pick] for c, a in cols.items()}).items():
                draws[k].append(v)
        out[name] = {k: [float(np.percentile(v, lo_q)), float(np.percentile(v, hi_q))] for k, v in draws.items() if v}
    return out


def _value(v: Any) -> float | None:
    return v.get("mean") if isinstance(v, Mapping) else v if isinstance(v, (int, float)) else None


def outside_band(other_headline: Mapping[str, Any], band: Mapping[str, Mapping[str, Sequence[float]]]) -> list[str]:
    """The headline numbers of another run that fall outside this run's band, one line each."""
    bad = []
    for strategy, keys in band.items():
        for key, (lo, hi) in keys.items():
            v = _value(other_headline.get(strategy, {}).get(key))
            if v is not None and not (lo <= v <= hi):
                bad.append(f"{strategy}.{key} = {v:g} outside [{lo:.4g}, {hi:.4g}]")
    return bad


def compare_headline(other: Path | str, band: Mapping[str, Any]) -> tuple[int, list[str]]:
    """(numbers compared, the lines outside the band) for another run's headline.json."""
    try:
        h = json.loads(Path(other).read_text())
    except (OSError, ValueError) as e:
        raise EmoganError(f"{other}: not a readable headline JSON ({e})") from e
    n = sum(_value(h.get(s, {}).get(k)) is not None for s, keys in band.items() for k in keys)
    return n, outside_band(h, band)


def band_table(band: Mapping[str, Mapping[str, Sequence[float]]], headline: Mapping[str, Any], resamples: int,
               level: float, seed: int) -> str:
    """Markdown: each headline number with its band, per strategy."""
    label = {"flowcnn_acc_input_pct": "Flow-CNN on the input (%)", "flowcnn_acc_gf_pct": "Flow-CNN on G_F (%)",
             "flowcnn_acc_truth_pct_mean": "Flow-CNN on the frontal truth (%)", "gap_closure": "gap closure",
             "epe_input_px": "EPE input (px)", "epe_gf_px": "EPE G_F (px)", "epe_zero_px_mean": "EPE zero flow (px)"}
    strategies = [s for s in STRATEGIES if s in band]
    lines = ["| number | " + " | ".join(strategies) + " |", "|---|" + "---:|" * len(strategies)]
    for key in label:
        cells = []
        for s in strategies:
            v, b = _value(headline.get(s, {}).get(key)), band[s].get(key)
            cells.append("—" if v is None or b is None else f"{v:.3g} [{b[0]:.3g}, {b[1]:.3g}]")
        lines.append(f"| {label[key]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + (f"\n\n{100 * level:g}% percentile bootstrap over held-out sequences "
                               f"({resamples} resamples, seed {seed}).")


def add_band(out_md: Path | str, cv_json: Path | str | None, band: Mapping[str, Any], table: str) -> None:
    """Put the band into REPORT.md (a section before Table I) and the full breakdown (cv.json `band`)."""
    out_md = Path(out_md)
    text = out_md.read_text()
    section = ("## Error band (large poses, per strategy)\n\nEach headline number (`dvc metrics show`) with the interval "
               "it would take on other held-out people: a re-run whose numbers fall inside is consistent with this "
               "one (`emogan report --compare OTHER/headline.json`).\n\n" + table + "\n\n")
    at = text.find("## Table I")
    out_md.write_text(text[:at] + section + text[at:] if at >= 0 else text + "\n" + section)
    if cv_json is not None and Path(cv_json).is_file():
        cv = json.loads(Path(cv_json).read_text())
        cv["band"] = band
        Path(cv_json).write_text(json.dumps(cv, indent=1, sort_keys=True) + "\n")
