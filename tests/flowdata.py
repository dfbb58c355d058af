"""Tiny crop directories in the crop stage's layout, for the flow/normalize/stats tests."""
from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np

from pipeline.schema import CLASS_NAMES

CROPS_COLUMNS = ["dataset", "subject", "sequence", "label", "label_code", "pose", "root", "frontal",
                 "nonfrontal", "video", "n_frames", "cam1_dir", "cam2_dir", "box_cam1", "box_cam2"]


def texture(side: int, seed: int = 0) -> np.ndarray:
    """A real photo (skimage's astronaut) cropped and resized to side x side, BGR uint8."""
    from skimage import data

    rgb = data.astronaut()[40 + seed * 7:440 + seed * 7, 60:460]
    return cv2.resize(rgb[:, :, ::-1], (side, side), interpolation=cv2.INTER_AREA)


def translate(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """img with its content moved by (dx, dy) pixels (x along columns, y along rows)."""
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), flags=cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REFLECT)


def make_crops(root: Path, n_sequences: int = 3, frames: int = 4, side: int = 64,
               shift1: tuple[float, float] = (1.0, 0.5), shift2: tuple[float, float] = (-0.75, 1.0),
               subjects: int = 2) -> Path:
    """`root/crops.csv` + `<subject>/<sequence>/cam1|cam2/img_###.png`: frame k moved by k*shift per camera."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for s in range(n_sequences):
        subject, sequence = f"S{s % subjects + 1:03d}", f"{s + 1:03d}"
        base = texture(side, seed=s)
        for cam, (dx, dy) in ((1, shift1), (2, shift2)):
            d = root / subject / sequence / f"cam{cam}"
            d.mkdir(parents=True, exist_ok=True)
            for k in range(frames):
                cv2.imwrite(str(d / f"img_{k + 1:03d}.png"), translate(base, k * dx, k * dy))
        rows.append({"dataset": "tiny", "subject": subject, "sequence": sequence, "label": CLASS_NAMES[s % 7],
                     "label_code": str(s % 7), "pose": ["nothing", "tx", "yaw"][s % 3], "root": str(root),
                     "frontal": "", "nonfrontal": "", "video": "", "n_frames": str(frames),
                     "cam1_dir": f"{subject}/{sequence}/cam1", "cam2_dir": f"{subject}/{sequence}/cam2",
                     "box_cam1": "0 0 64 64", "box_cam2": "0 0 64 64"})
    with open(root / "crops.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CROPS_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    return root
