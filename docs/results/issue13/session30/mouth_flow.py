"""What the flow says where a mouth opens (issue #13, session 30): per person and open-mouth expression, on a store's
neutral->apex rows, the mouth box's dark pixels in the real frontal face (the opening: darker than the neutral face there by
DARKER), the flow's largest downward motion there (pixels of the source crop), and how far the neutral
face warped by that flow (gw_warp's warp, what G_W starts from) is from the real face there (mean absolute error,
grey levels); and a picture of one person's rows: neutral face, real face, warp, vertical flow.
    python docs/results/issue13/session30/mouth_flow.py data/stores/synth.zarr --subject S004 --out mouth_flow.png
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib
import numpy as np
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / "benchmarks"))
from pipeline.schema import CLASS_NAMES, POSE_NAMES, STRATEGY_NAMES  # noqa: E402
from probe_gw import load_rows  # noqa: E402
from training.data import check_store, raw_group  # noqa: E402
from training.models.gw_warp import flow_to_model_px, warp_forward  # noqa: E402

MOUTH = (0.58, 0.82, 0.30, 0.70)   # benchmarks/issue13/mouth_swap.py's mouth box (rows y0, y1, columns x0, x1)
SIZE = 64                          # the small config's model side
DARKER = 0.4                       # the opening: this much darker than the neutral face there ([-1, 1] scale)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store")
    ap.add_argument("--subject", default="S004", help="whose rows the picture shows")
    ap.add_argument("--pose", default="yaw", help="the picture's pose")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    info = check_store(a.store)
    g = raw_group(a.store)
    strat, lab, subj, pose = (np.asarray(g[k][:]) for k in ("strategy", "label", "subject", "pose"))
    ids = list(info.attrs["subject_ids"])
    y0, y1, x0, x1 = (round(v * SIZE) for v in MOUTH)
    src = int(info.attrs["source_size"])
    print("| person | expression | rows | dark px in the mouth box (real face) | flow's largest downward motion, px "
          "| warp's error there, grey levels |\n|---|---|---:|---:|---:|---:|")
    for c in ("fear", "surprise"):
        for s, sid in enumerate(ids):
            rows = np.flatnonzero((strat == STRATEGY_NAMES.index("neutral_apex")) & (subj == s)
                                  & (lab == CLASS_NAMES.index(c)))
            if not len(rows):
                continue
            te = load_rows(a.store, rows, SIZE, info.representation, info.clip)
            disp = flow_to_model_px(te["flow_target"], info.representation, info.clip, src)
            warp = warp_forward(te["neutral"], disp, 3)
            lum = lambda x: x.mean(1)[:, y0:y1, x0:x1]  # noqa: E731
            dark = (lum(te["target_image"]) - lum(te["neutral"]) < -DARKER).sum((1, 2)).float().mean()
            down = (disp[:, 1, y0:y1, x0:x1].amax((1, 2)) * src / SIZE).mean()
            err = ((warp - te["target_image"]).abs()[..., y0:y1, x0:x1].mean() * 127.5)
            print(f"| {sid} | {c} | {len(rows)} | {dark:.1f} | {down:.1f} | {err:.1f} |")
    s = ids.index(a.subject)
    rows = [int(np.flatnonzero((strat == STRATEGY_NAMES.index("neutral_apex")) & (subj == s) & (lab == CLASS_NAMES.index(c))
                               & (pose == POSE_NAMES.index(a.pose)))[0]) for c in ("fear", "surprise")]
    te = load_rows(a.store, np.asarray(rows), SIZE, info.representation, info.clip)
    disp = flow_to_model_px(te["flow_target"], info.representation, info.clip, src)
    warp = warp_forward(te["neutral"], disp, 3)
    fig, ax = plt.subplots(2, 4, figsize=(9, 4.8))
    im = lambda x: ((x.permute(1, 2, 0).numpy() + 1) / 2).clip(0, 1)  # noqa: E731
    for i, c in enumerate(("fear", "surprise")):
        for j, (t, x) in enumerate((("neutral face", im(te["neutral"][i])), ("real frontal face", im(te["target_image"][i])),
                                    ("neutral face warped by the flow", im(warp[i])))):
            ax[i, j].imshow(x)
            ax[i, j].set_title(t, fontsize=8)
        h = ax[i, 3].imshow(disp[i, 1] * src / SIZE, cmap="RdBu_r", vmin=-16, vmax=16)
        ax[i, 3].set_title("downward motion, px of the crop", fontsize=8)
        ax[i, 0].set_ylabel(f"{a.subject} {c}")
        fig.colorbar(h, ax=ax[i, 3], fraction=0.046)
    for x in ax.flat:
        x.set_xticks([])
        x.set_yticks([])
    fig.suptitle(f"{Path(a.store).name} (clip {info.clip:g} px), pose {a.pose}, neutral->apex", fontsize=9)
    fig.tight_layout()
    fig.savefig(a.out, dpi=80)


if __name__ == "__main__":
    main()
