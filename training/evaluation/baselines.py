"""Baselines judged by `emogan evaluate` beside eMotion-GAN (paper section V-A).

- No frontalization: the non-frontal flow and face themselves (nothing to compute here).
- Landmark-based frontalization, the feature-based family of section II-A: on every non-frontal
  crop (cam2, crop resolution) mediapipe FaceMesh finds the 468 landmarks; the head pose is
  estimated by a scaled rigid fit (Umeyama) of the landmarks that expressions barely move
  (forehead, nose bridge, eye corners, temples) to the sequence's first frame seen frontally;
  every landmark is rotated back to that frontal pose, and a piecewise-affine warp (one
  triangulation per sequence, image-border anchors fixed) moves the frame onto this frontal mesh.
  The optical flow (the pipeline's Farneback settings) is then computed between the frontalized
  frames, averaged down and normalized exactly as the store's flows.

`emogan baseline-landmark STORE --crops DIR --out FILE` writes, for the rows of the chosen folds and
strategies, an .npz with `rows` (store row indices), `flow` (M,2,S,S) float16 in the store's
representation, `image` (M,3,S,S) uint8 (the frontalized face at t+dt), `ok` (M,) bool (landmarks
found on both frames), and `meta` (JSON: params, store, crops).
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pipeline import pool
from pipeline.console import mediapipe_solution
from pipeline.errors import EmoganError

log = logging.getLogger(__name__)

# FaceMesh vertices that expressions barely move: forehead, nose bridge and tip, eye corners,
# temples and upper cheek contour. The head pose is fitted on these only.
RIGID_LANDMARKS: tuple[int, ...] = (
    10, 151, 9, 8, 108, 337, 67, 297, 109, 338, 69, 299,     # forehead
    168, 6, 197, 195, 5, 4, 1,                               # nose bridge and tip
    33, 133, 362, 263,                                       # eye corners
    234, 454, 127, 356, 162, 389, 93, 323,                   # temples, upper cheek contour
)
# Left/right pairs of rigid vertices (image left, image right on a frontal face): the face's x axis.
RIGID_PAIRS: tuple[tuple[int, int], ...] = ((33, 263), (133, 362), (234, 454), (127, 356), (162, 389))
FOREHEAD, NOSE_TIP = 10, 4


@dataclass
class LandmarkParams:
    """params.yaml `evaluate.landmark`: the FaceMesh frontalization baseline."""

    strategies: tuple[str, ...]  # rows computed (others are left out of its scores)
    size: int  # side of the stored flows and faces (the evaluation grid or finer)
    min_detection_confidence: float
    border_anchors: int  # fixed points per image side (identity outside the face)
    workers: int  # spawned processes (the output does not depend on it)


# --- geometry (pure numpy) ---------------------------------------------------------------------

def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity dst ~ s R src + t for (K,D) point sets: (s, R (D,D), t (D,)), det R = +1."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    cov = b.T @ a / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(len(sig))
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0   # a reflection fits better: take the best proper rotation instead
    r = u @ np.diag(d) @ vt
    var = (a ** 2).sum() / len(src)
    s = float((sig * d).sum() / var) if var > 0 else 1.0
    return s, r, mu_d - s * r @ mu_s


def face_axes(lm: np.ndarray) -> np.ndarray:
    """Rotation (3,3) whose rows are the face's x (right), y (down), z axes in camera coordinates, from rigid vertices."""
    xa = np.mean([lm[r] - lm[l] for l, r in RIGID_PAIRS], axis=0)
    xa /= np.linalg.norm(xa)
    ya = lm[NOSE_TIP] - lm[FOREHEAD]
    ya = ya - xa * (ya @ xa)
    ya /= np.linalg.norm(ya)
    return np.stack([xa, ya, np.cross(xa, ya)])


def frontal_template(lm0: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """The first frame's landmarks (468,3) seen frontally, in its own scale: (template, scale, 2-D centre)."""
    rig = list(RIGID_LANDMARKS)
    c = lm0[rig].mean(0)
    q = (lm0 - c) @ face_axes(lm0).T
    s = float(np.sqrt((q[rig] ** 2).sum(1).mean()))
    return q / s, s, c[:2]


def frontalize_landmarks(lm: np.ndarray, template: np.ndarray, scale: float, centre_xy: np.ndarray) -> np.ndarray:
    """(468,3) landmarks of a frame -> (468,2) image positions of the same face rotated to the template's frontal pose."""
    rig = list(RIGID_LANDMARKS)
    s, r, t = umeyama(template[rig], lm[rig])
    q = (lm - t) @ r / s          # r^T (lm - t) / s, row-wise: the frame in template coordinates
    return q[:, :2] * scale + centre_xy


def border_points(size: int, per_side: int) -> np.ndarray:
    """(4 per_side, 2) fixed anchor points on the image border (corners included)."""
    t = np.linspace(0.0, size - 1.0, per_side + 1)[:-1]
    e = size - 1.0
    return np.concatenate([np.stack([t, np.zeros_like(t)], 1), np.stack([np.full_like(t, e), t], 1),
                           np.stack([e - t, np.full_like(t, e)], 1), np.stack([np.zeros_like(t), e - t], 1)])


def triangulate(points: np.ndarray) -> np.ndarray:
    """Delaunay triangles (T,3) of (P,2) points."""
    from scipy.spatial import Delaunay

    return Delaunay(points).simplices.astype(np.int64)


def warp_to_mesh(image: np.ndarray, src_pts: np.ndarray, dst_pts: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Piecewise-affine warp of an (H,W,C) image moving src_pts onto dst_pts (P,2), triangles (T,3) over the points."""
    import cv2

    from pipeline.face_model import pixel_maps, rasterize, triangle_affines

    h, w = image.shape[:2]
    dst_tri = dst_pts[tris].astype(np.float32)
    src_tri = src_pts[tris].astype(np.float32)
    ids = rasterize(dst_tri, np.arange(len(tris)), (h, w))
    aff, ok = triangle_affines(dst_tri, src_tri)
    ids = np.where((ids >= 0) & ok[np.maximum(ids, 0)], ids, -1)
    mx, my = pixel_maps(ids, aff)
    # Pixels of degenerate (or missed) triangles keep their place: identity there.
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    miss = ids < 0
    mx[miss], my[miss] = xx[miss], yy[miss]
    return cv2.remap(image, mx, my, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


# --- per sequence -------------------------------------------------------------------------------

_MESH: Any = None


def _init_worker(min_conf: float) -> None:
    """A worker's one FaceMesh, reused for every frame."""
    _face_mesh(min_conf)


def _face_mesh(min_conf: float) -> Any:
    global _MESH
    if _MESH is None:
        import mediapipe as mp

        _MESH = mediapipe_solution(mp.solutions.face_mesh.FaceMesh, static_image_mode=True, max_num_faces=1,
                                   refine_landmarks=False, min_detection_confidence=min_conf)
    return _MESH


def landmarks(image_rgb: np.ndarray, min_conf: float) -> np.ndarray | None:
    """FaceMesh's 468 landmarks of the face in an RGB image, (468,3) pixels (z scaled like x); None if no face."""
    h, w = image_rgb.shape[:2]
    res = _face_mesh(min_conf).process(np.ascontiguousarray(image_rgb))
    if not res.multi_face_landmarks:
        return None
    return np.array([[q.x * w, q.y * h, q.z * w] for q in res.multi_face_landmarks[0].landmark[:468]])


def frontalize_frames(frames_rgb: Sequence[np.ndarray], p: LandmarkParams) -> tuple[list[np.ndarray], np.ndarray]:
    """Frames of one sequence warped onto the frontal mesh: (frames, found (F,) bool). The first frame sets pose 0."""
    lms = [landmarks(f, p.min_detection_confidence) for f in frames_rgb]
    found = np.array([lm is not None for lm in lms])
    if not found[0]:
        return list(frames_rgb), np.zeros(len(frames_rgb), bool)
    size = frames_rgb[0].shape[0]
    template, scale, centre = frontal_template(lms[0])
    anchors = border_points(size, p.border_anchors)
    dst0 = frontalize_landmarks(lms[0], template, scale, centre)
    tris = triangulate(np.concatenate([dst0, anchors]))
    out = []
    for f, lm in zip(frames_rgb, lms):
        if lm is None:
            out.append(f)
            continue
        dst = np.concatenate([frontalize_landmarks(lm, template, scale, centre), anchors])
        src = np.concatenate([lm[:, :2], anchors])
        out.append(warp_to_mesh(f, src, dst, tris))
    return out, found


def sequence_task(args: tuple[list[str], list[tuple[int, int, int]], dict[str, Any], dict[str, Any], str, float]) -> dict[str, Any]:
    """One sequence: frontalize its cam2 frames, flow of each requested (row, t, t2) pair; normalized, resized."""
    import cv2

    from pipeline.farneback import downsample_flow_px, farneback_px
    from pipeline.flow import FlowParams
    from pipeline.normalize import area_resize, normalize_flow

    frame_paths, pairs, lp_dict, fp_dict, representation, clip = args
    p = LandmarkParams(**lp_dict)
    fp = FlowParams(**fp_dict)
    needed = sorted({t for _, t, _ in pairs} | {t2 for _, _, t2 in pairs} | {0})
    frames = {}
    for i in needed:
        bgr = cv2.imread(frame_paths[i], cv2.IMREAD_COLOR)
        if bgr is None:
            raise EmoganError(f"{frame_paths[i]}: unreadable frame")
        frames[i] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    warped, found = frontalize_frames([frames[i] for i in needed], p)
    by_index = dict(zip(needed, warped))
    ok_frame = dict(zip(needed, found))
    gray = {i: cv2.cvtColor(im, cv2.COLOR_RGB2GRAY) for i, im in by_index.items()}
    rows, flows, images, ok = [], [], [], []
    for row, t, t2 in pairs:
        f = downsample_flow_px(farneback_px(gray[t], gray[t2], fp), p.size)      # (2,size,size) crop pixels
        flows.append(normalize_flow(f[None], representation, clip)[0].astype(np.float16))
        images.append(area_resize(by_index[t2].transpose(2, 0, 1)[None], p.size)[0])
        rows.append(row)
        ok.append(bool(ok_frame[t] and ok_frame[t2]))
    return {"rows": rows, "flow": flows, "image": images, "ok": ok}


def plan_sequences(store: str, crops_dir: Path, rows: np.ndarray) -> list[tuple[list[str], list[tuple[int, int, int]]]]:
    """Group store rows by sequence: (cam2 frame paths, [(row, t, t + step)]) per sequence."""
    from pipeline.farneback import list_frames
    from pipeline.flow import cam_dir, read_crops_csv
    from training.data import raw_group

    g = raw_group(store)
    seq_ids = list(g.attrs["sequence_ids"])
    if "frame_t" not in set(g.array_keys()):
        raise EmoganError(f"{store}: no frame_t array (made by an older normalize): cannot find the frames of a row")
    seq = np.asarray(g["sequence"][:])[rows]
    t = np.asarray(g["frame_t"][:])[rows]
    step = np.asarray(g["step"][:])[rows]
    table = read_crops_csv(crops_dir)
    where = {f"{r['subject']}/{r['sequence']}": r for r in table}
    plan = []
    for s in np.unique(seq):
        sid = seq_ids[int(s)]
        if sid not in where:
            raise EmoganError(f"{crops_dir}: sequence {sid} of {store} is not in crops.csv (stale crops?)")
        r = where[sid]
        # crops.csv's cam2_dir (inside the crops folder), else the layout's subject/sequence/cam2.
        cam2 = cam_dir(crops_dir, r, 2)
        frames = [str(x) for x in list_frames(cam2)]
        m = seq == s
        plan.append((frames, [(int(a), int(b), int(b + c)) for a, b, c in zip(rows[m], t[m], step[m])]))
    return plan


def landmark_baseline(store: str, crops_dir: Path | str, rows: np.ndarray, p: LandmarkParams,
                      flow_params: Any, out: Path | str, progress: bool = True) -> dict[str, Any]:
    """Compute the landmark baseline for `rows` of `store` from its crops; write the .npz; return a summary."""
    from pipeline.params import as_dict
    from training.data import raw_group

    g = raw_group(store)
    rep, clip = str(g.attrs["representation"]), float(g.attrs["clip"])
    plan = plan_sequences(store, Path(crops_dir), np.sort(np.asarray(rows)))
    lp, fp = as_dict(p), as_dict(flow_params)
    tasks = [(frames, pairs, lp, fp, rep, clip) for frames, pairs in plan]
    t0 = time.time()
    results = [r for _, r in pool.run(sequence_task, tasks, p.workers, "landmark", initializer=_init_worker,
                                      initargs=(p.min_detection_confidence,), progress=progress)]
    rows_out = np.array([x for r in results for x in r["rows"]], np.int64)
    order = np.argsort(rows_out)
    flow = np.stack([x for r in results for x in r["flow"]])[order] if len(rows_out) else np.zeros((0, 2, p.size, p.size), np.float16)
    image = np.stack([x for r in results for x in r["image"]])[order] if len(rows_out) else np.zeros((0, 3, p.size, p.size), np.uint8)
    ok = np.array([x for r in results for x in r["ok"]], bool)[order]
    meta = {"store": str(store), "crops": str(crops_dir), "representation": rep, "clip": clip, "params": lp,
            "flow_params": fp, "rows": int(len(rows_out)), "sequences": len(tasks), "ok_fraction": float(ok.mean()) if len(ok) else None}
    # No wall-clock time in the file: a re-run writes the same bytes (it held the seconds, so every run hashed anew).
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez_compressed(tmp, rows=rows_out[order], flow=flow, image=image, ok=ok, meta=np.array(json.dumps(meta)))
    tmp.replace(out)
    return {**meta, "seconds": time.time() - t0}
