"""How much darker or lighter G_W's faces are than the real frontal faces at their left and right borders and at
their centre: mean grey-level difference per image column over an evaluation's samples (samples.npz, the 14 faces
of Fig. 1 that `emogan evaluate` keeps), on the 8 columns of each border and the central 16.

    python border.py LABEL=EVAL_DIR...        (EVAL_DIR holds samples.npz: metrics/eval/full/fold_K, W/eval_NAME)

Grey levels 0-255, negative: darker than the real face. A refinement that shades a border the real face does not
have shows as a large negative border figure; the warp and an unrefined face stay within a few levels.
"""
import sys
from pathlib import Path

import numpy as np


def profile(faces: np.ndarray, real: np.ndarray) -> tuple[float, float, float, float]:
    """Left-border, right-border and centre mean difference and mean |difference| of (N,3,H,W) faces from `real`."""
    diff = faces.astype(float).mean(1) - real   # (N, H, W) grey
    cols = diff.mean((0, 1))
    return cols[:8].mean(), cols[-8:].mean(), cols[24:40].mean(), np.abs(diff).mean()


def main(args: list[str]) -> None:
    if not args or any("=" not in a for a in args):
        sys.exit(__doc__)
    print("| run | faces | left 8 columns | right 8 columns | centre 16 | mean abs |")
    print("|---|---|---:|---:|---:|---:|")
    for arg in args:
        label, path = arg.split("=", 1)
        d = np.load(Path(path) / "samples.npz")
        real = d["image_frontal_gt"].astype(float).mean(1)
        for key, name in (("image_emotiongan", "G_F's flow"), ("image_gw_gt", "truth's flow")):
            left, right, centre, mad = profile(d[key], real)
            print(f"| {label} | {name} | {left:+.1f} | {right:+.1f} | {centre:+.1f} | {mad:.2f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
