"""Thin typer commands over training/inference/ (frontalize, faces, transfer, bundle): frontalize, transfer, average-face, export.

torch and mediapipe are imported inside the commands, so `emogan --help` stays fast.
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

BUNDLE_HELP = "model bundle (.safetensors with its .json sidecar, from `emogan export`)"
INPUT_HELP = "a video file, a folder of frames, or two (or more) image files; the first frame is the neutral one"


def _params(path: Optional[Path], **overrides):
    from pipeline.adapters.common import ManifestParams
    from pipeline.params import load_params, section
    from training.inference.frontalize import load_frontalize_params

    params = load_params(path)
    return load_frontalize_params(params, **overrides), section(params, "manifest", ManifestParams), params


def _read_image(path: Path):
    from pipeline.crop import SequenceError, read_rgb
    from pipeline.errors import EmoganError

    try:
        return read_rgb(path)
    except SequenceError as e:
        raise EmoganError(f"{e.file}: {e.reason}") from None


def _report(out: Path, doc: dict) -> None:
    probs = doc["probabilities"]
    typer.echo(f"{out}: expression {doc['predicted']} ({probs[doc['predicted']]:.2f}) at pair {doc['apex_pair']} "
               f"of {len(doc['pairs'])}; files: {', '.join(doc['files'])}")


def frontalize_command(
    inputs: List[Path] = typer.Argument(..., help=INPUT_HELP),
    bundle: Path = typer.Option(..., "--bundle", help=BUNDLE_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="output folder"),
    neutral: Optional[Path] = typer.Option(None, "--neutral", help="the subject's neutral frontal face picture "
                                           "(default: the bundle's average neutral face)"),
    as_crop: bool = typer.Option(False, "--as-crop", help="the neutral picture is already a framed face: no detection"),
    align: Optional[bool] = typer.Option(None, "--align/--no-align", help="register the neutral face on the average "
                                         "face's keypoints (default frontalize.align_neutral)"),
    stride: Optional[int] = typer.Option(None, "--stride", help="keep every n-th frame (default frontalize.stride)"),
    device: Optional[Device] = typer.Option(None, "--device", help="default frontalize.device"),
    params_file: Optional[Path] = PARAMS_OPTION,
) -> None:
    """Frontalize the facial motion of a recording: frontal flow (.npy, .png), expressive frontal face, expression (JSON)."""
    from training.inference import frontalize as infer
    from training.inference.bundle import load_bundle

    p, mp, params = _params(params_file, stride=stride, device=device)
    b = load_bundle(bundle, device=p.device)
    pre = infer.preprocess_params(b, params)
    frames = infer.iter_recording(inputs, mp.image_exts, p.stride, p.max_frames)
    image = _read_image(neutral) if neutral is not None else None
    face, info = infer.neutral_face(b, pre, image, p, as_crop=as_crop,
                                    align=p.align_neutral if align is None else align,
                                    what=str(neutral) if neutral else "neutral face")
    res, rec = infer.frontalize_recording(b, pre, frames, face, p)
    record = {"command": "frontalize", "input": rec.names, "box": [rec.box.x, rec.box.y, rec.box.side],
              "neutral_face": str(neutral) if neutral else "bundle average face", **info}
    doc = infer.write_outputs(out, res, b, list(rec.crops[1:]), rec.names[1:], p, record)
    _report(out, doc)


def transfer_command(
    source: Optional[List[Path]] = typer.Argument(None, help="source recording: " + INPUT_HELP),
    target: str = typer.Option(..., "--target", help="neutral face picture to animate (another person, a drawing), "
                               "or `average` for the bundle's average face"),
    bundle: Path = typer.Option(..., "--bundle", help=BUNDLE_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="output folder"),
    store: Optional[Path] = typer.Option(None, "--store", help="take the source motion from a training store instead"),
    sequence: Optional[str] = typer.Option(None, "--sequence", help="with --store: the sequence id (SUBJECT/SEQUENCE)"),
    as_crop: bool = typer.Option(False, "--as-crop", help="the target picture is already a framed face: no detection"),
    align: Optional[bool] = typer.Option(None, "--align/--no-align", help="register the target on the average face's "
                                         "keypoints (default frontalize.align_target)"),
    stride: Optional[int] = typer.Option(None, "--stride", help="keep every n-th frame of the source"),
    device: Optional[Device] = typer.Option(None, "--device", help="default frontalize.device"),
    params_file: Optional[Path] = PARAMS_OPTION,
) -> None:
    """Transfer the (frontalized) facial motion of a source sequence onto a target neutral face."""
    import numpy as np

    from pipeline.errors import EmoganError
    from training.inference import frontalize as infer
    from training.inference import transfer
    from training.inference.bundle import load_bundle

    if bool(source) == (store is not None):
        raise EmoganError("give the source either as a recording (SOURCE...) or as --store STORE --sequence ID")
    if store is not None and not sequence:
        raise EmoganError("--store needs --sequence SUBJECT/SEQUENCE")
    p, mp, params = _params(params_file, stride=stride, device=device)
    b = load_bundle(bundle, device=p.device)
    pre = infer.preprocess_params(b, params)
    image = None if target == "average" else _read_image(Path(target))
    face, info = infer.neutral_face(b, pre, image, p, as_crop=as_crop,
                                    align=p.align_target if align is None else align, what=f"target {target}")
    if store is not None:
        flows, images, _ = transfer.store_sequence(store, sequence, b.meta)
        res = infer.run_networks(b, flows, face, batch_size=p.batch_size, apex=p.apex,
                                 faces_u8=np.asarray(images) if b.run.reads_face else None)
        inputs = [im.transpose(1, 2, 0) for im in images]
        ids: list = [f"{sequence}#{k + 1}" for k in range(len(flows))]
        record = {"command": "transfer", "source": {"store": str(store), "sequence": sequence}}
    else:
        frames = infer.iter_recording(source, mp.image_exts, p.stride, p.max_frames)
        res, rec = infer.frontalize_recording(b, pre, frames, face, p)
        inputs, ids = list(rec.crops[1:]), rec.names[1:]
        record = {"command": "transfer", "source": {"input": rec.names, "box": [rec.box.x, rec.box.y, rec.box.side]}}
    record.update({"target": target, **info})
    doc = infer.write_outputs(out, res, b, inputs, ids, p, record)
    _report(out, doc)


def average_face_command(
    stores: List[Path] = typer.Argument(..., help="training store(s) (Zarr, from `emogan normalize`)"),
    out: Path = typer.Option(..., "--out", "-o", help="PNG to write (its keypoints go to the .json beside it)"),
    params_file: Optional[Path] = PARAMS_OPTION,
) -> None:
    """The mean aligned neutral face of the stores' sequences (each registered on the mean eyes/nose/mouth)."""
    from training.inference import faces
    from training.inference.frontalize import write_png

    p, _, _ = _params(params_file)
    avg = faces.average_face(stores, None, model=p.keypoint_model, min_confidence=p.keypoint_confidence)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_png(out, avg.image.transpose(1, 2, 0))
    out.with_suffix(".json").write_text(json.dumps({
        "stores": [str(s) for s in stores], "n_faces": avg.n_faces, "n_skipped": avg.n_skipped,
        "size": int(avg.image.shape[-1]), "keypoint_names": list(faces.KEYPOINTS),
        "keypoints": avg.keypoints.tolist()}, indent=2) + "\n")
    typer.echo(f"{out}: mean of {avg.n_faces} aligned neutral faces ({avg.n_skipped} without a detected face skipped)")


def export_command(
    run_dir: Path = typer.Argument(..., help="run folder of `emogan train` (config.json, weights/ or checkpoints/)"),
    out: Path = typer.Option(..., "--out", "-o", help="bundle to write, NAME.safetensors (plus NAME.json)"),
    epoch: Optional[int] = typer.Option(None, "--epoch", help="a checkpoint's epoch instead of the exported weights"),
    average_face: Optional[Path] = typer.Option(None, "--average-face", help="PNG from `emogan average-face` "
                                                "(default: computed from the run's training rows)"),
    no_average_face: bool = typer.Option(False, "--no-average-face", help="bundle without an average face"),
    params_file: Optional[Path] = PARAMS_OPTION,
) -> None:
    """Bundle a trained run for inference: all nets' weights in one safetensors file plus a JSON sidecar."""
    from pipeline.errors import EmoganError
    from training.inference import faces
    from training.inference.bundle import AverageFace, export_bundle

    p, _, params = _params(params_file)
    avg = None
    if average_face is not None and no_average_face:
        raise EmoganError("--average-face and --no-average-face exclude each other")
    if average_face is not None:
        img = _read_image(average_face).transpose(2, 0, 1)
        side = average_face.with_suffix(".json")
        meta = json.loads(side.read_text()) if side.is_file() else {}
        kp = meta.get("keypoints")
        if kp is None:
            k = faces.face_keypoints(img, p.keypoint_model, p.keypoint_confidence)
            kp = None if k is None else k.tolist()
        import numpy as np

        avg = AverageFace(np.ascontiguousarray(img), None if kp is None else np.asarray(kp, np.float32),
                          int(meta.get("n_faces", 0)), int(meta.get("n_skipped", 0)), str(average_face))
    elif not no_average_face:
        avg = _run_average_face(run_dir, p)
    path = export_bundle(run_dir, out, params, epoch=epoch, average_face=avg)
    face = "no average face" if avg is None else f"average face of {avg.n_faces} faces"
    typer.echo(f"{path} (+ {path.with_suffix('.json').name}): gf, dp, de, gw weights, {face}")


def _run_average_face(run_dir: Path, p):
    """The average face of a run's TRAINING rows (its held-out subjects stay out of it)."""
    from pipeline.errors import EmoganError
    from training.checkpoint import read_run_record
    from training.data import check_store, fold_rows
    from training.inference import faces

    rec = read_run_record(run_dir)
    stores, rows = [], []
    for s, f in zip(rec.stores, rec.folds_files):
        try:
            info = check_store(s)
        except EmoganError as e:
            raise EmoganError(f"{e}; the average face is made from the run's stores: give --average-face PNG "
                              "or --no-average-face") from None
        stores.append(s)
        rows.append(fold_rows(info, rec.fold, "train", f, rec.folds_k))
    return faces.average_face(stores, rows, model=p.keypoint_model, min_confidence=p.keypoint_confidence)
