"""Alpha from a trimap: closed-form matting (Levin et al. 2008) solved matrix-free over the unknown band.

Pipeline (each step's parameter is documented in docs/classical.md):

1. Known-region expansion (Gastal & Oliveira, "Shared Sampling for Real-Time Alpha Matting", 2010, §4.1):
   an unknown pixel within ``expand_radius`` px of a known pixel whose colour differs by at most
   ``expand_colour`` becomes known with that pixel's label. Fewer unknowns, and no solver error there.
2. The solve is restricted to the bounding box of the unknown pixels plus a margin of one window, so only that
   crop is ever filtered (the Laplacian's windows outside it do not touch unknown pixels).
3. The hard-constrained problem  min αᵀLα  s.t. α = α_known on known pixels  is the linear system
   L_uu α_u = −L_uk α_k (Levin eq. 14 with λ → ∞), solved by preconditioned conjugate gradients (Jacobi
   preconditioner diag(L_uu)), using :class:`MattingLaplacian` (no matrix is built).
4. Coarse-to-fine: on large crops the problem is first solved at half resolution (recursively) and upsampled as
   the initial guess, which removes most CG iterations (the smooth error components converge slowest).
5. α is clipped to [0, 1]; values within ``snap`` of 0 or 1 are snapped, which removes faint haze without
   touching soft edges.

Optional data term (Levin eq. 14 with a soft prior, used by the two-frame solver): with per-pixel values α̂ and
weights λ ≥ 0 the system becomes (L_uu + Λ) α_u = −L_uk α_k + Λ α̂ (minimiser of αᵀLα + Σ λ_i (α_i − α̂_i)²).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import cv2
import numpy as np

from ...contract import no_progress
from .laplacian import MattingLaplacian

UNKNOWN = 0.5


@dataclass
class SolverSettings:
    eps: float = 1e-6  #: Levin's ε (window covariance regulariser); paper: 1e-7, see docs/classical.md
    radius: int = 1  #: window radius r: (2r+1)² windows (Levin: 3×3)
    max_iterations: int = 200  #: CG iterations at the finest level
    tolerance: float = 1e-6  #: relative residual ‖r‖/‖b‖ to stop CG
    coarse_min_side: int = 96  #: solve a half-resolution level first while the crop's short side exceeds 2× this
    expand_radius: int = 10  #: known-region expansion search radius in px (Gastal & Oliveira: 10)
    expand_colour: float = 5.0 / 256.0  #: max colour distance for expansion (Gastal & Oliveira: 5/256)
    snap: float = 0.01  #: α within this of 0 or 1 is snapped


PRESETS = {
    "fast": SolverSettings(max_iterations=60, tolerance=1e-4),
    "balanced": SolverSettings(),
    "best": SolverSettings(max_iterations=600, tolerance=1e-7, coarse_min_side=64),
}


def expand_known(image: np.ndarray, trimap: np.ndarray, radius: int, colour: float) -> np.ndarray:
    """Known-region expansion (Gastal & Oliveira 2010 §4.1), using each unknown pixel's nearest known pixel of
    each label: it becomes known when that pixel is within ``radius`` and its colour within ``colour``
    (Euclidean RGB); pixels that qualify for both labels stay unknown."""
    unknown = trimap == UNKNOWN
    if not unknown.any() or radius <= 0:
        return trimap
    out = trimap.copy()
    for label in (0.0, 1.0):
        source = (trimap != label).astype(np.uint8)  # zeros at known pixels of this label
        if source.all():
            continue
        dist, idx = cv2.distanceTransformWithLabels(source, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
        # map label index -> coordinates of that zero pixel
        ys, xs = np.nonzero(source == 0)
        lookup = np.zeros((idx.max() + 1, 2), np.int64)
        lookup[idx[ys, xs]] = np.stack([ys, xs], axis=1)
        near = unknown & (dist <= radius)
        py, px = np.nonzero(near)
        qy, qx = lookup[idx[py, px]].T
        close = np.linalg.norm(image[py, px] - image[qy, qx], axis=1) <= colour
        hit = np.zeros_like(unknown)
        hit[py[close], px[close]] = True
        both = hit & (out != UNKNOWN) & (out != label)
        out[hit] = label
        out[both] = UNKNOWN
    return out


def _cg(apply_a, b, x, precond, max_iterations, tolerance, report):
    """Preconditioned conjugate gradients on the unknown pixels (arrays are masked full images)."""
    r = b - apply_a(x)
    z = precond * r
    p = z.copy()
    rz = float(np.vdot(r, z))
    norm_b = float(np.linalg.norm(b)) or 1.0
    for it in range(max_iterations):
        if np.linalg.norm(r) / norm_b < tolerance:
            break
        ap = apply_a(p)
        curvature = float(np.vdot(p, ap))
        if not np.isfinite(curvature) or curvature <= 0:
            break  # lost conjugacy in float32: keep the last good iterate
        step = rz / curvature
        x += step * p
        r -= step * ap
        z = precond * r
        rz_new = float(np.vdot(r, z))
        p = z + (rz_new / max(rz, 1e-30)) * p
        rz = rz_new
        if it % 10 == 0:
            report(it, max_iterations)
    return x


def _solve_crop(image: np.ndarray, trimap: np.ndarray, settings: SolverSettings, report, level: int = 0,
                prior=None):
    """Solve one crop (all arrays cropped); returns α for the crop. ``prior``: optional (α̂, λ) H×W float32."""
    unknown = trimap == UNKNOWN
    h, w = trimap.shape
    initial = np.where(unknown, 0.5, trimap).astype(np.float32)
    if prior is not None:
        initial = np.where(unknown & (prior[1] > 0), prior[0], initial).astype(np.float32)
    if min(h, w) > 2 * settings.coarse_min_side and unknown.sum() > 4096:
        small_image = cv2.resize(image, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        small_trimap = cv2.resize(trimap, (w // 2, h // 2), interpolation=cv2.INTER_NEAREST)
        small_prior = None if prior is None else tuple(
            cv2.resize(p, (w // 2, h // 2), interpolation=cv2.INTER_AREA) for p in prior)
        coarse = _solve_crop(small_image, small_trimap, settings, lambda *a: None, level + 1, small_prior)
        initial[unknown] = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)[unknown]
    laplacian = MattingLaplacian(image, eps=settings.eps, r=settings.radius)
    mask = unknown.astype(np.float32)
    known_values = np.where(unknown, 0.0, trimap).astype(np.float32)
    b = -mask * laplacian.apply(known_values)
    diag = laplacian.diagonal()
    weights = np.zeros_like(mask)
    if prior is not None:
        weights = mask * prior[1].astype(np.float32)
        b = b + weights * prior[0].astype(np.float32)
    # diag(L) can be tiny where ε is small and windows are flat; clamping keeps the preconditioner bounded
    precond = np.where(unknown, 1.0 / np.maximum(diag + weights, 1e-2), 0.0).astype(np.float32)
    x = initial * mask
    iterations = settings.max_iterations if level == 0 else max(50, settings.max_iterations // 2)
    x = _cg(lambda v: mask * laplacian.apply(mask * v) + weights * v, b, x, precond, iterations,
            settings.tolerance, report)
    return np.where(unknown, x, trimap).astype(np.float32)


def solve_alpha(image_srgb: np.ndarray, trimap: np.ndarray, settings: Optional[SolverSettings] = None,
                progress: Callable = no_progress, prior: Optional[tuple] = None) -> np.ndarray:
    """α (H×W float32 in [0, 1]) for an sRGB image in [0, 1] and a trimap in {0, 0.5, 1}. ``prior``: optional
    (α̂, λ), two H×W float32 arrays: a soft data term λ(α − α̂)² added to the Laplacian energy (module doc)."""
    settings = settings or SolverSettings()
    trimap = expand_known(image_srgb, trimap.astype(np.float32), settings.expand_radius, settings.expand_colour)
    alpha = np.where(trimap == UNKNOWN, 0.5, trimap).astype(np.float32)
    unknown = trimap == UNKNOWN
    if not unknown.any():
        return alpha
    ys, xs = np.nonzero(unknown)
    margin = settings.radius + 1
    y0, y1 = max(ys.min() - margin, 0), min(ys.max() + margin + 1, trimap.shape[0])
    x0, x1 = max(xs.min() - margin, 0), min(xs.max() + margin + 1, trimap.shape[1])
    crop_trimap = trimap[y0:y1, x0:x1].copy()
    crop_prior = None if prior is None else tuple(np.ascontiguousarray(p[y0:y1, x0:x1], np.float32) for p in prior)
    crop = _solve_crop(np.ascontiguousarray(image_srgb[y0:y1, x0:x1]), crop_trimap, settings,
                       lambda done, total: progress("alpha", done, total), prior=crop_prior)
    alpha[y0:y1, x0:x1] = crop
    alpha = np.clip(alpha, 0.0, 1.0)
    alpha[alpha < settings.snap] = 0.0
    alpha[alpha > 1.0 - settings.snap] = 1.0
    return alpha
