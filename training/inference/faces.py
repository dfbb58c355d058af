"""Faces for G_W: a picture framed like the training crops, registered (similarity transform of eyes, nose
tip and mouth centre from mediapipe face detection) onto a reference, and the average neutral face of a
store that a bundle carries."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pipeline.console import mediapipe_solution
from pipeline.errors import EmoganError
from training.inference.bundle import AverageFace

# mediapipe face detection keypoints used for registration: right eye, left eye, nose tip, mouth centre
# (the two ear points are left out: they move off the face outline as soon as the head turns).
KEYPOINTS = ("right_eye", "left_eye", "nose_tip", "mouth_centre")


def face_from_image(rgb: np.ndarray, crop: Any, size: int, *, detect: bool = True, what: str = "face") -> np.ndarray:
    """A neutral face picture -> (3,size,size) uint8 framed as the pipeline frames faces (box + margin of `crop`).

    detect=False takes the picture as an already framed face (a drawing, an average face): its centre square.
    """
    import cv2

    from pipeline.crop import crop_square, detect_face_box

    if detect:
        box = detect_face_box(rgb, crop.margin, crop.model_selection, crop.min_confidence, crop.snap_px)
        if box is None:
            raise EmoganError(f"{what}: no face found (mediapipe face detection); if the picture is already a face "
                              "framed like the training crops (a drawing, an average face), pass --as-crop")
        sq = crop_square(rgb, box, crop.size, crop.pad_value)
    else:
        h, w = rgb.shape[:2]
        s = min(h, w)
        sq = rgb[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    interp = cv2.INTER_AREA if sq.shape[0] > size else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(sq, (size, size), interpolation=interp).transpose(2, 0, 1))


# ---------------------------------------------------------------- registration and the average face

_KP_DETECTORS: dict[tuple[int, float], Any] = {}


def face_keypoints(face_u8: np.ndarray, model: int, min_confidence: float) -> np.ndarray | None:
    """(4,2) float32 pixel (x, y) of the eyes, nose tip and mouth centre of a (3,S,S) uint8 face, or None."""
    key = (model, min_confidence)
    if key not in _KP_DETECTORS:
        import mediapipe as mp

        # Short range (model 0) by default: a face crop fills the picture, the case that model is made for.
        _KP_DETECTORS[key] = mediapipe_solution(mp.solutions.face_detection.FaceDetection, model_selection=model,
                                                min_detection_confidence=min_confidence)
    img = np.ascontiguousarray(np.asarray(face_u8).transpose(1, 2, 0), dtype=np.uint8)
    res = _KP_DETECTORS[key].process(img)
    if not res.detections:
        return None
    best = max(res.detections, key=lambda d: d.score[0])
    h, w = img.shape[:2]
    kp = best.location_data.relative_keypoints
    return np.array([[kp[i].x * w, kp[i].y * h] for i in range(len(KEYPOINTS))], np.float32)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(2,3) least-squares rotation + uniform scale + translation taking points src (K,2) onto dst (K,2)."""
    s, d = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    ms, md = s.mean(0), d.mean(0)
    sc, dc = s - ms, d - md
    # Closed form with complex numbers: the best a = scale * e^{i angle} minimizes sum |a z_s - z_d|^2.
    zs, zd = sc[:, 0] + 1j * sc[:, 1], dc[:, 0] + 1j * dc[:, 1]
    a = np.vdot(zs, zd) / max(np.vdot(zs, zs).real, 1e-12)
    m = np.array([[a.real, -a.imag], [a.imag, a.real]])
    return np.hstack([m, (md - m @ ms)[:, None]]).astype(np.float32)


def align_face(face_u8: np.ndarray, to_keypoints: np.ndarray, model: int,
               min_confidence: float) -> tuple[np.ndarray, bool]:
    """Warp a (3,S,S) face so its keypoints land on `to_keypoints` (pixels of S); (face, False) when none are found."""
    import cv2

    kp = face_keypoints(face_u8, model, min_confidence)
    if kp is None:
        return face_u8, False
    m = similarity_transform(kp, to_keypoints)
    s = face_u8.shape[-1]
    img = cv2.warpAffine(np.ascontiguousarray(face_u8.transpose(1, 2, 0)), m, (s, s), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(img.transpose(2, 0, 1)), True


def mean_aligned_face(faces_u8: np.ndarray, model: int, min_confidence: float,
                      source: str = "") -> AverageFace:
    """Mean of (N,3,S,S) faces after a similarity registration onto their mean keypoints (faces without any: skipped)."""
    import cv2

    kps = [face_keypoints(f, model, min_confidence) for f in faces_u8]
    keep = [i for i, k in enumerate(kps) if k is not None]
    if not keep:
        raise EmoganError(f"{source or 'the faces'}: no face found in any of the {len(faces_u8)} neutral faces")
    target = np.mean([kps[i] for i in keep], axis=0)
    s = faces_u8.shape[-1]
    acc = np.zeros((s, s, 3), np.float64)
    for i in keep:
        m = similarity_transform(kps[i], target)
        acc += cv2.warpAffine(np.ascontiguousarray(faces_u8[i].transpose(1, 2, 0)), m, (s, s), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
    img = np.clip(np.rint(acc / len(keep)), 0, 255).astype(np.uint8).transpose(2, 0, 1)
    return AverageFace(np.ascontiguousarray(img), target.astype(np.float32), len(keep), len(faces_u8) - len(keep),
                       source)


def store_neutral_faces(store: Path | str, rows: np.ndarray | None = None) -> np.ndarray:
    """The neutral face of every sequence of a store (its neutral_apex row's, else frame 0's), (N,3,S,S) uint8."""
    from pipeline.schema import STRATEGY_NAMES
    from pipeline.store import open_store

    g = open_store(store)
    seq, strat = g["sequence"][...], g["strategy"][...]
    frame_t = g["frame_t"][...] if "frame_t" in g else None
    first = strat == STRATEGY_NAMES.index("neutral_apex")
    if frame_t is not None:
        first |= frame_t == 0
    if rows is not None:
        allowed = np.zeros(len(seq), bool)
        allowed[rows] = True
        first &= allowed
    idx = np.flatnonzero(first)
    _, pick = np.unique(seq[idx], return_index=True)  # one row per sequence: its neutral is frame 0 of cam1
    idx = np.sort(idx[pick])
    if idx.size == 0:
        raise EmoganError(f"{store}: no neutral_apex row and no row starting at frame 0: no neutral face to average")
    return np.asarray(g["neutral"].get_orthogonal_selection((idx,)))


def average_face(stores: Sequence[Path | str], rows: Sequence[np.ndarray | None] | None, model: int,
                 min_confidence: float) -> AverageFace:
    """The mean aligned neutral face of one or more stores (all their sequences, or the given rows)."""
    rows = list(rows) if rows is not None else [None] * len(stores)
    faces = [store_neutral_faces(s, r) for s, r in zip(stores, rows)]
    sizes = {f.shape[-1] for f in faces}
    if len(sizes) > 1:
        raise EmoganError(f"stores of different sizes {sorted(sizes)}: average faces of one size at a time")
    return mean_aligned_face(np.concatenate(faces), model, min_confidence, source=", ".join(map(str, stores)))
