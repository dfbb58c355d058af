"""Assemble the research flow store from the parts of subjects S001-S010 (the tuning split never reads
S011/S012: reserved test subjects), so that tuning need not wait for their flows."""
import csv, json, os, sys
from pathlib import Path
sys.path.insert(0, os.getcwd())
from pipeline import flow as fl
from pipeline import store as st
from pipeline.params import load_params
crops = Path("data/research/crops/synth")
parts = Path("data/research/flows/synth.zarr.parts")
out = Path("data/research/flows/synth_s001_s010.zarr")
rows = list(csv.DictReader(open(crops / "crops.csv")))
want = [i for i, r in enumerate(rows) if r["subject"] not in ("S011", "S012")]
missing = [i for i in want if not (parts / f"{i:06d}.npz").is_file()]
if missing:
    sys.exit(f"{len(missing)} sequences not done yet")
p = fl.load_flow_params(load_params("benchmarks/issue12/research_params.yaml"))
n = fl._assemble(crops, out, parts, rows, want, p, st.file_sha256(crops / "crops.csv"), [], "synth")
print(out, n, "rows")
