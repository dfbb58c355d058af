"""Issue #12 probe on VALIDATION subjects: test-time changes to G_F's output, no retraining.

    PYTHONPATH=$PWD python benchmarks/issue12/probe_post.py W [VARIANT ...]

W is a `benchmarks/issue12/val_neutral.sh` folder (tuning split, validation fold 3): its trained small config
`gan_full`, Flow-CNN judge `flowcnn3`, e_FER and folds file are reused. Each variant re-runs `emogan evaluate`'s
code (chain included) with G_F's frontalize wrapped, writes W/post_VARIANT/rows.csv and prints the per-strategy
summary of benchmarks/issue12/neutral_rows.py plus the neutral->apex EPE against a zero flow's. Variants:

    base            G_F as trained
    tta             the mean of G_F(x) and the mirror of G_F(mirror of x) (evaluate.gf_mirror_mean)
    shrink_step:T   every G_F output shrunk towards zero by T px (soft threshold of the magnitude), chain steps too
    shrink_out:T    the same on the flows scored only: one-step rows and the chain's composed flow, not its steps
    tta+shrink_out:T

Nothing here is a test fold: the folds file reserves folds 0-2 and validation fold 3 is S004, S005.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import torch

LARGE = ("yaw", "pitch", "roll", "diagonal")


def shrink(px: torch.Tensor, t: float) -> torch.Tensor:
    """Soft threshold of each pixel's flow magnitude (N,2,H,W), px."""
    mag = px.norm(dim=1, keepdim=True)
    return px * (1.0 - t / mag.clamp_min(1e-6)).clamp_min(0.0)


def wrap(variant: str):
    """(frontalize wrapper factory, chain-output transform or None) for a variant name."""
    from training import flowrep

    t_step = float(variant.split("shrink_step:")[1]) if "shrink_step:" in variant else 0.0
    t_out = float(variant.split("shrink_out:")[1]) if "shrink_out:" in variant else 0.0
    state = {"in_chain": False}

    def make(orig):
        def frontalize(self, flow):
            rep, clip = self.representation, self.clip
            y = orig(self, flow)   # `tta`: the run's own mirror mean (evaluate.gf_mirror_mean)
            t = t_step if state["in_chain"] else t_step or t_out
            if t:
                y = flowrep.encode(shrink(flowrep.decode(y, rep, clip), t), rep, clip)
            return y
        return frontalize

    def chain_out(fn):
        def chained(run, store, na_rows, batch_size):
            state["in_chain"] = True
            try:
                out = fn(run, store, na_rows, batch_size)
            finally:
                state["in_chain"] = False
            if t_out:
                rep, clip = run.representation, run.clip
                out = {r: flowrep.encode(shrink(flowrep.decode(f[None], rep, clip), t_out), rep, clip)[0]
                       for r, f in out.items()}
            return out
        return chained

    return make, chain_out


def evaluate(w: Path, variant: str) -> pd.DataFrame:
    import training.checkpoint as ck
    import training.evaluation.chain as chain_mod
    from pipeline.params import load_params
    from pipeline.weights import weights_path
    from training.config import folds_k
    from training.evaluation.evaluate import evaluate_fold, evaluate_params

    prm = load_params(Path(__file__).resolve().parents[2] / "params.yaml")   # this checkout's params
    make, chain_out = wrap(variant)
    orig_f, orig_c = ck.TrainedRun.frontalize, chain_mod.chained_frontalization
    ck.TrainedRun.frontalize = make(orig_f)
    chain_mod.chained_frontalization = chain_out(orig_c)
    out = w / f"post_{variant.replace(':', '_')}"
    lm = Path("data/baselines/synth_landmark.npz")   # the landmark baseline's columns, when `make demo` made it
    try:
        evaluate_fold(w / "gan_full", ["data/stores/synth.zarr"], 3, w / "flowcnn3",
                      {"synth": lm if lm.is_file() else None}, [str(w / "synth_tuning.csv")],
                      folds_k(prm), evaluate_params(prm, gf_mirror_mean="tta" in variant), out, weights_path("fer2013", prm),
                      efer_path=None, crop_margin=float(prm["crop"]["margin"]))
    finally:
        ck.TrainedRun.frontalize, chain_mod.chained_frontalization = orig_f, orig_c
    return pd.read_csv(out / "rows.csv")


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit(__doc__)
    sys.path.insert(0, str(Path(__file__).parent))
    from neutral_rows import summary

    w = Path(argv[0])
    for v in argv[1:] or ["base"]:
        r = evaluate(w, v)
        print(v)
        print("\n".join(summary(r)))
        for s in ("neutral_apex", "frame_to_frame"):
            d = r[(r.strategy == s) & r.pose.isin(LARGE) & (r.dataset == "synth")]
            print(f"  EPE {s}, large: G_F {d.epe_emotiongan.mean():.3f} px, zero {d.epe_zero.mean():.3f} px "
                  f"({d.epe_emotiongan.mean() / d.epe_zero.mean():.2f}x); nothing: G_F "
                  f"{r[(r.strategy == s) & (r.pose == 'nothing')].epe_emotiongan.mean():.3f} px")
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
