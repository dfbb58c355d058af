"""Thin typer commands of the evaluation side: `emogan train-flowcnn`, `baseline-landmark`, `evaluate`, `report`.

Each resolves params.yaml (`evaluate:`, `report:`, `paths:`) and hands off to one function of
training/evaluation/ (flowcnn.py, baselines.py, evaluate.py, report.py).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import List, Optional

import typer

from pipeline.params import PARAMS_OPTION
from training.commands.choices import Device

log = logging.getLogger(__name__)

FOLDS_HELP = ("folds file (subject,fold) per store, in store order; default <paths.manifests>/<dataset>_folds.csv, "
              "else the rule over train.folds_k")


def _params(path: Path):
    from pipeline.params import load_params

    return load_params(path)


def _folds_files(params, stores, folds) -> list[str | None]:
    from training.config import resolve_folds

    return resolve_folds(params, stores, folds)


def _k(params) -> int:
    from training.config import folds_k

    return folds_k(params)


def train_flowcnn_command(
    stores: List[Path] = typer.Argument(..., help="training stores (merged, as for the GAN)"),
    fold: int = typer.Option(..., "--fold", help="held-out fold: its subjects are never trained on"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="output folder (default <paths.models>/flowcnn_fold<K>)"),
    folds: Optional[List[Path]] = typer.Option(None, "--folds-file", help=FOLDS_HELP),
    metrics: Optional[Path] = typer.Option(None, "--metrics", help="also write the metrics JSON here (DVC metrics)"),
    device: Device = typer.Option("cpu", "--device"),
    params_file: Optional[Path] = PARAMS_OPTION,
) -> None:
    """Train the motion-domain judge (Flow-CNN) on the frontal ground-truth flows of the training folds."""
    from pipeline.params import path_param, subsection
    from training.evaluation.flowcnn import FlowCnnParams, train_flowcnn

    prm = _params(params_file)
    p = subsection(prm, "evaluate.flowcnn", FlowCnnParams)
    from pipeline.lock import writer_lock

    out = out or path_param(prm, "models") / f"flowcnn_fold{fold}"
    with writer_lock(out):  # one writer per output folder (pipeline/lock.py)
        m = train_flowcnn([str(s) for s in stores], fold, _folds_files(prm, stores, folds), _k(prm), p, out, device)
    if metrics is not None:
        metrics.parent.mkdir(parents=True, exist_ok=True)
        metrics.write_text(json.dumps({k: v for k, v in m.items() if k != "history"}, indent=2, sort_keys=True) + "\n")
    acc = m["test_accuracy_frontal_gt"]
    typer.echo(f"Flow-CNN fold {fold}: {m['train_rows']} training rows; held-out frontal ground truth accuracy "
               f"{'n/a' if acc is None else f'{acc:.3f}'} on {m['test_rows']} rows -> {out}")


def baseline_landmark_command(
    store: Path = typer.Argument(..., help="training store whose rows get a landmark-frontalized flow"),
    crops: Path = typer.Option(..., "--crops", help="crops folder of that dataset (crops.csv, cam2 frames)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="output .npz (default <paths.baselines>/<dataset>_landmark.npz)"),
    fold: Optional[List[int]] = typer.Option(None, "--fold", help="held-out fold(s) to compute (default evaluate.folds)"),
    folds_file: Optional[Path] = typer.Option(None, "--folds-file", help="folds file (default <paths.manifests>/<dataset>_folds.csv)"),
    params_file: Optional[Path] = PARAMS_OPTION,
) -> None:
    """Landmark-based frontalization baseline: FaceMesh head pose removed by a mesh warp, then Farneback flow."""
    import numpy as np

    from pipeline.flow import load_flow_params
    from pipeline.params import path_param, subsection, with_record
    from training.evaluation.baselines import LandmarkParams, landmark_baseline
    from training.data import check_store, fold_rows
    from training.data import store_name
    from training.evaluation.evaluate import evaluate_params
    from training.data import select_rows

    prm = _params(params_file)
    ep = evaluate_params(prm)
    lp = subsection(prm, "evaluate.landmark", LandmarkParams)
    name = store_name(store)
    info = check_store(store)
    # The store's own flow settings (recorded by normalize), so the baseline's flow matches its ground truth.
    rec = (info.attrs.get("params") or {}).get("flow")
    fp = with_record(load_flow_params(prm), rec, f"{store}: attrs params.flow")
    ff = folds_file or _folds_files(prm, [store], None)[0]
    rows = []
    for k in (fold or list(ep.folds)):
        try:
            rows.append(fold_rows(info, int(k), "test", Path(ff) if ff else None, _k(prm)))
        except Exception as e:  # noqa: BLE001 - a fold without this dataset's subjects: nothing to compute
            log.warning("%s: fold %s skipped (%s)", store, k, e)
    all_rows = np.unique(np.concatenate(rows)) if rows else np.zeros(0, np.int64)
    all_rows = select_rows(str(store), all_rows, lp.strategies) if len(all_rows) else all_rows
    out = out or path_param(prm, "baselines") / f"{name}_landmark.npz"
    meta = landmark_baseline(str(store), crops, all_rows, lp, fp, out)
    typer.echo(f"{out}: {meta['rows']} rows of {meta['sequences']} sequences, landmarks found on "
               f"{100 * (meta['ok_fraction'] or 0):.1f}% ({meta['seconds']:.0f} s)")


def evaluate_command(
    model: Path = typer.Argument(..., help="run folder of `emogan train` (config.json, weights/)"),
    stores: List[Path] = typer.Argument(..., help="stores to evaluate on (each on its held-out fold)"),
    fold: Optional[int] = typer.Option(None, "--fold", help="held-out fold (default: the run's; another is refused)"),
    flowcnn: Optional[Path] = typer.Option(None, "--flowcnn", help="Flow-CNN folder (default <paths.models>/flowcnn_fold<K>)"),
    landmark: Optional[List[Path]] = typer.Option(None, "--landmark", help="landmark-baseline .npz per store "
                                                  "(default <paths.baselines>/<dataset>_landmark.npz when present)"),
    folds: Optional[List[Path]] = typer.Option(None, "--folds-file", help=FOLDS_HELP),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="output folder (default <paths.metrics>/eval/<variant>/fold_<K>)"),
    device: Device = typer.Option("cpu", "--device"),
    efer_path: Optional[Path] = typer.Option(None, "--efer-path", help="the run's e_FER file, given by you when it is "
                                             "pickle-based (a run folder's word is not enough); sha256 checked"),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="allow that file's pickle-based format "
                                      "(TorchScript, torch.export): loading it runs its code"),
    params_file: Optional[Path] = PARAMS_OPTION,
) -> None:
    """Evaluate a trained eMotion-GAN on the held-out fold: EPE, SSIM/RMSE, motion and image FER, baselines."""
    from pipeline.errors import EmoganError
    from pipeline.params import path_param
    from training.data import store_name
    from training.evaluation.evaluate import evaluate_fold, evaluate_params

    prm = _params(params_file)
    ep = evaluate_params(prm)
    cfg_p = model / "config.json"
    if not cfg_p.is_file():
        raise EmoganError(f"{model}: no config.json here: not a run folder of `emogan train`")
    run_cfg = json.loads(cfg_p.read_text())
    k = int(run_cfg["fold"]) if fold is None else fold
    variant = run_cfg.get("ablation") or "full"
    flowcnn = flowcnn or path_param(prm, "models") / f"flowcnn_fold{k}"
    names = [store_name(s) for s in stores]
    if landmark:
        if len(landmark) != len(stores):
            raise EmoganError(f"--landmark given {len(landmark)} time(s) for {len(stores)} store(s): one per store")
        lm = dict(zip(names, landmark))
    else:
        base = path_param(prm, "baselines")
        lm = {n: (base / f"{n}_landmark.npz") if (base / f"{n}_landmark.npz").is_file() else None for n in names}
    out = out or path_param(prm, "metrics") / "eval" / variant / f"fold_{k}"
    from pipeline.weights import weights_path

    m = evaluate_fold(model, [str(s) for s in stores], k, flowcnn, lm, _folds_files(prm, stores, folds), _k(prm),
                      ep, out, weights_path("fer2013", prm), device, efer_path, trust_pickle,
                      crop_margin=float(prm["crop"]["margin"]))
    a = m.get("all", {}).get("all", {})
    fc = a.get("flowcnn", {}).get("accuracy", {})
    epe = a.get("epe_px", {})
    fmt = (lambda x: "n/a" if x is None else f"{x:.3f}")
    typer.echo(f"{out}: fold {k} ({variant}) Flow-CNN accuracy non-frontal {fmt(fc.get('nonfrontal'))}, "
               f"frontalized {fmt(fc.get('emotiongan'))}, landmark {fmt(fc.get('landmark'))}, frontal GT "
               f"{fmt(fc.get('frontal_gt'))}; EPE input {fmt(epe.get('nonfrontal'))} px, frontalized "
               f"{fmt(epe.get('emotiongan'))} px")


def report_command(
    eval_dir: Path = typer.Argument(..., help="folder of `emogan evaluate` outputs: <variant>/fold_<k>/"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="report file (default <paths.reports>/REPORT.md)"),
    metrics: Optional[Path] = typer.Option(None, "--metrics", help="full CV breakdown JSON (default <paths.metrics>/cv.json)"),
    headline: Optional[Path] = typer.Option(None, "--headline", help="headline metrics JSON, at most 40 numbers, what "
                                            "`dvc metrics show` lists (default <paths.metrics>/headline.json)"),
    compare: Optional[Path] = typer.Option(None, "--compare", help="another run's headline.json: say which of its "
                                           "numbers fall outside this report's error band (exit 1 if any)"),
    params_file: Optional[Path] = PARAMS_OPTION,
) -> None:
    """Write REPORT.md (Tables I, II, IV, Fig. 1 and 5 analogues, acceptance check, the error band), the CV
    breakdown and the headline metrics (large poses, per strategy, mean and std over folds)."""
    from pipeline.params import path_param, section
    from training.config import TrainSection
    from training.evaluation.band import add_band, band_table, bootstrap_band, compare_headline, load_rows
    from training.evaluation.headline import headline as headline_of
    from training.evaluation.headline import write_headline
    from training.evaluation.report import build_report, report_params

    prm = _params(params_file)
    rp = report_params(prm)
    out = out or path_param(prm, "reports") / "REPORT.md"
    metrics = metrics or path_param(prm, "metrics") / "cv.json"
    record = {k: prm[k] for k in ("synth", "synth_ckplus", "crop", "augment", "flow", "normalize", "folds",
                                  "train_fer", "evaluate", "report") if k in prm}
    if "train" in prm:
        t = section(prm, "train", TrainSection)
        record["train"] = {"config": t.config, t.config: getattr(t, t.config), "ablations": t.ablations,
                           "folds_k": t.folds_k}
    r = build_report(eval_dir, out, metrics, rp, record)
    h = headline_of(r["full"], rp.acceptance_dataset, len(r["folds"]), r["acceptance_passed"])
    headline = write_headline(h, headline or path_param(prm, "metrics") / "headline.json")
    band = bootstrap_band(load_rows(Path(eval_dir) / "full"), rp.acceptance_dataset, rp.acceptance_poses,
                          rp.band_resamples, rp.band_level, rp.band_seed)
    add_band(out, metrics, band, band_table(band, h, rp.band_resamples, rp.band_level, rp.band_seed))
    typer.echo(f"{r['report']}: {len(r['figures'])} figures; acceptance check "
               f"{'passed' if r['acceptance_passed'] else 'NOT passed'}; headline metrics {headline}")
    if compare is not None:
        n, bad = compare_headline(compare, band)
        typer.echo(f"{compare}: {n - len(bad)} of {n} headline numbers inside this report's error band"
                   + "".join(f"\n  outside: {b}" for b in bad))
        if bad:
            raise typer.Exit(1)


def synth_check_command(
    root: Path = typer.Argument(..., help="A folder written by `emogan synth` (emotiongan layout)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the result as JSON here (and a PNG next to it)."),
    cv_folds: int = typer.Option(3, "--cv-folds", help="Subject-wise cross-validation folds of the premise check."),
    fer: bool = typer.Option(True, help="Also score cam1 apex faces with the pretrained FER2013 model."),
    params_file: Optional[Path] = PARAMS_OPTION,
) -> None:
    """Check the premise (expressions are easy from frontal flows, hard under head rotation) and the people's spread."""
    from pipeline.weights import weights_path
    from training.evaluation.synth_check import check_synth

    from training.evaluation.evaluate import evaluate_params

    prm = _params(params_file)
    res = check_synth(root, cv_folds, weights_path("fer2013", prm) if fer else None, out,
                      evaluate_params(prm).fer2013_margin)
    line = (f"cam1 accuracy {res['cam1_accuracy']:.3f}; cam2 (yaw/pitch/roll/diagonal) "
            f"{res['cam2_rotating_accuracy']:.3f}; cam1-trained on cam2 {res['cam1_to_cam2_rotating_accuracy']:.3f}")
    sh, ap = res["identity"]["shape"], res["identity"]["appearance"]
    line += (f"; identity spread over {res['identity']['people']} people: shape {sh['mean']:.3f} mean, "
             f"{sh['nearest_mean']:.3f} to the nearest (inter-ocular distances), appearance {ap['mean']:.1f} mean, "
             f"{ap['nearest_mean']:.1f} to the nearest (grey levels RMS)")
    if fer:
        f = res["fer2013_cam1_apex"]
        per = ", ".join(f"{k} {v:.2f}" for k, v in f["per_class"].items())
        line += f"; FER2013 model on cam1 apex faces {f['accuracy']:.3f} ({per})"
    typer.echo(line)
