"""Farneback's window against the open mouth (issue #13, session 30): for five people's frontal (pose `nothing`)
fear, surprise, happiness and anger sequences, the flow from the first to the last frame at each window, the last
frame warped back by it, and its mean absolute error against the first frame in the mouth box and over the face
(grey levels of the 256-px crops). The other Farneback numbers are the paper's (params.yaml `flow`).
    python docs/results/issue13/session30/window_error.py data/crops/synth
"""
from __future__ import annotations

import argparse

import cv2
import numpy as np

PEOPLE = ("S001", "S004", "S005", "S008", "S010")
SEQUENCES = {"fear": "019", "surprise": "037", "happiness": "025", "anger": "007"}   # each person's pose-`nothing` ones
MOUTH = (0.58, 0.82, 0.30, 0.70)   # benchmarks/issue13/mouth_swap.py's mouth box


def errors(crops: str, person: str, seq: str, winsize: int) -> tuple[float, float]:
    a, b = (cv2.imread(f"{crops}/{person}/{seq}/cam1/img_{k:03d}.png", cv2.IMREAD_GRAYSCALE) for k in (1, 10))
    f = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, winsize, 3, 5, 1.2, 0)
    n = a.shape[0]
    ys, xs = np.mgrid[0:n, 0:n].astype(np.float32)
    err = np.abs(cv2.remap(b, xs + f[..., 0], ys + f[..., 1], cv2.INTER_LINEAR).astype(float) - a)
    y0, y1, x0, x1 = (int(v * n) for v in MOUTH)
    m = n * 5 // 32
    return float(err[y0:y1, x0:x1].mean()), float(err[m:n - m, m:n - m].mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("crops", help="the crop stage's folder of the synthetic dataset (data/crops/synth)")
    ap.add_argument("--windows", type=int, nargs="+", default=[15, 11, 9, 7])
    a = ap.parse_args()
    cv2.setNumThreads(1)
    print("| window | " + " | ".join(f"mouth, {c}" for c in SEQUENCES) + " | face, all |\n|---:" + "|---:" * (len(SEQUENCES) + 1) + "|")
    for w in a.windows:
        e = {c: [errors(a.crops, p, s, w) for p in PEOPLE] for c, s in SEQUENCES.items()}
        face = np.mean([x[1] for v in e.values() for x in v])
        print(f"| {w} | " + " | ".join(f"{np.mean([x[0] for x in v]):.1f}" for v in e.values()) + f" | {face:.2f} |")


if __name__ == "__main__":
    main()
