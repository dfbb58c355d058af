"""Markdown tables of the probes in data/research/probes/*.json (or the files named): per strategy, per pose."""
import json
import sys
from pathlib import Path

files = [Path(f) for f in sys.argv[1:]] or sorted(Path("data/research/probes").glob("*.json"))
probes = {f.stem: json.loads(f.read_text()) for f in files}
print("| probe | s | NA acc in/G_F/truth | NA Δ pts | NA gap | NA EPE in/G_F/zero | F2F acc G_F | F2F gap | "
      "pooled acc G_F | pooled gap | pooled EPE G_F/zero | nothing in→G_F |")
print("|---|---:|---|---:|---:|---|---:|---:|---:|---:|---|---|")
for name, p in probes.items():
    g = p["groups"]
    na, ff, al, no = g["neutral_apex/large"], g["frame_to_frame/large"], g["all/large"], g["all/nothing"]
    print(f"| {name} | {p['seconds']:.0f} | {na['acc_in']:.1f}/{na['acc_out']:.1f}/{na['acc_gt']:.1f} | "
          f"{na['delta_pts']:+.1f} | {na['gap_closure']:.2f} | {na['epe_in']:.2f}/{na['epe_out']:.2f}/{na['epe_zero']:.2f} | "
          f"{ff['acc_out']:.1f} | {ff['gap_closure']:.2f} | {al['acc_out']:.1f} | {al['gap_closure']:.2f} | "
          f"{al['epe_out']:.2f}/{al['epe_zero']:.2f} | {no['acc_in']:.1f}→{no['acc_out']:.1f} |")
print()
print("G_F accuracy (%) by pose, neutral→apex / pooled (input → G_F for the first probe's input):")
poses = ("tx", "yaw", "pitch", "roll", "diagonal")
print("| probe | " + " | ".join(poses) + " |")
print("|---|" + "---|" * len(poses))
first = next(iter(probes.values()))["groups"]
print("| input | " + " | ".join(f"{first[f'neutral_apex/{q}']['acc_in']:.0f} / {first[f'all/{q}']['acc_in']:.0f}"
                                   for q in poses) + " |")
for name, p in probes.items():
    g = p["groups"]
    print(f"| {name} | " + " | ".join(f"{g[f'neutral_apex/{q}']['acc_out']:.0f} / {g[f'all/{q}']['acc_out']:.0f}"
                                     for q in poses) + " |")
print("| truth | " + " | ".join(f"{first[f'neutral_apex/{q}']['acc_gt']:.0f} / {first[f'all/{q}']['acc_gt']:.0f}"
                                   for q in poses) + " |")
