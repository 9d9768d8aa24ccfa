"""The multigrid preconditioner (mattebox.matting.multigrid) against dense references on tiny images."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mattebox.matting import kernels, multigrid
from mattebox.matting.alpha import PRESETS, SolverSettings, solve_alpha
from mattebox.matting.laplacian import MattingLaplacian
from tests.test_classical_solver import dense_levin_laplacian, two_colour_composite


def aggregation(shape, unknown):
    """Dense piecewise-constant prolongation P: unknown fine pixel (y, x) -> coarse pixel (y // 2, x // 2)."""
    h, w = shape
    hc, wc = (h + 1) // 2, (w + 1) // 2
    p = np.zeros((h * w, hc * wc))
    for y in range(h):
        for x in range(w):
            if unknown[y, x]:
                p[y * w + x, (y // 2) * wc + x // 2] = 1.0
    return p


def stencil_to_dense(s):
    _, h, w = s.shape
    dense = np.zeros((h * w, h * w))
    for y in range(h):
        for x in range(w):
            for o in range(9):
                yn, xn = y + o // 3 - 1, x + o % 3 - 1
                if 0 <= yn < h and 0 <= xn < w:
                    dense[y * w + x, yn * w + xn] += s[o, y, x]
    return dense


def tiny_system(seed=0, shape=(7, 9)):
    rng = np.random.default_rng(seed)
    image = rng.random((*shape, 3)).astype(np.float32)
    unknown = (rng.random(shape) < 0.7).astype(np.uint8)
    data = 0.01 * rng.random(shape) * unknown
    mask = np.diag(unknown.ravel().astype(np.float64))
    dense = mask @ dense_levin_laplacian(image, 1e-3) @ mask + np.diag(data.ravel())
    return image, unknown, data, dense


def test_galerkin_fine_is_pt_a_p_and_l1_bounds_the_rows():
    image, unknown, data, dense = tiny_system()
    lap = MattingLaplacian(image, eps=1e-3)
    h, w = unknown.shape
    stencil, l1 = np.empty((9, (h + 1) // 2, (w + 1) // 2)), np.empty((h, w))
    kernels.galerkin_fine(lap.image, lap.inv_cov, lap.valid, unknown, data, stencil, l1)
    p = aggregation((h, w), unknown)
    np.testing.assert_allclose(stencil_to_dense(stencil), p.T @ dense @ p, rtol=1e-9, atol=1e-9)
    row_sums = np.abs(dense).sum(axis=1).reshape(h, w)
    assert np.all(l1 >= row_sums - 1e-9)  # the ℓ1-Jacobi diagonal dominates |A| row by row
    assert np.all(l1[unknown == 0] == 0)


def test_galerkin_stencil_is_pt_s_p():
    image, unknown, data, _ = tiny_system(seed=1, shape=(11, 13))
    lap = MattingLaplacian(image, eps=1e-3)
    fine = np.empty((9, 6, 7))
    kernels.galerkin_fine(lap.image, lap.inv_cov, lap.valid, unknown, data, fine, np.empty(unknown.shape))
    coarse = np.empty((9, 3, 4))
    kernels.galerkin_stencil(fine, coarse)
    p = aggregation((6, 7), np.ones((6, 7), bool))
    np.testing.assert_allclose(stencil_to_dense(coarse), p.T @ stencil_to_dense(fine) @ p, rtol=1e-9, atol=1e-9)


def test_v_cycle_is_a_convergent_symmetric_preconditioner():
    image, unknown, data, dense = tiny_system(seed=2, shape=(24, 28))
    data = data + 1e-3 * unknown  # well-posed without boundary values
    dense = dense + np.diag(1e-3 * unknown.ravel())
    lap = MattingLaplacian(image, eps=1e-3)

    def apply_a(v):
        return (dense @ v.ravel()).reshape(v.shape)

    cycle = multigrid.VCycle(lap, unknown, data, apply_a)
    m = np.stack([cycle(e.reshape(unknown.shape)).ravel() for e in np.eye(unknown.size)], axis=1)
    live = unknown.ravel() > 0
    m, a = m[np.ix_(live, live)], dense[np.ix_(live, live)]
    np.testing.assert_allclose(m, m.T, atol=1e-6 * np.abs(m).max())  # V(1,1): symmetric up to the coarse CG
    # one cycle as a stationary iteration reduces every error in the energy norm
    assert np.abs(np.linalg.eigvals(np.eye(len(a)) - m @ a)).max() < 1.0


def test_multigrid_solve_reaches_the_jacobi_solution(monkeypatch):
    image, _, trimap = two_colour_composite(h=96, w=112)
    settings = replace(PRESETS["best"], coarse_unknowns=1000)
    jacobi = solve_alpha(image, trimap, settings)
    calls = []
    solver = multigrid.flexible_cg
    monkeypatch.setattr(multigrid, "flexible_cg", lambda *args: calls.append(1) or solver(*args))
    mg = solve_alpha(image, trimap, replace(settings, preconditioner="multigrid", multigrid_unknowns=1000,
                                            multigrid_cost=1))
    assert calls  # the multigrid path ran
    assert np.abs(mg - jacobi).max() < 1e-3


def test_unknown_preconditioner_is_refused_by_name():
    with pytest.raises(ValueError, match="preconditioner: expected one of jacobi, multigrid, got 'amg'"):
        SolverSettings(preconditioner="amg")
