"""Render a face of the face model: expression (action units) + head pose -> RGB frame.

Perspective camera, painter's order with back-face culling for occlusion, a texture
atlas sampled through per-triangle affine maps (one cv2.remap per frame), a mouth
interior with teeth behind the lips, and composition over a background.
"""
from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
from scipy import ndimage

from pipeline.face_model import AU_NAMES, INNER_LIPS, N_MESH, FaceModel, shade
from pipeline.mesh import blur, matmul3, pixel_maps, rasterize, snap, triangle_affines

PX_GRID = 1.0 / 256.0      # projected points are snapped to this grid (pixels): the same on every CPU

# The mouth's interior is in shadow: near black, as in photographs of open mouths. The FER2013 judge reads
# surprise's open oval by it (tuning seeds 132-134: surprise recall 0.26 with the old lit maroon (52, 18, 22)
# and a red tongue (150, 62, 66), 0.37 with these; docs/DATASET.md, fifth round).
MOUTH_COLOUR = (0, 0, 0)
TONGUE_COLOUR = (20, 8, 9)
UPPER_TEETH_COLOUR = (228, 222, 206)
LOWER_TEETH_COLOUR = (205, 198, 182)
PIVOT = np.array([0.0, 0.35, -0.75])   # head rotation centre (neck), face units


@dataclasses.dataclass
class Subject:
    """One synthetic person: neutral shape, texture, expression style."""

    name: str
    shape: np.ndarray        # (V,3) neutral vertices, face units
    texture: np.ndarray      # (A,A,3) uint8 RGB atlas
    alpha: np.ndarray        # (A,A) float32 opacity atlas
    style: np.ndarray        # (n_AU,) per-action-unit gain of this person
    background: tuple[tuple[int, int, int], tuple[int, int, int]]   # two RGB colours of the backdrop
    backdrop_seed: int = 0   # seeds the backdrop's faint texture
    recipe: dict = dataclasses.field(default_factory=dict)   # what made this person (photographs, tone, age, ...)

    def __post_init__(self) -> None:
        # The texture with its opacity as a 4th channel: one remap samples both.
        self.rgba = np.dstack([self.texture, np.clip(self.alpha * 255, 0, 255).astype(np.uint8)])


@dataclasses.dataclass
class Camera:
    """Perspective camera looking at the face: image side and framing (params.yaml synth: size, face_frac,
    focal_frac; no defaults here, so no side is assumed)."""

    size: int                  # image side, pixels
    face_frac: float           # face width / image side at depth 0
    focal_frac: float          # focal length / image side

    @property
    def px_per_unit(self) -> float:
        """Pixels per face unit at depth 0."""
        return self.face_frac * self.size


def rotation(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    """Rotation matrix (3,3): yaw about y, pitch about x, roll about z (degrees), applied roll-pitch-yaw."""
    y, p, r = (math.radians(float(v)) for v in (yaw_deg, pitch_deg, roll_deg))
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return snap(matmul3(matmul3(ry, rx), rz))


def posed(vertices: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Apply head pose (yaw, pitch, roll deg, tx, ty face units) about the neck pivot: (V,3) -> (V,3)."""
    r = rotation(*pose[:3])
    out = matmul3(vertices - PIVOT, r.T) + PIVOT
    out[:, 0] += pose[3]
    out[:, 1] += pose[4]
    return out


def project(vertices: np.ndarray, cam: Camera) -> np.ndarray:
    """Perspective projection (V,3) face units -> (V,2) pixel coordinates."""
    f = cam.focal_frac * cam.size
    dist = f / cam.px_per_unit                       # camera distance making depth 0 the nominal scale
    z = dist - vertices[:, 2]
    c = (cam.size - 1) / 2.0
    return snap(np.column_stack([c + f * vertices[:, 0] / z, c + f * vertices[:, 1] / z]), PX_GRID)


def expression_vertices(model: FaceModel, subject: Subject, au_gains: np.ndarray) -> np.ndarray:
    """Neutral shape plus action-unit displacements; au_gains (n_AU, 2) per side."""
    out = subject.shape.copy()
    for a, s in zip(*np.nonzero(au_gains)):        # a fixed order of sums, not einsum's
        out += au_gains[a, s] * model.au_fields[a, s]
    return out


def make_background(subject: Subject, size: int) -> np.ndarray:
    """A smooth two-colour backdrop with faint texture (static across frames), (H,W,3) float32."""
    c0 = np.array(subject.background[0], np.float32)
    c1 = np.array(subject.background[1], np.float32)
    t = np.linspace(0.0, 1.0, size, dtype=np.float32)
    grad = (t[:, None] * 0.7 + t[None, :] * 0.3)[..., None]
    bg = c0 * (1 - grad) + c1 * grad
    rng = np.random.default_rng(subject.backdrop_seed)
    n = 64                                     # blob grid, independent of the frame size
    blobs = blur(rng.normal(0, 1, (n, n)).astype(np.float32), 2.0)
    at = (np.arange(size, dtype=np.float64) + 0.5) * (n / size) - 0.5
    yy, xx = np.meshgrid(at, at, indexing="ij")
    blobs = ndimage.map_coordinates(blobs, [yy, xx], order=3, mode="nearest")
    return np.clip(bg + 10.0 * blobs[..., None], 0, 255).astype(np.float32)


def _teeth(model: FaceModel, subject: Subject, au_gains: np.ndarray, pose: np.ndarray,
           cam: Camera) -> tuple[np.ndarray, np.ndarray]:
    """Projected polygons of the upper teeth (fixed to the skull) and lower teeth (moving with the jaw)."""
    lips = subject.shape[list(INNER_LIPS)]
    upper = lips[:11]                                  # corner to corner along the upper inner lip
    line = upper.copy()
    line[:, 2] -= 0.03                                  # teeth sit a little behind the lips
    jaw_drop = sum(au_gains[a].sum() * 0.5 * model.au_fields[a].sum(0)[14]   # lower-lip centre's displacement
                   for a in (AU_NAMES.index("AU26"), AU_NAMES.index("AU27")))
    up_top = line + np.array([0.0, -0.05, 0.0])
    # Upper teeth show below the upper lip only when the lips are pulled back (smile, raised lip).
    retract = np.clip(sum(au_gains[AU_NAMES.index(a)].mean() for a in ("AU10", "AU12", "AU20")), 0.0, 1.0)
    up_bot = line + np.array([0.0, -0.012 + 0.032 * retract, 0.0])
    # Lower teeth likewise only when the lower lip is pulled down or stretched (fear, smile).
    lower_retract = np.clip(sum(au_gains[AU_NAMES.index(a)].mean() for a in ("AU12", "AU16", "AU20")), 0.0, 1.0)
    lo_top = line + np.array([0.0, 0.055 - 0.035 * lower_retract, 0.0]) + jaw_drop
    lo_bot = line + np.array([0.0, 0.07, 0.0]) + jaw_drop
    upper_poly = project(posed(np.concatenate([up_top, up_bot[::-1]]), pose), cam)
    lower_poly = project(posed(np.concatenate([lo_top, lo_bot[::-1]]), pose), cam)
    return upper_poly, lower_poly


def render(model: FaceModel, subject: Subject, au_gains: np.ndarray, pose: np.ndarray, cam: Camera,
           background: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One frame: RGB float32 (H,W,3) in [0,255] and the projected 468 mesh points (468,2) in pixels."""
    verts = posed(expression_vertices(model, subject, au_gains), pose)
    pts = project(verts, cam)
    tri = model.triangles
    # Facing test on the neutral shape in this pose, so expression folds never punch holes.
    neutral_pts = project(posed(subject.shape, pose), cam)
    p = neutral_pts[tri]
    area = (p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1]) - (p[:, 2, 0] - p[:, 0, 0]) * (p[:, 1, 1] - p[:, 0, 1])
    tri_px = pts[tri]
    aff, ok = triangle_affines(tri_px, model.atlas_uv[tri])
    keep = ok & (area > 0) & ~model.mouth_triangles
    depth = verts[tri, 2].mean(1)
    order = np.flatnonzero(keep)
    order = order[np.argsort(depth[order], kind="stable")]      # far first: painter's order
    ids = rasterize(tri_px, order, (cam.size, cam.size))
    mx, my = pixel_maps(ids, aff)
    rgba = shade(subject.rgba, model, au_gains)
    face = cv2.remap(rgba, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    # Behind the face: mouth interior and teeth, seen only where the lips part.
    under = background.copy()
    mouth = pts[list(INNER_LIPS)]
    up, lo = _teeth(model, subject, au_gains, pose, cam)
    box = np.concatenate([mouth, up, lo])
    x0, y0 = np.maximum(np.floor(box.min(0)).astype(int) - 2, 0)
    x1, y1 = np.minimum(np.ceil(box.max(0)).astype(int) + 3, cam.size)
    if x1 > x0 and y1 > y0:
        # Dark at the back of the mouth, the tongue's red towards the bottom of the opening.
        my0, my1 = mouth[:, 1].min() - y0, mouth[:, 1].max() - y0
        t = np.clip((np.arange(y1 - y0, dtype=np.float32) - (my0 + my1) / 2) / max(my1 - my0, 1.0) * 2, 0, 1)
        patch = np.empty((y1 - y0, x1 - x0, 3), np.float32)
        patch[:] = (np.array(MOUTH_COLOUR, np.float32)
                    + (np.array(TONGUE_COLOUR, np.float32) - MOUTH_COLOUR) * (t * t)[:, None])[:, None, :]
        off = np.array([x0, y0])
        for poly, colour in ((lo, LOWER_TEETH_COLOUR), (up, UPPER_TEETH_COLOUR)):
            cv2.fillPoly(patch, [np.round((poly - off) * 16).astype(np.int32)], colour,
                         lineType=cv2.LINE_AA, shift=4)
        under[y0:y1, x0:x1] = ndimage.gaussian_filter(patch, (0.8, 0.8, 0.0), mode="reflect", truncate=3.0)
    a = face[..., 3:4].astype(np.float32) * (1.0 / 255.0)
    img = under + (face[..., :3].astype(np.float32) - under) * a
    return img, pts[:N_MESH]


def finish(img: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Add per-frame sensor noise (H,W) grey levels and quantize to uint8 RGB."""
    return np.clip(img + noise[..., None], 0, 255).astype(np.uint8)
