"""The premise of a paired dataset (`emogan synth-check`, with training/evaluation/synth_check.py): does it hold?

A simple classifier (logistic regression) on downsampled Farneback neutral-to-apex flows,
trained on some subjects and tested on the others (subject-wise cross-validation):
on frontal flows (cam1) it should recognise the expression well, on flows with head
rotation (cam2: yaw, pitch, roll, diagonal) clearly worse. This is the gap that
frontalization must close.
"""
from __future__ import annotations

import csv
import logging
from pathlib import Path

import cv2
import numpy as np

from pipeline.errors import EmoganError
from pipeline.schema import CLASS_NAMES
from pipeline.scoring import confusion

log = logging.getLogger(__name__)
ROTATING = ("yaw", "pitch", "roll", "diagonal")
FARNEBACK = dict(pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0)


def _read_grey(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise EmoganError(f"{path}: cannot read this frame")
    return img


def flow_features(first: np.ndarray, last: np.ndarray, crop_frac: float, grid: int) -> np.ndarray:
    """Farneback flow first->last on the central crop, averaged down to (2, grid, grid), flattened."""
    h, w = first.shape
    c = int(min(h, w) * crop_frac) // 2
    cy, cx = h // 2, w // 2
    a = first[cy - c:cy + c, cx - c:cx + c]
    b = last[cy - c:cy + c, cx - c:cx + c]
    flow = cv2.calcOpticalFlowFarneback(a, b, None, **FARNEBACK)
    small = cv2.resize(flow, (grid, grid), interpolation=cv2.INTER_AREA)      # Cartesian: never angles
    return small.transpose(2, 0, 1).reshape(-1)


def load_flows(root: Path, crop_frac: float = 0.62, grid: int = 16) -> list[dict]:
    """One record per sequence: subject, expression, pose and the cam1/cam2 neutral-to-apex features."""
    labels = root / "labels.csv"
    if not labels.exists():
        raise EmoganError(f"{labels}: not found; is {root} a folder written by `emogan synth`?")
    records = []
    with open(labels, newline="") as f:
        for row in csv.DictReader(f, delimiter=";"):
            rec = dict(subject=row["subject"], expression=row["expression"], pose=row["pose"])
            for cam in ("cam1", "cam2"):
                frames = sorted((root / cam / row["subject"] / row["sequence"]).glob("img_*.png"))
                if len(frames) < 2:
                    raise EmoganError(f"{root / cam / row['subject'] / row['sequence']}: fewer than 2 frames")
                rec[cam] = flow_features(_read_grey(frames[0]), _read_grey(frames[-1]), crop_frac, grid)
            records.append(rec)
    return records


def _cv_accuracy(x_train_of, x_test_of, y: np.ndarray, subjects: np.ndarray, test_mask: np.ndarray,
                 folds: int, seed: int) -> tuple[float, np.ndarray]:
    """Subject-wise k-fold accuracy; returns accuracy and the confusion matrix on the test rows."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    uniq = np.array(sorted(set(subjects)))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(uniq))
    fold_of = {s: i % folds for i, s in zip(range(len(uniq)), uniq[order])}
    fold = np.array([fold_of[s] for s in subjects])
    conf = np.zeros((len(CLASS_NAMES), len(CLASS_NAMES)), np.int64)
    for k in range(folds):
        train, test = fold != k, (fold == k) & test_mask
        if not test.any():
            continue
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=2000))
        clf.fit(x_train_of[train], y[train])
        pred = clf.predict(x_test_of[test])
        conf += confusion(y[test], pred)
    return float(np.trace(conf) / max(conf.sum(), 1)), conf


def premise(records: list[dict], folds: int = 3, seed: int = 0) -> dict:
    """Accuracies: cam1->cam1 (all sequences), cam2->cam2 and cam1->cam2 on the rotating poses."""
    y = np.array([CLASS_NAMES.index(r["expression"]) for r in records])
    subjects = np.array([r["subject"] for r in records])
    poses = np.array([r["pose"] for r in records])
    x1 = np.stack([r["cam1"] for r in records])
    x2 = np.stack([r["cam2"] for r in records])
    rot = np.isin(poses, ROTATING)
    if len(set(subjects)) < folds:
        raise EmoganError(f"subject-wise {folds}-fold validation needs at least {folds} subjects")
    acc1, conf1 = _cv_accuracy(x1, x1, y, subjects, np.ones(len(y), bool), folds, seed)
    acc2, conf2 = _cv_accuracy(x2, x2, y, subjects, rot, folds, seed)
    acc12, conf12 = _cv_accuracy(x1, x2, y, subjects, rot, folds, seed)
    per_pose = {}
    for pose in sorted(set(poses)):
        per_pose[pose] = _cv_accuracy(x2, x2, y, subjects, poses == pose, folds, seed)[0]
    return {
        "sequences": len(records), "subjects": int(len(set(subjects))), "folds": folds,
        "cam1_accuracy": acc1, "cam2_rotating_accuracy": acc2, "cam1_to_cam2_rotating_accuracy": acc12,
        "cam2_accuracy_by_pose": per_pose,
        "confusion_cam1": conf1.tolist(), "confusion_cam2_rotating": conf2.tolist(),
    }


def _procrustes(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """x (P,2) moved onto ref by the least-squares similarity (rotation, scale, shift)."""
    xc, rc = x - x.mean(0), ref - ref.mean(0)
    u, sv, vt = np.linalg.svd(xc.T @ rc)
    r = u @ vt
    if np.linalg.det(r) < 0:
        u[:, -1] *= -1
        r = u @ vt
    k = sv.sum() / (xc ** 2).sum()
    return xc @ r * k + ref.mean(0)


def neutral_faces(root: Path, side: int = 64) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Each person's neutral face: first cam1 frame of their first sequence. Returns the subjects,
    landmarks (S,468,2) and the face aligned by eyes and mouth to a (S,side,side,3) float32 crop."""
    labels = root / "labels.csv"
    if not labels.exists():
        raise EmoganError(f"{labels}: not found; is {root} a folder written by `emogan synth`?")
    first: dict[str, str] = {}
    with open(labels, newline="") as f:
        for row in csv.DictReader(f, delimiter=";"):
            first.setdefault(row["subject"], row["sequence"])
    try:
        marks = np.load(root / "landmarks.npz")
    except OSError as e:
        raise EmoganError(f"{root / 'landmarks.npz'}: cannot read ({e})") from None
    subjects, lms, faces = [], [], []
    # Canonical positions (fractions of the crop) of the eye centres and the mouth centre.
    dst = np.array([[0.32, 0.38], [0.68, 0.38], [0.5, 0.74]], np.float32) * side
    for subj, seq in first.items():
        lm = marks[f"{subj}/{seq}/cam1"][0].astype(np.float64)
        path = root / "cam1" / subj / seq / "img_001.png"
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise EmoganError(f"{path}: cannot read this frame")
        src = np.array([lm[[33, 133]].mean(0), lm[[362, 263]].mean(0), lm[[13, 14, 61, 291]].mean(0)], np.float32)
        m = cv2.getAffineTransform(src, dst)
        faces.append(cv2.warpAffine(img, m, (side, side), flags=cv2.INTER_AREA).astype(np.float32))
        subjects.append(subj)
        lms.append(lm)
    return subjects, np.stack(lms), np.stack(faces)


def identity_spread(root: Path) -> dict:
    """How different the people look: pairwise distances between their neutral faces.

    shape: RMS distance of the 468 landmarks after a similarity alignment, in inter-ocular
    distances; appearance: RMS colour difference (grey levels) of the faces aligned by eyes and
    mouth (64 px), inside the central ellipse that holds the face."""
    subjects, lms, faces = neutral_faces(root)
    n = len(subjects)
    if n < 2:
        raise EmoganError(f"{root}: identity spread needs at least 2 people (found {n})")
    ref = lms[0]
    aligned = []
    for lm in lms:
        a = _procrustes(lm, ref)
        aligned.append(a / np.linalg.norm(a[[33, 133]].mean(0) - a[[362, 263]].mean(0)))
    # Average shape as the common reference (one Procrustes pass): no person is special.
    mean = np.mean(aligned, axis=0)
    aligned = [_procrustes(a, mean) for a in aligned]
    iod = np.linalg.norm(mean[[33, 133]].mean(0) - mean[[362, 263]].mean(0))
    side = faces.shape[1]
    yy, xx = np.mgrid[:side, :side]
    mask = (((xx - side / 2) / (0.42 * side)) ** 2 + ((yy - side * 0.55) / (0.5 * side)) ** 2) <= 1
    shape_d = np.zeros((n, n))
    app_d = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            shape_d[i, j] = shape_d[j, i] = np.sqrt(((aligned[i] - aligned[j]) ** 2).sum(1).mean()) / iod
            app_d[i, j] = app_d[j, i] = np.sqrt(((faces[i] - faces[j])[mask] ** 2).mean())

    def stats(d: np.ndarray) -> dict:
        off = d[np.triu_indices(n, 1)]
        nn = np.where(np.eye(n, dtype=bool), np.inf, d).min(1)
        return {"mean": float(off.mean()), "min": float(off.min()), "max": float(off.max()),
                "nearest_mean": float(nn.mean()), "nearest_min": float(nn.min())}

    return {"people": n, "subjects": subjects, "shape": stats(shape_d), "appearance": stats(app_d),
            "shape_distances": np.round(shape_d, 4).tolist(), "appearance_distances": np.round(app_d, 2).tolist()}


def plot_identity(result: dict, root: Path, out: Path, max_faces: int = 32) -> None:
    """Neutral faces of the people and the two distance matrices."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ident = result["identity"]
    subjects, _, faces = neutral_faces(root, side=96)
    k = min(len(subjects), max_faces)
    cols = 8
    rows = (k + cols - 1) // cols
    strip = np.full((rows * 96, cols * 96, 3), 255, np.uint8)
    for i in range(k):
        r, c = divmod(i, cols)
        strip[r * 96:(r + 1) * 96, c * 96:(c + 1) * 96] = faces[i][..., ::-1].astype(np.uint8)
    fig = plt.figure(figsize=(15, 4.6))
    gs = fig.add_gridspec(1, 3, width_ratios=[1.6, 1, 1])
    a0 = fig.add_subplot(gs[0])
    a0.imshow(strip)
    a0.set_axis_off()
    a0.set_title(f"neutral faces (aligned by eyes and mouth), {k} of {ident['people']}")
    for g, key, title, unit in ((gs[1], "shape_distances", "shape", "inter-ocular distances"),
                                (gs[2], "appearance_distances", "appearance", "grey levels RMS")):
        a = fig.add_subplot(g)
        im = a.imshow(np.array(ident[key]), cmap="viridis")
        st = ident[key.split("_")[0]]
        a.set_title(f"{title}: mean {st['mean']:.3g}, nearest {st['nearest_mean']:.3g}, min {st['min']:.3g}",
                    fontsize=9)
        a.set_xlabel("person")
        fig.colorbar(im, ax=a, fraction=0.046, label=unit)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def plot(result: dict, out: Path) -> None:
    """Bar chart of the accuracies and the two confusion matrices."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(15, 4.4), gridspec_kw=dict(width_ratios=[1.2, 1, 1]))
    names = ["cam1 (frontal)"] + [f"cam2 {p}" for p in result["cam2_accuracy_by_pose"]] + ["cam1-trained\non cam2 rotating"]
    vals = [result["cam1_accuracy"]] + list(result["cam2_accuracy_by_pose"].values()) + \
        [result["cam1_to_cam2_rotating_accuracy"]]
    colours = ["tab:green"] + ["tab:orange"] * len(result["cam2_accuracy_by_pose"]) + ["tab:red"]
    ax[0].barh(names[::-1], vals[::-1], color=colours[::-1])
    ax[0].axvline(1 / len(CLASS_NAMES), ls="--", c="grey", lw=1)
    ax[0].set_xlim(0, 1)
    ax[0].set_xlabel("accuracy (subject-wise CV)")
    ax[0].set_title("Expression from neutral-to-apex flow")
    for a, key, title in ((ax[1], "confusion_cam1", "cam1 (frontal)"),
                          (ax[2], "confusion_cam2_rotating", "cam2, yaw/pitch/roll/diagonal")):
        c = np.array(result[key], float)
        c = c / np.maximum(c.sum(1, keepdims=True), 1)
        a.imshow(c, vmin=0, vmax=1, cmap="Blues")
        a.set_xticks(range(len(CLASS_NAMES)), [n[:4] for n in CLASS_NAMES], rotation=45)
        a.set_yticks(range(len(CLASS_NAMES)), [n[:4] for n in CLASS_NAMES])
        a.set_title(title)
        a.set_xlabel("predicted")
        for i in range(len(CLASS_NAMES)):
            for j in range(len(CLASS_NAMES)):
                if c[i, j] > 0.05:
                    a.text(j, i, f"{c[i, j]:.2f}", ha="center", va="center", fontsize=7,
                           color="white" if c[i, j] > 0.5 else "black")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
