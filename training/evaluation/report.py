"""`emogan report`: the cross-validation results as the paper shows them.

Reads the per-fold outputs of `emogan evaluate` (EVAL_DIR/<variant>/fold_<k>/breakdown.json and
samples.npz), aggregates every metric over folds (mean and sample standard deviation, as in Table II), and writes:
- REPORT.md with tables shaped like Table I (EPE, SSIM, RMSE, false colour per method), Table II (FER accuracy
  per judge, methods x datasets and poses, with Delta), Table IV (ablations), the acceptance check,
  and figures (training/evaluation/figures.py) like Fig. 1 (faces, input flow, frontal ground truth, frontalized
  flow, warped face; colour wheel) and Fig. 5 (frontal view synthesis in the image domain), G_W's faces per
  expression with the image judge's reading;
- the CV metrics JSON (DVC metrics) and the figures (DVC plots).
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from pipeline.console import progress_enabled
from pipeline.errors import EmoganError
from training.evaluation.figures import (confusion_figure, expression_grid, expression_picks, figure_grid, pick_samples,
                                         pose_bars)

log = logging.getLogger(__name__)

METHOD_LABELS: dict[str, str] = {
    "frontal_gt": "Frontal ground truth (ceiling)",
    "nonfrontal": "No frontalization (baseline)",
    "landmark": "Landmark frontalization (FaceMesh)",
    "emotiongan": "eMotion-GAN (ours)",
    "gf_direct": "G_F on each pair's own flow (no chain)",
    "gw_gt": "G_W on the ground-truth flow",
}
VARIANT_LABELS: dict[str, str] = {"full": "eMotion-GAN (ours)", "no_rec": "Ours w/o L_epe, L_char",
                                  "no_de": "Ours w/o L_DE", "no_gw": "Ours w/o L_GW"}
JUDGE_LABELS: dict[str, str] = {
    "flowcnn": "Flow-CNN (motion domain)",
    "efer": "e_FER, the run's own image classifier (image domain)",
    "fer2013": "FER2013 mini-Xception, pretrained (image domain, independent judge)",
}


@dataclass
class ReportParams:
    """params.yaml `report:`: what the report shows."""

    title: str
    strategy: str  # rows of the main tables: all, neutral_apex or frame_to_frame
    columns: tuple[str, ...]
    acceptance_poses: tuple[str, ...]
    acceptance_dataset: str
    acceptance_gain_pts: float  # motion-domain FER gain over no frontalization required on each pose
    figure_dataset: str
    figure_poses: tuple[str, ...]
    figure_px: int  # side of each tile in the figures
    expression_pose: str  # the pose of the faces-by-expression figure (G_W's faces per expression, judged)
    decimals: int
    band_resamples: int  # the error band: bootstrap resamples of the held-out sequences (training/evaluation/band.py)
    band_level: float  # its central coverage (0.95: 2.5th to 97.5th percentile)
    band_seed: int


def report_params(params: dict[str, Any], **overrides: Any) -> ReportParams:
    """params.yaml `report:`."""
    from pipeline.params import section

    return section(params, "report", ReportParams, **overrides)


# --- aggregation -----------------------------------------------------------------------------

def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Nested numbers -> {"a.b.c": value}; lists (confusion matrices) and None are left out."""
    out: dict[str, float] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v)):
            out[key] = float(v)
    return out


def mean_std(values: Sequence[float]) -> dict[str, float]:
    """{mean, std, n}: std is the sample standard deviation over folds (0 for a single fold)."""
    a = np.asarray(values, np.float64)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0, "n": int(len(a))}


def load_variant(folder: Path) -> dict[int, dict[str, Any]]:
    """fold -> breakdown.json of one variant's evaluation folder (EVAL_DIR/<variant>)."""
    out = {}
    for f in sorted(folder.glob("fold_*/breakdown.json")):
        out[int(f.parent.name.split("_", 1)[1])] = json.loads(f.read_text())
    return out


def aggregate(folds: Mapping[int, Mapping[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """group key -> metric path -> mean/std/n over the folds where the group has rows."""
    acc: dict[str, dict[str, list[float]]] = {}
    for bd in folds.values():
        for g, s in bd["groups"].items():
            for k, v in flatten(s).items():
                acc.setdefault(g, {}).setdefault(k, []).append(v)
    return {g: {k: mean_std(v) for k, v in ms.items()} for g, ms in acc.items()}


def summed_confusion(folds: Mapping[int, Mapping[str, Any]], group: str, judge: str, method: str) -> np.ndarray | None:
    """A confusion matrix summed over folds (None when no fold has it)."""
    tot = None
    for bd in folds.values():
        c = bd["groups"].get(group, {}).get(judge, {}).get("confusion", {}).get(method)
        if c is not None:
            tot = np.asarray(c) if tot is None else tot + np.asarray(c)
    return tot


# --- tables ----------------------------------------------------------------------------------

def cell(agg: Mapping[str, Mapping[str, Mapping[str, float]]], group: str, key: str, scale: float = 1.0,
         decimals: int = 2) -> str:
    """`mean ± std` of one aggregated metric ('-' when missing; the mean alone from one fold), with "(k of n folds)"
    when only k of the n folds that have this group's rows have the metric (e.g. a baseline on fewer folds)."""
    m = agg.get(group, {}).get(key)
    if m is None:
        return "–"
    n_all = max(v["n"] for v in agg[group].values())   # aggregate() records n with every metric (mean_std)
    tail = f" ({m['n']} of {n_all} folds)" if m["n"] < n_all else ""
    spread = f" ± {m['std'] * scale:.{decimals}f}" if m["n"] > 1 else ""   # one fold has no spread
    return f"{m['mean'] * scale:.{decimals}f}{spread}{tail}"


def md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _col_label(c: str) -> str:
    d, p = c.split("/")
    return f"{d}" if p == "all" else f"{d} {p}"


def table1(aggs: Mapping[str, Any], rp: ReportParams) -> str:
    """Table I: EPE (px), SSIM, RMSE and false colour (grey levels) per method, all rows of all datasets."""
    g = f"all/all/{rp.strategy}"
    full = aggs.get("full", {})

    def img(agg: Mapping[str, Any], m: str) -> list[str]:
        return [cell(agg, g, f"ssim.{m}", decimals=rp.decimals + 1), cell(agg, g, f"rmse.{m}", decimals=rp.decimals),
                cell(agg, g, f"chroma.{m}", decimals=rp.decimals)]
    rows = [[METHOD_LABELS[m], cell(full, g, f"epe_px.{m}", decimals=rp.decimals)] + img(full, m)
            for m in ("nonfrontal", "landmark")]
    rows += [[VARIANT_LABELS.get(v, v), cell(agg, g, "epe_px.emotiongan", decimals=rp.decimals)] + img(agg, "emotiongan")
             for v, agg in aggs.items()]
    rows.append([METHOD_LABELS["gw_gt"] + " (upper bound)", "0"] + img(full, "gw_gt"))
    return md_table(["Method", "EPE (px) ↓", "SSIM ↑", "RMSE ↓", "false colour ↓"], rows)


def table2(agg: Mapping[str, Any], judge: str, methods: Sequence[str], rp: ReportParams) -> str:
    """Table II for one judge: accuracy (%) mean ± std over folds, methods x dataset/pose columns, Delta rows."""
    cols = [c for c in rp.columns if f"{c}/{rp.strategy}" in agg]
    rows = []
    for m in methods:
        rows.append([METHOD_LABELS[m]] + [cell(agg, f"{c}/{rp.strategy}", f"{judge}.accuracy.{m}", 100, rp.decimals - 1)
                                          for c in cols])
    for m in methods:
        if m in ("frontal_gt", "nonfrontal"):
            continue
        rows.append([f"Δ (pts) {METHOD_LABELS[m]}"] +
                    [cell(agg, f"{c}/{rp.strategy}", f"{judge}.gain_pts.{m}", 1, rp.decimals - 1) for c in cols])
        rows.append([f"relative change (%) {METHOD_LABELS[m]}"] +
                    [cell(agg, f"{c}/{rp.strategy}", f"{judge}.delta_percent.{m}", 1, rp.decimals - 1) for c in cols])
    return md_table(["Method"] + [_col_label(c) for c in cols], rows)


def table4(aggs: Mapping[str, Any], rp: ReportParams) -> str:
    """Table IV: ablations, image (e_FER on G_W's faces) and motion (Flow-CNN on G_F's flows) accuracy (%)."""
    full = aggs.get("full", {})
    cols = [c for c in rp.columns if f"{c}/{rp.strategy}" in full]
    rows = []
    for domain, judge in (("image", "efer"), ("motion", "flowcnn")):
        for v, agg in aggs.items():
            rows.append([f"{VARIANT_LABELS.get(v, v)} ({domain})"] +
                        [cell(agg, f"{c}/{rp.strategy}", f"{judge}.accuracy.emotiongan", 100, rp.decimals - 1)
                         for c in cols])
    return md_table(["Variant"] + [_col_label(c) for c in cols], rows)


def acceptance(agg: Mapping[str, Any], rp: ReportParams) -> tuple[str, bool]:
    """The acceptance check per strategy (neutral-apex, frame-to-frame, pooled) on the large poses (group `large`
    and each pose): Flow-CNN accuracy of input, eMotion-GAN and truth, Δ in points, gap closure, EPE against a
    zero flow's. Passes: on the pooled rows of each pose, Δ >= acceptance_gain_pts and a lower EPE than the input."""
    rows, ok_all = [], True
    fmt = (lambda x, d=1, k=1.0: "–" if x is None else f"{k * x:.{d}f}")
    for strategy in ("neutral_apex", "frame_to_frame", "all"):
        for pose in ["large", *rp.acceptance_poses]:
            g = agg.get(g_key := f"{rp.acceptance_dataset}/{pose}/{strategy}")
            if not g:
                continue
            get = (lambda key: g.get(key, {}).get("mean"))
            gain, e_in, e_fr = get("flowcnn.gain_pts.emotiongan"), get("epe_px.nonfrontal"), get("epe_px.emotiongan")
            ok = gain is not None and e_in is not None and e_fr is not None and gain >= rp.acceptance_gain_pts and e_fr < e_in
            if strategy == "all" and pose != "large":
                ok_all &= ok
            rows.append([strategy, pose, fmt(get("n"), 0), fmt(get("flowcnn.accuracy.nonfrontal"), k=100),
                         fmt(get("flowcnn.accuracy.emotiongan"), k=100), fmt(get("flowcnn.accuracy.frontal_gt"), k=100),
                         fmt(gain), fmt(get("flowcnn.gap_closure.emotiongan"), 2),
                         cell(agg, g_key, "flowcnn.gain_pts.landmark", 1, 1), fmt(e_in, 2), fmt(e_fr, 2), fmt(get("epe_px.zero"), 2),
                         ("yes" if ok else "no") if strategy == "all" and pose != "large" else ""])
    checked = any(r[0] == "all" for r in rows)
    ok_all = ok_all and checked   # nothing to check is not a pass
    t = md_table(["strategy", "pose", "rows/fold", "Flow-CNN input (%)", "Flow-CNN eMotion-GAN (%)",
                  "Flow-CNN frontal truth (%)", "Δ (pts)", "gap closure", "landmark Δ (pts)", "EPE input (px)",
                  "EPE eMotion-GAN (px)", "EPE zero flow (px)", "passes"], rows)
    return t, ok_all


# --- the report ------------------------------------------------------------------------------

def _rel(p: Path, base: Path) -> str:
    try:
        return str(p.relative_to(base))
    except ValueError:
        return str(p)


def _fer2013_line(info: dict[str, Any]) -> str:
    """The report's word on the FER2013 judge: on which part of the faces it was used, or left out."""
    f = info.get("frame", 1.0)
    return ("weights missing: left out" if "path" not in info else "used, on the whole face crop" if f >= 1.0 else
            f"used, on the central {f:.2f} of each face crop's side (crop.margin's framing cut to evaluate.fer2013_margin)")


def build_report(eval_dir: Path | str, out_md: Path | str, metrics_out: Path | str | None, rp: ReportParams,
                 params_record: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Aggregate EVAL_DIR/<variant>/fold_<k>/ into REPORT.md (+ figures beside it) and the CV metrics JSON."""
    eval_dir, out_md = Path(eval_dir), Path(out_md)
    variants = {}
    for d in sorted(x for x in eval_dir.iterdir() if x.is_dir()) if eval_dir.is_dir() else []:
        folds = load_variant(d)
        if folds:
            variants[d.name] = folds
    if not variants:
        raise EmoganError(f"{eval_dir}: no <variant>/fold_<k>/breakdown.json here; run `emogan evaluate` first")
    if "full" not in variants:
        raise EmoganError(f"{eval_dir}: no `full` variant (the complete model); found {', '.join(variants)}")
    order = [v for v in VARIANT_LABELS if v in variants] + [v for v in variants if v not in VARIANT_LABELS]
    aggs = {v: aggregate(variants[v]) for v in order}
    full, full_folds = aggs["full"], variants["full"]
    fig_dir = out_md.parent / "figures"
    figs: dict[str, Path] = {}
    from tqdm import tqdm   # one tick per figure (matplotlib), then the report itself
    bar = tqdm(total=6, desc="report", unit="part", leave=False, disable=not progress_enabled())
    # The figures' faces: the lowest fold that kept samples (a result folder may keep them for some folds only).
    samples_path = next((p for k in sorted(full_folds)
                         if (p := eval_dir / "full" / f"fold_{k}" / "samples.npz").is_file()), None)
    if samples_path is not None:
        with np.load(samples_path) as z:
            samples = {k: z[k] for k in z.files}
        at = f"{samples_path.parent.name.replace('_', ' ')}'s held-out people"
        if samples:
            picks = pick_samples(samples, rp.figure_dataset, rp.figure_poses)
            if picks:
                figs["fig1"] = figure_grid(samples, picks, [
                    ("image", "neutral"), ("image", "image_nonfrontal"), ("image", "image_frontal_gt"),
                    ("flow", "flow_nonfrontal"), ("flow", "flow_frontal_gt"), ("flow", "flow_emotiongan"),
                    ("image", "image_emotiongan")], rp.figure_px, fig_dir / "fig1_frontalization.png",
                    "Like the paper's Fig. 1: head motion removed from the flow, then warped onto the neutral face")
                figs["fig5"] = figure_grid(samples, picks, [
                    ("image", "image_nonfrontal"), ("image", "image_landmark"), ("flow", "flow_landmark"),
                    ("image", "image_emotiongan"), ("image", "image_gw_gt"), ("image", "image_frontal_gt")],
                    rp.figure_px, fig_dir / "fig5_fvs_comparison.png",
                    "Like the paper's Fig. 5: frontal view synthesis by landmark warping and by eMotion-GAN")
            picks = expression_picks(samples, rp.figure_dataset, rp.expression_pose)
            if picks:
                figs["expressions"] = expression_grid(samples, picks, rp.figure_px, fig_dir / "faces_by_expression.png",
                                                      f"G_W's faces per expression, {rp.figure_dataset}, pose "
                                                      f"{rp.expression_pose}, {at}: the image judge's reading under each")
    bar.update(2)
    big = f"{rp.acceptance_dataset}/large/all"
    mats = {}
    for m in ("nonfrontal", "landmark", "emotiongan", "frontal_gt"):
        c = summed_confusion(full_folds, big, "flowcnn", m)
        if c is not None:
            mats[METHOD_LABELS[m]] = c
    if mats:
        figs["confusion_flowcnn"] = confusion_figure(mats, fig_dir / "confusion_flowcnn_large_poses.png",
                                                     f"Flow-CNN on {rp.acceptance_dataset}, large poses, all folds")
    bar.update()
    mats_img = {}
    for judge in ("efer", "fer2013"):
        for m in ("nonfrontal", "emotiongan", "frontal_gt"):
            c = summed_confusion(full_folds, big, judge, m)
            if c is not None:
                mats_img[f"{judge}: {METHOD_LABELS[m]}"] = c
    if mats_img:
        figs["confusion_image"] = confusion_figure(mats_img, fig_dir / "confusion_image_large_poses.png",
                                                   f"Image judges on {rp.acceptance_dataset}, large poses, all folds")
    bar.update()
    figs["pose_bars"] = pose_bars(full, rp.acceptance_dataset, rp.strategy, "flowcnn",
                                  ["frontal_gt", "nonfrontal", "landmark", "emotiongan"], METHOD_LABELS,
                                  fig_dir / "flowcnn_accuracy_by_pose.png",
                                  f"Motion-domain FER (Flow-CNN) by pose, {rp.acceptance_dataset}, mean ± std over folds")
    bar.update()
    acc_table, passed = acceptance(full, rp)

    meta0 = next(iter(full_folds.values()))["meta"]
    folds_run = sorted(full_folds)
    lines = [f"# {rp.title}", ""]
    lines += [f"Held-out folds: {', '.join(map(str, folds_run))} (subject-independent; mean ± sample std over "
              f"these folds). Variants: {', '.join(order)}. Rows scored: strategy `{rp.strategy}` in the main "
              f"tables. Evaluation grid: {meta0['size']}x{meta0['size']}; EPE in source-crop pixels (flows clipped "
              "at the store's clip, as the model sees them); RMSE in grey levels (0-255).", ""]
    lines += ["Test subjects per fold: " + "; ".join(
        f"fold {k}: " + ", ".join(f"{d} {'/'.join(s.get('test_subjects', []))}" for d, s in bd["meta"]["stores"].items()
                                  if s.get("rows"))
        for k, bd in sorted(full_folds.items())), ""]
    lines += ["## Acceptance check (motion-domain FER on large poses, eMotion-GAN vs no frontalization)", "",
              acc_table, "", f"Every large pose passes on the `all` rows, both strategies pooled (Δ ≥ "
              f"{rp.acceptance_gain_pts:g} pts and lower EPE): **{'yes' if passed else 'no'}**. Neutral-apex and "
              "frame-to-frame rows are shown separately (a frame-to-frame majority can hide neutral-apex pairs that "
              "are not frontalized); gap closure = (acc − acc_input) / (acc_truth − acc_input); a frontalizer that "
              "erases the motion scores the zero flow's EPE.", ""]
    lines += ["## Table I: flows (EPE) and images (SSIM, RMSE, false colour) against the frontal ground truth", "",
              "False colour: mean |chroma − the frontal face's chroma| in grey levels (chroma = a channel minus the "
              "mean of the three), colour no face has; grey SSIM and FER2013 do not see it.", "", table1(aggs, rp), ""]
    lines += ["## Table II: FER accuracy (%) per judge, methods x datasets and poses", ""]
    for judge, methods in (("flowcnn", ["frontal_gt", "nonfrontal", "landmark", "emotiongan", "gf_direct"]),
                           ("efer", ["frontal_gt", "nonfrontal", "landmark", "emotiongan", "gw_gt"]),
                           ("fer2013", ["frontal_gt", "nonfrontal", "landmark", "emotiongan", "gw_gt"])):
        if any(f"{judge}.accuracy.nonfrontal" in g for g in full.values()):
            lines += [f"### {JUDGE_LABELS[judge]}", "", table2(full, judge, methods, rp), ""]
    lines += ["Δ is the gain over no frontalization in points, acc − acc_nf, as the paper's tables read; the "
              "relative change 100·(acc − acc_nf)/acc_nf is given beside it, labelled as such.", ""]
    lines += ["## Table IV: ablations (accuracy %, the ablated model's flows and warped faces)", "", table4(aggs, rp), ""]
    if len(aggs) == 1:
        lines += ["No ablation was run with these params (`evaluate.ablations` is empty): only the full model is "
                  "listed. Each variant adds one training per fold: `dvc exp run -S "
                  "'evaluate.ablations=[no_rec,no_de,no_gw]'`.", ""]
    lines += ["## Figures", ""] + ([f"Faces and flows of {at} (the lowest fold that kept figure samples).", ""]
                                   if samples_path is not None else [])
    for key, caption in (("fig1", "Fig. 1 analogue"), ("fig5", "Fig. 5 analogue"), ("expressions", "Faces by expression"),
                         ("pose_bars", "Flow-CNN accuracy by pose"),
                         ("confusion_flowcnn", "Flow-CNN confusion matrices (large poses)"),
                         ("confusion_image", "Image-judge confusion matrices (large poses)")):
        if key in figs:
            lines += [f"![{caption}]({_rel(figs[key], out_md.parent)})", ""]
    judges = meta0.get("judges", {})
    lines += ["## Judges", "",
              "- Flow-CNN: trained per fold on the frontal ground-truth flows of the training folds; its accuracy "
              "on the held-out frontal ground truth is the ceiling row of the motion table.",
              f"- e_FER: {judges.get('efer', {}).get('name', '?')} (trained per fold on the training folds' frontal faces"
              + ("; it reads each face's change from the frontal neutral face: train_fer.input change)." if
                 judges.get("efer", {}).get("input") == "change" else ")."),
              f"- FER2013: {_fer2013_line(judges.get('fer2013', {}))}.", ""]
    if params_record:
        lines += ["## Params that made this report", "", "```json", json.dumps(params_record, indent=1, sort_keys=True),
                  "```", ""]
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text("\n".join(lines))
    cv = {"folds": folds_run, "acceptance_passed": passed,
          "variants": {v: {g: {k: m for k, m in a[g].items()} for g in a
                           if g.endswith(f"/{rp.strategy}") and g.split("/")[1] in ("all", "large", "small")}
                       for v, a in aggs.items()}}
    if metrics_out is not None:
        mo = Path(metrics_out)
        mo.parent.mkdir(parents=True, exist_ok=True)
        mo.write_text(json.dumps(cv, indent=1, sort_keys=True) + "\n")
    bar.update()
    bar.close()
    return {"report": str(out_md), "figures": {k: str(v) for k, v in figs.items()}, "acceptance_passed": passed,
            "full": full, "folds": folds_run}   # the full model's aggregate: the headline metrics' source
