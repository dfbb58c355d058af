"""A flow store of some subjects from a running `emogan flow`'s committed parts (read-only), for early probes.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/partial_flows.py --crops ../wt-data/data/crops/synth \
        --parts ../wt-data/data/flows/synth.zarr.parts data/flows_mine/synth.parts --params ../wt-data/params.yaml \
        --subjects S004,S005,S006 --out data/flows_partial/synth.zarr [--compute]

With --compute, the listed subjects' sequences that no --parts folder holds yet are computed here, last
sequence first, into the last --parts folder (the stage's own per-sequence function, same params, so the
parts are the same files), stopping where the running stage has caught up: the two meet in the middle.

The flow stage commits one .npz per sequence (manifest order, subject-major) and assembles the store
only when every sequence is done; this assembles the same store restricted to the listed subjects
(all their sequences must be done), with pipeline/flow.py's own assembler, so `emogan normalize`
reads it as it would read the full one. Subject codes index the subjects present here.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from pipeline import store as st
from pipeline.flow import _assemble, load_flow_params, plan_sequence, read_crops_csv, run_sequence_task
from pipeline.params import load_params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--crops", required=True)
    ap.add_argument("--parts", nargs="+", required=True, help="parts folders, searched in order")
    ap.add_argument("--compute", action="store_true", help="compute missing parts into the last --parts folder")
    ap.add_argument("--params", required=True, help="the params.yaml the flow stage runs with")
    ap.add_argument("--subjects", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    crops, dirs = Path(a.crops), [Path(d) for d in a.parts]
    rows = read_crops_csv(crops)
    want = set(a.subjects.split(","))
    idx = [i for i, r in enumerate(rows) if r["subject"] in want]
    p = load_flow_params(load_params(a.params))

    def found(i: int) -> Path | None:
        return next((d / f"{i:06d}.npz" for d in dirs if (d / f"{i:06d}.npz").is_file()), None)

    if a.compute:
        dirs[-1].mkdir(parents=True, exist_ok=True)
        for i in reversed(idx):
            if found(i) is None:
                res = run_sequence_task(plan_sequence(crops, i, rows[i], dirs[-1], p))
                print(f"computed {i}: {res['n']} pairs {res['error'] or ''}", flush=True)
    missing = [i for i in idx if found(i) is None]
    if missing:
        raise SystemExit(f"{len(missing)} sequence(s) of {sorted(want)} not done yet (first: {missing[0]})")
    sub_rows = [rows[i] for i in idx]
    # _assemble numbers subjects from the rows it is given and reads part i for rows[i]: hand it the
    # selected rows, re-indexed, through a view of the parts folder.
    view = Path(a.out).with_name(Path(a.out).name + ".partsview")
    view.mkdir(parents=True, exist_ok=True)
    for j, i in enumerate(idx):
        link = view / f"{j:06d}.npz"
        if not link.exists():
            link.symlink_to(found(i).resolve())
    n = _assemble(crops, Path(a.out), view, sub_rows, list(range(len(sub_rows))), p,
                  st.file_sha256(crops / "crops.csv"), [], crops.name)
    print(f"{a.out}: {n} rows of {len(idx)} sequences ({', '.join(sorted(want))})")


if __name__ == "__main__":
    main()
