"""The session-13 probe table (G_W alone on the ground-truth flows, validation fold 3 of the tuning split, 400
steps), beside session 11's runs of the same probe: `python table.py` from this folder."""
import json
from pathlib import Path

HERE = Path(__file__).parent
S11 = HERE.parent / "session11"
RUNS = [("residual, rgb gradient (session 11)", [S11 / "a2-7.json", S11 / "a2-7_s1.json"]),
        ("residual, L_1 alone (session 11)", [S11 / "a2-0.json", S11 / "a2-0_s1.json"]),
        ("residual, judge_grad grey", [HERE / "g2-7.json", HERE / "g2-7_s1.json"]),
        ("residual, judge_grad grey, L_eFER 1 (the default own e_FER)", [HERE / "g2-7-1.json"]),
        ("residual, L_eFER 1 (an own e_FER that reads the change)", [HERE / "r2-7-1c.json"]),
        ("shading", [HERE / "s2-7.json", HERE / "s2-7_s1.json"]),
        ("shading, L_eFER 1 (the default own e_FER, reads faces)", [HERE / "s2-7-1.json"]),
        ("shading, L_eFER 1 (an own e_FER that reads the change)", [HERE / "s2-7-1c.json", HERE / "s2-7-1c_s1.json"])]
print("| G_W (L_1 2, L_perc 7) | seeds | SSIM | FER2013 / real faces | false colour | checkerboard |")
print("|---|---|---:|---:|---:|---:|")
for name, files in RUNS:
    g = [json.loads(f.read_text())["faces"]["gw_gt"] for f in files]
    cell = lambda k, d: " / ".join(f"{x[k]:.{d}f}" for x in g)  # noqa: E731
    seeds = " / ".join(str(json.loads(f.read_text())["args"]["seed"] or 0) for f in files)
    print(f"| {name} | {seeds} | {cell('ssim', 3)} | {cell('fer2013_vs_real', 2)}x | {cell('false_colour', 2)} | "
          f"{cell('checkerboard', 2)} |")
w = json.loads((HERE / "s2-7.json").read_text())["faces"]["warp_gt"]
print(f"\nwarp alone: SSIM {w['ssim']:.3f}, FER2013 {w['fer2013_vs_real']:.2f}x, false colour {w['false_colour']:.2f}")
