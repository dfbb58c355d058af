"""The report's figures (training/evaluation/report.py writes them): face and flow grids like the paper's Fig. 1 and
Fig. 5, G_W's faces per expression with an image judge's reading under each, confusion matrices, accuracy by pose.
Each takes the samples `emogan evaluate` keeps (samples.npz: a few apex rows per dataset, pose and expression) or
the aggregated metrics, and writes one PNG."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from pipeline.schema import CLASS_NAMES, POSE_NAMES


def _save(fig: Any, out: Path) -> Path:
    """Lay out, write (PNG, 110 dpi) and close a figure of the report."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _tile(img_chw_u8: np.ndarray, px: int) -> np.ndarray:
    import cv2

    a = np.asarray(img_chw_u8).transpose(1, 2, 0)
    return cv2.resize(a, (px, px), interpolation=cv2.INTER_AREA if a.shape[0] > px else cv2.INTER_NEAREST)


def _flow_tile(flow_px: np.ndarray, max_px: float, px: int) -> np.ndarray:
    from pipeline.flowviz import flow_to_rgb

    return _tile(flow_to_rgb(flow_px, max_px).transpose(2, 0, 1), px)


def pick_samples(samples: Mapping[str, np.ndarray], dataset: str, poses: Sequence[str]) -> list[int]:
    """One sample index per pose of `dataset` (the first kept), in `poses` order."""
    out = []
    for p in poses:
        idx = np.flatnonzero((samples["dataset"].astype(str) == dataset) & (samples["pose"].astype(str) == p))
        if idx.size:
            out.append(int(idx[0]))
    return out


def figure_grid(samples: Mapping[str, np.ndarray], picks: Sequence[int], columns: Sequence[tuple[str, str]],
                px: int, out: Path, title: str) -> Path:
    """A figure of rows (samples) x columns (("image"|"flow", key) with a header) plus the colour wheel; PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipeline.flowviz import wheel_legend

    n_r, n_c = len(picks), len(columns)
    fig, axes = plt.subplots(n_r, n_c + 1, figsize=(1.45 * (n_c + 1), 1.5 * n_r + 0.6), squeeze=False)
    for r, i in enumerate(picks):
        gt = samples["flow_frontal_gt"][i]
        scale = max(float(np.percentile(np.hypot(gt[0], gt[1]), 99)), 0.5)
        for c, (kind, key) in enumerate(columns):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if key not in samples:
                ax.set_visible(False)
                continue
            if kind == "flow":
                ax.imshow(_flow_tile(samples[key][i], scale, px))
            else:
                ax.imshow(_tile(samples[key][i], px))
            if r == 0:
                ax.set_title(_HEADERS.get(key, key), fontsize=7)
        axes[r, 0].set_ylabel(f"{samples['pose'][i]}\n{CLASS_NAMES[int(samples['label'][i])]}", fontsize=7)
        ax = axes[r, n_c]
        ax.axis("off")
        if r == 0:
            ax.imshow(wheel_legend(px))
            ax.set_title("colour wheel", fontsize=7)
    fig.suptitle(title, fontsize=8)
    return _save(fig, out)


_HEADERS = {
    "neutral": "neutral (frontal, t)", "image_nonfrontal": "non-frontal face", "image_frontal_gt": "frontal GT face",
    "flow_nonfrontal": "input flow", "flow_frontal_gt": "frontal GT flow", "flow_emotiongan": "frontalized flow",
    "image_emotiongan": "warped face (ours)", "flow_landmark": "landmark flow", "image_landmark": "landmark face",
    "image_gw_gt": "G_W on GT flow",
}


def expression_picks(samples: Mapping[str, np.ndarray], dataset: str, pose: str) -> list[int]:
    """One sample index per expression (neutral excepted) of `dataset` at `pose` (the first kept), in class order."""
    ds, ps, lab = samples["dataset"].astype(str), samples["pose"].astype(str), samples["label"].astype(int)
    out = []
    for k in range(1, len(CLASS_NAMES)):
        idx = np.flatnonzero((ds == dataset) & (ps == pose) & (lab == k))
        if idx.size:
            out.append(int(idx[0]))
    return out


EXPRESSION_COLUMNS = ("image_nonfrontal", "neutral", "image_frontal_gt", "image_emotiongan", "image_gw_gt")


def expression_grid(samples: Mapping[str, np.ndarray], picks: Sequence[int], px: int, out: Path, title: str) -> Path:
    """Rows: expressions; columns: the non-frontal face, the frontal neutral face, the frontal truth, G_W's face from
    G_F's flow and from the truth's. Under each expressive face the image judge's reading (FER2013 when the samples
    hold it, else the own e_FER): green where it reads the row's expression, red where not; PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    judge = next((j for j in ("fer2013", "efer") if f"{j}_frontal_gt" in samples), None)
    cols = [c for c in EXPRESSION_COLUMNS if c in samples]
    fig, axes = plt.subplots(len(picks), len(cols), figsize=(1.45 * len(cols), 1.6 * len(picks) + 0.6), squeeze=False)
    for r, i in enumerate(picks):
        label = int(samples["label"][i])
        for c, key in enumerate(cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.imshow(_tile(samples[key][i], px))
            if r == 0:
                ax.set_title(_HEADERS.get(key, key), fontsize=7)
            read = f"{judge}_{key[len('image_'):]}" if key.startswith("image_") else None
            if judge and read in samples:
                k = int(samples[read][i])
                ax.set_xlabel(f"{judge}: {CLASS_NAMES[k] if 0 <= k < len(CLASS_NAMES) else '?'}", fontsize=6,
                              color="green" if k == label else "red")
        axes[r, 0].set_ylabel(f"{CLASS_NAMES[label]}\n{samples['subject'][i]}", fontsize=7)
    fig.suptitle(title, fontsize=8)
    return _save(fig, out)


def confusion_figure(mats: Mapping[str, np.ndarray], out: Path, title: str) -> Path:
    """Row-normalized confusion matrices side by side; PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(mats), figsize=(3.2 * len(mats), 3.3), squeeze=False)
    short = [c[:4] for c in CLASS_NAMES]
    for ax, (name, m) in zip(axes[0], mats.items()):
        m = np.asarray(m, np.float64)
        norm = m / np.maximum(m.sum(1, keepdims=True), 1)
        ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
        for i in range(len(m)):
            for j in range(len(m)):
                if m[i, j]:
                    ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=5,
                            color="white" if norm[i, j] > 0.5 else "black")
        acc = np.trace(m) / max(m.sum(), 1)
        ax.set_title(f"{name}\naccuracy {100 * acc:.1f}% (n={int(m.sum())})", fontsize=7)
        ax.set_xticks(range(len(short)), short, fontsize=6, rotation=45)
        ax.set_yticks(range(len(short)), short, fontsize=6)
        ax.set_xlabel("predicted", fontsize=6)
        ax.set_ylabel("true", fontsize=6)
    fig.suptitle(title, fontsize=8)
    return _save(fig, out)


def pose_bars(agg: Mapping[str, Any], dataset: str, strategy: str, judge: str, methods: Sequence[str],
              labels: Mapping[str, str], out: Path, title: str) -> Path:
    """Accuracy per pose for each method (bars, std as error bars, `labels` naming the methods); PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    poses = [p for p in POSE_NAMES if f"{dataset}/{p}/{strategy}" in agg]
    fig, ax = plt.subplots(figsize=(1.1 * max(len(poses), 2) + 2.5, 3.4))
    w = 0.8 / max(len(methods), 1)
    for j, m in enumerate(methods):
        vals = [agg[f"{dataset}/{p}/{strategy}"].get(f"{judge}.accuracy.{m}", {}) for p in poses]
        ax.bar(np.arange(len(poses)) + j * w, [100 * v.get("mean", np.nan) for v in vals], w,
               yerr=[100 * v.get("std", 0) for v in vals], label=labels.get(m, m), capsize=2)
    ax.set_xticks(np.arange(len(poses)) + 0.4 - w / 2, poses)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    # Below the axes: inside, the legend hides the bars of the last pose.
    ax.legend(fontsize=7, ncol=len(methods), loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False)
    ax.set_title(title, fontsize=8)
    return _save(fig, out)
