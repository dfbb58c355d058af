"""Tuning aid: a local random search over one expression's action-unit recipe, scored by FER2013.

A class's recall depends only on that class's own faces, so each expression is searched alone.
Draw 0 is the current recipe (pipeline.synth.EXPRESSION_AUS, or --base); every other draw moves each weight by
N(0, sigma) (and, with --add, may switch on the listed action units at a small weight). Every draw is
scored on the SEARCH seeds; the best --top and the current recipe are then scored on the CHECK seeds,
which chose nothing so far. Both seed sets must be tuning seeds (100-199): the untuned seeds of
docs/DATASET.md are measured once, after a recipe is fixed, with benchmarks/tune_expressions.py.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/search_recipe.py --expression surprise --draws 30 \
        --search-seeds 100,101,102 --check-seeds 103,104,105 --out /tmp/surprise.json
"""
from __future__ import annotations

import argparse
import json
import time

import cv2
import numpy as np

from benchmarks.tune_expressions import judge, parse_recipe
from pipeline.schema import POSE_NAMES


def _recipe_text(name: str, aus) -> str:
    return f"{name}=" + ",".join(f"{a}:{w:.2f}:{p:.2f}" for a, w, p in aus)


def _draw(w: float, sigma: float, cap: float, rng: np.random.Generator) -> float:
    """w + N(0, sigma), kept on w's side of zero and within cap x |w|."""
    return float(np.sign(w) * np.clip(np.sign(w) * (w + rng.normal(0, sigma)), 0.0, cap * abs(w)))


def _score(expr: str, aus, seeds, people: int, poses, cache: dict) -> tuple[float, list[float]]:
    per_seed = []
    for s in seeds:
        res = judge(s, people, expressions=(expr,), poses=poses, recipes={expr: aus}, cache=cache)
        per_seed.append(res["per_class"].get(expr, 0.0))
    return float(np.mean(per_seed)), per_seed


def main() -> None:
    import pipeline.synth as synth_mod

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--expression", required=True)
    ap.add_argument("--draws", type=int, default=30)
    ap.add_argument("--sigma", type=float, default=0.3)
    ap.add_argument("--add", default="", help="comma-separated action units a draw may switch on")
    ap.add_argument("--search-seeds", default="100,101,102")
    ap.add_argument("--check-seeds", default="103,104,105")
    ap.add_argument("--top", type=int, default=4)
    ap.add_argument("--people", type=int, default=32)
    ap.add_argument("--poses", default=",".join(POSE_NAMES))
    ap.add_argument("--base", default=None, help="start from this recipe (NAME=AU:w:p,...) instead of the current one")
    ap.add_argument("--fixed", default="", help="comma-separated action units whose weight stays at the base's")
    ap.add_argument("--cap", type=float, default=1.5,
                    help="a drawn weight keeps its sign and stays within cap x |base weight| (plausible faces: "
                         "free draws warped cheeks and mouths into shapes no face makes, which the judge still read)")
    ap.add_argument("--rng", type=int, default=0)
    ap.add_argument("--out", default=None, help="JSON of every draw's scores")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    search = [int(s) for s in args.search_seeds.split(",")]
    check = [int(s) for s in args.check_seeds.split(",")]
    if any(not 100 <= s <= 199 for s in search + check):
        raise SystemExit("search and check seeds must be tuning seeds (100-199)")
    if set(search) & set(check):
        raise SystemExit("check seeds must differ from search seeds")
    poses = tuple(args.poses.split(","))
    base = list(synth_mod.EXPRESSION_AUS[args.expression])
    if args.base:
        name, base = parse_recipe(args.base)
        if name != args.expression:
            raise SystemExit(f"--base is a recipe for {name!r}, not {args.expression!r}")
    extra = [a for a in filter(None, args.add.split(",")) if a not in {b[0] for b in base}]
    fixed = set(filter(None, args.fixed.split(",")))
    rng = np.random.default_rng(args.rng)
    draws = [base]
    for _ in range(args.draws):
        aus = [(a, w if a in fixed else _draw(w, args.sigma, args.cap, rng), p) for a, w, p in base]
        aus += [(a, float(rng.uniform(0.2, 0.8)), 1.0) for a in extra if rng.uniform() < 0.5]
        draws.append(aus)
    cache: dict = {}
    rows = []
    t0 = time.perf_counter()
    for k, aus in enumerate(draws):
        mean, per = _score(args.expression, aus, search, args.people, poses, cache)
        rows.append({"draw": k, "recipe": _recipe_text(args.expression, aus), "search": mean, "search_per_seed": per})
        print(f"draw {k:3d} search {mean:.3f} {['%.2f' % v for v in per]}  {time.perf_counter() - t0:.0f} s", flush=True)
    order = sorted(range(1, len(rows)), key=lambda k: -rows[k]["search"])[: args.top]
    for k in [0] + order:
        mean, per = _score(args.expression, draws[k], check, args.people, poses, cache)
        rows[k].update(check=mean, check_per_seed=per)
        print(f"CHECK draw {k:3d} search {rows[k]['search']:.3f} check {mean:.3f} {['%.2f' % v for v in per]}  "
              f"{rows[k]['recipe']}", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
