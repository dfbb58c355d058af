"""`emogan evaluate MODEL STORE... --fold K`: eMotion-GAN judged the way the paper does it (section IV-B, V).

On the held-out fold of each store, for every row (a flow pair):
- flows: EPE, in source-crop pixels, of the non-frontal input, the landmark-frontalized flow
  (training/baselines.py) and G_F's frontalized flow, each against the frontal ground truth;
- images: SSIM and RMSE (grey levels) against the frontal expressive face of G_W's output warped
  from the frontalized flow and from the ground-truth flow, and of the non-frontal and
  landmark-frontalized faces;
- motion-domain FER: the fold's Flow-CNN (training/flowcnn.py) on the ground-truth frontal,
  non-frontal, landmark and frontalized flows; image-domain FER: the run's e_FER and the
  pretrained FER2013 judge on the ground-truth frontal face, the non-frontal face, the landmark
  face and both warped faces.
Everything is scored on one grid (`evaluate.size`, default the model's side): flows are
area-averaged as (u, v), faces area-resized. Per-row results go to rows.csv; summaries by
dataset x pose (and pose groups) x strategy, with confusion matrices, to breakdown.json; the
headline numbers to metrics.json (DVC metrics); a few rows per pose to samples.npz (figures).

Delta, the paper's "percent improvement in recognition accuracy between non-frontalized and
frontalized" faces, is relative: 100 * (acc_frontalized - acc_nonfrontal) / acc_nonfrontal; the
difference in points is reported beside it (`gain_pts`).
"""
from __future__ import annotations

import csv
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from pipeline.errors import EmoganError
from pipeline.schema import CLASS_NAMES, POSE_NAMES, STRATEGY_NAMES

log = logging.getLogger(__name__)

# Flow sources scored by the motion judge, and image sources scored by the image judges.
FLOW_METHODS: tuple[str, ...] = ("frontal_gt", "nonfrontal", "landmark", "emotiongan")
IMAGE_METHODS: tuple[str, ...] = ("frontal_gt", "nonfrontal", "landmark", "emotiongan", "gw_gt")
EPE_METHODS: tuple[str, ...] = ("nonfrontal", "landmark", "emotiongan")
SIM_METHODS: tuple[str, ...] = ("nonfrontal", "landmark", "emotiongan", "gw_gt")
JUDGES: dict[str, tuple[str, ...]] = {"flowcnn": FLOW_METHODS, "efer": IMAGE_METHODS, "fer2013": IMAGE_METHODS}
ROW_KEYS: tuple[str, ...] = ("dataset", "row", "subject", "sequence", "pose", "strategy", "step", "label")
ALL = "all"


@dataclass
class EvaluateParams:
    """params.yaml `evaluate:`: what `emogan evaluate` scores and the cross-validation driver runs."""

    folds: tuple[int, ...] = (0, 1)          # held-out folds the CV driver runs (the paper: all k)
    ablations: tuple[str, ...] = ("no_rec", "no_de", "no_gw")   # Table IV variants run beside the full model
    strategies: tuple[str, ...] = ("neutral_apex", "frame_to_frame")   # rows scored (flows)
    image_strategies: tuple[str, ...] = ("neutral_apex",)   # rows whose faces are warped and judged too
    size: int | None = None                  # evaluation grid; null: the model's side
    batch_size: int = 64
    samples_per_pose: int = 2                # rows per (dataset, pose) kept for the figures
    # Pose groups reported beside single poses; `large` is the acceptance check's group.
    pose_groups: dict[str, list[str]] = field(default_factory=lambda: {
        "large": ["yaw", "pitch", "roll", "diagonal"], "small": ["nothing", "tx"]})
    ssim_window: int = 7                     # SSIM Gaussian-free window side (skimage), odd
    flowcnn: dict[str, Any] = field(default_factory=dict)    # -> training.flowcnn.FlowCnnParams
    landmark: dict[str, Any] = field(default_factory=dict)   # -> training.baselines.LandmarkParams


def evaluate_params(params: dict[str, Any], **overrides: Any) -> EvaluateParams:
    """params.yaml `evaluate:` (unknown keys are errors), validated."""
    from pipeline.params import ParamsError, section

    p = section(params, "evaluate", EvaluateParams, **overrides)
    bad = [s for s in (*p.strategies, *p.image_strategies) if s not in STRATEGY_NAMES]
    if bad:
        raise ParamsError(f"evaluate.strategies/image_strategies: unknown {bad}; known {list(STRATEGY_NAMES)}")
    for g, poses in p.pose_groups.items():
        unknown = [x for x in poses if x not in POSE_NAMES]
        if unknown or g in POSE_NAMES or g == ALL:
            raise ParamsError(f"evaluate.pose_groups.{g}: unknown pose(s) {unknown} or a name that is a pose")
    if p.ssim_window < 3 or p.ssim_window % 2 == 0:
        raise ParamsError("evaluate.ssim_window must be odd and >= 3")
    return p


# --- metrics on hand-checkable arrays ---------------------------------------------------------

def epe_px(pred_px: np.ndarray, gt_px: np.ndarray) -> np.ndarray:
    """End-point error per sample, (N,): mean over pixels of |pred - gt| for (N,2,H,W) flows in pixels."""
    d = np.asarray(pred_px, np.float64) - np.asarray(gt_px, np.float64)
    return np.sqrt((d ** 2).sum(axis=1)).reshape(len(d), -1).mean(axis=1)


def rmse_u8(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Root-mean-square error per image, (N,), in grey levels [0, 255], for (N,C,H,W) uint8 images."""
    d = np.asarray(pred, np.float64) - np.asarray(target, np.float64)
    return np.sqrt((d ** 2).reshape(len(d), -1).mean(axis=1))


def ssim_u8(pred: np.ndarray, target: np.ndarray, window: int = 7) -> np.ndarray:
    """Structural similarity per image, (N,), for (N,C,H,W) uint8 images (skimage, data range 255)."""
    from skimage.metrics import structural_similarity

    out = np.empty(len(pred))
    for i, (a, b) in enumerate(zip(pred, target)):
        out[i] = structural_similarity(np.asarray(a), np.asarray(b), channel_axis=0, data_range=255,
                                       win_size=window)
    return out


def confusion(labels: np.ndarray, preds: np.ndarray, n_classes: int = len(CLASS_NAMES)) -> np.ndarray:
    """(n_classes, n_classes) counts, rows = true class, columns = predicted; unlabeled (-1) rows skipped."""
    labels, preds = np.asarray(labels), np.asarray(preds)
    ok = (labels >= 0) & (labels < n_classes) & (preds >= 0)
    m = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(m, (labels[ok], preds[ok]), 1)
    return m


def accuracy(labels: np.ndarray, preds: np.ndarray) -> float | None:
    """Fraction of labeled rows predicted right, in [0, 1]; None when no row is labeled."""
    c = confusion(labels, preds)
    n = c.sum()
    return float(np.trace(c) / n) if n else None


def delta_percent(acc_after: float | None, acc_before: float | None) -> float | None:
    """The paper's Delta: percent improvement of accuracy, 100 (after - before) / before; None if undefined."""
    if acc_after is None or acc_before is None or acc_before <= 0:
        return None
    return 100.0 * (acc_after - acc_before) / acc_before


def gain_points(acc_after: float | None, acc_before: float | None) -> float | None:
    """Accuracy difference in percentage points, 100 (after - before)."""
    if acc_after is None or acc_before is None:
        return None
    return 100.0 * (acc_after - acc_before)


# --- summaries -----------------------------------------------------------------------------

def _mean(x: np.ndarray) -> float | None:
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else None


def group_masks(records: Mapping[str, np.ndarray], pose_groups: Mapping[str, Sequence[str]]) -> dict[tuple[str, str, str], np.ndarray]:
    """(dataset, pose, strategy) -> row mask, each key also `all`; poses also by the named groups."""
    ds, pose, strat = (np.asarray(records[k]).astype(str) for k in ("dataset", "pose", "strategy"))
    d_keys = [ALL] + sorted(set(ds))
    present = [p for p in POSE_NAMES if p in set(pose)] + sorted(set(pose) - set(POSE_NAMES))
    p_keys = [ALL] + present + [g for g, members in pose_groups.items() if set(members) & set(pose)]
    s_keys = [ALL] + [s for s in STRATEGY_NAMES if s in set(strat)]
    out = {}
    for d in d_keys:
        md = np.ones(len(ds), bool) if d == ALL else ds == d
        for p in p_keys:
            if p == ALL:
                mp = np.ones(len(ds), bool)
            elif p in pose_groups:
                mp = np.isin(pose, list(pose_groups[p]))
            else:
                mp = pose == p
            for s in s_keys:
                m = md & mp & (np.ones(len(ds), bool) if s == ALL else strat == s)
                if m.any():
                    out[d, p, s] = m
    return out


def summarize(records: Mapping[str, np.ndarray], mask: np.ndarray, with_confusion: bool = False) -> dict[str, Any]:
    """Metrics of the rows in `mask`: n, EPE, SSIM, RMSE means; accuracies, Delta and gains per judge."""
    lab = np.asarray(records["label"])[mask]
    out: dict[str, Any] = {"n": int(mask.sum()), "labeled": int((lab >= 0).sum())}
    out["epe_px"] = {m: _mean(np.asarray(records[f"epe_{m}"])[mask]) for m in EPE_METHODS if f"epe_{m}" in records}
    out["ssim"] = {m: _mean(np.asarray(records[f"ssim_{m}"])[mask]) for m in SIM_METHODS if f"ssim_{m}" in records}
    out["rmse"] = {m: _mean(np.asarray(records[f"rmse_{m}"])[mask]) for m in SIM_METHODS if f"rmse_{m}" in records}
    for judge, methods in JUDGES.items():
        acc, delta, gain, conf = {}, {}, {}, {}
        for m in methods:
            key = f"{judge}_{m}"
            if key not in records or (np.asarray(records[key])[mask] < 0).all():
                continue
            pred = np.asarray(records[key])[mask]
            acc[m] = accuracy(lab, pred)
            if with_confusion:
                conf[m] = confusion(lab, pred).tolist()
        for m in acc:
            if m not in ("nonfrontal", "frontal_gt"):
                delta[m] = delta_percent(acc[m], acc.get("nonfrontal"))
                gain[m] = gain_points(acc[m], acc.get("nonfrontal"))
        if acc:
            out[judge] = {"accuracy": acc, "delta_percent": delta, "gain_pts": gain}
            if with_confusion:
                out[judge]["confusion"] = conf
    return out


def breakdown(records: Mapping[str, np.ndarray], pose_groups: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """Summaries keyed "dataset/pose/strategy" (each also `all`); confusion matrices where pose and strategy are `all`."""
    out = {}
    for (d, p, s), m in group_masks(records, pose_groups).items():
        out[f"{d}/{p}/{s}"] = summarize(records, m, with_confusion=(s == ALL and (p == ALL or p in pose_groups)))
    return out


def headline(bd: Mapping[str, Any]) -> dict[str, Any]:
    """The compact DVC metrics of a breakdown: per dataset and for all, all poses and the pose groups, all strategies."""
    out: dict[str, Any] = {}
    for key, s in bd.items():
        d, p, st = key.split("/")
        if st != ALL or (p != ALL and p not in ("large", "small")):
            continue
        h: dict[str, Any] = {"n": s["n"], "epe_px": s["epe_px"], "ssim": s["ssim"], "rmse": s["rmse"]}
        for judge in JUDGES:
            if judge in s:
                h[judge] = {"accuracy": s[judge]["accuracy"], "delta_percent": s[judge]["delta_percent"],
                            "gain_pts": s[judge]["gain_pts"]}
        out.setdefault(d, {})[p] = h
    return out


# --- reading rows and running the models ------------------------------------------------------

def write_rows_csv(records: Mapping[str, np.ndarray], path: Path) -> None:
    """Per-row results as CSV (one line per evaluated flow pair)."""
    keys = list(records)
    n = len(records[keys[0]])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(keys)
        for i in range(n):
            row = []
            for k in keys:
                v = records[k][i]
                if isinstance(v, (float, np.floating)):
                    row.append("" if not math.isfinite(float(v)) else f"{float(v):.6g}")
                else:
                    row.append(v.item() if isinstance(v, np.generic) else v)
            w.writerow(row)


def read_rows_csv(path: Path | str) -> dict[str, np.ndarray]:
    """rows.csv back into column arrays (codes and predictions int, metrics float, names str)."""
    with open(path, newline="") as f:
        r = csv.DictReader(f)
        cols: dict[str, list[str]] = {k: [] for k in (r.fieldnames or [])}
        for line in r:
            for k, v in line.items():
                cols[k].append(v)
    out: dict[str, np.ndarray] = {}
    for k, v in cols.items():
        if k in ("dataset", "pose", "strategy", "subject"):
            out[k] = np.asarray(v, dtype=str)
        elif k.startswith(("epe_", "ssim_", "rmse_")):
            out[k] = np.asarray([float(x) if x != "" else np.nan for x in v])
        else:
            out[k] = np.asarray([int(x) for x in v], dtype=np.int64)
    return out


def dataset_name(store: str | Path) -> str:
    """`data/stores/synth.zarr` -> `synth`."""
    name = Path(str(store).rstrip("/")).name
    return name[:-5] if name.endswith(".zarr") else name


def _same_path(a: str | Path, b: str | Path) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def check_held_out(run_config: Mapping[str, Any], store: str, test_subjects: set[str]) -> None:
    """Refuse a model whose training rows of `store` include a held-out subject (it would be judged on its training data)."""
    from training.data import check_store, fold_rows
    from training.flowcnn import subjects_of

    for s, ff in zip(run_config["stores"], run_config["folds_files"]):
        if not _same_path(s, store):
            continue
        info = check_store(store)
        rows = fold_rows(info, int(run_config["fold"]), "train", Path(ff) if ff else None, int(run_config["folds_k"]))
        seen = test_subjects & set(subjects_of(store, rows))
        if seen:
            raise EmoganError(f"{store}: the model was trained on held-out subject(s) {sorted(seen)} "
                              f"(its fold is {run_config['fold']}); evaluate it on its own held-out fold")


def _pose_name(code: int, names: Sequence[str]) -> str:
    return names[code] if 0 <= code < len(names) else "unknown"


@dataclass
class Judges:
    """The classifiers of one fold: motion (Flow-CNN) and image (the run's e_FER, the FER2013 judge)."""

    flowcnn: Any
    efer: Any
    fer2013: Any | None
    info: dict[str, Any]


def load_judges(run, fold: int, flowcnn_dir: Path | str) -> Judges:
    """The fold's Flow-CNN, the run's own e_FER (held-out fold checked), and the FER2013 judge when its weights are there."""
    from training.efer import load_efer
    from training.fer2013 import default_weights_path, load_fer2013
    from training.flowcnn import load_flowcnn

    fc = load_flowcnn(flowcnn_dir, fold=fold)
    efer, efer_info = load_efer(run.config["train"]["efer"], fold=fold)
    info: dict[str, Any] = {"flowcnn": {"path": str(flowcnn_dir),
                                        "test_accuracy_frontal_gt": fc.meta["metrics"]["test_accuracy_frontal_gt"]},
                            "efer": efer_info}
    fer = None
    p = default_weights_path()
    if p.is_file():
        fer = load_fer2013(p)
        info["fer2013"] = {"path": str(p)}
    else:
        log.warning("%s: FER2013 weights not found (`emogan weights fetch fer2013`): its columns are left out", p)
        info["fer2013"] = {"missing": str(p)}
    return Judges(fc, efer.eval(), fer, info)


def _img_float(u8):
    return u8.float() / 255.0


def _resize_img_u8(x, size: int):
    """(N,3,S,S) uint8 tensor -> (N,3,size,size) uint8 by area averaging (or bilinear when enlarging)."""
    import torch.nn.functional as F

    if x.shape[-1] == size:
        return x
    mode = "area" if x.shape[-1] > size else "bilinear"
    y = F.interpolate(x.float(), size=(size, size), mode=mode)
    return y.round().clamp(0, 255).to(x.dtype)


def _predict(model, imgs_u8) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(_img_float(imgs_u8)).argmax(1).cpu().numpy()


def _flows_of(run, b, size: int, rep: str, clip: float, landmark, lm_index) -> tuple[dict[str, Any], np.ndarray | None]:
    """Normalized flows (n,2,size,size) per method for a batch, and which rows have a landmark result."""
    import torch

    from training.loop import resize_flow

    from training import flowrep

    y = b["flow_input"].float()
    # The input is judged and scored as the frontal flows are encoded (re-clipped when the store's
    # clip_input differs); G_F reads it as stored.
    inp = resize_flow(flowrep.reclip(y, rep, run.input_clip, clip), size, rep, clip)
    flows = {"frontal_gt": resize_flow(b["flow_target"].float(), size, rep, clip), "nonfrontal": inp,
             "emotiongan": resize_flow(run.frontalize(y).cpu(), size, rep, clip)}
    have = None
    if lm_index is not None:
        li = np.array([lm_index.get(int(r), -1) for r in b["_rows"]])
        have = li >= 0
        # Rows the baseline did not compute (a strategy it skips) are left out of its scores by the caller;
        # rows where FaceMesh found no face were left unwarped by the baseline itself (landmark_ok 0).
        lf = inp.clone()
        if have.any():
            lf[torch.from_numpy(have)] = resize_flow(
                torch.from_numpy(landmark["flow"][li[have]].astype(np.float32)), size, rep, clip)
        flows["landmark"] = lf
        b["_lm"] = li
    return flows, have


def evaluate_store(run, judges: Judges, store: str, rows: np.ndarray, p: EvaluateParams,
                   landmark: Mapping[str, np.ndarray] | None) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Score the rows of one store: flows for every row, images for rows of `image_strategies`; (records, samples)."""
    import torch

    from training import flowrep
    from training.data import iter_rows, raw_group

    g = raw_group(store)
    attrs = dict(g.attrs)
    rep, clip = str(attrs["representation"]), float(attrs["clip"])
    clip_in = float(attrs.get("clip_input", clip))
    if rep != run.representation or clip != run.clip or clip_in != run.input_clip:
        raise EmoganError(f"{store}: representation/clip/clip_input {rep}/{clip}/{clip_in} differ from the model's "
                          f"{run.representation}/{run.clip}/{run.input_clip}")
    fc = judges.flowcnn
    if (fc.representation, fc.clip) != (rep, clip):
        raise EmoganError(f"{store}: representation/clip {rep}/{clip} differ from the Flow-CNN's "
                          f"{fc.representation}/{fc.clip} (trained on other stores)")
    size = int(p.size or run.size)
    subject_ids = list(attrs["subject_ids"])
    pose_names = list(attrs.get("pose_names", POSE_NAMES))
    strat_names = list(attrs.get("strategy_names", STRATEGY_NAMES))
    name = dataset_name(store)
    lm_index = {int(r): i for i, r in enumerate(landmark["rows"])} if landmark is not None else None
    order = np.sort(np.asarray(rows))
    n_all = len(order)
    strat_all = np.asarray(g["strategy"][:])
    img_codes = [strat_names.index(s) for s in p.image_strategies if s in strat_names]
    img_rows = order[np.isin(strat_all[order], img_codes)]
    rec: dict[str, np.ndarray] = {
        "dataset": np.full(n_all, name), "row": order.astype(np.int64), "subject": np.full(n_all, "", dtype=object),
        "sequence": np.zeros(n_all, np.int64), "pose": np.full(n_all, "", dtype=object),
        "strategy": np.full(n_all, "", dtype=object), "step": np.zeros(n_all, np.int64),
        "label": np.zeros(n_all, np.int64)}
    methods_flow = [m for m in FLOW_METHODS if m != "landmark" or landmark is not None]
    methods_img = [m for m in IMAGE_METHODS if m != "landmark" or landmark is not None]
    for m in EPE_METHODS:
        if m in methods_flow:
            rec[f"epe_{m}"] = np.full(n_all, np.nan)
    for m in methods_flow:
        rec[f"flowcnn_{m}"] = np.full(n_all, -1, np.int64)
    for m in SIM_METHODS:
        if m in methods_img:
            rec[f"ssim_{m}"] = np.full(n_all, np.nan)
            rec[f"rmse_{m}"] = np.full(n_all, np.nan)
    judges_img = {"efer": judges.efer, **({"fer2013": judges.fer2013} if judges.fer2013 is not None else {})}
    for j in judges_img:
        for m in methods_img:
            rec[f"{j}_{m}"] = np.full(n_all, -1, np.int64)
    if landmark is not None:
        rec["landmark_ok"] = np.zeros(n_all, np.int64)

    # Pass 1, every row: flows (EPE, Flow-CNN) and the row's codes. Only flows and 1-D codes are read.
    flow_arrays = ("flow_input", "flow_target", "label", "subject", "sequence", "pose", "strategy", "step")
    pos = 0
    for b in iter_rows(store, order, flow_arrays, p.batch_size):
        n = len(b["label"])
        at = np.arange(pos, pos + n)
        b["_rows"] = order[pos:pos + n]
        pos += n
        flows, have = _flows_of(run, b, size, rep, clip, landmark, lm_index)
        px = {k: flowrep.decode(v, rep, clip).numpy() for k, v in flows.items()}
        for m in EPE_METHODS:
            if m in px:
                rec[f"epe_{m}"][at] = epe_px(px[m], px["frontal_gt"])
        for m, f in flows.items():
            rec[f"flowcnn_{m}"][at] = fc.logits(f).argmax(1).numpy()
        if have is not None:
            rec["landmark_ok"][at] = (have & np.asarray(landmark["ok"])[np.maximum(b["_lm"], 0)]).astype(np.int64)
            rec["epe_landmark"][at[~have]] = np.nan
            rec["flowcnn_landmark"][at[~have]] = -1
        rec["subject"][at] = [subject_ids[int(c)] for c in b["subject"].numpy()]
        rec["sequence"][at] = b["sequence"].numpy()
        rec["pose"][at] = [_pose_name(int(c), pose_names) for c in b["pose"].numpy()]
        rec["strategy"][at] = [strat_names[int(c)] for c in b["strategy"].numpy()]
        rec["step"][at] = b["step"].numpy()
        rec["label"][at] = b["label"].numpy()

    # Pass 2, rows of image_strategies: G_W's faces, SSIM/RMSE, image judges, figure samples.
    samples: dict[str, list[Any]] = {}
    taken: dict[str, int] = {}
    img_arrays = ("flow_input", "flow_target", "neutral", "target_image", "input_image", "label", "pose")
    pos = 0
    for b in iter_rows(store, img_rows, img_arrays, p.batch_size) if len(img_rows) else []:
        n = len(b["label"])
        b["_rows"] = img_rows[pos:pos + n]
        pos += n
        at = np.searchsorted(order, b["_rows"])
        flows, have = _flows_of(run, b, size, rep, clip, landmark, lm_index)
        neutral_u8 = b["neutral"]
        fr_model = run.frontalize(b["flow_input"].float()).cpu()
        imgs = {"frontal_gt": _resize_img_u8(b["target_image"], size),
                "nonfrontal": _resize_img_u8(b["input_image"], size),
                "emotiongan": _resize_img_u8(run.warp(fr_model, neutral_u8).cpu(), size),
                "gw_gt": _resize_img_u8(run.warp(b["flow_target"].float(), neutral_u8).cpu(), size)}
        if have is not None:
            limg = imgs["nonfrontal"].clone()
            if have.any():
                limg[torch.from_numpy(have)] = _resize_img_u8(torch.from_numpy(landmark["image"][b["_lm"][have]]), size)
            imgs["landmark"] = limg
        tgt = imgs["frontal_gt"].numpy()
        for m in SIM_METHODS:
            if m in imgs:
                a = imgs[m].numpy()
                rec[f"ssim_{m}"][at] = ssim_u8(a, tgt, p.ssim_window)
                rec[f"rmse_{m}"][at] = rmse_u8(a, tgt)
        for j, model in judges_img.items():
            for m, im in imgs.items():
                rec[f"{j}_{m}"][at] = _predict(model, im)
        if have is not None and not have.all():
            for k in [k for k in rec if k.endswith("_landmark") and not k.startswith(("epe_", "flowcnn_"))]:
                rec[k][at[~have]] = np.nan if rec[k].dtype.kind == "f" else -1
        lab, pose = b["label"].numpy(), b["pose"].numpy()
        px = {k: flowrep.decode(v, rep, clip).numpy() for k, v in flows.items()}
        for i in range(n):
            pn = _pose_name(int(pose[i]), pose_names)
            if lab[i] <= 0 or taken.get(pn, 0) >= p.samples_per_pose:
                continue
            taken[pn] = taken.get(pn, 0) + 1
            smp = {"dataset": name, "row": int(b["_rows"][i]), "pose": pn, "label": int(lab[i]),
                   "strategy": rec["strategy"][at[i]], "subject": rec["subject"][at[i]],
                   "neutral": _resize_img_u8(neutral_u8[i:i + 1], size)[0].numpy()}
            smp.update({f"flow_{m}": f[i] for m, f in px.items()})
            smp.update({f"image_{m}": im[i].numpy() for m, im in imgs.items()})
            smp.update({f"flowcnn_{m}": int(rec[f"flowcnn_{m}"][at[i]]) for m in flows})
            for k, v in smp.items():
                samples.setdefault(k, []).append(v)
    for k in ("dataset", "subject", "pose", "strategy"):
        rec[k] = rec[k].astype(str)
    return rec, {k: np.asarray(v) for k, v in samples.items()}


def concat_records(parts: Iterable[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Column-wise concatenation; a column missing from a part is filled with NaN (metrics) or -1 (predictions)."""
    parts = [q for q in parts if q and len(q.get("label", [])) > 0]
    if not parts:
        return {}
    keys: list[str] = []
    for q in parts:
        keys += [k for k in q if k not in keys]
    out = {}
    for k in keys:
        chunks = []
        for q in parts:
            n = len(q["label"])
            if k in q:
                chunks.append(np.asarray(q[k]))
            elif k.startswith(("epe_", "ssim_", "rmse_")):
                chunks.append(np.full(n, np.nan))
            else:
                chunks.append(np.full(n, -1, np.int64))
        out[k] = np.concatenate(chunks)
    return out


def concat_samples(parts: Iterable[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Figure samples of several stores: the keys every non-empty part has, concatenated."""
    parts = [q for q in parts if q and len(q.get("label", [])) > 0]
    if not parts:
        return {}
    keys = [k for k in parts[0] if all(k in q for q in parts)]
    return {k: np.concatenate([np.asarray(q[k]) for q in parts]) for k in keys}


def load_landmark(path: Path | str) -> dict[str, np.ndarray]:
    """A landmark-baseline file (training/baselines.py): rows, flow, image, ok."""
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def evaluate_fold(run_dir: Path | str, stores: Sequence[str], fold: int | None, flowcnn_dir: Path | str,
                  landmark_files: Mapping[str, Path | None], folds_files: Sequence[str | None], k: int,
                  p: EvaluateParams, out: Path | str, device: str = "cpu") -> dict[str, Any]:
    """Evaluate a trained run on the held-out fold of each store; write rows.csv, breakdown.json, metrics.json, samples.npz."""
    import torch

    from training.data import check_store, fold_rows
    from training.flowcnn import subjects_of
    from training.run import load_run

    run = load_run(run_dir, device=device)
    run_fold = int(run.config["fold"])
    fold = run_fold if fold is None else int(fold)
    if fold != run_fold:
        raise EmoganError(f"{run_dir}: trained with fold {run_fold} held out; evaluating it on fold {fold} would "
                          "score subjects it was trained on")
    judges = load_judges(run, fold, flowcnn_dir)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    parts, sample_parts, per_store = [], [], {}
    for store, ff in zip(stores, folds_files):
        info = check_store(store)
        name = dataset_name(store)
        try:
            rows = fold_rows(info, fold, "test", Path(ff) if ff else None, k)
        except EmoganError as e:
            # A small set can leave a fold without its subjects (pipeline/folds.py): nothing to score there.
            log.warning("%s: %s; skipped", store, e)
            per_store[name] = {"rows": 0, "skipped": str(e)}
            continue
        from training.flowcnn import select_rows

        rows = select_rows(store, rows, p.strategies)
        test_subjects = set(subjects_of(store, rows)) if len(rows) else set()
        check_held_out(run.config, store, test_subjects)
        seen = test_subjects & set(judges.flowcnn.meta.get("train_subjects", {}).get(
            next((s for s in judges.flowcnn.meta.get("train_subjects", {}) if _same_path(s, store)), ""), []))
        if seen:
            raise EmoganError(f"{flowcnn_dir}: the Flow-CNN was trained on held-out subject(s) {sorted(seen)}")
        lm_path = landmark_files.get(name)
        lm = load_landmark(lm_path) if lm_path else None
        if lm is None:
            log.warning("%s: no landmark-baseline file: its rows are left out", name)
        with torch.no_grad():
            rec, smp = evaluate_store(run, judges, store, rows, p, lm)
        per_store[name] = {"rows": int(len(rows)), "test_subjects": sorted(test_subjects),
                           "landmark": str(lm_path) if lm_path else None,
                           "landmark_ok": float(np.mean(rec["landmark_ok"])) if "landmark_ok" in rec and len(rows) else None}
        log.info("%s fold %d: %d rows scored", name, fold, len(rows))
        parts.append(rec)
        sample_parts.append(smp)
    records = concat_records(parts)
    if not records:
        raise EmoganError(f"fold {fold}: no rows to evaluate in {', '.join(map(str, stores))}")
    write_rows_csv(records, out / "rows.csv")
    bd = breakdown(records, p.pose_groups)
    from pipeline.params import as_dict

    meta = {"model": str(run_dir), "fold": fold, "variant": run.config.get("ablation") or "full",
            "stores": per_store, "size": int(p.size or run.size), "judges": judges.info, "params": as_dict(p),
            "class_names": list(CLASS_NAMES), "train_config": run.config.get("config_name")}
    (out / "breakdown.json").write_text(json.dumps({"meta": meta, "groups": bd}, indent=1, sort_keys=True) + "\n")
    metrics = {"fold": fold, **headline(bd)}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    samples = concat_samples(sample_parts)
    np.savez_compressed(out / "samples.npz", **{k: v for k, v in samples.items()})
    return metrics
