"""The evaluation's numbers: per-row metrics on hand-checkable arrays (EPE, SSIM, RMSE, accuracy, the paper's
Delta), the rows table (rows.csv) and its summaries by dataset x pose (and pose groups) x strategy.

Delta, the paper's "percent improvement in recognition accuracy between non-frontalized and
frontalized" faces, is relative: 100 * (acc_frontalized - acc_nonfrontal) / acc_nonfrontal; the
difference in points is reported beside it (`gain_pts`).
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from pipeline.schema import POSE_NAMES, STRATEGY_NAMES
from pipeline.scoring import accuracy as accuracy_of
from pipeline.scoring import confusion

# Flow sources scored by the motion judge, and image sources scored by the image judges.
# `emotiongan` is eMotion-GAN's frontal flow (on neutral_apex rows the chain of its step-1 outputs when
# evaluate.neutral_apex is `chain`, training/evaluation/chain.py); `gf_direct` is G_F on each row's own flow.
FLOW_METHODS: tuple[str, ...] = ("frontal_gt", "nonfrontal", "landmark", "emotiongan", "gf_direct")
IMAGE_METHODS: tuple[str, ...] = ("frontal_gt", "nonfrontal", "landmark", "emotiongan", "gw_gt")
EPE_METHODS: tuple[str, ...] = ("nonfrontal", "landmark", "emotiongan", "gf_direct", "zero")   # zero: a zero flow's EPE
SIM_METHODS: tuple[str, ...] = ("nonfrontal", "landmark", "emotiongan", "gw_gt")
JUDGES: dict[str, tuple[str, ...]] = {"flowcnn": FLOW_METHODS, "efer": IMAGE_METHODS, "fer2013": IMAGE_METHODS}
ROW_KEYS: tuple[str, ...] = ("dataset", "row", "subject", "sequence", "pose", "strategy", "step", "label")
ALL = "all"
# Per-row float columns of rows.csv (the rest are codes, predictions and names).
METRIC_PREFIXES = ("epe_", "ssim_", "rmse_", "chroma_")


# --- metrics on hand-checkable arrays ---------------------------------------------------------

def epe_px(pred_px: np.ndarray, gt_px: np.ndarray) -> np.ndarray:
    """End-point error per sample, (N,): mean over pixels of |pred - gt| for (N,2,H,W) flows in pixels."""
    d = np.asarray(pred_px, np.float64) - np.asarray(gt_px, np.float64)
    return np.sqrt((d ** 2).sum(axis=1)).reshape(len(d), -1).mean(axis=1)


def rmse_u8(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Root-mean-square error per image, (N,), in grey levels [0, 255], for (N,C,H,W) uint8 images."""
    d = np.asarray(pred, np.float64) - np.asarray(target, np.float64)
    return np.sqrt((d ** 2).reshape(len(d), -1).mean(axis=1))


def ssim_u8(pred: np.ndarray, target: np.ndarray, window: int = 7) -> np.ndarray:
    """Structural similarity per image, (N,), for (N,C,H,W) uint8 images (skimage, data range 255)."""
    from skimage.metrics import structural_similarity

    out = np.empty(len(pred))
    for i, (a, b) in enumerate(zip(pred, target)):
        out[i] = structural_similarity(np.asarray(a), np.asarray(b), channel_axis=0, data_range=255,
                                       win_size=window)
    return out


def chroma_u8(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """False colour per image, (N,): mean |chroma(pred) - chroma(target)| in grey levels for (N,3,H,W) uint8 images,
    chroma = each channel minus the mean of the three. Light, shade and expression move all channels alike and leave
    it near 0; colour the target does not have (pink brows, green lips) raises it. Grey-level SSIM and FER2013 miss it."""
    def chroma(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        return x - x.mean(axis=1, keepdims=True)
    return np.abs(chroma(pred) - chroma(target)).reshape(len(pred), -1).mean(axis=1).astype(np.float64)


def accuracy(labels: np.ndarray, preds: np.ndarray) -> float | None:
    """Fraction of labeled rows predicted right, in [0, 1]; None when no row is labeled."""
    return accuracy_of(confusion(labels, preds))


def gap_closure(acc: float | None, acc_input: float | None, acc_truth: float | None) -> float | None:
    """(acc - acc_input) / (acc_truth - acc_input): the share of the gap to the frontal truth a method closes;
    None when undefined (a missing accuracy, or the truth no better than the input)."""
    if acc is None or acc_input is None or acc_truth is None or acc_truth <= acc_input:
        return None
    return (acc - acc_input) / (acc_truth - acc_input)


def delta_percent(acc_after: float | None, acc_before: float | None) -> float | None:
    """The paper's Delta: percent improvement of accuracy, 100 (after - before) / before; None if undefined."""
    if acc_after is None or acc_before is None or acc_before <= 0:
        return None
    return 100.0 * (acc_after - acc_before) / acc_before


def gain_points(acc_after: float | None, acc_before: float | None) -> float | None:
    """Accuracy difference in percentage points, 100 (after - before)."""
    if acc_after is None or acc_before is None:
        return None
    return 100.0 * (acc_after - acc_before)


# --- summaries -----------------------------------------------------------------------------

def _mean(x: np.ndarray) -> float | None:
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else None


def group_masks(records: Mapping[str, np.ndarray], pose_groups: Mapping[str, Sequence[str]]) -> dict[tuple[str, str, str], np.ndarray]:
    """(dataset, pose, strategy) -> row mask, each key also `all`; poses also by the named groups."""
    ds, pose, strat = (np.asarray(records[k]).astype(str) for k in ("dataset", "pose", "strategy"))
    d_keys = [ALL] + sorted(set(ds))
    present = [p for p in POSE_NAMES if p in set(pose)] + sorted(set(pose) - set(POSE_NAMES))
    p_keys = [ALL] + present + [g for g, members in pose_groups.items() if set(members) & set(pose)]
    s_keys = [ALL] + [s for s in STRATEGY_NAMES if s in set(strat)]
    out = {}
    for d in d_keys:
        md = np.ones(len(ds), bool) if d == ALL else ds == d
        for p in p_keys:
            if p == ALL:
                mp = np.ones(len(ds), bool)
            elif p in pose_groups:
                mp = np.isin(pose, list(pose_groups[p]))
            else:
                mp = pose == p
            for s in s_keys:
                m = md & mp & (np.ones(len(ds), bool) if s == ALL else strat == s)
                if m.any():
                    out[d, p, s] = m
    return out


def summarize(records: Mapping[str, np.ndarray], mask: np.ndarray, with_confusion: bool = False) -> dict[str, Any]:
    """Metrics of the rows in `mask`: n, EPE, SSIM, RMSE means; accuracies, Delta and gains per judge."""
    lab = np.asarray(records["label"])[mask]
    out: dict[str, Any] = {"n": int(mask.sum()), "labeled": int((lab >= 0).sum())}
    for key, prefix, methods in (("epe_px", "epe_", EPE_METHODS), ("ssim", "ssim_", SIM_METHODS),
                                 ("rmse", "rmse_", SIM_METHODS), ("chroma", "chroma_", SIM_METHODS)):
        out[key] = {m: _mean(np.asarray(records[prefix + m])[mask]) for m in methods if prefix + m in records}
    for judge, methods in JUDGES.items():
        acc, delta, gain, conf = {}, {}, {}, {}
        for m in methods:
            key = f"{judge}_{m}"
            if key not in records or (np.asarray(records[key])[mask] < 0).all():
                continue
            pred = np.asarray(records[key])[mask]
            acc[m] = accuracy(lab, pred)
            if with_confusion:
                conf[m] = confusion(lab, pred).tolist()
        closure = {}
        for m in acc:
            if m not in ("nonfrontal", "frontal_gt"):
                delta[m] = delta_percent(acc[m], acc.get("nonfrontal"))
                gain[m] = gain_points(acc[m], acc.get("nonfrontal"))
                closure[m] = gap_closure(acc[m], acc.get("nonfrontal"), acc.get("frontal_gt"))
        if acc:
            out[judge] = {"accuracy": acc, "delta_percent": delta, "gain_pts": gain, "gap_closure": closure}
            if with_confusion:
                out[judge]["confusion"] = conf
    return out


def breakdown(records: Mapping[str, np.ndarray], pose_groups: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """Summaries keyed "dataset/pose/strategy" (each also `all`); confusion matrices where pose and strategy are `all`."""
    out = {}
    for (d, p, s), m in group_masks(records, pose_groups).items():
        out[f"{d}/{p}/{s}"] = summarize(records, m, with_confusion=(s == ALL and (p == ALL or p in pose_groups)))
    return out


def headline(bd: Mapping[str, Any]) -> dict[str, Any]:
    """The compact DVC metrics of a breakdown: per dataset and for all, all poses and the pose groups, all strategies."""
    out: dict[str, Any] = {}
    for key, s in bd.items():
        d, p, st = key.split("/")
        if st != ALL or (p != ALL and p not in ("large", "small")):
            continue
        h: dict[str, Any] = {"n": s["n"], **{k: s[k] for k in ("epe_px", "ssim", "rmse", "chroma")}}
        for judge in JUDGES:
            if judge in s:
                h[judge] = {"accuracy": s[judge]["accuracy"], "delta_percent": s[judge]["delta_percent"],
                            "gain_pts": s[judge]["gain_pts"]}
        out.setdefault(d, {})[p] = h
    return out


# --- the rows table ------------------------------------------------------------------------

def write_rows_csv(records: Mapping[str, np.ndarray], path: Path) -> None:
    """Per-row results as CSV (one line per evaluated flow pair)."""
    keys = list(records)
    n = len(records[keys[0]])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(keys)
        for i in range(n):
            row = []
            for k in keys:
                v = records[k][i]
                if isinstance(v, (float, np.floating)):
                    row.append("" if not math.isfinite(float(v)) else f"{float(v):.6g}")
                else:
                    row.append(v.item() if isinstance(v, np.generic) else v)
            w.writerow(row)


def read_rows_csv(path: Path | str) -> dict[str, np.ndarray]:
    """rows.csv back into column arrays (codes and predictions int, metrics float, names str)."""
    with open(path, newline="") as f:
        r = csv.DictReader(f)
        cols: dict[str, list[str]] = {k: [] for k in (r.fieldnames or [])}
        for line in r:
            for k, v in line.items():
                cols[k].append(v)
    out: dict[str, np.ndarray] = {}
    for k, v in cols.items():
        if k in ("dataset", "pose", "strategy", "subject"):
            out[k] = np.asarray(v, dtype=str)
        elif k.startswith(METRIC_PREFIXES):
            out[k] = np.asarray([float(x) if x != "" else np.nan for x in v])
        else:
            out[k] = np.asarray([int(x) for x in v], dtype=np.int64)
    return out


def concat_records(parts: Iterable[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Column-wise concatenation; a column missing from a part is filled with NaN (metrics) or -1 (predictions)."""
    parts = [q for q in parts if q and len(q.get("label", [])) > 0]
    if not parts:
        return {}
    keys: list[str] = []
    for q in parts:
        keys += [k for k in q if k not in keys]
    out = {}
    for k in keys:
        chunks = []
        for q in parts:
            n = len(q["label"])
            if k in q:
                chunks.append(np.asarray(q[k]))
            elif k.startswith(METRIC_PREFIXES):
                chunks.append(np.full(n, np.nan))
            else:
                chunks.append(np.full(n, -1, np.int64))
        out[k] = np.concatenate(chunks)
    return out


def concat_samples(parts: Iterable[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Figure samples of several stores: the keys every non-empty part has, concatenated."""
    parts = [q for q in parts if q and len(q.get("label", [])) > 0]
    if not parts:
        return {}
    keys = [k for k in parts[0] if all(k in q for q in parts)]
    return {k: np.concatenate([np.asarray(q[k]) for q in parts]) for k in keys}
