"""Stage `crop`: one square face box per sequence and camera, from its neutral (first) frame.

The box is the mediapipe face box (full-range model), squared on its larger side, grown by
`margin` x that side on every side (so 0.4 gives a box 1.8 face sizes wide: head motion stays
inside), then applied unchanged to every frame of the camera: the crop never jitters, so no
crop motion enters the flow. Parts of the box outside the image are padded, never shifted.

Output (docs/ARCHITECTURE.md, "crop output"): OUT/<subject>/<sequence>/cam1|cam2/img_###.png,
RGB, `size` x `size`; OUT/crops.csv; OUT/errors.csv; OUT/crop_params.json. Each finished
sequence folder holds a `crop.json` marker (boxes, params, source fingerprint): it is built in
OUT/.partial/ and renamed into place, so a killed run re-run skips finished sequences and
redoes only unfinished or stale ones.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, Optional

import numpy as np
import typer

from pipeline import pool
from pipeline.console import mediapipe_solution
from pipeline.errors import EmoganError, SequenceError
from pipeline.lock import writer_lock
from pipeline.manifest import MANIFEST_COLUMNS, check_row_paths, read_manifest, resolve_root, split_frames, write_csv
from pipeline.store import file_sha256
from pipeline.params import PARAMS_OPTION

log = logging.getLogger(__name__)
CROPS_COLUMNS: tuple[str, ...] = MANIFEST_COLUMNS + ("cam1_dir", "cam2_dir", "box_cam1", "box_cam2")
ERRORS_COLUMNS: tuple[str, ...] = ("dataset", "subject", "sequence", "file", "reason")
# warnings.csv: suspicious input in sequences that were cropped (blank frame, tiny face, truncated video).
WARNINGS_COLUMNS = ERRORS_COLUMNS
MARKER = "crop.json"
PARTIAL = ".partial"
# Fast PNG compression (level 1 of 9): crops are written once and read once by flow; time matters more than size.
PNG_LEVEL = 1


@dataclasses.dataclass
class CropParams:
    """params.yaml `crop:` (see the comments there)."""

    margin: float
    snap_px: int  # the box's side and corner on a grid of this many source pixels (1: none)
    size: int
    model_selection: int
    min_confidence: float
    pad_value: int
    gray: bool
    video_stride: int
    workers: int
    warn_blank_std: float  # warnings only (warnings.csv), the crops do not depend on them
    warn_upscale: float

    def result_dict(self) -> dict[str, Any]:
        """The params that change the crops (not `workers` nor the warning thresholds)."""
        d = dataclasses.asdict(self)
        for k in ("workers", "warn_blank_std", "warn_upscale"):
            d.pop(k)
        return d


class Box(NamedTuple):
    """A square in source-image pixels: top-left corner (may be negative) and side."""

    x: int
    y: int
    side: int


def format_box(box: Box | None) -> str:
    """A box as written in crops.csv: 'x y side' ('' for none)."""
    return "" if box is None else f"{box.x} {box.y} {box.side}"


def parse_box(text: str) -> Box | None:
    """Inverse of format_box."""
    return Box(*map(int, text.split())) if text.strip() else None


def _snap(v: float, grid: int) -> int:
    """`v` rounded to the nearest multiple of `grid` pixels (1: to the nearest pixel)."""
    return int(grid * round(v / grid))


def box_from_detection(xmin: float, ymin: float, width: float, height: float,
                       image_w: int, image_h: int, margin: float, snap: int = 1) -> Box:
    """Square box around a relative face box (mediapipe's), grown by `margin` x face size on each side; its side
    and corner snapped to a grid of `snap` pixels (params crop.snap_px), so that the detector's sub-pixel
    differences between CPUs give the same box (they move it only when a value sits on a grid boundary)."""
    face = max(width * image_w, height * image_h)
    cx = (xmin + width / 2) * image_w
    cy = (ymin + height / 2) * image_h
    side = max(_snap(face * (1 + 2 * margin), snap), snap, 1)
    return Box(_snap(cx - side / 2, snap), _snap(cy - side / 2, snap), side)


_DETECTORS: dict[tuple[int, float], Any] = {}


def _detector(model_selection: int, min_confidence: float) -> Any:
    """One mediapipe FaceDetection per setting and process (building one costs ~0.1 s)."""
    key = (model_selection, min_confidence)
    if key not in _DETECTORS:
        import mediapipe as mp

        _DETECTORS[key] = mediapipe_solution(mp.solutions.face_detection.FaceDetection,
                                             model_selection=model_selection, min_detection_confidence=min_confidence)
    return _DETECTORS[key]


def detect_face_box(image_rgb: np.ndarray, margin: float = 0.4, model_selection: int = 1,
                    min_confidence: float = 0.5, snap: int = 1) -> Box | None:
    """The margin-grown square box of the largest face in an RGB uint8 (H,W,3) image, or None."""
    img = np.ascontiguousarray(image_rgb, dtype=np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    result = _detector(model_selection, min_confidence).process(img)
    if not result.detections:
        return None
    # The largest face is the subject; a smaller one is a background face or a false positive.
    best = max(result.detections, key=lambda d: (d.location_data.relative_bounding_box.width
                                                 * d.location_data.relative_bounding_box.height))
    bb = best.location_data.relative_bounding_box
    return box_from_detection(bb.xmin, bb.ymin, bb.width, bb.height, img.shape[1], img.shape[0], margin, snap)


def crop_square(image: np.ndarray, box: Box, size: int, pad_value: int = 0) -> np.ndarray:
    """The box's content resized to (size, size); parts outside the image are filled with pad_value."""
    import cv2

    h, w = image.shape[:2]
    x0, y0, x1, y1 = box.x, box.y, box.x + box.side, box.y + box.side
    inside = image[max(y0, 0):min(y1, h), max(x0, 0):min(x1, w)]
    top, left = max(-y0, 0), max(-x0, 0)
    bottom, right = box.side - top - inside.shape[0], box.side - left - inside.shape[1]
    if inside.size == 0:  # the box misses the image entirely: all padding
        square = np.full((box.side, box.side) + image.shape[2:], pad_value, dtype=image.dtype)
    elif top or left or bottom or right:
        value = (pad_value,) * (image.shape[2] if image.ndim == 3 else 1)
        square = cv2.copyMakeBorder(inside, top, bottom, left, right, cv2.BORDER_CONSTANT, value=value)
    else:
        square = inside
    interp = cv2.INTER_AREA if box.side > size else cv2.INTER_LINEAR
    return cv2.resize(square, (size, size), interpolation=interp)


def read_rgb(path: Path, gray: bool = False) -> np.ndarray:
    """An image file as RGB uint8 (H,W,3); grey-converted (still 3 channels) if `gray`."""
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SequenceError(str(path), "unreadable image (missing, truncated or not an image)")
    return _to_rgb(bgr, gray)


def _to_rgb(bgr: np.ndarray, gray: bool) -> np.ndarray:
    import cv2

    if gray:
        return cv2.cvtColor(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def iter_video(path: Path, gray: bool = False, stride: int = 1) -> Iterator[np.ndarray]:
    """Every `stride`-th frame of a video as RGB uint8; SequenceError if it cannot be decoded."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise SequenceError(str(path), "unreadable video (cannot be opened or decoded)")
    try:
        i = 0
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            if i % stride == 0:
                yield _to_rgb(bgr, gray)
            i += 1
        if i == 0:
            raise SequenceError(str(path), "unreadable video (no frame could be decoded)")
    finally:
        cap.release()


def write_png(path: Path, rgb: np.ndarray) -> None:
    """Write an RGB uint8 image as PNG; OSError if it cannot be written."""
    import cv2

    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, PNG_LEVEL]):
        raise OSError(f"{path}: could not write the image")


def frame_name(i: int, n: int) -> str:
    """Output name of frame i (0-based) of n: img_001.png..., wider when n > 999 so names sort in time order."""
    return f"img_{i + 1:0{max(3, len(str(n)))}d}.png"


def crop_frames(frames: Iterable[tuple[str, np.ndarray]], p: CropParams) -> Iterator[tuple[Box, np.ndarray]]:
    """Crop (name, RGB frame) pairs with the box of the first frame; yields (box, crop). Reused by frontalize."""
    box, shape = None, None
    for file, img in frames:
        if box is None:
            box = detect_face_box(img, p.margin, p.model_selection, p.min_confidence, p.snap_px)
            if box is None:
                raise SequenceError(file, "no face found in the neutral (first) frame")
            shape = img.shape
        elif img.shape != shape:
            raise SequenceError(file, f"frame size {img.shape[1]}x{img.shape[0]} differs from the "
                                      f"neutral frame's {shape[1]}x{shape[0]}")
        yield box, crop_square(img, box, p.size, p.pad_value)


def output_sizes(folder: Path, cameras: Iterable[str]) -> dict[str, int]:
    """{"cam1/img_001.png": bytes, ...}: what a finished sequence's marker records of its frames."""
    return {f"{cam}/{q.name}": q.stat().st_size for cam in cameras for q in sorted((folder / cam).glob("img_*.png"))}


def outputs_intact(folder: Path, recorded: Any, cameras: Iterable[str]) -> bool:
    """Whether the frames a marker recorded are all there, alone, with their recorded sizes (a truncated or
    missing frame means the sequence is redone; a marker without sizes, from an older run, too)."""
    if not isinstance(recorded, dict) or not recorded:
        return False
    try:
        return output_sizes(folder, cameras) == recorded
    except OSError:
        return False


def _named(frames: Iterable[tuple[str, np.ndarray]], names: list[str]) -> Iterator[tuple[str, np.ndarray]]:
    for name, img in frames:
        names.append(name)
        yield name, img


def _crop_camera(frames: Iterable[tuple[str, np.ndarray]], first_file: str, out_dir: Path, p: CropParams,
                 n_hint: int, warnings: list[list[str]] | None = None) -> tuple[Box, int]:
    """Crop one camera's frames into out_dir (streaming: a long video never sits in memory); suspicious input
    (a blank frame, a tiny face enlarged many times) is appended to `warnings` as [file, reason]."""
    out_dir.mkdir(parents=True)
    box, written, names = None, 0, []
    warnings = warnings if warnings is not None else []
    for written, (box, crop) in enumerate(crop_frames(_named(frames, names), p), start=1):
        if written == 1 and p.size / box.side > p.warn_upscale:
            warnings.append([names[-1], f"face box of {box.side} px enlarged {p.size / box.side:.1f}x to {p.size} px "
                                        "(a tiny face: little detail for the flow)"])
        if float(crop.std()) < p.warn_blank_std:
            warnings.append([names[-1], f"blank frame (grey levels vary by {float(crop.std()):.2f})"])
        write_png(out_dir / frame_name(written - 1, n_hint), crop)
    if box is None:
        raise SequenceError(first_file, "no frames")
    if len(frame_name(0, written)) != len(frame_name(0, n_hint)):  # a video longer than its header said
        for i in range(written):
            os.replace(out_dir / frame_name(i, n_hint), out_dir / frame_name(i, written))
    return box, written


def _image_frames(root: Path, files: list[str], gray: bool) -> Iterator[tuple[str, np.ndarray]]:
    for f in files:
        yield str(root / f), read_rgb(root / f, gray)


def _video_frames(path: Path, gray: bool, stride: int) -> Iterator[tuple[str, np.ndarray]]:
    for img in iter_video(path, gray, stride):
        yield str(path), img


def source_fingerprint(row: dict[str, str], root: Path, p: CropParams) -> str:
    """sha256 of the crop params, the row's source fields and each source file's name and content.

    Content, not mtime: the marker is part of the stage's output, so an mtime would give every machine
    (every fresh clone) another dvc.lock hash for identical crops."""
    h = hashlib.sha256(json.dumps(p.result_dict(), sort_keys=True).encode())
    for k in ("subject", "sequence", "frontal", "nonfrontal", "video"):
        h.update(f"{k}={row[k]}\n".encode())
    for f in split_frames(row["frontal"]) + split_frames(row["nonfrontal"]) + ([row["video"]] if row["video"] else []):
        try:
            h.update(f"{f}:{file_sha256(root / f)}\n".encode())
        except OSError:
            h.update(f"{f}:missing\n".encode())
    return h.hexdigest()


def crop_sequence(row: dict[str, str], root: Path, out: Path, p: CropParams, paired: bool) -> dict[str, Any]:
    """Crop one manifest row into out/<subject>/<sequence>/ (or reuse it if finished); returns the outcome."""
    try:
        check_row_paths(row, root, root)
        final = out / row["subject"] / row["sequence"]
        fp = source_fingerprint(row, root, p)
        marker = final / MARKER
        if marker.is_file():
            try:
                m = json.loads(marker.read_text())
            except (OSError, ValueError):
                m = {}
            if m.get("fingerprint") == fp and outputs_intact(final, m.get("files"), m.get("cameras", [])):
                return {"status": "reused", "marker": m}
        f1, f2 = split_frames(row["frontal"]), split_frames(row["nonfrontal"])
        if paired and len(f1) != len(f2):
            seq_dir = root / Path((f2 or f1)[0]).parent if (f1 or f2) else root
            raise SequenceError(str(seq_dir), f"frame count mismatch between cameras: frontal has {len(f1)}, "
                                              f"non-frontal has {len(f2)}")
        if not row["video"] and not f1:
            raise SequenceError(str(root), "no frames listed for this sequence")
        tmp = out / PARTIAL / row["subject"] / row["sequence"]
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        boxes: dict[str, Box] = {}
        warns: list[list[str]] = []
        if row["video"]:
            vpath = root / row["video"]
            header = int(row["n_frames"] or 0)
            boxes["cam1"], n = _crop_camera(_video_frames(vpath, p.gray, p.video_stride), str(vpath), tmp / "cam1", p,
                                            max(header // p.video_stride, 1), warns)
            if n < -(-header // p.video_stride):
                warns.append([str(vpath), f"truncated video: {n * p.video_stride} or fewer of the {header} frames "
                                          "its header announces could be decoded"])
        else:
            boxes["cam1"], n = _crop_camera(_image_frames(root, f1, p.gray), str(root / f1[0]), tmp / "cam1", p, len(f1),
                                            warns)
            if f2:
                boxes["cam2"], _ = _crop_camera(_image_frames(root, f2, p.gray), str(root / f2[0]), tmp / "cam2", p,
                                                len(f2), warns)
        m = {"fingerprint": fp, "n_frames": n, "cameras": sorted(boxes), "warnings": warns,
             "boxes": {cam: list(b) for cam, b in boxes.items()}, "params": p.result_dict(),
             "files": output_sizes(tmp, sorted(boxes))}  # checked on reuse: content, not only counts
        (tmp / MARKER).write_text(json.dumps(m, indent=1))
        if final.exists():
            shutil.rmtree(final)  # stale: other params or changed source
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(final)
        return {"status": "cropped", "marker": m}
    except SequenceError as e:
        return {"status": "error", "file": e.file, "reason": e.reason}


def _crop_task(args: tuple[dict[str, str], str, str, dict[str, Any], bool]) -> dict[str, Any]:
    row, root, out, pd, paired = args
    return crop_sequence(row, Path(root), Path(out), CropParams(**pd), paired)


def crop_dataset(manifest: Path, out: Path, p: CropParams, progress: bool = True) -> dict[str, int]:
    """Crop every sequence of a manifest into `out`; writes crops.csv, errors.csv, crop_params.json."""
    with writer_lock(out):  # one writer per output folder (pipeline/lock.py)
        return _crop_dataset(manifest, out, p, progress)


def _crop_dataset(manifest: Path, out: Path, p: CropParams, progress: bool) -> dict[str, int]:
    if p.size < 8 or p.margin < 0 or p.video_stride < 1 or p.workers < 1:
        raise EmoganError(f"crop params out of range: size >= 8, margin >= 0, video_stride >= 1, workers >= 1 ({p})")
    rows = read_manifest(manifest)
    keys = [(r["subject"], r["sequence"]) for r in rows]
    dup = {k for k, n in Counter(keys).items() if n > 1}
    if dup:
        raise EmoganError(f"{manifest}: sequence(s) listed twice: {', '.join('/'.join(k) for k in sorted(dup))}")
    paired = any(r["nonfrontal"] for r in rows)
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / PARTIAL, ignore_errors=True)  # leftovers of a killed run: never finished, redo them
    roots = [resolve_root(manifest, r["root"]) for r in rows]
    results: list[dict[str, Any] | None] = [None] * len(rows)
    todo = []
    for i, (r, root) in enumerate(zip(rows, roots)):
        try:  # names and frame paths from the manifest's content: inside the dataset root (pipeline/safepath.py)
            check_row_paths(r, root, f"{manifest} line {i + 2}")
            todo.append(i)
        except SequenceError as e:
            results[i] = {"status": "error", "file": e.file, "reason": e.reason}
    tasks = [(rows[i], str(roots[i]), str(out), dataclasses.asdict(p), paired) for i in todo]
    for k, res in pool.run(_crop_task, tasks, p.workers, f"crop {out.name}", progress=progress):
        results[todo[k]] = res
    crops, errors, counts = [], [], {"cropped": 0, "reused": 0, "error": 0}
    for r, root, res in zip(rows, roots, results):
        assert res is not None
        counts[res["status"]] += 1
        if res["status"] == "error":
            errors.append({**{k: r[k] for k in ("dataset", "subject", "sequence")},
                           "file": res["file"], "reason": res["reason"]})
            continue
        m = res["marker"]
        seq = f"{r['subject']}/{r['sequence']}"
        crops.append({**r, "root": Path(os.path.relpath(root.resolve(), out.resolve())).as_posix(),
                      "n_frames": m["n_frames"],
                      "cam1_dir": f"{seq}/cam1", "cam2_dir": f"{seq}/cam2" if "cam2" in m["cameras"] else "",
                      "box_cam1": format_box(Box(*m["boxes"]["cam1"])),
                      "box_cam2": format_box(Box(*m["boxes"]["cam2"])) if "cam2" in m["boxes"] else ""})
    _remove_stale(out, set(keys))
    warnings = [{**{k: r[k] for k in ("dataset", "subject", "sequence")}, "file": f, "reason": why}
                for r, res in zip(rows, results) if res and res["status"] != "error"
                for f, why in res["marker"].get("warnings", [])]
    write_csv(out / "crops.csv", CROPS_COLUMNS, crops)
    write_csv(out / "errors.csv", ERRORS_COLUMNS, errors)
    write_csv(out / "warnings.csv", WARNINGS_COLUMNS, warnings)
    for w in warnings:
        log.warning("suspicious input in %s/%s: %s: %s", w["subject"], w["sequence"], w["file"], w["reason"])
    (out / "crop_params.json").write_text(json.dumps(
        {"params": p.result_dict(), "manifest": str(manifest), "manifest_sha256": file_sha256(manifest),
         "sequences": len(crops), "errors": len(errors)}, indent=1))
    shutil.rmtree(out / PARTIAL, ignore_errors=True)
    for e in errors:
        log.warning("skipped %s/%s: %s: %s", e["subject"], e["sequence"], e["file"], e["reason"])
    if rows and not crops:
        raise EmoganError(f"{manifest}: no sequence could be cropped (see {out / 'errors.csv'}); "
                          f"first error: {errors[0]['file']}: {errors[0]['reason']}")
    return counts


def _remove_stale(out: Path, keep: set[tuple[str, str]]) -> None:
    """Delete finished sequence folders (those with our marker) that the manifest no longer lists."""
    for marker in out.glob(f"*/*/{MARKER}"):
        seq = marker.parent
        if (seq.parent.name, seq.name) not in keep:
            shutil.rmtree(seq)
            if not any(seq.parent.iterdir()):
                seq.parent.rmdir()


def crop_command(
    manifest: Path = typer.Argument(..., help="manifest CSV (emogan manifest)"),
    out: Path = typer.Option(None, "--out", "-o", help="output folder (default: <paths.crops>/<dataset>)"),
    size: int = typer.Option(None, help="crop side in pixels (params crop.size)"),
    margin: float = typer.Option(None, help="margin on each side, fraction of the face size (params crop.margin)"),
    gray: bool = typer.Option(None, "--gray/--color", help="convert frames to grey (CK+ mixes both)"),
    workers: int = typer.Option(None, help="processes (params crop.workers)"),
    params_file: Optional[Path] = PARAMS_OPTION,
) -> None:
    """Crop faces: one square box per sequence and camera, from the neutral frame."""
    from pipeline.params import load_params, path_param, section

    params = load_params(params_file)
    p = section(params, "crop", CropParams, size=size, margin=margin, gray=gray, workers=workers)
    if out is None:
        rows = read_manifest(manifest)
        out = path_param(params, "crops") / (rows[0]["dataset"] if rows else manifest.stem)
    c = crop_dataset(manifest, out, p)
    typer.echo(f"{out}: {c['cropped']} cropped, {c['reused']} already done, {c['error']} skipped "
               f"(see {out / 'errors.csv'})")
