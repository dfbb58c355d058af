"""The synthetic people's source photographs: loading them (pinned sha256) and their FaceMesh fits.

The photographs are fetched at set-up (`emogan weights fetch photos`, params.yaml `weights.photos`);
their 468 mediapipe FaceMesh landmarks are fitted once (`emogan weights fit-landmarks`) and committed
beside this module (photo_landmarks.json, keyed by each photograph's sha256): a stage never runs
FaceMesh, whose fits differ between CPUs.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Optional

import cv2
import numpy as np
import typer

from pipeline.console import native_stderr_quiet
from pipeline.errors import EmoganError
from pipeline.params import PARAMS_OPTION

N_MESH = 468
PHOTO_LANDMARKS = Path(__file__).with_name("photo_landmarks.json")   # committed FaceMesh fits of the photographs
FIT_SIDE = 512             # set-up only: the side a photograph's face is framed at for FaceMesh (not the frames')


def project_photos(params: dict[str, Any] | None = None) -> dict[str, tuple[Path, str]]:
    """name -> (path, pinned sha256) of params' `weights.photos`; None: those of ./params.yaml (the project's,
    as a command run without --params reads)."""
    from pipeline.params import load_params
    from pipeline.weights import photo_paths

    return photo_paths(load_params() if params is None else params)


def load_photos(paths: Mapping[str, tuple[Path, str]]) -> dict[str, np.ndarray]:
    """The source photographs (RGB uint8), `paths`: name -> (path, pinned sha256) as `weights.photo_paths`
    gives them; each file is checked against its sha256."""
    from pipeline.store import file_sha256

    photos = {}
    for name, (path, sha) in paths.items():
        path = Path(path)
        if not path.is_file():
            raise EmoganError(f"{path}: source photograph {name!r} not found; run `emogan weights fetch photos` "
                              "(set-up, part of `make demo` and `make test`)")
        have = file_sha256(path)
        if have != sha:
            raise EmoganError(f"{path}: sha256 {have}, expected {sha} (params.yaml weights.photos.{name}); "
                              "run `emogan weights fetch photos` to replace it")
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise EmoganError(f"{path}: not a readable image")
        photos[name] = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return photos


def photo_landmarks(names_sha: dict[str, str], path: Path = PHOTO_LANDMARKS) -> dict[str, np.ndarray]:
    """The committed FaceMesh fits (468,3) pixels of each photograph, checked against its sha256."""
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise EmoganError(f"{path}: cannot read the photographs' landmarks ({e})") from None
    out = {}
    for name, sha in names_sha.items():
        rec = stored.get(name)
        if rec is None or rec.get("sha256") != sha:
            raise EmoganError(f"{path}: no landmarks for photograph {name!r} with sha256 {sha}; after changing "
                              "weights.photos, fit them once with `emogan weights fit-landmarks` and commit the file")
        lm = np.array(rec["landmarks"], np.float64)
        if lm.shape != (N_MESH, 3):
            raise EmoganError(f"{path}: landmarks of {name!r} have shape {lm.shape}, expected ({N_MESH}, 3)")
        out[name] = lm
    return out


def face_mesh_landmarks(image_rgb: np.ndarray) -> np.ndarray | None:
    """The 468 FaceMesh landmarks of the largest face, (468,3) in pixels (z scaled like x); None if no face."""
    import mediapipe as mp

    h, w = image_rgb.shape[:2]
    with native_stderr_quiet(), mp.solutions.face_mesh.FaceMesh(  # its TF Lite/absl lines off the console
            static_image_mode=True, max_num_faces=1, refine_landmarks=False, min_detection_confidence=0.3) as fm:
        res = fm.process(np.ascontiguousarray(image_rgb))
    if not res.multi_face_landmarks:
        return None
    lm = np.array([[p.x * w, p.y * h, p.z * w] for p in res.multi_face_landmarks[0].landmark])
    return lm[:N_MESH]


def fit_photo_landmarks(image_rgb: np.ndarray) -> np.ndarray | None:
    """FaceMesh on a photograph of any size: the largest detected face is framed and upscaled first.

    Set-up only (`emogan weights fit-landmarks`): FaceMesh fits differ between CPUs, so their
    result is committed and stages read it (photo_landmarks)."""
    import mediapipe as mp

    h, w = image_rgb.shape[:2]
    with native_stderr_quiet(), mp.solutions.face_detection.FaceDetection(model_selection=1,
                                                                          min_detection_confidence=0.3) as fd:
        res = fd.process(np.ascontiguousarray(image_rgb))
    if not res.detections:
        return None
    box = max(res.detections, key=lambda d: d.location_data.relative_bounding_box.width).location_data
    b = box.relative_bounding_box
    side = 2.2 * max(b.width * w, b.height * h)          # the face with its hair, as FaceMesh expects
    x0, y0 = (b.xmin + b.width / 2) * w - side / 2, (b.ymin + b.height / 2) * h - side / 2
    k = FIT_SIDE / side
    m = np.array([[k, 0.0, -x0 * k], [0.0, k, -y0 * k]])
    crop = cv2.warpAffine(image_rgb, m, (FIT_SIDE, FIT_SIDE), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    lm = face_mesh_landmarks(crop)
    if lm is None:
        return None
    lm = lm / k
    lm[:, 0] += x0
    lm[:, 1] += y0
    return lm


def write_photo_landmarks(paths: Mapping[str, tuple[Path, str]], path: Path = PHOTO_LANDMARKS) -> dict[str, str]:
    """Fit every source photograph (name -> (path, sha256)) once and write the committed landmarks file;
    returns name -> sha256."""
    photos = load_photos(paths)
    shas = {k: v[1] for k, v in paths.items()}
    out = {}
    for name, img in photos.items():
        lm = fit_photo_landmarks(img)
        if lm is None:
            raise EmoganError(f"photograph {name!r}: mediapipe found no face")
        out[name] = {"sha256": shas[name], "image_size": [int(img.shape[1]), int(img.shape[0])],
                     "landmarks": np.round(lm, 2).tolist()}
    path.write_text(json.dumps(out, separators=(",", ":")) + "\n")
    return shas


def fit_landmarks_command(
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="file to write (default "
                                       "pipeline/photo_landmarks.json, the committed one)"),
    params_file: Optional[Path] = PARAMS_OPTION,
) -> None:
    """Fit FaceMesh once to every source photograph and write pipeline/photo_landmarks.json (commit it).

    Only after changing params.yaml weights.photos: stages read the committed fits, never FaceMesh,
    whose results differ between CPUs."""
    from pipeline.params import load_params

    dest = out or PHOTO_LANDMARKS
    shas = write_photo_landmarks(project_photos(load_params(params_file)), dest)
    typer.echo(f"wrote {dest} ({len(shas)} photographs: {', '.join(shas)})")
