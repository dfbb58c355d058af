"""Mesh arithmetic of the synthetic faces that gives the same bytes on every CPU.

Float image filters run in scipy (one binary, no run-time SIMD dispatch; OpenCV's float GaussianBlur
differs between SIMD paths), small matrix products are written out (BLAS kernels sum in a CPU-dependent
order), and float results that feed later rounding are snapped to a fixed grid (`snap`), so last-bit
differences of exp/sin between CPUs do not reach a pixel. Plus the piecewise-affine warp of a triangle
mesh (rasterize, per-triangle affine maps, per-pixel source maps) shared by the face model, the renderer
and the landmark baseline.
"""
from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

SNAP = 2.0 ** -24          # grid of `snap` (face units, atlas weights): far below a pixel, far above float noise


def snap(x: np.ndarray, q: float = SNAP) -> np.ndarray:
    """Round to a grid of q: CPU-dependent last-bit differences (exp, sin, BLAS) vanish here."""
    return np.round(np.asarray(x, np.float64) / q) * q


def blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a float (H,W) map, the same on every CPU (scipy, no run-time SIMD dispatch)."""
    return ndimage.gaussian_filter(np.asarray(x, np.float32), sigma, mode="reflect", truncate=3.0)


def smoothstep(x: np.ndarray) -> np.ndarray:
    """0 below 0, 1 above 1, a cubic with flat ends between."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def matmul3(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(..., 3) @ (3, K) written out term by term: BLAS sums in a CPU-dependent order."""
    return a[..., 0:1] * b[0] + a[..., 1:2] * b[1] + a[..., 2:3] * b[2]


def rasterize(tri_px: np.ndarray, order: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Triangle index per pixel (H,W) int32, -1 where none; later triangles in `order` paint over earlier."""
    ids = np.full(shape, -1, np.int32)
    pts = np.round(tri_px * 16.0).astype(np.int32)     # 4 bits of sub-pixel precision
    for k in order:
        cv2.fillConvexPoly(ids, pts[k], int(k), lineType=cv2.LINE_8, shift=4)
    return ids


def triangle_affines(src_tri: np.ndarray, dst_tri: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Affine maps (T,2,3) taking each source triangle onto its destination; and which are non-degenerate."""
    # Closed-form inverse of [[x0 x1 x2] [y0 y1 y2] [1 1 1]] (adjugate / determinant): batched
    # np.linalg.inv on thousands of 3x3 matrices costs 30x more here (LAPACK call overhead).
    x0, x1, x2 = (src_tri[:, i, 0].astype(np.float64) for i in range(3))
    y0, y1, y2 = (src_tri[:, i, 1].astype(np.float64) for i in range(3))
    det = x0 * (y1 - y2) + x1 * (y2 - y0) + x2 * (y0 - y1)
    ok = np.abs(det) > 1e-6
    inv_det = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    inv = np.empty((len(src_tri), 3, 3))
    inv[:, 0, 0], inv[:, 0, 1], inv[:, 0, 2] = y1 - y2, x2 - x1, x1 * y2 - x2 * y1
    inv[:, 1, 0], inv[:, 1, 1], inv[:, 1, 2] = y2 - y0, x0 - x2, x2 * y0 - x0 * y2
    inv[:, 2, 0], inv[:, 2, 1], inv[:, 2, 2] = y0 - y1, x1 - x0, x0 * y1 - x1 * y0
    inv *= inv_det[:, None, None]
    d = dst_tri.transpose(0, 2, 1).astype(np.float64)          # (T, 2, 3): written out, not einsum/BLAS
    m = d[:, :, 0:1] * inv[:, None, 0, :] + d[:, :, 1:2] * inv[:, None, 1, :] + d[:, :, 2:3] * inv[:, None, 2, :]
    return m.astype(np.float32), ok


def pixel_maps(ids: np.ndarray, affines: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel source coordinates (map_x, map_y) from triangle ids and per-triangle affine maps."""
    h, w = ids.shape
    mx = np.full((h, w), -10.0, np.float32)
    my = np.full((h, w), -10.0, np.float32)
    rows = np.flatnonzero((ids >= 0).any(1))
    if rows.size == 0:
        return mx, my
    cols = np.flatnonzero((ids >= 0).any(0))
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    sub = ids[y0:y1, x0:x1]
    inside = sub >= 0
    k = np.where(inside, sub, 0)
    xs = np.arange(x0, x1, dtype=np.float32)[None, :]
    ys = np.arange(y0, y1, dtype=np.float32)[:, None]
    # Six 1-D gathers beat one gather of (H,W,2,3) blocks; only the face's bounding box is touched.
    c = [np.take(np.ascontiguousarray(affines[:, r, q]), k) for r in range(2) for q in range(3)]
    mx[y0:y1, x0:x1] = np.where(inside, c[0] * xs + c[1] * ys + c[2], -10.0)
    my[y0:y1, x0:x1] = np.where(inside, c[3] * xs + c[4] * ys + c[5], -10.0)
    return mx, my


def barycentric(ids: np.ndarray, tri_px: np.ndarray) -> np.ndarray:
    """Barycentric weights (H,W,3) of each pixel in its triangle (zeros where ids < 0)."""
    # Map pixel -> (w1, w2) via the affine from the pixel triangle to the unit simplex corners.
    simplex = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    aff, _ = triangle_affines(tri_px, np.broadcast_to(simplex, tri_px.shape))
    mx, my = pixel_maps(ids, aff)
    w = np.stack([1.0 - mx - my, mx, my], axis=-1).astype(np.float32)
    w[ids < 0] = 0.0
    return w
