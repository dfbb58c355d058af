"""e_FER variants on validation (issue #13): the own image e_FER trained on a tuning split's training subjects,
scored on its validation fold, one params override per variant. Prints and writes one JSON line per
(variant, seed): held-out accuracy, mean per-class recall (the neutral faces added to the neutral-apex rows make
half the held-out faces neutral, so plain accuracy rewards calling everything neutral), per-class recall, seconds.

    python benchmarks/issue13/efer_variants.py data/stores/synth.zarr --folds-file TUNING.csv --fold 3 \
        --variant base '{}' --variant long '{"epochs": 30}' --seeds 0 1 --out efer.jsonl
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store")
    ap.add_argument("--folds-file", required=True)
    ap.add_argument("--fold", type=int, required=True)
    ap.add_argument("--variant", nargs=2, action="append", metavar=("NAME", "JSON"), required=True,
                    help="a name and a JSON object of train_fer overrides")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    folds = Path(a.folds_file).read_text()
    if ",-1" not in folds and ", -1" not in folds:
        raise SystemExit(f"{a.folds_file}: not a tuning split (no reserved fold -1)")
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, js in a.variant:
            for seed in a.seeds:
                p = json.loads(json.dumps(base))
                p["train_fer"].update(json.loads(js))
                p["train_fer"]["seed"] = seed
                pf = Path(tmp) / f"{name}_{seed}.yaml"
                pf.write_text(yaml.safe_dump(p))
                run = Path(tmp) / f"run_{name}_{seed}"
                t0 = time.time()
                emogan = str(Path(sys.executable).with_name("emogan"))
                subprocess.run([emogan, "train-fer", a.store, "--folds-file", a.folds_file, "--fold", str(a.fold),
                                "--out", str(run), "--params", str(pf)], check=True, cwd=ROOT)
                m = json.loads((run / "metrics.json").read_text())
                rec = {"variant": name, "overrides": json.loads(js), "seed": seed, "seconds": time.time() - t0,
                       "accuracy": m["test_accuracy"], "balanced_accuracy": m["test_balanced_accuracy"],
                       "per_class": m["test_per_class"], "rows": m["test_rows"]}
                print(json.dumps(rec), flush=True)
                with out.open("a") as fh:
                    fh.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
