"""Diagnosis (issue #13): how much of FER2013's reading of a face lies in its mouth region?

On a tuning split's validation neutral->apex rows (as benchmarks/probe_gw.py reads them), FER2013 (framed as
`emogan evaluate` frames it) judges: the real frontal apex face, the neutral face warped by the ground-truth
flow (gw_warp's warp, what G_W starts from), and two composites: the warp with the real face's mouth region
pasted in, and the real face with the warp's mouth region. No training. Prints one JSON object.

    python benchmarks/issue13/mouth_swap.py data/stores/synth.zarr --folds-file F --fold 3 --out swap.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from pipeline.folds import read_folds  # noqa: E402
from pipeline.params import as_dict, load_params  # noqa: E402
from pipeline.schema import CLASS_NAMES, STRATEGY_NAMES  # noqa: E402
from pipeline.weights import weights_path  # noqa: E402
from probe_gw import load_rows, u8  # noqa: E402
from training.config import fer2013_frame, train_config  # noqa: E402
from training.data import check_store, fold_rows, raw_group  # noqa: E402
from training.models.fer2013 import load_fer2013  # noqa: E402
from training.models.networks import build_from, complete_gw_spec  # noqa: E402

# The mouth region of a store crop (crop.margin 0.4: the face box is the central 1/1.8 of the side), as
# fractions of the side (rows y0, y1, columns x0, x1): chosen by eye on the synthetic faces' 64-px crops, where it
# covers the lips, the widest open mouth and the chin, not the nose or the cheeks above the lip corners.
MOUTH = (0.58, 0.82, 0.30, 0.70)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store")
    ap.add_argument("--folds-file", required=True)
    ap.add_argument("--fold", type=int, required=True)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--config", default="small")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    if min(read_folds(a.folds_file).values()) >= 0:
        raise SystemExit(f"{a.folds_file}: not a tuning split (no reserved fold -1)")
    params = load_params()
    t = train_config(params, a.config)
    info = check_store(a.store)
    size = t.size or info.size
    rows = fold_rows(info, a.fold, "test", Path(a.folds_file), a.k)
    strat = np.asarray(raw_group(a.store)["strategy"][:])
    rows = rows[strat[rows] == STRATEGY_NAMES.index("neutral_apex")]
    te = load_rows(a.store, rows, size, info.representation, info.clip)
    gw = build_from(complete_gw_spec(as_dict(t.nets)["gw"], [info])).eval()
    with torch.no_grad():
        warp = gw.warp(te["flow_target"], te["neutral"])[0]
    real = te["target_image"]
    y0, y1, x0, x1 = (round(f * size) for f in MOUTH)
    box = torch.zeros(1, 1, size, size)
    box[..., y0:y1, x0:x1] = 1.0
    faces = {"real": real, "neutral": te["neutral"], "warp": warp,
             "warp_with_real_mouth": warp * (1 - box) + real * box,
             "real_with_warp_mouth": real * (1 - box) + warp * box}
    fer = load_fer2013(weights_path("fer2013", params), frame=fer2013_frame(params))
    labels = te["label"].numpy()
    out = {"rows": int(len(labels)), "mouth_box": MOUTH, "faces": {}}
    for k, x in faces.items():
        with torch.no_grad():
            pred = fer(torch.from_numpy(u8(x)).float() / 255).argmax(1).numpy()
        recall = {CLASS_NAMES[c]: float((pred[labels == c] == c).mean()) for c in np.unique(labels)}
        out["faces"][k] = {"fer2013": float((pred == labels).mean()), "recall": recall}
        r = out["faces"][k]
        print(f"{k:22s} {r['fer2013']:.3f} " + " ".join(f"{c[:4]} {v:.2f}" for c, v in r["recall"].items()))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
