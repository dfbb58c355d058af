"""Trainer speed: GAN training steps/s of the small and paper configs, and the streaming loader's
samples/s against what a step consumes (aim: the loader >= 10x the step's appetite).

    .venv/bin/python benchmarks/bench_train.py [--paper-steps 2] [--device cuda] [--write-docs]

Everything is measured in one run on one machine, so the ratios compare like with like; absolute
figures move with the machine's load. `--write-docs` replaces the trainer section of docs/BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from pipeline.params import load_params
from pipeline.weights import weights_path
from training.config import TrainConfig, fer2013_frame, train_config
from training.data import GAN_ARRAYS, StreamingStoreDataset, check_store, make_loader, to_device
from training.distributed import Dist
from training.fixture import make_arrays, write_fixture_store
from training.models.efer import FrozenClassifier, perceptual_backbone
from training.models.networks import build_from, build_nets
from training.step import StepContext, autocast_ctx, gan_step, make_optimizer

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- bench_train:start -->", "<!-- bench_train:end -->"


def _batch(n: int, store_size: int) -> dict[str, torch.Tensor]:
    a = make_arrays(n_subjects=1, rows_per_subject=n, size=store_size, seed=1)
    b = {k: torch.from_numpy(a[k]) for k in GAN_ARRAYS}
    b["label"] = b["label"].long()
    b["step"] = torch.full((n,), 4, dtype=torch.long)  # an image row (3 < step <= 5): the full step
    return b


def step_context(params: dict[str, Any], t: TrainConfig, device: torch.device, representation: str, clip: float,
                 perceptual: bool = False) -> tuple[StepContext, str]:
    """A GAN step's context on fresh nets of train config `t` (seed 0), and its perceptual backbone's name: the own
    e_FER's features, or with `perceptual` the one `t.perceptual` picks as training does (FER2013's when present)."""
    torch.manual_seed(0)
    nets = {r: m.to(device) for r, m in build_nets(dict(t.nets.items())).items()}
    efer = FrozenClassifier(build_from(params["train_fer"]["net"])).to(device)
    perc, backbone = efer.features, "the own e_FER's features"
    if perceptual:
        perc, _, info = perceptual_backbone(t.perceptual, efer, weights_path("fer2013", params), fer2013_frame(params))
        backbone = info["backbone"]
    opt = {r: make_optimizer(m.parameters(), getattr(t.optim, r), t.fused_optim) for r, m in nets.items()}
    return StepContext(nets, nets, opt, efer, perc, t, autocast_ctx(t, device), Dist(), device, representation,
                       clip), backbone


def step_rate(params: dict[str, Any], name: str, steps: int, warmup: int, device: torch.device, amp: str,
              store_size: int = 128, batch_size: int | None = None) -> dict[str, Any]:
    """Whole-GAN steps/s (D_P+D_E, G_W, G_F with L_GW connected where its weight is not 0) of a config on random store batches."""
    t = train_config(params, name)
    t.amp = amp
    if batch_size:
        t.batch_size = batch_size
    ctx, _ = step_context(params, t, device, "polar", 10.0)
    nets = ctx.nets
    raw = _batch(t.batch_size, store_size)
    for i in range(warmup + steps):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        b = to_device(raw, device, t.size, "polar", 10.0)
        gan_step(b, epoch=t.e_c, c=ctx)
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / steps
    return {"config": name, "batch_size": t.batch_size, "size": t.size or store_size,
            "params": sum(p.numel() for m in nets.values() for p in m.parameters()),
            "s_per_step": dt, "steps_per_s": 1 / dt, "samples_per_s": t.batch_size / dt}


def loader_rate(store: Path, batch_size: int, workers: int, epochs: int = 2) -> dict[str, Any]:
    """Samples/s the streaming dataset delivers (whole-chunk reads, shuffles) over full epochs of a store."""
    info = check_store(store)
    rows = torch.arange(info.n).numpy()
    ds = StreamingStoreDataset([str(store)], [rows], [info.chunk_rows], GAN_ARRAYS, batch_size, seed=0,
                               workers=workers)
    loader = make_loader(ds)
    ds.set_epoch(0)
    for _ in loader:  # warm-up epoch: starts the spawned worker, fills the OS cache
        pass
    n, t0 = 0, time.perf_counter()
    for e in range(1, epochs + 1):
        ds.set_epoch(e)
        for b in loader:
            n += len(b["label"])
    return {"workers": workers, "batch_size": batch_size, "samples_per_s": n / (time.perf_counter() - t0),
            "chunk_rows": info.chunk_rows}


def render(res: dict[str, Any]) -> str:
    """The docs/BENCHMARKS.md section."""
    lines = [START, "## Trainer (`benchmarks/bench_train.py`)", "",
             f"One run on {res['machine']} (shared with other work), torch {res['torch']}, {res['threads']} torch "
             "thread(s); "
             f"store {res['store_size']}x{res['store_size']}, {res['store_rows']} rows, "
             f"{res['chunk_rows']} rows per chunk (1 MiB chunks, blosc lz4). A step is the whole GAN step "
             "(D_P + D_E update, G_W update, G_F update with L_GW connected; perceptual loss on e_FER features).", "",
             "| config | device | batch | side | parameters | s/step | steps/s | samples/s |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for s in res["steps"]:
        lines.append(f"| {s['config']}{' bf16' if s['amp'] == 'on' else ''} | {s['device']} | {s['batch_size']} | "
                     f"{s['size']} | {s['params']:,} | {s['s_per_step']:.3f} | {s['steps_per_s']:.2f} | "
                     f"{s['samples_per_s']:.1f} |")
    lines += ["", "| loader | batch | samples/s | x small step's need | x paper step's need |", "|---|---:|---:|---:|---:|"]
    need = {s["config"]: s["samples_per_s"] for s in res["steps"] if s["device"] == "cpu" and s["amp"] != "on"}
    for ld in res["loader"]:
        lines.append(f"| {ld['workers']} spawned worker(s) | {ld['batch_size']} | {ld['samples_per_s']:.0f} | "
                     f"{ld['samples_per_s'] / need['small']:.1f}x | "
                     f"{(ld['samples_per_s'] / need['paper']) if 'paper' in need else float('nan'):.1f}x |")
    lines += ["", "Ratios (this run): " + "; ".join(res["ratios"]) + "."]
    for extra in res.get("extra", []):
        lines += ["", f"Separate run on {extra['machine']} (torch {extra['torch']}), not comparable with the rows above:", "",
                  "| config | device | batch | side | s/step | steps/s | samples/s |", "|---|---|---:|---:|---:|---:|---:|"]
        for s in extra["steps"]:
            lines.append(f"| {s['config']}{' bf16' if s['amp'] == 'on' else ''} | {s['device']} | {s['batch_size']} | "
                         f"{s['size']} | {s['s_per_step']:.4f} | {s['steps_per_s']:.1f} | {s['samples_per_s']:.0f} |")
        top = max(extra["steps"], key=lambda s: s["samples_per_s"])
        one = max(ld["samples_per_s"] for ld in res["loader"] if ld["workers"] == 1)
        lines += ["", f"Across machines (indicative only): the GPU's fastest row consumes {top['samples_per_s']:.0f} "
                  f"samples/s, {one / top['samples_per_s']:.1f}x below what one loader worker delivered here; "
                  "there the loader needs several workers (`workers`, one process each) to stay >= 10x ahead."]
    lines.append(END)
    return "\n".join(lines)


def main() -> None:
    """Run the benchmark, print JSON and the markdown section; optionally write it into docs/BENCHMARKS.md."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small-steps", type=int, default=20)
    ap.add_argument("--paper-steps", type=int, default=2)
    ap.add_argument("--rows", type=int, default=440)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--paper-bf16", action="store_true", help="also time the paper config with bf16 autocast")
    ap.add_argument("--write-docs", action="store_true")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (1: on a machine shared with other work, 2 threads spin-wait)")
    ap.add_argument("--steps-only", action="store_true", help="skip the loader (e.g. on a GPU machine without zarr)")
    ap.add_argument("--json", type=Path, help="write the raw results here")
    ap.add_argument("--extra-json", type=Path, action="append", default=[],
                    help="results of another machine's run (e.g. a GPU) to list in their own table")
    ap.add_argument("--render", type=Path, help="no measurement: render the docs section from a saved --json")
    ap.add_argument("--batch-sizes", default="", help="GPU runs: extra paper batch sizes, comma-separated")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    params = load_params(ROOT / "params.yaml")
    dev = torch.device(a.device)
    if a.render:
        res = json.loads(a.render.read_text())
        res["extra"] = [json.loads(p.read_text()) for p in a.extra_json]
        _finish(res, a)
        return
    res: dict[str, Any] = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs"
                           + (f", {torch.cuda.get_device_name(dev)}" if dev.type == "cuda" else ""),
                           "torch": torch.__version__, "threads": torch.get_num_threads(), "steps": [], "loader": []}
    runs = [("small", a.small_steps, "off", None), ("paper", a.paper_steps, "off", None)]
    if a.paper_bf16:
        runs.append(("paper", a.paper_steps, "on", None))
    runs += [("paper", a.paper_steps, "on", int(b)) for b in a.batch_sizes.split(",") if b.strip()]
    for name, steps, amp, bs in runs:
        if dev.type == "cuda":
            amp = "on"  # bf16 autocast is what the trainer uses on GPU
        r = step_rate(params, name, steps, warmup=1 if name == "paper" and dev.type == "cpu" else 3, device=dev,
                      amp=amp, batch_size=bs)
        r.update({"device": dev.type, "amp": amp})
        res["steps"].append(r)
        print(json.dumps(r), flush=True)
    if a.steps_only:
        print(json.dumps(res, indent=2))
        if a.json:
            a.json.write_text(json.dumps(res, indent=2))
        return
    with tempfile.TemporaryDirectory() as d:
        store = write_fixture_store(Path(d) / "bench.zarr", n_subjects=10, rows_per_subject=a.rows // 10, size=128,
                                    chunk_mib=1.0)
        info = check_store(store)
        res.update({"store_size": 128, "store_rows": info.n, "chunk_rows": info.chunk_rows})
        for workers, bs in ((0, 8), (1, 8), (1, 4)):
            r = loader_rate(store, bs, workers)
            res["loader"].append(r)
            print(json.dumps(r), flush=True)
    cpu = {s["config"]: s for s in res["steps"] if s["device"] == "cpu" and s["amp"] == "off"}
    ratios = []
    if "small" in cpu and "paper" in cpu:
        ratios.append(f"small step {cpu['paper']['s_per_step'] / cpu['small']['s_per_step']:.0f}x faster than paper")
    best = max(ld["samples_per_s"] for ld in res["loader"] if ld["workers"] == 1)
    if "small" in cpu:
        ratios.append(f"one loader worker delivers {best / cpu['small']['samples_per_s']:.0f}x what the small step consumes")
    res["ratios"] = ratios
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))
    res["extra"] = [json.loads(p.read_text()) for p in a.extra_json]
    _finish(res, a)


def _finish(res: dict[str, Any], a: argparse.Namespace) -> None:
    """Print the section and, with --write-docs, put it into docs/BENCHMARKS.md."""
    cpu = {s["config"]: s for s in res["steps"] if s["device"] == "cpu" and s["amp"] == "off"}
    text = render(res) if cpu else json.dumps(res, indent=2)
    print(text)
    if a.write_docs and cpu:
        doc = ROOT / "docs" / "BENCHMARKS.md"
        old = doc.read_text() if doc.exists() else "# Benchmarks\n\nRatios measured within one run of each script.\n"
        if START in old and END in old:
            new = old[: old.index(START)] + text + old[old.index(END) + len(END):]
        else:
            new = old.rstrip("\n") + "\n\n" + text + "\n"
        doc.write_text(new)
        print(f"wrote {doc}")


if __name__ == "__main__":
    main()
