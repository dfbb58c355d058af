"""Stage `augment`: a synthetic non-frontal view (cam2) for frontal-only datasets.

Per sequence, one random draw, seeded by (`augment.seed`, subject, sequence) so that it does not
depend on the order or the subset of sequences: an in-plane rotation (roll) and an out-of-plane
rotation (yaw, pitch) of the face plane seen by a pinhole camera `distance` crop sides away,
composed into one homography; plus a Gaussian noise level. The same homography warps every
frame of the sequence (fresh noise per frame, from the same seeded generator). The original
frames stay cam1 (the frontal ground truth); the rows get pose `augmented`.

Input: a crop folder (crops.csv). Output: OUT/ in the crop layout (cam1 hard-linked, or copied
across file systems, cam2 written), crops.csv, errors.csv (the crop stage's rows plus ours),
augment_params.json, and OUT/<subject>/<sequence>/augment.json (draw and homography). With OUT
equal to the input, cam2 is added in place. Finished sequences are skipped on a re-run.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Optional

import numpy as np
import typer

from pipeline.adapters.common import natural_key
from pipeline.crop import (CROPS_COLUMNS, ERRORS_COLUMNS, PARTIAL, SequenceError, output_sizes, outputs_intact,
                           read_rgb, write_png)
from pipeline.console import progress_enabled
from pipeline.errors import EmoganError
from pipeline.lock import writer_lock
from pipeline.manifest import read_csv, resolve_root, write_csv
from pipeline.safepath import inside, safe_name
from pipeline.store import file_sha256
from pipeline.params import PARAMS_OPTION

log = logging.getLogger(__name__)
MARKER = "augment.json"


@dataclasses.dataclass
class AugmentParams:
    """params.yaml `augment:` (see the comments there)."""

    seed: int
    roll_deg: tuple[float, float]
    yaw_deg: tuple[float, float]
    pitch_deg: tuple[float, float]
    distance: float
    noise_sigma: tuple[float, float]
    pad_value: int


def sequence_rng(seed: int, subject: str, sequence: str) -> np.random.Generator:
    """The generator of one sequence: a function of the seed and the sequence's name only."""
    name = int.from_bytes(hashlib.sha256(f"{subject}/{sequence}".encode()).digest()[:8], "little")
    return np.random.default_rng([seed, name])


def draw_augmentation(rng: np.random.Generator, p: AugmentParams) -> dict[str, float]:
    """One sequence's draw: roll, yaw, pitch (degrees) and noise sigma (grey levels), uniform in their ranges."""
    return {k: float(rng.uniform(*getattr(p, f))) for k, f in
            (("roll_deg", "roll_deg"), ("yaw_deg", "yaw_deg"), ("pitch_deg", "pitch_deg"),
             ("noise_sigma", "noise_sigma"))}


def rotation_homography(size: int, roll_deg: float, yaw_deg: float, pitch_deg: float, distance: float) -> np.ndarray:
    """(3,3) homography of a size x size image plane rotated about its centre, seen from `distance` sides away."""
    f = distance * size
    c = (size - 1) / 2
    k = np.array([[f, 0, c], [0, f, c], [0, 0, 1.0]])
    r, y, p = np.deg2rad([roll_deg, yaw_deg, pitch_deg])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rot = rz @ ry @ rx
    # Plane points P = d K^-1 x (z = d) rotate about the plane centre C = (0, 0, d):
    # P' = R P + (I - R) C = (R + (I - R) e3 e3^T) P, so x' ~ K (R + (I - R) e3 e3^T) K^-1 x.
    e3 = np.array([[0.0], [0.0], [1.0]])
    h = k @ (rot + (np.eye(3) - rot) @ e3 @ e3.T) @ np.linalg.inv(k)
    return h / h[2, 2]


def augment_frame(image: np.ndarray, h: np.ndarray, noise_sigma: float, rng: np.random.Generator,
                  pad_value: int = 0) -> np.ndarray:
    """Warp an RGB uint8 (S,S,3) crop by homography `h` and add Gaussian noise of `noise_sigma` grey levels."""
    import cv2

    s = image.shape[0]
    warped = cv2.warpPerspective(image, h, (image.shape[1], s), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=(pad_value,) * 3)
    noisy = warped.astype(np.float32) + rng.normal(0.0, noise_sigma, warped.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)  # crops are never modified in place, so sharing the inode is safe
    except OSError:
        shutil.copy2(src, dst)


def _copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, copy_function=_link_or_copy)


def _frames(folder: Path) -> list[Path]:
    return sorted(folder.glob("img_*.png"), key=lambda q: natural_key(q.name))


def _fingerprint(p: AugmentParams, row: dict[str, str], cam1: list[Path]) -> str:
    h = hashlib.sha256(json.dumps(dataclasses.asdict(p), sort_keys=True).encode())
    h.update(f"{row['subject']}/{row['sequence']}\n".encode())
    for f in cam1:          # content, not mtime: the marker is output, hashed into dvc.lock
        h.update(f"{f.name}:{file_sha256(f)}\n".encode())
    return h.hexdigest()


def augment_sequence(row: dict[str, str], src: Path, out: Path, p: AugmentParams) -> dict[str, Any]:
    """Write cam2 for one frontal-only crops.csv row (skipped if already done); returns the outcome."""
    in_place = src.resolve() == out.resolve()
    seq = Path(row["subject"]) / row["sequence"]
    src_seq, final = src / seq, out / seq
    try:
        cam1 = _frames(src / row["cam1_dir"])
        if len(cam1) != int(row["n_frames"]):
            raise SequenceError(str(src / row["cam1_dir"]), f"has {len(cam1)} crops, crops.csv says {row['n_frames']}")
        fp = _fingerprint(p, row, cam1)
        try:
            m = json.loads((final / MARKER).read_text())
        except (OSError, ValueError):
            m = {}
        if m.get("fingerprint") == fp and len(_frames(final / "cam2")) == len(cam1) and outputs_intact(
                final, m.get("files"), ["cam2"]) and (in_place or len(_frames(final / "cam1")) == len(cam1)):
            return {"status": "reused", "marker": m}
        rng = sequence_rng(p.seed, row["subject"], row["sequence"])
        draw = draw_augmentation(rng, p)
        tmp = out / PARTIAL / seq
        if tmp.exists():
            shutil.rmtree(tmp)
        if in_place:
            tmp.mkdir(parents=True)
        else:
            _copy_tree(src_seq, tmp)  # cam1 and the crop marker, linked
            for stale in (tmp / "cam2", tmp / MARKER):
                if stale.is_dir():
                    shutil.rmtree(stale)
                elif stale.exists():
                    stale.unlink()
        first = read_rgb(cam1[0])
        h = rotation_homography(first.shape[0], draw["roll_deg"], draw["yaw_deg"], draw["pitch_deg"], p.distance)
        (tmp / "cam2").mkdir()
        for f in cam1:
            img = first if f == cam1[0] else read_rgb(f)
            if img.shape != first.shape:
                raise SequenceError(str(f), f"crop size {img.shape[1]}x{img.shape[0]} differs from the first crop's")
            write_png(tmp / "cam2" / f.name, augment_frame(img, h, draw["noise_sigma"], rng, p.pad_value))
        m = {"fingerprint": fp, "seed": p.seed, "draw": draw, "homography": h.tolist(), "n_frames": len(cam1),
             "params": dataclasses.asdict(p), "files": output_sizes(tmp, ["cam2"])}  # checked on reuse
        if in_place:
            (final / MARKER).unlink(missing_ok=True)  # the marker goes last: no marker, no finished cam2
            if (final / "cam2").exists():
                shutil.rmtree(final / "cam2")
            (tmp / "cam2").rename(final / "cam2")
            (tmp / f".{MARKER}").write_text(json.dumps(m, indent=1))
            os.replace(tmp / f".{MARKER}", final / MARKER)
        else:
            (tmp / MARKER).write_text(json.dumps(m, indent=1))
            if final.exists():
                shutil.rmtree(final)
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp.rename(final)
        return {"status": "augmented", "marker": m}
    except SequenceError as e:
        return {"status": "error", "file": e.file, "reason": e.reason}


def check_crops_row(row: dict[str, str], crops_dir: Path, where: str) -> None:
    """A crops.csv row's subject/sequence are folder names and its camera folders lie inside `crops_dir`."""
    safe_name(row["subject"], "subject", where)
    safe_name(row["sequence"], "sequence", where)
    for k in ("cam1_dir", "cam2_dir"):
        if row[k]:
            inside(crops_dir, row[k], k, where)


def augment_dataset(src: Path, out: Path, p: AugmentParams, progress: bool = True) -> dict[str, int]:
    """Add cam2 to every frontal-only row of `src`/crops.csv, writing the crop layout to `out`."""
    with writer_lock(out):  # one writer per output folder (pipeline/lock.py); in place: crop's lock too
        return _augment_dataset(src, out, p, progress)


def _augment_dataset(src: Path, out: Path, p: AugmentParams, progress: bool) -> dict[str, int]:
    from tqdm import tqdm

    for name, rng in (("roll_deg", p.roll_deg), ("yaw_deg", p.yaw_deg), ("pitch_deg", p.pitch_deg),
                      ("noise_sigma", p.noise_sigma)):
        if len(rng) != 2 or rng[0] > rng[1]:
            raise EmoganError(f"augment.{name} must be a [low, high] range, got {list(rng)}")
    if p.noise_sigma[0] < 0 or p.distance <= 1 or max(abs(v) for v in p.yaw_deg + p.pitch_deg) >= 80:
        raise EmoganError("augment params out of range: noise_sigma >= 0, distance > 1, |yaw|, |pitch| < 80 degrees")
    crops_csv = src / "crops.csv"
    rows = read_csv(crops_csv, CROPS_COLUMNS)
    in_errors = read_csv(src / "errors.csv", ERRORS_COLUMNS) if (src / "errors.csv").is_file() else []
    in_place = src.resolve() == out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / PARTIAL, ignore_errors=True)
    crops, errors, counts = [], list(in_errors), {"augmented": 0, "reused": 0, "paired": 0, "error": 0}
    for line, row in enumerate(tqdm(rows, desc=f"augment {out.name}", unit="seq", disable=not progress_enabled(progress)), start=2):
        try:  # every path below is built from these fields: inside src and out only (pipeline/safepath.py)
            check_crops_row(row, src, f"{crops_csv} line {line}")
        except SequenceError as e:
            counts["error"] += 1
            errors.append({**{k: row[k] for k in ("dataset", "subject", "sequence")}, "file": e.file, "reason": e.reason})
            continue
        seq = f"{row['subject']}/{row['sequence']}"
        new = {**row, "root": Path(os.path.relpath(resolve_root(crops_csv, row["root"]).resolve(),
                                                   out.resolve())).as_posix()}
        if row["cam2_dir"]:  # already paired: passed through unchanged
            counts["paired"] += 1
            if not in_place:
                tmp = out / PARTIAL / seq
                _copy_tree(src / seq, tmp)
                if (out / seq).exists():
                    shutil.rmtree(out / seq)
                (out / seq).parent.mkdir(parents=True, exist_ok=True)
                tmp.rename(out / seq)
            crops.append(new)
            continue
        res = augment_sequence(row, src, out, p)
        counts[res["status"]] += 1
        if res["status"] == "error":
            errors.append({**{k: row[k] for k in ("dataset", "subject", "sequence")},
                           "file": res["file"], "reason": res["reason"]})
            continue
        crops.append({**new, "pose": "augmented", "cam2_dir": f"{seq}/cam2",
                      # cam2 is a warp of the cam1 crop: same source box; the warp is in augment.json
                      "box_cam2": row["box_cam1"]})
    if not in_place:
        keep = {(r["subject"], r["sequence"]) for r in crops}
        for d in [q.parent for q in out.glob("*/*/crop.json")] + [q.parent for q in out.glob(f"*/*/{MARKER}")]:
            if d.exists() and (d.parent.name, d.name) not in keep:
                shutil.rmtree(d)
    write_csv(out / "crops.csv", CROPS_COLUMNS, crops)
    write_csv(out / "errors.csv", ERRORS_COLUMNS, errors)
    (out / "augment_params.json").write_text(json.dumps(
        {"params": dataclasses.asdict(p), "source": str(src), "source_crops_sha256": file_sha256(crops_csv),
         "sequences": len(crops), "errors": len(errors)}, indent=1))
    if not in_place and (src / "crop_params.json").is_file():
        shutil.copy2(src / "crop_params.json", out / "crop_params.json")
    shutil.rmtree(out / PARTIAL, ignore_errors=True)
    if rows and not crops:
        raise EmoganError(f"{crops_csv}: no sequence could be augmented (see {out / 'errors.csv'})")
    return counts


def augment_command(
    crops: Path = typer.Argument(..., help="crop folder of a frontal-only dataset (with crops.csv)"),
    out: Path = typer.Option(None, "--out", "-o", help="output folder (default: add cam2 in place)"),
    seed: int = typer.Option(None, help="random seed (params augment.seed)"),
    params_file: Optional[Path] = PARAMS_OPTION,
) -> None:
    """Make the non-frontal view of frontal-only sequences: rotation homography plus noise."""
    from pipeline.params import load_params, section

    p = section(load_params(params_file), "augment", AugmentParams, seed=seed)
    out = out if out is not None else crops
    c = augment_dataset(crops, out, p)
    typer.echo(f"{out}: {c['augmented']} augmented, {c['reused']} already done, {c['paired']} already paired, "
               f"{c['error']} skipped (see {out / 'errors.csv'})")
