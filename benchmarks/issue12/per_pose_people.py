"""Issue #12 diagnosis: does G_F's frame-to-frame gap closure per pose hold on the people it trained on?

    PYTHONPATH=$PWD python benchmarks/issue12/per_pose_people.py DIR VARIANT [--rows N]

DIR is a benchmarks/issue12/val_neutral.sh folder (tuning split, validation fold 3): G_F of DIR/gan_VARIANT, the
Flow-CNN judge DIR/flowcnn3, synth's store. For the training people and the validation people of fold 3, per large
pose, frame-to-frame rows (N drawn per pose, seed 0; default 400): Flow-CNN accuracy on the input, G_F's output and
the frontal truth, and gap closure. A pose that closes on the training people and not on new ones is learnt per person.
G_F's raw output (`frontalize`), without what `emogan evaluate` adds (evaluate.gf_mirror_mean, the border): its
numbers sit a few points from evaluate's on the same rows; compare them with each other, not with rows.csv.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from per_pose import POSES  # beside this script
from training.checkpoint import load_run
from training.data import check_store, fold_rows, iter_rows, raw_group
from training.evaluation.flowcnn import load_flowcnn
from training.evaluation.metrics import gap_closure

STORE = "data/stores/synth.zarr"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir"), ap.add_argument("variant"), ap.add_argument("--rows", type=int, default=400)
    a = ap.parse_args()
    torch.set_num_threads(1)
    run, judge = load_run(f"{a.dir}/gan_{a.variant}"), load_flowcnn(f"{a.dir}/flowcnn3", fold=3)
    g = raw_group(STORE)
    poses, strategy = np.asarray(g["pose"][:]), np.asarray(g["strategy"][:])
    f2f = list(g.attrs["strategy_names"]).index("frame_to_frame")
    read = lambda flow: judge.logits(flow).argmax(1).numpy()  # noqa: E731  (the judge resizes to its own side)
    for role, name in (("train", "training people"), ("test", "validation people")):
        rows = fold_rows(check_store(STORE), 3, role, f"{a.dir}/synth_tuning.csv", 10)
        for pose in POSES:
            sel = rows[(strategy[rows] == f2f) & (poses[rows] == list(g.attrs["pose_names"]).index(pose))]
            sel = np.sort(np.random.default_rng(0).choice(sel, min(len(sel), a.rows), replace=False))
            hits = {"input": [], "G_F": [], "truth": []}
            arrays = ("flow_input", "flow_target", "label") + (("input_image",) if run.reads_face else ())
            for b in iter_rows(STORE, sel, arrays, 64):
                label = b["label"].numpy()
                with torch.no_grad():
                    hits["G_F"].append(read(run.frontalize(b["flow_input"].float(), b.get("input_image")).cpu()) == label)
                hits["input"].append(read(b["flow_input"]) == label)
                hits["truth"].append(read(b["flow_target"]) == label)
            acc = {k: 100 * float(np.concatenate(v).mean()) for k, v in hits.items()}
            closure = gap_closure(acc["G_F"], acc["input"], acc["truth"])
            print(f"{name:17s} {pose:9s} {len(sel):4d} rows: input {acc['input']:5.1f} -> G_F {acc['G_F']:5.1f} % "
                  f"(truth {acc['truth']:5.1f}), gap closure {'-' if closure is None else f'{closure:.2f}'}")


if __name__ == "__main__":
    main()
