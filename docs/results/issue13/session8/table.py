"""The tables in docs/EVALUATION.md ("An e_FER that reads the change from the neutral face", 2026-12-02) from this
folder's files:  python docs/results/issue13/session8/table.py docs/results/issue13/session8
"""
import json
import os
import sys

d = sys.argv[1]
print("e_FER variants (validation fold 3 of the tuning split, 168 faces: 84 apex + 84 neutral):\n")
print("| variant | seed | accuracy | mean per-class recall | s |")
print("|---|---:|---:|---:|---:|")
for line in open(os.path.join(d, "efer_variants.jsonl")):
    r = json.loads(line)
    print(f"| {r['variant']} {json.dumps(r['overrides'])} | {r['seed']} | {r['accuracy']:.3f} | "
          f"{r['balanced_accuracy']:.3f} | {r['seconds']:.0f} |")
print("\nG_W probes (FER2013 on G_W's faces from the ground-truth flow, 84 neutral->apex rows; real faces 75.0 %):\n")
print("| L_eFER | seed 0 | seed 1 | seed 2 | seed 3 | mean | SSIM (seeds) |")
print("|---|---:|---:|---:|---:|---:|---|")
for prefix, name in (("efer_default", "weight 1, e_FER as trained before (6 epochs of faces)"),
                     ("efer1", "weight 1, e_FER of faces, 30 epochs"),
                     ("base", "off (weight 0)"),
                     ("efer_change", "weight 1, e_FER of the change (now)")):
    acc, ssim = [], []
    cells = []
    for s in range(4):
        p = os.path.join(d, f"{prefix}_seed{s}.json")
        if not os.path.exists(p):
            cells.append("–")
            continue
        g = json.load(open(p))["faces"]["gw_gt"]
        acc.append(100 * g["fer2013"])
        ssim.append(g["ssim"])
        cells.append(f"{100 * g['fer2013']:.1f} %")
    print(f"| {name} | " + " | ".join(cells) + f" | {sum(acc) / len(acc):.1f} % | "
          + " / ".join(f"{x:.3f}" for x in ssim) + " |")
