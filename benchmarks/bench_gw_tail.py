"""What an epoch of G_W alone (`train.<config>.gw_epochs` past `epochs`, training/step.py `gw_step`) costs against a
joint epoch's GAN step (`gan_step`), on the config's nets and batches shaped like the default data's.

    .venv/bin/python benchmarks/bench_gw_tail.py [--config small] [--steps 20] [--rounds 3] [--write-docs]

Both steps run on the same batches, interleaved in rounds within one process, so the ratio compares like with like
on a shared machine; absolute figures move with its load. A batch holds as many image rows (G_W's) as the default
data gives: its neutral->apex share of rows (1 in 10), drawn per batch with a fixed seed. Data loading is not timed
(benchmarks/bench_train.py: the loader delivers far more than a step consumes). `--write-docs` puts the table into
docs/BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench_train import step_context  # beside this script
from docsection import write_section
from pipeline.params import load_params
from training.config import train_config
from training.data import GAN_ARRAYS, check_store, to_device
from training.fixture import make_arrays, write_fixture_store
from training.models.networks import complete_gw_spec
from training.step import gan_step, gw_step

ROOT = Path(__file__).resolve().parents[1]
IMAGE_SHARE = 0.1   # the default data's neutral->apex rows: one of each sequence's ten (steps 1 x 9 and 9)


def batches(n: int, batch_size: int, store_size: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """`n` batches of fixture rows: step 1 (frame to frame), a binomial share IMAGE_SHARE of them step 9."""
    a = make_arrays(n_subjects=1, rows_per_subject=batch_size, size=store_size, representation="cartesian", seed=1)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        b = {k: torch.from_numpy(a[k]) for k in GAN_ARRAYS}
        b["label"] = b["label"].long()
        b["step"] = torch.from_numpy(np.where(rng.random(batch_size) < IMAGE_SHARE, 9, 1)).long()
        out.append(b)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="small")
    ap.add_argument("--steps", type=int, default=20, help="steps of each kind per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--write-docs", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    params = load_params(ROOT / "params.yaml")
    t = train_config(params, a.config)
    dev = torch.device("cpu")
    with tempfile.TemporaryDirectory() as d:   # a store for the warping G_W's units (representation, clip, side)
        info = check_store(write_fixture_store(Path(d) / "s.zarr", n_subjects=2, rows_per_subject=4, size=32,
                                               representation="cartesian"))
        t.nets.gw = complete_gw_spec(t.nets.gw, [info])
    ctx, backbone = step_context(params, t, dev, "cartesian", info.clip, perceptual=True)
    data = [to_device(b, dev, t.size, "cartesian", info.clip) for b in batches(a.steps, t.batch_size, 128)]
    for fn in (gan_step, gw_step):   # warm-up
        fn(data[0], t.e_c, ctx)
    times: dict[str, list[float]] = {"gan_step": [], "gw_step": []}
    for _ in range(a.rounds):
        for fn in (gan_step, gw_step):
            t0 = time.perf_counter()
            for b in data:
                fn(b, t.e_c, ctx)
            times[fn.__name__].append((time.perf_counter() - t0) / len(data))
    joint, alone = (statistics.median(times[k]) for k in ("gan_step", "gw_step"))
    rows = sum(int((b["step"] > 1).sum()) for b in data)
    text = "\n".join([
        "## G_W's own epochs (`benchmarks/bench_gw_tail.py`)", "",
        f"One run on {platform.machine()}, {os.cpu_count()} CPUs (shared with other work), torch {torch.__version__}, "
        f"{a.threads} torch thread(s); `{a.config}` config's nets at side {t.size}, batches of {t.batch_size} with "
        f"{rows} image rows in {len(data)} batches (the default data's share, {IMAGE_SHARE:.0%}); perceptual "
        f"backbone {backbone}; median of {a.rounds} interleaved rounds of {a.steps} steps each.", "",
        "| step | trains | s/step | x the joint step |", "|---|---|---:|---:|",
        f"| `gan_step` (an epoch up to `epochs`) | D_P, D_E, G_W, G_F | {joint:.3f} | 1.00x |",
        f"| `gw_step` (an epoch past `epochs`, up to `gw_epochs`) | G_W | {alone:.3f} | {alone / joint:.2f}x |", "",
        f"Ratio (this run): a step of G_W alone costs {alone / joint:.2f}x a joint step, so `gw_epochs` = 2 x "
        f"`epochs` trains for about {1 + alone / joint:.2f}x the steps' time of `epochs` alone, where doubling "
        "`epochs` costs 2x (loading, between-epoch evaluation and start-up not included).",
    ])
    print(text)
    if a.write_docs:
        write_section("bench_gw_tail", text)


if __name__ == "__main__":
    main()
