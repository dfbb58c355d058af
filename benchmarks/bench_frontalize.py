"""Latency of `emogan frontalize` for one frame pair, split into crop, flow and networks.

    .venv/bin/python benchmarks/bench_frontalize.py [--repeats 20] [--configs small,paper] [--write-docs]

The input is a real photograph (matplotlib's grace_hopper.jpg, 512x600) and the same photograph
moved by (3, 2) px and zoomed by 1%: one frame pair, as `emogan frontalize A.png B.png` gets it.
The stages are the functions the command runs (training/inference/frontalize.py):
- crop: mediapipe face detection on the first frame and the square crops of both (crop_recording);
- flow: Farneback on the crops (params.yaml `crop.size`, paper settings), Cartesian area averaging to
  `flow.size` and `normalize.size`, clip and representation (recording_flows_px + normalize_flows);
- networks: G_F, D_E and G_W on that pair, model side of the config (run_networks).
Nets are built from params.yaml's configs with random weights (latency does not depend on their
values). Files are not written (that is the same for every config). 1 torch and 1 OpenCV thread by
default; figures are medians of `--repeats` runs after one warm-up, all in one run, so the fractions
compare like with like. `--write-docs` replaces the frontalize section of docs/BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- bench_frontalize:start -->", "<!-- bench_frontalize:end -->"


def frame_pair() -> tuple[list[str], list[np.ndarray]]:
    """A real photograph and a moved, zoomed copy: (names, RGB uint8 frames)."""
    import cv2
    import matplotlib.cbook

    path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    a = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    h, w = a.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 0.0, 1.01)
    m[:, 2] += (3.0, 2.0)
    b = cv2.warpAffine(a, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return [f"{path}", f"{path} (moved)"], [a, b]


def make_bundle(params: dict[str, Any], name: str) -> Any:
    """An in-memory bundle of config `name` (random weights) with the preprocessing of params.yaml."""
    import torch

    from pipeline.crop import CropParams
    from pipeline.flow import load_flow_params
    from pipeline.normalize import load_normalize_params
    from pipeline.params import as_dict, section
    from pipeline.schema import CLASS_NAMES
    from training.inference.bundle import Bundle
    from training.config import train_config
    from training.models.networks import build_nets
    from training.checkpoint import TrainedRun

    cfg = as_dict(train_config(params, name))
    norm = load_normalize_params(params)
    clip = float(norm.clip) if not isinstance(norm.clip, str) else 10.0
    size = cfg["size"] or norm.size
    torch.manual_seed(0)
    nets = {r: n.eval() for r, n in build_nets(cfg["nets"]).items()}
    meta = {"class_names": list(CLASS_NAMES), "representation": norm.representation, "clip": clip, "size": size,
            "nets": cfg["nets"], "weights_sha256": "",
            "preprocess": {"crop": as_dict(section(params, "crop", CropParams)),
                           "flow": load_flow_params(params).recorded(), "store_size": norm.size}}
    run = TrainedRun({"train": cfg}, nets, norm.representation, clip, size, torch.device("cpu"))
    return Bundle(Path(f"<{name} config, random weights>"), meta, run, None)


def measure(bundle: Any, params: dict[str, Any], names: list[str], frames: list[np.ndarray],
            repeats: int) -> dict[str, Any]:
    """Median seconds of crop, flow and networks for one pair (after one warm-up run)."""
    from training.inference import frontalize as infer

    crop, flow, store_size = infer.preprocess_params(bundle, params)
    import torch

    from training.flowrep import resize_flow

    neutral = np.random.default_rng(0).integers(0, 256, (3, store_size, store_size), dtype=np.uint8)
    times: dict[str, list[float]] = {"crop": [], "flow": [], "networks": []}
    nets: dict[str, list[float]] = {"gf": [], "de": [], "gw": []}
    for r in range(repeats + 1):
        t0 = time.perf_counter()
        _, _, crops = infer.crop_recording(zip(names, frames), crop)
        t1 = time.perf_counter()
        flows = infer.normalize_flows(infer.recording_flows_px(crops, flow, store_size), bundle.representation,
                                      bundle.clip)
        t2 = time.perf_counter()
        res = infer.run_networks(bundle, flows, neutral)
        t3 = time.perf_counter()
        assert res.faces.shape == (1, 3, bundle.size, bundle.size)
        # Each net alone on the same pair: which one the networks' time goes to.
        run = bundle.run
        with torch.inference_mode():
            x = resize_flow(torch.from_numpy(flows), bundle.size, bundle.representation, bundle.clip)
            face = torch.rand(1, 3, bundle.size, bundle.size) * 2 - 1
            t4 = time.perf_counter()
            fr = run.nets["gf"](x)
            t5 = time.perf_counter()
            run.nets["de"](fr)
            t6 = time.perf_counter()
            run.nets["gw"](fr, face)
            t7 = time.perf_counter()
        if r:  # the first run builds the face detector and warms the caches
            for k, v in zip(times, (t1 - t0, t2 - t1, t3 - t2)):
                times[k].append(v)
            for k, v in zip(nets, (t5 - t4, t6 - t5, t7 - t6)):
                nets[k].append(v)
    med = {k: statistics.median(v) for k, v in times.items()}
    total = sum(med.values())
    params = sum(p.numel() for n in bundle.run.nets.values() for p in n.parameters())
    return {"median_s": med, "total_s": total, "fractions": {k: v / total for k, v in med.items()},
            "nets_median_s": {k: statistics.median(v) for k, v in nets.items()},
            "size": bundle.size, "crop_side": crop.size, "flow_side": flow.size, "parameters": params,
            "repeats": repeats}


def render(res: dict[str, Any]) -> str:
    """The docs/BENCHMARKS.md section."""
    lines = [START, "## Frontalize (`benchmarks/bench_frontalize.py`)", "",
             f"One run on {res['machine']}, torch {res['torch']}, {res['threads']} torch and OpenCV thread(s); "
             f"one frame pair of a real photograph ({res['input']}); medians of {res['repeats']} runs after a "
             "warm-up. crop = face detection + square crops, flow = Farneback on the crops + area averaging + "
             "normalize, networks = G_F + D_E + G_W (random weights of each config).", "",
             "| config | model side | parameters | crop ms | flow ms | networks ms | total ms | crop | flow | networks "
             "| G_F ms | D_E ms | G_W ms |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in res["configs"].items():
        m, f, n = r["median_s"], r["fractions"], r["nets_median_s"]
        lines.append(f"| {name} | {r['size']} | {r['parameters']:,} | {1e3 * m['crop']:.1f} | {1e3 * m['flow']:.1f} | "
                     f"{1e3 * m['networks']:.1f} | {1e3 * r['total_s']:.1f} | {100 * f['crop']:.0f}% | "
                     f"{100 * f['flow']:.0f}% | {100 * f['networks']:.0f}% | {1e3 * n['gf']:.1f} | "
                     f"{1e3 * n['de']:.1f} | {1e3 * n['gw']:.1f} |")
    lines += ["", "Ratios (this run): " + "; ".join(res["ratios"]) + "."]
    if "small" in res["configs"]:
        f = res["configs"]["small"]["fractions"]["networks"]
        verdict = "met" if f < 0.10 else "not met: the small config's G_F and G_W are compute-bound convnets at 64x64"
        lines += ["", f"Aim (issue 6): networks under 10% of the total for the small config: {100 * f:.0f}%, {verdict}."]
    lines.append(END)
    return "\n".join(lines)


def main() -> None:
    """Run the benchmark, print the markdown section; optionally write it into docs/BENCHMARKS.md."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--configs", default="small,paper", help="comma-separated train configs of params.yaml")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    ap.add_argument("--write-docs", action="store_true")
    a = ap.parse_args()

    import cv2
    import torch

    from pipeline.params import load_params

    torch.set_num_threads(a.threads)
    cv2.setNumThreads(a.threads)
    params = load_params(a.params)
    names, frames = frame_pair()
    res: dict[str, Any] = {
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} CPUs (shared with other work)",
        "torch": torch.__version__, "threads": a.threads, "repeats": a.repeats,
        "input": f"grace_hopper.jpg {frames[0].shape[1]}x{frames[0].shape[0]}, moved (3, 2) px and zoomed 1%",
        "configs": {},
    }
    for name in [c.strip() for c in a.configs.split(",") if c.strip()]:
        res["configs"][name] = measure(make_bundle(params, name), params, names, frames, a.repeats)
    ratios = []
    for name, r in res["configs"].items():
        n = r["nets_median_s"]
        ratios.append(f"{name}: networks {100 * r['fractions']['networks']:.1f}% of the total "
                      f"(flow {r['median_s']['flow'] / r['median_s']['networks']:.1f}x the networks; "
                      f"G_F + D_E alone, i.e. flow and expression without the face, "
                      f"{100 * (n['gf'] + n['de']) / r['total_s']:.1f}%)")
    if {"small", "paper"} <= set(res["configs"]):
        s, p = res["configs"]["small"], res["configs"]["paper"]
        ratios.append(f"paper networks {p['median_s']['networks'] / s['median_s']['networks']:.0f}x the small ones")
    res["ratios"] = ratios
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))
    text = render(res)
    print(text)
    if a.write_docs:
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
