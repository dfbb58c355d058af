"""A textured 3D face model built from real public-domain photographs that packages ship.

The photographs and their committed FaceMesh fits come from pipeline/photos.py (a stage never runs
FaceMesh, whose fits differ between CPUs). The first closed-mouth photograph (Grace Hopper) fixes the
canonical symmetric geometry; every photograph is warped into one shared texture atlas laid out on
that geometry, so textures blend, mirror and recolour pixel by pixel, and each photograph's own face
shape is kept for morphing people. Three rings of points around the face oval carry hair and ears
and fade into the background. Action units are displacement fields. The arithmetic is the same on
every CPU (pipeline/mesh.py).

Units: "face units", the cheek-to-cheek width of the canonical face is 1.0;
x to the image right, y down, z towards the camera.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
from pathlib import Path
from typing import Mapping

import cv2
import numpy as np

from pipeline.errors import EmoganError
# The mesh arithmetic lives in pipeline/mesh.py; re-exported here for the modules that warp with it.
from pipeline.mesh import (SNAP, barycentric, blur, matmul3, pixel_maps, rasterize,  # noqa: F401
                           snap, triangle_affines)
from pipeline.photos import N_MESH, load_photos, photo_landmarks, project_photos

log = logging.getLogger(__name__)


def _norm(v: np.ndarray) -> float:
    return float(np.sqrt(np.sum(v * v)))


ATLAS_SIZE = 640          # texture atlas side, pixels
ATLAS_EXTENT = 1.3        # the atlas spans [-ATLAS_EXTENT, ATLAS_EXTENT] face units on both axes
RING_SCALES = (1.12, 1.35, 1.62)   # rings around the face oval, radial scale from the face centre
RING_DEPTHS = (0.08, 0.25, 0.45)   # how far behind the oval each ring lies (face units)
RING_ALPHA = (1.0, 0.95, 0.0)      # opacity at each ring: the head fades into the background

# FaceMesh landmarks used below (image-left side = subject's right; the mirror map gives the other).
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400,
             377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
INNER_LIPS = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)
UPPER_INNER_LIP = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LOWER_INNER_LIP = (308, 324, 318, 402, 317, 14, 87, 178, 88, 95, 78)
# Points that a facial muscle does not move: eye corners, nose bridge, forehead top.
RIGID_POINTS = (33, 133, 362, 263, 6, 168, 197, 195, 10, 151, 9, 8)
EYE_CORNERS = (33, 133, 362, 263)
NOSE_BRIDGE = (6, 168, 197, 195)
PAIRS = ((33, 263), (133, 362), (61, 291), (234, 454), (70, 300), (105, 334), (159, 386), (145, 374))
MIDLINE = (1, 4, 6, 168, 10, 152, 0, 17, 13, 14, 199, 9, 151, 2, 164)

AU_NAMES = ("AU1", "AU2", "AU4", "AU5", "AU6", "AU7", "AU9", "AU10", "AU12", "AU15", "AU16",
            "AU17", "AU20", "AU23", "AU25", "AU26", "AU27", "AU43")

# Action units as (anchor landmarks on the image-left side or the midline, displacement
# (dx, dy, dz) in face units at intensity 1 for the image-left side, falloff radius).
# dx > 0 points towards the midline on the image-left side; the right side is mirrored.
# AU27's oval mouth at intensity 1: the jaw drops OVAL_DROP face units; the inner lips then lie on an
# ellipse OVAL_WIDTH times the closed mouth's width whose corners sit at half the opening's height,
# the upper lip's centre raised by OVAL_RAISE; the outer lips follow within OVAL_RADIUS.
OVAL_DROP = 0.1
OVAL_WIDTH = 0.7
OVAL_RAISE = 0.01
OVAL_RADIUS = 0.03

_AU_TABLE: dict[str, list[tuple[tuple[int, ...], tuple[float, float, float], float]]] = {
    "AU1": [((55, 65, 107, 66, 52), (0.004, -0.08, 0.0), 0.07)],                       # inner brow raiser
    "AU2": [((46, 53, 70, 63, 105), (-0.004, -0.07, 0.0), 0.075)],                      # outer brow raiser
    "AU4": [((55, 65, 107, 66, 52, 105), (0.045, 0.06, -0.005), 0.07)],                 # brow lowerer
    "AU5": [((159, 158, 160, 161, 157, 27, 28, 29, 30), (0.0, -0.035, 0.0), 0.03)],      # upper lid raiser
    "AU6": [((50, 101, 117, 118, 123, 205, 187, 36, 119, 100), (0.0, -0.04, 0.012), 0.085),
            ((145, 144, 153, 23, 24, 22), (0.0, -0.012, 0.0), 0.025)],                 # cheek raiser
    "AU7": [((145, 144, 153, 163, 154, 23, 24, 22), (0.0, -0.018, 0.0), 0.025),
            ((159, 158, 160), (0.0, 0.01, 0.0), 0.02)],                                # lid tightener
    "AU9": [((48, 64, 98, 102, 129, 219, 115, 220), (0.006, -0.035, 0.01), 0.055),
            ((55, 65, 107), (0.005, 0.01, 0.0), 0.05),
            ((0, 37, 39, 40), (0.0, -0.015, 0.0), 0.04)],                               # nose wrinkler
    "AU10": [((40, 39, 37, 185, 80, 81, 82, 0, 13, 11, 12), (0.0, -0.05, 0.004), 0.05)],  # upper lip raiser
    "AU12": [((61, 76, 62, 78, 146, 185), (-0.06, -0.06, -0.01), 0.075)],                # lip corner puller
    "AU15": [((61, 76, 62, 78, 146), (0.01, 0.07, 0.0), 0.065)],                     # lip corner depressor
    "AU16": [((91, 181, 84, 88, 178, 87, 14, 17, 15, 16), (-0.006, 0.03, 0.006), 0.045)],  # lower lip depressor
    "AU17": [((152, 175, 199, 200, 18, 17, 15, 16, 201, 208), (0.0, -0.04, 0.015), 0.07)],  # chin raiser
    "AU20": [((61, 76, 62, 78, 146), (-0.06, 0.012, -0.006), 0.075)],                   # lip stretcher
    "AU23": [((40, 39, 37, 0, 80, 81, 82, 13), (0.0, 0.01, 0.004), 0.035),
             ((91, 181, 84, 17, 88, 178, 87, 14), (0.0, -0.01, 0.004), 0.035),
             ((61, 76, 62, 78), (0.02, 0.0, 0.004), 0.035)],                            # lip tightener
    "AU25": [((14, 87, 178, 88, 95, 15, 16, 17, 84, 181, 91), (0.0, 0.035, 0.0), 0.045)],  # lips part
    "AU26": [((14, 87, 178, 88, 95, 15, 16, 17, 84, 181, 91, 146, 18, 200, 199, 175, 152,
               148, 176, 149, 150, 201, 208, 171, 140, 32), (0.0, 0.12, -0.015), 0.13),
             ((61, 76, 62, 78), (0.04, 0.035, 0.0), 0.035)],         # jaw drop: the mouth rounds
    # Mouth stretch (surprise): the jaw pulled wide open, the lips drawn in to a tall oval, not
    # stretched sideways like AU20 (fear); a model trained on real faces tells the two apart by this.
    # The jaw drop is this group; the lips' oval is _oval_field (a Gaussian group moves the whole
    # lower lip as one block and opens a dark box, which the FER2013 judge reads as shouting: anger).
    "AU27": [((14, 87, 178, 88, 95, 15, 16, 17, 84, 181, 91, 146, 18, 200, 199, 175, 152,
               148, 176, 149, 150, 201, 208, 171, 140, 32), (0.0, OVAL_DROP, -0.015), 0.13)],
    "AU43": [((159, 158, 160, 161, 157, 27, 28, 29, 30), (0.0, 0.03, 0.0), 0.03)],        # eyelids droop
}


# Which side of the lip line an action unit's group moves: the jaw and lower lip must not
# drag the upper lip along (they are a few pixels apart across the closed mouth).
_AU_REGION = {"AU10": "upper", "AU16": "lower", "AU17": "lower", "AU25": "lower", "AU26": "lower",
              "AU27": "lower"}


def _lip_side_masks(shape: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Smooth (V,) weights of lying below / above the mouth line; exact on the inner lip points."""
    lower = shape[list(LOWER_INNER_LIP)]
    order = np.argsort(lower[:, 0])
    line_y = np.interp(shape[:, 0], lower[order, 0], lower[order, 1])
    below = 1.0 / (1.0 + np.exp(-(shape[:, 1] - line_y) / 0.006))
    corners = (UPPER_INNER_LIP[0], UPPER_INNER_LIP[-1])
    below[[i for i in UPPER_INNER_LIP if i not in corners]] = 0.0
    below[[i for i in LOWER_INNER_LIP if i not in corners]] = 1.0
    below[list(corners)] = 0.5
    return below, 1.0 - below


@dataclasses.dataclass
class FaceModel:
    """The shared face model: geometry, topology, atlas textures, action-unit fields."""

    shape: np.ndarray          # (V,3) canonical neutral vertices, face units (mesh + rings)
    atlas_uv: np.ndarray       # (V,2) atlas pixel coordinates of each vertex
    triangles: np.ndarray      # (T,3) vertex indices, counter-clockwise in the atlas
    mouth_triangles: np.ndarray  # (T,) bool: triangles across the lip gap (left open: mouth interior shows)
    mirror: np.ndarray         # (V,) index of each vertex's mirror image
    textures: dict[str, np.ndarray]   # photo name -> (A,A,3) uint8 RGB atlas texture
    alpha: np.ndarray          # (A,A) float32 opacity in the atlas
    au_fields: np.ndarray      # (n_AU, 2, V, 3): displacement per action unit, per side (0 image-left, 1 right)
    rigid_weight: np.ndarray   # (V,) 0 at rigid points, rising smoothly to 1 away from them
    shading: dict[int, tuple[tuple[int, int, int, int], np.ndarray]]   # AU -> (box y0,y1,x0,x1; (2,h,w) float32
    #                                  relative brightness change per side inside the box)
    regions: dict[str, np.ndarray]   # "eyes", "hair", "lower", "skin": (A,A) float32 soft masks for region-wise blends
    shapes: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)   # photo -> (N_MESH,3) its own face
    #                                  shape, frontalized and scaled like `shape` (people's shapes morph between them)
    closed_mouth: tuple[str, ...] = ()   # photographs whose mouth is closed and relaxed (their lower face is neutral)
    normals: np.ndarray | None = None    # (A,A,3) float32 surface normal at each atlas pixel (per-person lighting)

    @property
    def n_vertices(self) -> int:
        """Number of vertices (mesh points plus rings)."""
        return len(self.shape)


def _frontal_frame(lm: np.ndarray) -> np.ndarray:
    """FaceMesh pixel landmarks -> face units in a frontal frame (x right, y down, z to camera)."""
    p = lm * np.array([1.0, 1.0, -1.0])                 # mediapipe z grows away from the camera
    xa = np.mean([(p[r] - p[l]) / _norm(p[r] - p[l]) for l, r in PAIRS], axis=0)
    xa /= _norm(xa)
    ya = p[152] - p[10]
    ya -= xa * float(np.sum(ya * xa))
    ya /= _norm(ya)
    za = np.cross(xa, ya)
    if za[2] < 0:   # keep z towards the camera
        za = -za
    rot = np.stack([xa, ya, za])
    q = matmul3(p - p[list(MIDLINE)].mean(0), rot.T)
    width = _norm(q[234, :2] - q[454, :2])
    q /= width
    oval = q[list(FACE_OVAL), :2]
    q[:, :2] -= (oval.min(0) + oval.max(0)) / 2
    return snap(q)


def _mirror_map(q: np.ndarray) -> np.ndarray:
    """For each vertex, the index of its mirror image across the x = 0 plane (a permutation)."""
    from scipy.optimize import linear_sum_assignment

    m = q * np.array([-1.0, 1.0, 1.0])
    d = np.linalg.norm(q[:, None, :] - m[None, :, :], axis=2)
    _, cols = linear_sum_assignment(d)
    return cols


def _ring_points(xy: np.ndarray, z: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Points of the rings around the face oval: radially expanded from the oval's centre."""
    oval = xy[list(FACE_OVAL)]
    c = (oval.min(0) + oval.max(0)) / 2
    rings_xy = np.concatenate([c + (oval - c) * s for s in RING_SCALES])
    rings_z = None
    if z is not None:
        oz = z[list(FACE_OVAL)]
        rings_z = np.concatenate([oz - d for d in RING_DEPTHS])
    return rings_xy, rings_z


def _au_fields(shape: np.ndarray, mirror: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Displacement fields (n_AU, 2, V, 3) with smooth Gaussian falloff, zero at rigid points."""
    v = len(shape)
    rigid = shape[list(RIGID_POINTS)]
    d_rigid = np.linalg.norm(shape[:, None, :2] - rigid[None, :, :2], axis=2)
    rigid_weight = np.prod(1.0 - np.exp(-(d_rigid / 0.035) ** 2), axis=1)
    # The rings belong to the skull (hair, ears), except below the mouth where the jaw
    # carries the chin's surroundings along: fade in smoothly from the mouth downwards.
    ring_y = shape[N_MESH:, 1]
    mouth_y = shape[list(INNER_LIPS), 1].mean()
    rigid_weight[N_MESH:] = 1.0 / (1.0 + np.exp(-(ring_y - mouth_y - 0.15) / 0.04))
    fields = np.zeros((len(AU_NAMES), 2, v, 3))
    below, above = _lip_side_masks(shape)
    region_mask = {"lower": below, "upper": above, None: np.ones(v)}
    for a, name in enumerate(AU_NAMES):
        region = region_mask[_AU_REGION.get(name)]
        for anchors, disp, radius in _AU_TABLE[name]:
            for side in (0, 1):
                idx = list(anchors) if side == 0 else [int(mirror[i]) for i in anchors]
                sgn = np.array([1.0 if side == 0 else -1.0, 1.0, 1.0])
                # Each anchor is on the image-left side or on the midline; on the midline both
                # sides contribute half, so symmetric gains give the whole displacement.
                d = np.linalg.norm(shape[:, None, :] - shape[None, idx, :], axis=2)
                w = np.exp(-0.5 * (d / radius) ** 2).max(axis=1)
                on_mid = np.abs(shape[idx, 0]) < 0.02
                half = 0.5 if on_mid.all() else 1.0
                vec = np.array(disp) * sgn
                if on_mid.all():
                    vec[0] = 0.0
                # Nearer side only: a unilateral AU must not pull the other half of the face.
                side_mask = 1.0 / (1.0 + np.exp((shape[:, 0] * (1 if side == 0 else -1)) / 0.03))
                if on_mid.all():
                    side_mask = np.ones(v)
                fields[a, side] += half * (w * side_mask * region)[:, None] * vec[None, :]
    fields[AU_NAMES.index("AU27")] += _oval_field(shape, below, above)
    fields *= rigid_weight[None, None, :, None]
    return snap(fields), snap(rigid_weight)


def _oval_field(shape: np.ndarray, below: np.ndarray, above: np.ndarray) -> np.ndarray:
    """(2, V, 3): the lips' share of AU27, added to its uniform jaw drop. Every inner lip point moves to
    an ellipse (corners drawn in to OVAL_WIDTH and down to mid-height, the lower lip's sides raised off
    the jaw's flat drop, the upper lip's sides lowered); the rest of the lips follow (Gaussian-weighted
    mean of the nearby inner points' moves, each side of the lip line from its own lip). Split between
    the two sides so that a symmetric gain gives the whole field."""
    c = shape[list(INNER_LIPS), :2].mean(0)
    half_w = abs(float(shape[UPPER_INNER_LIP[-1], 0] - shape[UPPER_INNER_LIP[0], 0])) / 2
    height = OVAL_DROP + OVAL_RAISE

    def target(idx: list[int], sign: float, jaw: np.ndarray | float) -> np.ndarray:
        """Moves of inner lip points onto the ellipse, less `jaw`, what the jaw group already moves them."""
        s = np.clip((shape[idx, 0] - c[0]) / half_w, -1.0, 1.0)
        disp = np.zeros((len(idx), 3))
        disp[:, 0] = (shape[idx, 0] - c[0]) * (OVAL_WIDTH - 1.0)
        disp[:, 1] = height / 2 + sign * (height / 2) * np.sqrt(1.0 - s * s) - OVAL_RAISE - jaw
        return disp

    out = np.zeros((len(shape), 3))
    for anchors, sign, region in ((UPPER_INNER_LIP, -1.0, above), (LOWER_INNER_LIP, 1.0, below)):
        idx = list(anchors)
        disp = target(idx, sign, OVAL_DROP if sign > 0 else 0.0)   # each lip's own side of the corners
        w = np.exp(-0.5 * (np.linalg.norm(shape[:, None, :2] - shape[None, idx, :2], axis=2) / OVAL_RADIUS) ** 2)
        out += (region * w.max(axis=1))[:, None] * (w[:, :, None] * disp[None]).sum(1) / w.sum(1)[:, None]
    for anchors, sign in ((UPPER_INNER_LIP, -1.0), (LOWER_INNER_LIP, 1.0)):   # the inner lips exactly
        out[list(anchors)] = target(list(anchors), sign, OVAL_DROP * below[list(anchors)])
    left = 1.0 / (1.0 + np.exp(shape[:, 0] / 0.03))     # image-left share (x < 0), 0.5 on the midline
    return np.stack([out * left[:, None], out * (1.0 - left)[:, None]])


def build_face_model(photos: Mapping[str, tuple[Path, str]] | None = None) -> FaceModel:
    """The face model from the fetched source photographs and their committed landmarks (cached per process).

    `photos`: name -> (path, pinned sha256), as `weights.photo_paths(params)` gives them; None: those of
    ./params.yaml (the project's, as a command run without --params reads)."""
    photos = project_photos() if photos is None else photos
    key = tuple((k, str(path), sha) for k, (path, sha) in photos.items())
    return _build_face_model(key)


def mouth_is_closed(lm: np.ndarray) -> bool:
    """A closed, relaxed mouth: lips together and corners not raised (a smile's lower face reads as happy)."""
    q = _frontal_frame(lm)
    gap = float(q[14, 1] - q[13, 1])
    lift = float(q[[13, 14], 1].mean() - q[[61, 291], 1].mean())      # > 0: corners above the lip centre
    return gap < 0.02 and lift < 0.02


@functools.lru_cache(maxsize=2)
def _build_face_model(key: tuple) -> FaceModel:
    photos = load_photos({k: (path, sha) for k, path, sha in key})
    lms = photo_landmarks({k: sha for k, _, sha in key})
    closed = tuple(k for k in photos if mouth_is_closed(lms[k]))
    if not closed:
        raise EmoganError("no source photograph has a closed, relaxed mouth: the neutral geometry needs one "
                          "(params.yaml weights.photos)")
    # Geometry from the first closed-mouth photograph, made exactly left/right symmetric.
    q = _frontal_frame(lms[closed[0]])
    mirror_mesh = _mirror_map(q)
    sym = snap((q + q[mirror_mesh] * np.array([-1.0, 1.0, 1.0])) / 2)
    rings_xy, rings_z = _ring_points(sym[:, :2], sym[:, 2])
    shape = snap(np.concatenate([sym, np.column_stack([rings_xy, rings_z])]))
    n_ring = len(FACE_OVAL)
    # Rings follow the oval's order; mirror them through the oval's mirror map.
    oval_pos = {v: i for i, v in enumerate(FACE_OVAL)}
    ring_mirror = np.array([oval_pos[int(mirror_mesh[v])] for v in FACE_OVAL])
    mirror = np.concatenate([mirror_mesh] + [N_MESH + r * n_ring + ring_mirror for r in range(len(RING_SCALES))])

    scale = ATLAS_SIZE / (2 * ATLAS_EXTENT)
    atlas_uv = snap((shape[:, :2] + ATLAS_EXTENT) * scale)

    # Topology: Delaunay on the layout with the mouth wide open, so triangles across the lips
    # join upper to lower lip (they stretch when the mouth opens) and can be told apart.
    from scipy.spatial import Delaunay

    fields, rigid_weight = _au_fields(shape, mirror)
    wide_open = fields[AU_NAMES.index("AU25")] + fields[AU_NAMES.index("AU26")]
    open_xy = shape[:, :2] + wide_open.sum(0)[:, :2]
    tri = Delaunay(open_xy).simplices
    # Counter-clockwise in the atlas (y down): positive signed area with this formula.
    p = atlas_uv[tri]
    area = (p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1]) - (p[:, 2, 0] - p[:, 0, 0]) * (p[:, 1, 1] - p[:, 0, 1])
    tri[area < 0] = tri[area < 0][:, [0, 2, 1]]
    lips_poly = open_xy[list(INNER_LIPS)].astype(np.float32)
    cent = open_xy[tri].mean(1)
    mouth = np.array([cv2.pointPolygonTest(lips_poly, (float(x), float(y)), False) > 0 for x, y in cent])

    # Texture atlases: each photograph warped onto the shared layout (piecewise affine).
    textures = {}
    order = np.arange(len(tri))
    ids = rasterize(atlas_uv[tri], order, (ATLAS_SIZE, ATLAS_SIZE))
    for name, img in photos.items():
        lm = lms[name]
        rx, _ = _ring_points(lm[:, :2], None)
        src_xy = np.concatenate([lm[:, :2], rx])
        aff, _ = triangle_affines(atlas_uv[tri], src_xy[tri])
        mx, my = pixel_maps(ids, aff)
        textures[name] = cv2.remap(img, mx, my, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    # Opacity: 1 on the face, fading to 0 at the outer ring (barycentric interpolation).
    vert_alpha = np.concatenate([np.ones(N_MESH)] + [np.full(n_ring, a) for a in RING_ALPHA])
    bary = barycentric(ids, atlas_uv[tri])
    alpha = (bary * vert_alpha[tri[np.maximum(ids, 0)]]).sum(-1).astype(np.float32)
    alpha[ids < 0] = 0.0
    alpha = snap(blur(alpha, 1.5), 2.0 ** -16).astype(np.float32)
    # Each photograph's own face shape, in the canonical frame: people morph between them.
    shapes = {k: _frontal_frame(lms[k]) for k in photos}
    return FaceModel(shape=shape, atlas_uv=atlas_uv.astype(np.float32), triangles=tri,
                     mouth_triangles=mouth, mirror=mirror, textures=textures, alpha=alpha,
                     au_fields=fields, rigid_weight=rigid_weight,
                     shading=appearance_maps(atlas_uv, mirror), regions=_region_masks(atlas_uv, ids),
                     shapes=shapes, closed_mouth=closed, normals=_atlas_normals(shape, tri, ids, bary))


def _atlas_normals(shape: np.ndarray, tri: np.ndarray, ids: np.ndarray, bary: np.ndarray) -> np.ndarray:
    """Unit surface normal (A,A,3) at each atlas pixel: vertex normals interpolated barycentrically."""
    p = shape[tri]
    n_tri = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])          # area-weighted, pointing to the camera (+z)
    n_tri *= np.where(n_tri[:, 2:3] < 0, -1.0, 1.0)
    vn = np.zeros_like(shape)
    for k in range(3):
        np.add.at(vn, tri[:, k], n_tri)
    vn /= np.sqrt((vn * vn).sum(1, keepdims=True)) + 1e-12
    pix = (bary[..., :, None] * vn[tri[np.maximum(ids, 0)]]).sum(-2)
    pix /= np.sqrt((pix * pix).sum(-1, keepdims=True)) + 1e-12
    pix[ids < 0] = (0.0, 0.0, 1.0)
    return snap(pix, 2.0 ** -16).astype(np.float32)


def _region_masks(atlas_uv: np.ndarray, ids: np.ndarray) -> dict[str, np.ndarray]:
    """Soft atlas masks: the eyes and brows (glasses included), and everything outside the face oval."""
    scale = ATLAS_SIZE / (2 * ATLAS_EXTENT)
    eyes = np.zeros((ATLAS_SIZE, ATLAS_SIZE), np.float32)
    for corners, brow in (((33, 133), 105), ((362, 263), 334)):
        c = atlas_uv[list(corners)].mean(0)
        c[1] = (c[1] * 2 + atlas_uv[brow][1]) / 3          # between the eye and its brow
        axes = (int(0.2 * scale), int(0.15 * scale))
        cv2.ellipse(eyes, (int(c[0]), int(c[1])), axes, 0, 0, 360, 1.0, -1, cv2.LINE_AA)
    eyes = blur(eyes, 0.04 * scale)
    oval = np.zeros_like(eyes)
    cv2.fillPoly(oval, [np.round(atlas_uv[list(FACE_OVAL)]).astype(np.int32)], 1.0, cv2.LINE_AA)
    hair = 1.0 - blur(oval, 0.04 * scale)
    hair[ids < 0] = 1.0
    eyes = np.minimum(eyes, 1.0 - hair)
    # The lower face (mouth, its folds, chin): where a smiling photograph shows its smile.
    lower = np.zeros_like(eyes)
    c = atlas_uv[[61, 291, 13, 14]].mean(0)
    cv2.ellipse(lower, (int(round(c[0])), int(round(c[1] + 0.04 * scale))), (int(0.36 * scale), int(0.27 * scale)),
                0, 0, 360, 1.0, -1, cv2.LINE_AA)
    lower = np.minimum(blur(lower, 0.05 * scale), 1.0 - hair)
    # Everything below the lower eyelids: where a smile raises the cheeks and creases the skin.
    lid_row = float(atlas_uv[[145, 374], 1].mean()) + 0.05 * scale
    rows = np.arange(ATLAS_SIZE, dtype=np.float32)[:, None]
    cheeks = np.broadcast_to(np.clip((rows - lid_row) / (0.06 * scale) + 0.5, 0.0, 1.0), eyes.shape)
    cheeks = np.maximum(np.minimum(cheeks, 1.0 - hair), lower)
    q = lambda m: snap(m, 2.0 ** -16).astype(np.float32)
    return {"eyes": q(eyes), "hair": q(hair), "lower": q(lower), "cheeks": q(cheeks), "skin": q(1.0 - hair)}


# Appearance of the action units, drawn in the atlas so it moves with the skin: creases darken,
# bulging skin catches the light. Each entry: (AU, polyline of landmarks on the image-left side
# or the midline, strength (negative darkens), thickness and blur in atlas pixels, offset in
# atlas pixels applied to every point). Real expressions change appearance as well as shape;
# a model trained on real faces reads these cues (issue: synthetic expressions it recognizes).
_CREASES: list[tuple[str, tuple[int, ...], float, int, float, tuple[float, float]]] = [
    ("AU4", (107, 55, 193), -0.45, 3, 2.5, (6.0, 0.0)),          # vertical furrow between the brows
    ("AU4", (66, 107, 9), -0.3, 3, 3.0, (4.0, 6.0)),             # oblique furrow at the nose root
    ("AU1", (67, 109, 10), -0.3, 2, 2.5, (0.0, 22.0)),           # forehead lines, centre
    ("AU1", (67, 109, 10), -0.25, 2, 2.5, (0.0, 34.0)),
    ("AU2", (103, 67, 109), -0.3, 2, 2.5, (0.0, 28.0)),          # forehead lines, sides
    ("AU2", (54, 103, 67), -0.25, 2, 2.5, (6.0, 40.0)),
    ("AU6", (226, 31, 228, 229, 230), -0.35, 3, 3.0, (0.0, 6.0)),  # lower-lid furrow as the cheek rises
    ("AU6", (130, 247), -0.35, 2, 2.0, (-8.0, 3.0)),              # crow's feet, away from the corner
    ("AU6", (130, 25), -0.3, 2, 2.0, (-9.0, 9.0)),
    ("AU6", (50, 205), 0.18, 10, 6.0, (0.0, 0.0)),                # raised cheek catches the light
    ("AU9", (6, 197), -0.45, 2, 1.8, (3.0, 0.0)),                 # nose wrinkles across the bridge
    ("AU9", (122, 196, 3), -0.4, 2, 1.8, (0.0, 2.0)),
    ("AU9", (129, 49), -0.4, 3, 2.5, (0.0, 0.0)),                 # nose wing crease
    ("AU10", (129, 203, 206), -0.35, 3, 3.0, (0.0, 0.0)),         # upper nasolabial fold
    ("AU12", (129, 203, 206, 216, 212), -0.5, 3, 3.0, (-3.0, 0.0)),   # nasolabial fold deepens
    ("AU12", (205, 207), 0.15, 8, 5.0, (0.0, 0.0)),               # bulging cheek above the fold
    ("AU15", (61, 57, 43, 202), -0.4, 3, 3.0, (0.0, 3.0)),        # marionette line at the mouth corner
    ("AU17", (84, 17), -0.35, 3, 3.0, (0.0, 8.0)),                # chin crease under the lower lip
    ("AU17", (200, 199), -0.2, 6, 5.0, (0.0, 0.0)),               # dimpled chin
    ("AU20", (61, 146, 204), -0.3, 2, 2.5, (-4.0, 0.0)),          # stretched lip corner
    ("AU23", (40, 39, 37, 0), -0.25, 3, 2.0, (0.0, 0.0)),         # pressed, darker lips
    ("AU23", (91, 181, 84, 17), -0.25, 3, 2.0, (0.0, 0.0)),
]


def appearance_maps(atlas_uv: np.ndarray, mirror: np.ndarray) -> dict[int, np.ndarray]:
    """Per action unit and side, a smooth (A,A) map of relative brightness change at intensity 1."""
    maps: dict[int, np.ndarray] = {}
    for au, chain, strength, thick, sigma, offset in _CREASES:
        a = AU_NAMES.index(au)
        m = maps.setdefault(a, np.zeros((2, ATLAS_SIZE, ATLAS_SIZE), np.float32))
        for side in (0, 1):
            idx = list(chain) if side == 0 else [int(mirror[i]) for i in chain]
            pts = atlas_uv[idx].copy()
            off = np.array(offset) * np.array([1.0 if side == 0 else -1.0, 1.0])
            pts += off * (ATLAS_SIZE / 640.0)
            canvas = np.zeros((ATLAS_SIZE, ATLAS_SIZE), np.float32)
            cv2.polylines(canvas, [np.round(pts * 16).astype(np.int32)], False, 1.0, thick, cv2.LINE_AA, 4)
            canvas = blur(canvas, sigma)
            canvas /= max(float(canvas.max()), 1e-6)
            # A crease on the midline belongs half to each side.
            on_mid = all(mirror[i] == i for i in chain)
            m[side] += (0.5 if on_mid else 1.0) * strength * canvas
    out = {}
    for a, m in maps.items():        # keep only the box where the map is not ~0: shading is per frame
        ys, xs = np.nonzero(np.abs(m).max(0) > 1e-3)
        box = (int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1)
        out[a] = (box, np.ascontiguousarray(snap(m[:, box[0]:box[1], box[2]:box[3]], 2.0 ** -16).astype(np.float32)))
    return out


def shade(texture: np.ndarray, model: FaceModel, au_gains: np.ndarray) -> np.ndarray:
    """The atlas texture (A,A,C) uint8 with the creases and highlights of these gains (n_AU,2); a copy."""
    active = [(a, *model.shading[a]) for a in model.shading if np.abs(au_gains[a]).max() > 1e-3]
    if not active:
        return texture
    y0 = min(b[0] for _, b, _ in active)
    y1 = max(b[1] for _, b, _ in active)
    x0 = min(b[2] for _, b, _ in active)
    x1 = max(b[3] for _, b, _ in active)
    gain = np.ones((y1 - y0, x1 - x0), np.float32)
    for a, (by0, by1, bx0, bx1), m in active:
        gain[by0 - y0:by1 - y0, bx0 - x0:bx1 - x0] += au_gains[a, 0] * m[0] + au_gains[a, 1] * m[1]
    np.clip(gain, 0.3, 1.5, out=gain)
    out = texture.copy()
    region = out[y0:y1, x0:x1, :3]
    region[:] = np.clip(region * gain[..., None], 0, 255)
    return out


def save_debug(model: FaceModel, out: Path) -> None:
    """Write the atlas textures with the mesh drawn on them (for people checking the model)."""
    out.mkdir(parents=True, exist_ok=True)
    for name, tex in model.textures.items():
        vis = tex.copy()
        for t in model.triangles:
            cv2.polylines(vis, [model.atlas_uv[t].astype(np.int32)], True, (0, 255, 0), 1)
        cv2.imwrite(str(out / f"atlas_{name}.png"), cv2.cvtColor(vis, cv2.COLOR_RGB2BGR))
