"""Benchmark: what one synthetic sequence costs to render and to store, for the demo-budget options.

For each frame side and noise level: seconds to render one sequence (`synth.frames` frames, both
cameras, one process, one OpenCV thread), seconds to PNG-encode it at each zlib level, and the
bytes of one frame. Times are medians over the sequences of one run on a shared machine: compare
the options with each other (ratios), not with another run. Also a Farneback flow on the same
frames, the unit the flow stage is measured in (docs/BENCHMARKS.md).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_synth_budget.py [--sequences 6]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time

import cv2
import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sequences", type=int, default=6, help="sequences per option (one per pose)")
    ap.add_argument("--sizes", default="512,256")
    ap.add_argument("--noise", default="1.5,0.5,0")
    ap.add_argument("--levels", default="1,6,9")
    args = ap.parse_args()
    cv2.setNumThreads(1)

    from pipeline.face_model import build_face_model
    from pipeline.params import load_params, section
    from pipeline.render import Camera, finish, make_background, render
    from pipeline.synth import SYNTH_POSES, SequenceSpec, SynthParams, make_subject, sequence_motion
    from pipeline.schema import CLASS_NAMES

    base = section(load_params(), "synth", SynthParams)
    model = build_face_model()
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        p = dataclasses.replace(base, size=size)
        cam = Camera(size=size, face_frac=p.face_frac, focal_frac=p.focal_frac)
        t_subject, t_render, frames_by_seq = [], [], []
        for k in range(args.sequences):
            t0 = time.perf_counter()
            subject = make_subject(model, k + 1, p)
            bg = make_background(subject, size)
            t1 = time.perf_counter()
            spec = SequenceSpec(k + 1, "001", CLASS_NAMES[1 + k % 6], SYNTH_POSES[k % len(SYNTH_POSES)])
            gains, pose = sequence_motion(spec, subject, p, cam.px_per_unit)
            clean = []
            for i in range(p.frames):
                a = render(model, subject, gains[i], np.zeros(5), cam, bg)[0]
                b = a if not pose[i].any() else render(model, subject, gains[i], pose[i], cam, bg)[0]
                clean += [a, b]
            t2 = time.perf_counter()
            t_subject.append(t1 - t0)
            t_render.append(t2 - t1)
            frames_by_seq.append(clean)
        grey = [cv2.cvtColor(finish(f, np.zeros((size, size), np.float32)), cv2.COLOR_RGB2GRAY)
                for f in frames_by_seq[0][::2]]
        t0 = time.perf_counter()
        for f in grey[1:]:
            cv2.calcOpticalFlowFarneback(grey[0], f, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        t_flow = (time.perf_counter() - t0) / max(len(grey) - 1, 1)
        for sigma in (float(s) for s in args.noise.split(",")):
            rng = np.random.default_rng(0)
            noisy = [[finish(f, rng.standard_normal((size, size), dtype=np.float32) * sigma) for f in seq]
                     for seq in frames_by_seq]
            for level in (int(v) for v in args.levels.split(",")):
                t_png, nbytes = [], []
                for seq in noisy:
                    t0 = time.perf_counter()
                    enc = [cv2.imencode(".png", f[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, level])[1] for f in seq]
                    t_png.append(time.perf_counter() - t0)
                    nbytes += [len(e) for e in enc]
                rows.append({"size": size, "noise_sigma": sigma, "png_level": level,
                             "subject_s": statistics.median(t_subject),
                             "render_s_per_sequence": statistics.median(t_render),
                             "png_s_per_sequence": statistics.median(t_png),
                             "kb_per_frame": statistics.mean(nbytes) / 1024,
                             "farneback_s": t_flow, "frames_per_sequence": 2 * p.frames})
                r = rows[-1]
                print(f"size {size} noise {sigma} png {level}: render {r['render_s_per_sequence']:.2f} s/seq, "
                      f"png {r['png_s_per_sequence']:.2f} s/seq, {r['kb_per_frame']:.0f} KB/frame "
                      f"(Farneback {t_flow * 1e3:.0f} ms/pair)", flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
