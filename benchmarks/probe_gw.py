"""Probes for G_W (issue #13): which design warps a neutral face into the expressive frontal face best.

Validation protocol (docs/research/gw.md): folds 0, 1, 2 are the final test folds and never enter a probe.
`subset` writes tuning stores holding only the subjects of the other folds, with a folds file that puts the
validation subjects (folds 3 and 4) in fold 3, the held-out fold of every probe; the training rows are folds 5-9.

Usage (PYTHONPATH=$PWD, the project's venv):
  probe_gw.py subset SRC_STORE... --folds F... --out DIR    tuning stores + DIR/<name>_folds.csv
  probe_gw.py assemble CROPS --parts P --folds F --data-params Y --out DIR   the same from the flow stage's parts
  probe_gw.py train-gw STORE... --out DIR [--set KEY=VALUE]  G_W alone on the ground-truth flows (small config)
  probe_gw.py eval STORE... --gw DIR [--gf RUN] --out FILE   SSIM, FER2013 (and the run's e_FER) per pose
  probe_gw.py grid STORE... --gw DIR [--gf RUN] --out PNG    neutral | warp only | G_W(GT) | G_W(G_F) | truth
`--set` overrides keys of params.yaml's `train.small` (JSON values), e.g. --set 'nets={"gw": {...}}' or
--set perceptual=fer2013: the probe trains with exactly the loop's G_W losses (training.loop._gw_losses).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.errors import EmoganError  # noqa: E402
from pipeline.schema import CLASS_NAMES, POSE_NAMES, STORE_ARRAYS, STRATEGY_NAMES  # noqa: E402

TEST_FOLDS = (0, 1, 2)      # reserved for the final committed result: never read by a probe
VAL_FOLDS = (3, 4)          # validation subjects, all put in fold HELD
HELD = 3


# --- tuning stores ------------------------------------------------------------------------------

def subset(src: Path, out_dir: Path, folds_file: Path, batch: int = 256) -> Path:
    """Copy the rows of `src` whose subjects are outside TEST_FOLDS; write `<name>_folds.csv` beside."""
    import zarr

    from pipeline.folds import read_folds
    from pipeline.store import RowWriter, atomic_dir, create_store
    from training.data import iter_rows

    folds = read_folds(folds_file)
    g = zarr.open_group(str(src), mode="r")
    attrs = dict(g.attrs)
    ids = list(attrs["subject_ids"])
    keep_ids = [s for s in ids if folds[s] not in TEST_FOLDS]
    code = {ids.index(s): i for i, s in enumerate(keep_ids)}
    subj = np.asarray(g["subject"][:])
    rows = np.flatnonzero(np.isin(subj, list(code)))
    name = src.name
    out = out_dir / name
    arrays = sorted(g.array_keys())
    extra = {k: (("N",) + tuple(g[k].shape[1:]), g[k].dtype.str) for k in arrays if k not in STORE_ARRAYS}
    new_attrs = {k: v for k, v in attrs.items() if k not in ("chunk_rows", "size")}
    new_attrs.update({"subject_ids": keep_ids, "tuning_subset": {
        "source": str(src), "dropped_folds": list(TEST_FOLDS), "rows": int(len(rows))}})
    with atomic_dir(out) as tmp:
        dst = create_store(tmp, len(rows), int(attrs["size"]), new_attrs, extra_arrays=extra)
        w = RowWriter(dst, arrays)
        for b in iter_rows(str(src), rows, arrays, batch):
            b = {k: v.numpy() for k, v in b.items()}
            b["subject"] = np.vectorize(code.get)(b["subject"]).astype(b["subject"].dtype)
            w.append(b)
        w.close()
    stem = name.removesuffix(".zarr")
    lines = ["subject,fold"] + [f"{s},{HELD if folds[s] in VAL_FOLDS else folds[s]}" for s in keep_ids]
    (out_dir / f"{stem}_folds.csv").write_text("\n".join(lines) + "\n")
    print(f"{out}: {len(rows)} of {len(subj)} rows, subjects {keep_ids} (validation: "
          f"{[s for s in keep_ids if folds[s] in VAL_FOLDS]})")
    return out


def assemble(crops_dir: Path, parts_dir: Path, folds_file: Path, data_params: Path, out_dir: Path) -> Path:
    """A tuning store from the flow stage's committed per-sequence parts (while the stage still runs): the subjects
    outside TEST_FOLDS whose every sequence is done, assembled and normalized by the pipeline's own functions."""
    from pipeline import flow as fl
    from pipeline.folds import read_folds
    from pipeline.normalize import load_normalize_params, normalize_store
    from pipeline.params import load_params

    params = load_params(data_params)
    folds = read_folds(folds_file)
    rows = fl.read_crops_csv(crops_dir)
    per_subject: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        per_subject.setdefault(r["subject"], []).append(i)
    keep = [i for s, idx in per_subject.items() if folds[s] not in TEST_FOLDS
            and all((parts_dir / f"{i:06d}.npz").is_file() for i in idx) for i in idx]
    if not keep:
        raise EmoganError(f"{parts_dir}: no subject outside the test folds is complete yet")
    name = crops_dir.name
    flows = out_dir / "flows" / f"{name}.zarr"
    flows.parent.mkdir(parents=True, exist_ok=True)
    fl._assemble(crops_dir, flows, parts_dir, rows, sorted(keep), fl.load_flow_params(params), "partial", [], name)
    normalize_store(flows, out_dir / f"{name}.zarr", load_normalize_params(params))
    subjects = sorted({rows[i]["subject"] for i in keep})
    lines = ["subject,fold"] + [f"{s},{HELD if f in VAL_FOLDS else f}" for s, f in sorted(folds.items())]
    (out_dir / f"{name}_folds.csv").write_text("\n".join(lines) + "\n")
    print(f"{out_dir / (name + '.zarr')}: {len(keep)} sequences of {subjects}")
    return out_dir / f"{name}.zarr"


# --- shared -------------------------------------------------------------------------------------

def folds_of(store: str) -> Path:
    return Path(store).parent / (Path(store).name.removesuffix(".zarr") + "_folds.csv")


def rows_of(store: str, role: str) -> np.ndarray:
    """Training (fold != HELD) or validation (fold == HELD) rows of a tuning store; refuses a test-fold subject."""
    from pipeline.folds import store_folds

    f = store_folds(store, folds_of(store))
    if np.isin(f, TEST_FOLDS).any():
        raise EmoganError(f"{store}: holds test-fold subjects; probes run on `subset` stores only")
    return np.flatnonzero(f == HELD) if role == "val" else np.flatnonzero(f != HELD)


def small_config(sets: list[str]) -> dict[str, Any]:
    """params.yaml train.small as a dict, `KEY=JSON` overrides applied (nets merged role by role)."""
    from pipeline.params import as_dict, load_params
    from training.config import train_config

    t = as_dict(train_config(load_params(ROOT / "params.yaml"), "small"))
    for s in sets:
        k, v = s.split("=", 1)
        v = json.loads(v)
        if k == "nets":
            t["nets"] = {**t["nets"], **v}
        elif k in ("optim", "efer"):
            t[k] = {**t[k], **v} if k == "efer" else {**t[k], **{r: {**t[k][r], **o} for r, o in v.items()}}
        else:
            t[k] = v
    return t


def load_gw(d: Path) -> torch.nn.Module:
    """G_W of a probe folder (gw.safetensors + config.json) or of an `emogan train` run folder."""
    from safetensors.torch import load_file

    from training.registry import build_from

    if (d / "gw.safetensors").is_file():
        cfg = json.loads((d / "config.json").read_text())
        net = build_from(cfg["train"]["nets"]["gw"])
        net.load_state_dict(load_file(str(d / "gw.safetensors")))
        return net.eval()
    from training.run import load_run

    return load_run(d).gw.eval()


def efer_spec(t: dict[str, Any], efer_path: str | None) -> dict[str, Any]:
    e = dict(t["efer"])
    if efer_path:
        e["path"] = efer_path
    return e


# --- training G_W alone -------------------------------------------------------------------------

def train_gw(stores: list[str], out: Path, steps: int, sets: list[str], efer_path: str | None,
             log_every: int = 50) -> None:
    """G_W trained alone on the ground-truth flows of the image rows of the training subjects."""
    from safetensors.torch import save_file

    from training.data import GAN_ARRAYS, StreamingStoreDataset, check_store, make_loader
    from training.efer import load_efer, perceptual_backbone
    from training.gw_warp import complete_spec
    from training.loop import Dist, StepContext, _gw_losses, autocast_ctx, image_rows, make_optimizer, mirror_batch, \
        to_device
    from training.registry import build_from

    t = small_config(sets)
    infos = [check_store(s) for s in stores]
    rep, clip = infos[0].representation, infos[0].clip
    t["nets"]["gw"] = complete_spec(t["nets"]["gw"], infos)
    torch.manual_seed(t["seed"])
    gw = build_from(t["nets"]["gw"])
    efer, efer_info = load_efer(efer_spec(t, efer_path), fold=HELD)
    perc, _, perc_info = perceptual_backbone(t["perceptual"], efer)
    opt = make_optimizer(gw.parameters(), t["optim"]["gw"], t["fused_optim"])
    rows = []
    for s in stores:
        r = rows_of(s, "train")
        import zarr

        st = np.asarray(zarr.open_group(s, mode="r")["step"][:])[r]
        rows.append(r[image_rows(torch.from_numpy(st.astype(np.int64)), t["image_steps"]).numpy()])
    ds = StreamingStoreDataset(stores, rows, [i.chunk_rows for i in infos], GAN_ARRAYS, t["batch_size"],
                               seed=t["seed"], buffer_chunks=t["buffer_chunks"], workers=0)
    ctx = StepContext({"gw": gw}, {"gw": gw}, {"gw": opt}, efer, perc, t, autocast_ctx(t, torch.device("cpu")),
                      Dist(), torch.device("cpu"), rep, clip)
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "log.jsonl", "w")
    gen = torch.Generator()
    step, epoch, t0 = 0, 0, time.time()
    sums: dict[str, float] = {}
    while step < steps:
        ds.set_epoch(epoch)
        gen.manual_seed(t["seed"] + epoch)
        for batch in make_loader(ds):
            b = to_device(batch, torch.device("cpu"), t["size"], rep, clip)
            if t.get("hflip"):
                b = mirror_batch(b, rep, clip, gen)
            losses = _gw_losses(gw(b["flow_target"], b["neutral"]), b["target_image"], b["label"], ctx)
            opt.zero_grad(set_to_none=True)
            losses["gw"].backward()
            opt.step()
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            step += 1
            if step % log_every == 0 or step == steps:
                rec = {"step": step, "s_per_step": (time.time() - t0) / step,
                       **{k: v / log_every for k, v in sums.items()}}
                log.write(json.dumps(rec) + "\n")
                log.flush()
                print(json.dumps(rec), flush=True)
                sums = {}
            if step >= steps:
                break
        epoch += 1
    save_file({k: v.contiguous() for k, v in gw.state_dict().items()}, str(out / "gw.safetensors"))
    (out / "config.json").write_text(json.dumps({"train": t, "stores": stores, "steps": steps, "sets": sets,
                                                 "efer": efer_info, "perceptual": perc_info,
                                                 "rows": [int(len(r)) for r in rows]}, indent=1) + "\n")


# --- evaluation ---------------------------------------------------------------------------------

def _faces(gw, gf_run, b, size: int, rep: str, clip: float) -> dict[str, torch.Tensor]:
    """uint8 (n,3,size,size) faces of a batch: truth, neutral, non-frontal, warp only, G_W(GT), G_W(G_F)."""
    from training.evaluate import _resize_img_u8
    from training.loop import resize_flow

    def u8(x):
        return ((x.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)

    neutral = _resize_img_u8(b["neutral"], size)
    x = neutral.float() / 127.5 - 1
    gt = resize_flow(b["flow_target"].float(), size, rep, clip)
    out = {"frontal_gt": _resize_img_u8(b["target_image"], size), "neutral": neutral,
           "nonfrontal": _resize_img_u8(b["input_image"], size), "gw_gt": u8(gw(gt, x))}
    if hasattr(gw, "warp"):
        out["warp_gt"] = u8(gw.warp(gt, x)[0])
    if gf_run is not None:
        fr = gf_run.frontalize(b["flow_input"].float())
        out["gw_gf"] = u8(gw(fr, x))
        if hasattr(gw, "warp"):
            out["warp_gf"] = u8(gw.warp(fr, x)[0])
    return out


@torch.no_grad()
def evaluate(stores: list[str], gw_dir: Path, gf_dir: Path | None, size: int = 64) -> dict[str, Any]:
    """Neutral-apex rows of the validation subjects: SSIM vs the frontal truth, FER2013 accuracy per face source,
    the ratio to the real frontal faces, per dataset and pose; the checkerboard ratio of G_W(GT) vs the neutral."""
    import zarr

    from training.data import iter_rows
    from training.evaluate import accuracy, ssim_u8
    from training.fer2013 import load_fer2013
    from training.gw_warp import nyquist_share
    from training.run import load_run

    gw = load_gw(gw_dir)
    gf_run = load_run(gf_dir) if gf_dir else None
    fer = load_fer2013()
    recs: dict[str, list] = {}
    for s in stores:
        g = zarr.open_group(s, mode="r")
        rep, clip = str(g.attrs["representation"]), float(g.attrs["clip"])
        r = rows_of(s, "val")
        strat = np.asarray(g["strategy"][:])[r]
        r = r[strat == STRATEGY_NAMES.index("neutral_apex")]
        name = Path(s).name.removesuffix(".zarr")
        for b in iter_rows(s, r, ("flow_input", "flow_target", "neutral", "target_image", "input_image", "label",
                                  "pose"), 32):
            faces = _faces(gw, gf_run, b, size, rep, clip)
            n = len(b["label"])
            recs.setdefault("dataset", []).extend([name] * n)
            recs.setdefault("pose", []).extend(POSE_NAMES[int(p)] if 0 <= int(p) < len(POSE_NAMES) else "?"
                                               for p in b["pose"])
            recs.setdefault("label", []).extend(b["label"].tolist())
            tgt = faces["frontal_gt"].numpy()
            for k, im in faces.items():
                recs.setdefault(f"fer_{k}", []).extend(fer(im.float() / 255).argmax(1).tolist())
                if k != "frontal_gt":
                    recs.setdefault(f"ssim_{k}", []).extend(ssim_u8(im.numpy(), tgt, 7).tolist())
            recs.setdefault("nyq_gw_gt", []).extend(nyquist_share(faces["gw_gt"].float()).tolist())
            recs.setdefault("nyq_neutral", []).extend(nyquist_share(faces["neutral"].float()).tolist())
    a = {k: np.asarray(v) for k, v in recs.items()}
    sources = [k[4:] for k in a if k.startswith("fer_")]

    def summary(m: np.ndarray) -> dict[str, Any]:
        lab = a["label"][m]
        acc = {k: accuracy(lab, a[f"fer_{k}"][m]) for k in sources}
        return {"n": int(m.sum()),
                "ssim": {k: float(a[f"ssim_{k}"][m].mean()) for k in sources if f"ssim_{k}" in a},
                "fer2013": acc,
                "fer2013_vs_real": {k: (acc[k] / acc["frontal_gt"] if acc["frontal_gt"] else None)
                                    for k in sources if k != "frontal_gt"},
                "checkerboard_gw_gt": float(a["nyq_gw_gt"][m].mean() / a["nyq_neutral"][m].mean())}

    out: dict[str, Any] = {"all": summary(np.ones(len(a["label"]), bool))}
    for d in sorted(set(a["dataset"])):
        md = a["dataset"] == d
        out[d] = summary(md)
        for p in [p for p in POSE_NAMES if p in set(a["pose"][md])]:
            out[f"{d}/{p}"] = summary(md & (a["pose"] == p))
    out["_meta"] = {"gw": str(gw_dir), "gf": str(gf_dir) if gf_dir else None, "size": size,
                    "rows": "neutral_apex rows of the validation subjects (tuning folds 3+4)",
                    "classes": list(CLASS_NAMES)}
    return out


@torch.no_grad()
def grid(stores: list[str], gw_dir: Path, gf_dir: Path | None, out: Path, per_pose: int = 1, size: int = 64,
         scale: int = 2) -> None:
    """A PNG: one line per validation row (one expressive apex per pose), columns neutral | warp only | G_W(GT) |
    G_W(G_F) | truth (and the non-frontal input first)."""
    import cv2
    import zarr

    from training.data import iter_rows
    from training.run import load_run

    gw = load_gw(gw_dir)
    gf_run = load_run(gf_dir) if gf_dir else None
    lines = []
    for s in stores:
        g = zarr.open_group(s, mode="r")
        rep, clip = str(g.attrs["representation"]), float(g.attrs["clip"])
        r = rows_of(s, "val")
        strat, lab, pose = (np.asarray(g[k][:])[r] for k in ("strategy", "label", "pose"))
        pick, seen = [], {}
        for i in np.flatnonzero((strat == STRATEGY_NAMES.index("neutral_apex")) & (lab > 0)):
            if seen.get(int(pose[i]), 0) < per_pose and int(lab[i]) not in [int(lab[j]) for j in pick[-2:]]:
                seen[int(pose[i])] = seen.get(int(pose[i]), 0) + 1
                pick.append(i)
        for b in iter_rows(s, r[pick], ("flow_input", "flow_target", "neutral", "target_image", "input_image",
                                        "label", "pose"), 64):
            faces = _faces(gw, gf_run, b, size, rep, clip)
            cols = [k for k in ("nonfrontal", "neutral", "warp_gt", "gw_gt", "gw_gf", "frontal_gt") if k in faces]
            for i in range(len(b["label"])):
                lines.append(np.concatenate([faces[k][i].permute(1, 2, 0).numpy() for k in cols], 1))
    img = np.concatenate(lines, 0)
    img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    print(f"{out}: columns {cols}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("subset")
    a.add_argument("src", nargs="+", type=Path)
    a.add_argument("--folds", nargs="+", type=Path, required=True, help="the source stores' folds files")
    a.add_argument("--out", type=Path, required=True)
    a = sub.add_parser("assemble")
    a.add_argument("crops", type=Path)
    a.add_argument("--parts", type=Path, required=True)
    a.add_argument("--folds", type=Path, required=True)
    a.add_argument("--data-params", type=Path, required=True, help="the params.yaml that made the parts")
    a.add_argument("--out", type=Path, required=True)
    a = sub.add_parser("train-gw")
    a.add_argument("stores", nargs="+")
    a.add_argument("--out", type=Path, required=True)
    a.add_argument("--steps", type=int, default=1000)
    a.add_argument("--set", action="append", default=[])
    a.add_argument("--efer-path")
    for name in ("eval", "grid"):
        a = sub.add_parser(name)
        a.add_argument("stores", nargs="+")
        a.add_argument("--gw", type=Path, required=True)
        a.add_argument("--gf", type=Path)
        a.add_argument("--out", type=Path, required=True)
    x = ap.parse_args()
    torch.set_num_threads(2)
    if x.cmd == "subset":
        x.out.mkdir(parents=True, exist_ok=True)
        for s, f in zip(x.src, x.folds):
            subset(s, x.out, f)
    elif x.cmd == "assemble":
        assemble(x.crops, x.parts, x.folds, x.data_params, x.out)
    elif x.cmd == "train-gw":
        train_gw(x.stores, x.out, x.steps, x.set, x.efer_path)
    elif x.cmd == "eval":
        m = evaluate(x.stores, x.gw, x.gf)
        x.out.parent.mkdir(parents=True, exist_ok=True)
        x.out.write_text(json.dumps(m, indent=1) + "\n")
        for k in ("all", "synth", "synth_ckplus"):
            if k in m:
                print(k, json.dumps({kk: m[k][kk] for kk in ("n", "ssim", "fer2013", "fer2013_vs_real")}))
    else:
        grid(x.stores, x.gw, x.gf, x.out)


if __name__ == "__main__":
    main()
