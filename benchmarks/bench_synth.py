"""Benchmark: rendering a synthetic frame pair (cam1 + cam2) against one Farneback flow on the same frames.

One process, one OpenCV thread (so "per core"). Both are timed in the same run, interleaved
in rounds, and the ratio of medians is reported: the machine is shared and noisy, ratios
survive that better than absolute times.

    .venv/bin/python benchmarks/bench_synth.py [--size 512] [--pairs 40] [--rounds 5]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--pairs", type=int, default=40, help="frame pairs per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--write-docs", action="store_true", help="put the result into docs/BENCHMARKS.md")
    args = ap.parse_args()
    cv2.setNumThreads(1)

    from pipeline.face_model import build_face_model
    from pipeline.render import Camera, finish, make_background, render
    from pipeline.params import load_params, section
    from pipeline.synth import SequenceSpec, SynthParams, make_subject, sequence_motion

    p = section(load_params(ROOT / "params.yaml"), "synth", SynthParams, size=args.size, frames=args.pairs)
    model = build_face_model()
    subject = make_subject(model, 1, p)
    cam = Camera(size=p.size, face_frac=p.face_frac, focal_frac=p.focal_frac)
    gains, pose = sequence_motion(SequenceSpec(1, "001", "happiness", "diagonal"), subject, p, cam.px_per_unit)
    bg = make_background(subject, p.size)
    rng = np.random.default_rng(0)
    zero = np.zeros(5)

    def render_pairs() -> list[np.ndarray]:
        grey = []
        for i in range(args.pairs):
            noise = rng.standard_normal((p.size, p.size), dtype=np.float32) * p.noise_sigma
            a = finish(render(model, subject, gains[i], zero, cam, bg)[0], noise)
            b = finish(render(model, subject, gains[i], pose[i], cam, bg)[0], noise)
            grey.append(cv2.cvtColor(b, cv2.COLOR_RGB2GRAY))
            del a
        return grey

    def encode(frames: list[np.ndarray]) -> None:
        for f in frames:
            cv2.imencode(".png", f, [cv2.IMWRITE_PNG_COMPRESSION, 1])

    def flows(frames: list[np.ndarray]) -> None:
        for i in range(len(frames)):
            cv2.calcOpticalFlowFarneback(frames[0], frames[i], None, 0.5, 3, 15, 3, 5, 1.2, 0)

    render_pairs()                       # warm-up: caches, first-call costs
    t_render, t_flow, t_png = [], [], []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        frames = render_pairs()
        t1 = time.perf_counter()
        flows(frames)
        t2 = time.perf_counter()
        encode(frames + frames)          # two PNGs per pair, as synth writes them
        t3 = time.perf_counter()
        t_render.append((t1 - t0) / args.pairs)
        t_flow.append((t2 - t1) / args.pairs)
        t_png.append((t3 - t2) / args.pairs)
    r, f, w = (statistics.median(t) for t in (t_render, t_flow, t_png))
    res = {
        "size": p.size, "pairs_per_round": args.pairs, "rounds": args.rounds,
        "render_pair_ms": r * 1e3, "farneback_ms": f * 1e3, "png_pair_ms": w * 1e3,
        "render_pairs_per_s_per_core": 1 / r, "render_over_flow": r / f, "render_and_png_over_flow": (r + w) / f,
    }
    print(json.dumps(res, indent=2))
    import os
    import platform

    text = f"""## Synthetic rendering (`benchmarks/bench_synth.py`)

One process, one OpenCV thread, {platform.machine()}, {os.cpu_count()} CPUs (shared with other work);
{args.rounds} rounds of {args.pairs} frame pairs at {p.size}x{p.size} (cam1 + cam2, happiness with diagonal head
motion, noise included), each round followed by one Farneback flow (paper settings) per pair on the
frames it rendered; medians over rounds.

| per frame pair | ms |
|---|---:|
| render cam1 + cam2 | {r * 1e3:.1f} |
| one Farneback flow (512 grey) | {f * 1e3:.1f} |
| PNG-encode both frames (level 1) | {w * 1e3:.1f} |

Ratios (this run): rendering a pair costs **{r / f:.2f}x** one flow ({(r + w) / f:.2f}x with PNG encoding);
{1 / r:.1f} rendered pairs per second per core.
"""
    print(text)
    if args.write_docs:
        from docsection import write_section

        write_section("bench_synth", text)


if __name__ == "__main__":
    main()
