"""A multigrid V-cycle preconditioner for the alpha solve (L_uu + λC) α_u = b, and flexible CG to use it.

Aggregation multigrid with Galerkin coarse operators (Notay, "An aggregation-based algebraic multigrid method",
ETNA 2010; Braess 1995): the fine level's unknown pixels are grouped 2×2 (prolongation P piecewise constant,
restriction Pᵀ), and each coarse operator is A_c = Pᵀ A P, assembled from the matting Laplacian's windows without
ever storing L (:func:`.compiled.galerkin_fine`; a 3×3 stencil), then again 2×2 on the stencils
(:func:`.compiled.galerkin_stencil`) down to a few thousand unknowns, solved there by Jacobi-CG. ℓ1-Jacobi
smoothing (D_ii = Σ_j |A_ij|: Baker, Falgout, Kolev, Yang, "Multigrid smoothers for ultraparallel computing",
SISC 2011), one sweep before and one after the coarse correction. Plain damped Jacobi (ω = 0.7) diverged: the
matting Laplacian is far from diagonally dominant (with ε = 1e-7 a pixel's row can be dominated by its
neighbours), so λ_max(D⁻¹A) exceeds 2/ω and the cycle stopped being positive definite. The cycle is then a
symmetric positive definite map except for the inexact coarsest solve; flexible CG (Notay, "Flexible conjugate
gradients", SIAM J. Sci. Comput. 2000) tolerates that.

Re-discretised coarse operators (the matting Laplacian of the half-resolution image, which the coarse-to-fine
levels already build) do not work as a coarse correction: with Levin's ε = 1e-7 their near-null space (α locally
affine in the *coarse* colours) is not the fine one's, and one V-cycle multiplied the energy norm of the error by
44 on GT04 (bench/multigrid_trial.py; docs/classical.md "Speed"). Galerkin operators are A-orthogonal projections,
stable by construction.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from . import compiled

#: the coarsest level has at most this many unknown aggregates (or a side under 8), solved by Jacobi-CG
COARSEST_UNKNOWNS = 2000


def _inverse(diagonal: np.ndarray) -> np.ndarray:
    """1 / diagonal where it is positive (unknown pixels), 0 elsewhere."""
    live = diagonal > 1e-12
    return np.where(live, 1.0 / np.where(live, diagonal, 1.0), 0.0)


def _restrict(r: np.ndarray, shape) -> np.ndarray:
    """Pᵀ r: the sum over each 2×2 aggregate (odd sizes padded with zeros)."""
    h, w = shape
    padded = np.zeros((2 * h, 2 * w))
    padded[:r.shape[0], :r.shape[1]] = r
    return padded.reshape(h, 2, w, 2).sum(axis=(1, 3))


def _prolong(e: np.ndarray, shape) -> np.ndarray:
    """P e: each aggregate's value on its 2×2 fine pixels."""
    return np.repeat(np.repeat(e, 2, 0), 2, 1)[:shape[0], :shape[1]]


class VCycle:
    """One V(1, 1)-cycle as a preconditioner z = M⁻¹ r for the crop-layout system A = mask·L·mask + data.

    ``laplacian``: the crop's :class:`.laplacian.MattingLaplacian`; ``mask``: uint8 unknown pixels; ``data``: λc
    (zero on known pixels); ``apply_a``: the fine system's product (the solver's own)."""

    def __init__(self, laplacian, mask: np.ndarray, data: np.ndarray, apply_a: Callable):
        self.apply_a, self.mask = apply_a, mask
        h, w = mask.shape
        stencil = np.empty((9, (h + 1) // 2, (w + 1) // 2))
        l1 = np.empty((h, w))
        compiled.galerkin_fine(laplacian.image, laplacian.inv_cov, laplacian.valid, mask, data, stencil, l1)
        self.dinv = _inverse(l1)
        self.levels = []  # (stencil, its ℓ1-Jacobi smoother's inverse diagonal)
        while True:
            diagonal = stencil[4]
            live = diagonal > 1e-12  # aggregates holding an unknown pixel
            self.levels.append((stencil, _inverse(np.abs(stencil).sum(axis=0))))
            h, w = diagonal.shape
            if live.sum() <= COARSEST_UNKNOWNS or min(h, w) < 8:
                break
            stencil, coarse = np.empty((9, (h + 1) // 2, (w + 1) // 2)), stencil
            compiled.galerkin_stencil(coarse, stencil)

    def _stencil_apply(self, k: int, v: np.ndarray) -> np.ndarray:
        out = np.empty_like(v)
        compiled.stencil_apply(self.levels[k][0], v, out)
        return out

    def _cycle(self, k: int, r: np.ndarray) -> np.ndarray:
        """e ≈ A_k⁻¹ r from e = 0 (k = −1: the fine level)."""
        if k == len(self.levels) - 1:
            return _jacobi_cg(lambda v: self._stencil_apply(k, v), r, self.levels[k][1])
        apply_a, dinv = (self.apply_a, self.dinv) if k < 0 else (lambda v: self._stencil_apply(k, v), self.levels[k][1])
        e = dinv * r
        coarse_shape = self.levels[k + 1][0].shape[1:]
        correction = _prolong(self._cycle(k + 1, _restrict(r - apply_a(e), coarse_shape)), r.shape)
        if k < 0:
            correction *= self.mask  # P has no rows for known pixels (the fine product assumes zeros there)
        e += correction
        e += dinv * (r - apply_a(e))
        return e

    def __call__(self, r: np.ndarray) -> np.ndarray:
        return self._cycle(-1, r)


def _jacobi_cg(apply_a, b, dinv, iterations=200, tolerance=1e-10):
    """The coarsest level's solve (Jacobi-preconditioned CG from 0)."""
    x = np.zeros_like(b)
    r = b.copy()
    z = dinv * r
    p = z.copy()
    rz = float(np.vdot(r, z))
    norm_b = np.sqrt(float(np.vdot(b, b))) or 1.0
    for _ in range(iterations):
        ap = apply_a(p)
        curvature = float(np.vdot(p, ap))
        if curvature <= 0:
            break
        step = rz / curvature
        x += step * p
        r -= step * ap
        if np.sqrt(float(np.vdot(r, r))) / norm_b < tolerance:
            break
        z = dinv * r
        rz, rz_old = float(np.vdot(r, z)), rz
        p = z + (rz / rz_old) * p
    return x


def flexible_cg(apply_a, b, x, precondition, max_iterations, tolerance, report):
    """Flexible preconditioned CG (Notay 2000: β = zₖ₊₁ᵀ(rₖ₊₁ − rₖ) / zₖᵀrₖ) from ``x`` (updated in place and
    returned); stops at ‖r‖/‖b‖ < ``tolerance``. ``apply_a`` may return the same buffer every time."""
    norm_b = np.sqrt(compiled.dot(b.reshape(-1), b.reshape(-1))) or 1.0
    r = b - apply_a(x)
    z = precondition(r)
    p = z.copy()
    rz = compiled.dot(r.reshape(-1), z.reshape(-1))
    for it in range(max_iterations):
        if np.sqrt(compiled.dot(r.reshape(-1), r.reshape(-1))) / norm_b < tolerance:
            break
        ap = apply_a(p)
        curvature = compiled.dot(p.reshape(-1), ap.reshape(-1))
        if not np.isfinite(curvature) or curvature <= 0:
            break
        step = rz / curvature
        x += step * p
        r_old = r.copy()
        r -= step * ap
        z = precondition(r)
        beta = compiled.dot(z.reshape(-1), (r - r_old).reshape(-1)) / max(rz, 1e-300)
        rz = compiled.dot(r.reshape(-1), z.reshape(-1))
        p *= beta
        p += z
        if it % 10 == 0:
            report(it, max_iterations)
    return x
