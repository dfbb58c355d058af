"""`emogan evaluate MODEL STORE... --fold K`: eMotion-GAN judged the way the paper does it (section IV-B, V).

On the held-out fold of each store, for every row (a flow pair):
- flows: EPE, in source-crop pixels, of the non-frontal input, the landmark-frontalized flow
  (baselines.py) and G_F's frontalized flow, each against the frontal ground truth;
- images: SSIM and RMSE (grey levels) against the frontal expressive face of G_W's output warped
  from the frontalized flow and from the ground-truth flow, and of the non-frontal and
  landmark-frontalized faces;
- motion-domain FER: the fold's Flow-CNN (flowcnn.py) on the ground-truth frontal,
  non-frontal, landmark and frontalized flows; image-domain FER: the run's e_FER and the
  pretrained FER2013 judge on the ground-truth frontal face, the non-frontal face, the landmark
  face and both warped faces.
Everything is scored on one grid (`evaluate.size`, default the model's side): flows are
area-averaged as (u, v), faces area-resized. Per-row results go to rows.csv; summaries by
dataset x pose (and pose groups) x strategy, with confusion matrices, to breakdown.json; the
headline numbers to metrics.json (DVC metrics); a few rows per pose to samples.npz (figures).
The metrics and summaries themselves are in metrics.py.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from pipeline.console import progress_enabled
from pipeline.errors import EmoganError
from pipeline.schema import CLASS_NAMES, POSE_NAMES, STRATEGY_NAMES
from training.config import RunRecord
from training.data import store_name
from training.evaluation.metrics import (ALL, EPE_METHODS, FLOW_METHODS, IMAGE_METHODS, SIM_METHODS, breakdown,
                                         chroma_u8, concat_records, concat_samples, epe_px, headline, rmse_u8, ssim_u8,
                                         write_rows_csv)

log = logging.getLogger(__name__)

@dataclass
class EvaluateParams:
    """params.yaml `evaluate:`: what `emogan evaluate` scores and the cross-validation driver runs."""

    folds: tuple[int, ...]  # held-out folds the CV driver runs (the paper: all k)
    ablations: tuple[str, ...]  # Table IV variants run beside the full model
    strategies: tuple[str, ...]  # rows scored (flows)
    image_strategies: tuple[str, ...]  # rows whose faces are warped and judged too
    size: int | None  # evaluation grid; null: the model's side
    batch_size: int
    samples_per_pose: int  # apex rows per (dataset, pose, expression) kept for the figures
    # Pose groups reported beside single poses; `large` is the acceptance check's group.
    pose_groups: dict[str, list[str]]
    ssim_window: int  # SSIM Gaussian-free window side (skimage), odd
    flowcnn: dict[str, Any]  # -> training.evaluation.flowcnn.FlowCnnParams
    landmark: dict[str, Any]  # -> training.evaluation.baselines.LandmarkParams
    neutral_apex: str  # direct | chain: eMotion-GAN's neutral->apex flow (training/evaluation/chain.py)
    chain_border: float  # chain: this fraction of the side along each edge set to zero (flowrep.zero_border)
    fer2013_margin: float  # the FER2013 judge reads faces framed as it was trained: face box + this margin
    gf_mirror_mean: bool  # G_F's output: the mean of G_F(x) and the mirror of G_F(mirror of x) (TrainedRun)


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
    from training.evaluation.chain import NEUTRAL_APEX_MODES

    if not 0.0 <= p.chain_border < 0.5:
        raise ParamsError(f"evaluate.chain_border: {p.chain_border!r}, expected a fraction of the side in [0, 0.5)")
    if p.neutral_apex not in NEUTRAL_APEX_MODES:
        raise ParamsError(f"evaluate.neutral_apex: {p.neutral_apex!r}, not one of {list(NEUTRAL_APEX_MODES)}")
    return p


# --- reading rows and running the models ------------------------------------------------------

def _same_path(a: str | Path, b: str | Path) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def check_held_out(record: RunRecord, store: str, test_subjects: set[str]) -> None:
    """Refuse a model whose training rows of `store` include a held-out subject (it would be judged on its training data)."""
    from training.data import check_store, fold_rows, subjects_of

    for s, ff in zip(record.stores, record.folds_files):
        if not _same_path(s, store):
            continue
        rows = fold_rows(check_store(store), record.fold, "train", ff, record.folds_k)
        seen = test_subjects & set(subjects_of(store, rows))
        if seen:
            raise EmoganError(f"{store}: the model was trained on held-out subject(s) {sorted(seen)} "
                              f"(its fold is {record.fold}); evaluate it on its own held-out fold")


def _pose_name(code: int, names: Sequence[str]) -> str:
    return names[code] if 0 <= code < len(names) else "unknown"


@dataclass
class Judges:
    """The classifiers of one fold: motion (Flow-CNN) and image (the run's e_FER, the FER2013 judge)."""

    flowcnn: Any
    efer: Any
    fer2013: Any | None
    info: dict[str, Any]


def run_efer_spec(run, run_dir: Path | str, efer_path: Path | None, trust_pickle: bool) -> dict[str, Any]:
    """The e_FER spec to load for a run: its config.json's, except that a pickle-based file is never loaded on
    a run folder's word: the user names it (`--efer-path FILE --trust-pickle`), and it must be the file the
    run was trained with (sha256)."""
    from pipeline.store import file_sha256
    from training.models.efer import unpickles

    spec = dict(run.config["train"]["efer"])
    if efer_path is None:
        if unpickles(spec):
            raise EmoganError(f"{Path(run_dir) / 'config.json'}: its e_FER {spec.get('path')} is a pickle-based file "
                              "(it could run code when loaded); evaluate never loads one named by a run folder: give "
                              "it yourself with --efer-path FILE --trust-pickle")
        return spec
    if spec.get("name") != "file":
        raise EmoganError(f"--efer-path {efer_path}: the run's e_FER is `{spec.get('name')}`, not `file`: it needs none")
    want = ((run.config.get("runtime") or {}).get("efer") or {}).get("sha256")
    spec["path"] = str(efer_path)
    if unpickles(spec) and trust_pickle is not True:
        raise EmoganError(f"{efer_path}: a pickle-based e_FER file loads only with --trust-pickle")
    if not Path(efer_path).is_file():
        raise EmoganError(f"{efer_path}: e_FER model file not found")
    if want is not None and file_sha256(efer_path) != want:
        raise EmoganError(f"{efer_path}: not the e_FER this run was trained with (sha256 differs from its config.json)")
    return spec


def load_judges(run, fold: int, flowcnn_dir: Path | str, fer2013_weights: Path, fer2013_frame: float,
                efer_spec: dict[str, Any] | None = None, trust_pickle: bool = False) -> Judges:
    """The fold's Flow-CNN, the run's own e_FER (held-out fold checked), and the FER2013 judge when its weights are there.

    `efer_spec`: run_efer_spec's answer (default: the run's spec, pickle-based files refused). `fer2013_frame`: the
    central fraction of the store's faces the FER2013 judge reads (training.models.fer2013.frame_for).
    """
    from training.models.efer import load_efer
    from training.models.fer2013 import load_fer2013
    from training.evaluation.flowcnn import load_flowcnn

    spec = dict(efer_spec if efer_spec is not None else run_efer_spec(run, "run", None, False))
    if spec.get("name") == "fer2013" and not spec.get("path"):
        spec["path"] = str(fer2013_weights)  # runs made before the path was recorded
    fc = load_flowcnn(flowcnn_dir, fold=fold)
    efer, efer_info = load_efer(spec, fold=fold, trust_pickle=trust_pickle and efer_spec is not None)
    info: dict[str, Any] = {"flowcnn": {"path": str(flowcnn_dir),
                                        "test_accuracy_frontal_gt": fc.meta["metrics"]["test_accuracy_frontal_gt"]},
                            "efer": efer_info}
    fer = None
    p = Path(fer2013_weights)
    if p.is_file():
        fer = load_fer2013(p, frame=fer2013_frame)
        info["fer2013"] = {"path": str(p), "frame": fer2013_frame}
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


def _predict(model, imgs_u8, neutral_u8) -> np.ndarray:
    """Class codes of faces (N,3,S,S) uint8; an e_FER that reads the change from the neutral face gets the frontal
    neutral faces `neutral_u8` too (for non-frontal faces that change holds the head's pose as well)."""
    import torch

    from training.models.efer import classify

    with torch.no_grad():
        return classify(model, _img_float(imgs_u8), _img_float(neutral_u8)).argmax(1).cpu().numpy()


def _with_chain(fr, rows, chain) -> Any:
    """G_F's flows `fr` of a batch, neutral_apex rows replaced by their chained frontalization (chain.py)."""
    hit = [i for i, r in enumerate(rows) if int(r) in chain]
    if not hit:
        return fr
    fr = fr.clone()
    for i in hit:
        fr[i] = chain[int(rows[i])].to(fr.dtype)
    return fr


def _flows_of(b, size: int, rep: str, clip: float, landmark, lm_index,
              chain, direct) -> tuple[dict[str, Any], np.ndarray | None]:
    """Normalized flows (n,2,size,size) per method for a batch, and which rows have a landmark result.
    `direct`: G_F's output for the batch, at the model's size (`run.frontalize`)."""
    import torch

    from training.flowrep import resize_flow

    y = b["flow_input"].float()
    inp = resize_flow(y, size, rep, clip)
    flows = {"frontal_gt": resize_flow(b["flow_target"].float(), size, rep, clip), "nonfrontal": inp,
             "emotiongan": resize_flow(_with_chain(direct, b["_rows"], chain), size, rep, clip),
             "gf_direct": resize_flow(direct, size, rep, clip)}
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
    if rep != run.representation or clip != run.clip:
        raise EmoganError(f"{store}: representation/clip {rep}/{clip} differ from the model's "
                          f"{run.representation}/{run.clip}")
    fc = judges.flowcnn
    if (fc.representation, fc.clip) != (rep, clip):
        raise EmoganError(f"{store}: representation/clip {rep}/{clip} differ from the Flow-CNN's "
                          f"{fc.representation}/{fc.clip} (trained on other stores)")
    size = int(p.size or run.size)
    subject_ids = list(attrs["subject_ids"])
    pose_names = list(attrs.get("pose_names", POSE_NAMES))
    strat_names = list(attrs.get("strategy_names", STRATEGY_NAMES))
    name = store_name(store)
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
        if m in methods_flow or m == "zero":
            rec[f"epe_{m}"] = np.full(n_all, np.nan)
    for m in methods_flow:
        rec[f"flowcnn_{m}"] = np.full(n_all, -1, np.int64)
    for m in SIM_METHODS:
        if m in methods_img:
            rec[f"ssim_{m}"] = np.full(n_all, np.nan)
            rec[f"rmse_{m}"] = np.full(n_all, np.nan)
            rec[f"chroma_{m}"] = np.full(n_all, np.nan)
    judges_img = {"efer": judges.efer, **({"fer2013": judges.fer2013} if judges.fer2013 is not None else {})}
    for j in judges_img:
        for m in methods_img:
            rec[f"{j}_{m}"] = np.full(n_all, -1, np.int64)
    if landmark is not None:
        rec["landmark_ok"] = np.zeros(n_all, np.int64)

    # neutral_apex rows frontalized by the chain of G_F's step-1 outputs (evaluate.neutral_apex: chain)
    chain = {}
    if p.neutral_apex == "chain" and "neutral_apex" in strat_names:
        from training.evaluation.chain import chained_frontalization

        chain = chained_frontalization(run, store, order[strat_all[order] == strat_names.index("neutral_apex")],
                                       p.batch_size, p.chain_border)
    # Pass 1, every row: flows (EPE, Flow-CNN) and the row's codes. Only flows and 1-D codes are read.
    flow_arrays = ("flow_input", "flow_target", "label", "subject", "sequence", "pose", "strategy", "step") + (
        ("input_image",) if run.reads_face else ())   # a G_F with nets.gf.face reads the non-frontal face too
    pos = 0
    gf_of: dict[int, Any] = {}   # pass 1's G_F output of the image rows (2 x size^2 floats each), for pass 2
    bar = tqdm(total=len(order) + len(img_rows), desc=f"evaluate {name}", unit="row", leave=False,
               disable=not progress_enabled())   # pass 1 (every row's flows), then pass 2 (image rows)
    for b in iter_rows(store, order, flow_arrays, p.batch_size):
        n = len(b["label"])
        bar.update(n)
        at = np.arange(pos, pos + n)
        b["_rows"] = order[pos:pos + n]
        pos += n
        direct = run.frontalize(b["flow_input"].float(), b.get("input_image")).cpu()
        flows, have = _flows_of(b, size, rep, clip, landmark, lm_index, chain, direct)
        for i in np.flatnonzero(np.isin(b["_rows"], img_rows)):   # kept for pass 2: G_F runs once per row
            gf_of[int(b["_rows"][i])] = direct[i]
        px = {k: flowrep.decode(v, rep, clip).numpy() for k, v in flows.items()}
        px["zero"] = np.zeros_like(px["frontal_gt"])  # the reference a frontalizer that erases motion scores
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
    taken: dict[tuple[str, int], int] = {}   # figure samples kept per (pose, expression)
    img_arrays = ("flow_input", "flow_target", "neutral", "target_image", "input_image", "label", "pose")
    pos = 0
    for b in iter_rows(store, img_rows, img_arrays, p.batch_size) if len(img_rows) else []:
        n = len(b["label"])
        bar.update(n)
        b["_rows"] = img_rows[pos:pos + n]
        pos += n
        at = np.searchsorted(order, b["_rows"])
        direct = torch.stack([gf_of.pop(int(r)) for r in b["_rows"]])
        flows, have = _flows_of(b, size, rep, clip, landmark, lm_index, chain, direct)
        neutral_u8 = b["neutral"]
        fr_model = _with_chain(direct, b["_rows"], chain)
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
                rec[f"chroma_{m}"][at] = chroma_u8(a, tgt)
        neutral_img = _resize_img_u8(neutral_u8, size)
        for j, model in judges_img.items():
            for m, im in imgs.items():
                rec[f"{j}_{m}"][at] = _predict(model, im, neutral_img)
        if have is not None and not have.all():
            for k in [k for k in rec if k.endswith("_landmark") and not k.startswith(("epe_", "flowcnn_"))]:
                rec[k][at[~have]] = np.nan if rec[k].dtype.kind == "f" else -1
        lab, pose = b["label"].numpy(), b["pose"].numpy()
        px = {k: flowrep.decode(v, rep, clip).numpy() for k, v in flows.items()}
        px["zero"] = np.zeros_like(px["frontal_gt"])  # the reference a frontalizer that erases motion scores
        for i in range(n):
            pn = _pose_name(int(pose[i]), pose_names)
            key = (pn, int(lab[i]))
            if lab[i] <= 0 or taken.get(key, 0) >= p.samples_per_pose:
                continue
            taken[key] = taken.get(key, 0) + 1
            smp = {"dataset": name, "row": int(b["_rows"][i]), "pose": pn, "label": int(lab[i]),
                   "strategy": rec["strategy"][at[i]], "subject": rec["subject"][at[i]],
                   "neutral": _resize_img_u8(neutral_u8[i:i + 1], size)[0].numpy()}
            smp.update({f"flow_{m}": f[i] for m, f in px.items()})
            smp.update({f"image_{m}": im[i].numpy() for m, im in imgs.items()})
            smp.update({f"flowcnn_{m}": int(rec[f"flowcnn_{m}"][at[i]]) for m in flows})
            smp.update({f"{j}_{m}": int(rec[f"{j}_{m}"][at[i]]) for j in judges_img for m in imgs})
            for k, v in smp.items():
                samples.setdefault(k, []).append(v)
    bar.close()
    for k in ("dataset", "subject", "pose", "strategy"):
        rec[k] = rec[k].astype(str)
    return rec, {k: np.asarray(v) for k, v in samples.items()}


def load_landmark(path: Path | str) -> dict[str, np.ndarray]:
    """A landmark-baseline file (training/evaluation/baselines.py): rows, flow, image, ok."""
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def evaluate_fold(run_dir: Path | str, stores: Sequence[str], fold: int | None, flowcnn_dir: Path | str,
                  landmark_files: Mapping[str, Path | None], folds_files: Sequence[str | None], k: int,
                  p: EvaluateParams, out: Path | str, fer2013_weights: Path, device: str = "cpu",
                  efer_path: Path | None = None, trust_pickle: bool = False,
                  crop_margin: float | None = None) -> dict[str, Any]:
    """Evaluate a trained run on the held-out fold of each store; write rows.csv, breakdown.json, metrics.json, samples.npz.

    `efer_path`/`trust_pickle`: the user's own e_FER file for a run trained with a pickle-based one (run_efer_spec).
    `crop_margin`: the margin the stores' faces were cropped with (params crop.margin); the FER2013 judge reads their
    central part framed with `p.fer2013_margin` (None: the whole image).
    """
    from pipeline.lock import writer_lock
    from training.models.fer2013 import frame_for

    frame = 1.0 if crop_margin is None else frame_for(p.fer2013_margin, crop_margin)
    with writer_lock(out):  # one writer per output folder (pipeline/lock.py)
        return _evaluate_fold(run_dir, stores, fold, flowcnn_dir, landmark_files, folds_files, k, p, out,
                              fer2013_weights, device, efer_path, trust_pickle, frame)


def _evaluate_fold(run_dir: Path | str, stores: Sequence[str], fold: int | None, flowcnn_dir: Path | str,
                   landmark_files: Mapping[str, Path | None], folds_files: Sequence[str | None], k: int,
                   p: EvaluateParams, out: Path | str, fer2013_weights: Path, device: str,
                   efer_path: Path | None, trust_pickle: bool, fer2013_frame: float) -> dict[str, Any]:
    import torch

    from training.checkpoint import load_run, read_run_record
    from training.data import check_store, fold_rows, subjects_of

    run = load_run(run_dir, device=device)
    run.mirror_mean = p.gf_mirror_mean
    record = read_run_record(run_dir)
    run_fold = record.fold
    fold = run_fold if fold is None else int(fold)
    if fold != run_fold:
        raise EmoganError(f"{run_dir}: trained with fold {run_fold} held out; evaluating it on fold {fold} would "
                          "score subjects it was trained on")
    efer_spec = run_efer_spec(run, run_dir, efer_path, trust_pickle)
    judges = load_judges(run, fold, flowcnn_dir, fer2013_weights, fer2013_frame, efer_spec, trust_pickle)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    parts, sample_parts, per_store = [], [], {}
    for store, ff in zip(stores, folds_files):
        info = check_store(store)
        name = store_name(store)
        try:
            rows = fold_rows(info, fold, "test", ff, k)
        except EmoganError as e:
            # A small set can leave a fold without its subjects (pipeline/folds.py): nothing to score there.
            log.warning("%s: %s; skipped", store, e)
            per_store[name] = {"rows": 0, "skipped": str(e)}
            continue
        from training.data import select_rows

        rows = select_rows(store, rows, p.strategies)
        test_subjects = set(subjects_of(store, rows)) if len(rows) else set()
        check_held_out(record, store, test_subjects)
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
