"""The table in docs/EVALUATION.md (G_W on validation, 2026-12-02) from this folder's probe_gw JSON files:
    python docs/results/issue13/session7/table.py docs/results/issue13/session7
"""
import json, sys, glob, os
rows = [
 ("c5pc_s0_200", "default (framed perceptual, 200 steps), seed 0"),
 ("framed_s1_200", "default, seed 1"),
 ("framed_s2_200", "default, seed 2"),
 ("whole_s1_200", "perceptual on the whole crop, seed 1"),
 ("whole_s2_200", "perceptual on the whole crop, seed 2"),
 ("framed_s0_800", "800 steps"),
 ("framed_s0_200_a05", "L_1 weight 0.5 (instead of 2)"),
 ("lr15_s0_200", "G_W learning rate 1.5e-3 (instead of 5e-4)"),
 ("big_s0_200", "bigger G_W (ngf 32, max_ch 256, n_res 2: the medium config's)"),
 ("blend_s0_200", "refine `blend` (inpainting) instead of `residual`"),
 ("mask0_s0_200", "mask bias 0 (half-open mask at the start)"),
 ("c10_s0_200", "store clipped at 10 px instead of 5"),
 ("c20_s0_200", "store clipped at 20 px"),
 ("focus4_s0_200", "extra L_1 (weight 4) where the warp misses the target, seed 0"),
 ("focus4_s2_200", "the same, seed 2"),
 ("adv1_s0_200", "adversarial loss (weight 1) from a conditional PatchGAN on the faces, seed 0"),
 ("adv1_s2_200", "the same, seed 2"),
 ("adv1_s0_800", "the same, 800 steps, seed 0"),
 ("adv1_s2_800", "the same, 800 steps, seed 2"),
]
d = sys.argv[1]
print("| probe | SSIM | FER2013 G_W(GT) | / real (75.0 %) | warp alone | fear / surprise / happiness recall |")
print("|---|---:|---:|---:|---:|---|")
for k, name in rows:
    p = os.path.join(d, k + ".json")
    if not os.path.exists(p): continue
    f = json.load(open(p))["faces"]
    g, w = f["gw_gt"], f.get("warp_gt", {})
    r = g.get("fer2013_recall")
    rc = f"{r['fear']:.2f} / {r['surprise']:.2f} / {r['happiness']:.2f}" if r else "–"
    print(f"| {name} | {g['ssim']:.3f} | {100*g['fer2013']:.1f} % | {g['fer2013_vs_real']:.2f} | {100*w.get('fer2013', float('nan')):.1f} % | {rc} |")
