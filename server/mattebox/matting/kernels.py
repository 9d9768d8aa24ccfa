"""Compiled per-pixel kernels of the classical engine, in numba (ahead of time or by the JIT: last paragraph).

Why compiled: the matting Laplacian's matrix-free product (He, Sun, Tang, CVPR 2010, eqs. 11-13) written with numpy
is eight box filters and ~40 whole-image element-wise products, each a pass over memory with its own temporary;
here it is one sweep down the rows, the per-window coefficients of only 2r+1 rows kept (in cache). The same holds
for the red-black Gauss-Seidel sweeps of the multilevel foreground (Germer et al., ICPR 2020). The conjugate-gradient
loops (:func:`dot`, :func:`cg_update`, :func:`cg_direction`) replace numpy's dot, which hands each call to
OpenBLAS's threads. All arithmetic is float64 (see laplacian.py on why the Laplacian's must be); images may be
stored as float32 (exact in float64) and are widened with ``np.float64()`` — numba's ``float()`` keeps float32.

The window radius is the compile-time constant :data:`RADIUS` (Levin's 3×3 windows): with the bounds of the window
loops known, the compiler unrolls them, which makes the product 2-3× faster than with a run-time radius.

**Both cores on big frames.** Each kernel that runs over whole frames is serial and, except CG's vector sums and the
foreground's sweeps, works on a range of rows (or of items of a flat array) given by its last two arguments
``start, stop``; each output is computed by the same operations in the same order whatever range holds it. Every
kernel is compiled ``nogil`` (ahead of time too), so :mod:`.compiled` runs big frames' work as blocks of that range on
Python threads, one per core, with results that do not depend on the number of blocks (bit for bit;
tests/test_classical_solver.py). Sums over a whole vector (CG's dot products) add fixed chunks of :data:`SUM_CHUNK`
elements and then the chunks' sums in order: :func:`dot` does both, :func:`dot_chunks` only the chunks of a range
(its caller adds them in order), and likewise for :func:`cg_update` and :func:`restrict_and_shift`.

This module is the kernels' one source. The engine calls them through :mod:`.compiled`, which runs the serial
kernels from an extension compiled ahead of time from this file (``python -m mattebox.matting.aot build``, no numba
at run time) and imports this module, numba's JIT of the same functions, only where that extension does not serve a
call.
"""
from __future__ import annotations

import sys

import numpy as np
from numba import njit

if "numba.np.arraymath" not in sys.modules and "scipy.linalg.cython_blas" not in sys.modules:
    # numba's first call loads its lowering library; numba.np.arraymath, part of it, imports SciPy's linalg (0.2 s
    # of CPU, a tenth of a whole `mattebox matte` on an alphamatting-dev image) only to choose between BLAS and a
    # plain loop for np.correlate and np.convolve, which no kernel here uses. Loaded with SciPy's BLAS hidden, it
    # takes the loop; SciPy itself stays importable for everyone else.
    sys.modules["scipy.linalg.cython_blas"] = None  # `import` of it raises ImportError
    try:
        import numba.np.arraymath  # noqa: F401
    finally:
        del sys.modules["scipy.linalg.cython_blas"]

#: window radius r of every kernel here: (2r+1)² = 3×3 windows, Levin et al.'s value
RADIUS = 1
#: the elements a vector sum (:func:`dot`, :func:`cg_update`, :func:`restrict_and_shift`) adds in one plain loop
#: before adding the chunks' sums in order: fixed, so a sum does not depend on the thread count; 2^16, so that a big
#: level's vectors split evenly between threads (with 2^19 a 1080p level's 755k elements were 2 chunks, 524k and
#: 231k); alphamatting-dev's mean SAD is the same to 4 decimals (4.5382) either way
SUM_CHUNK = 1 << 16


@njit(cache=True, inline="always")
def symmetric_inverse(s00, s01, s02, s11, s12, s22):
    """The upper triangle (00, 01, 02, 11, 12, 22) of a symmetric 3×3 matrix's inverse, by its adjugate over its
    determinant: the windows' regularised colour covariance (Levin et al. 2008, eq. 12) in the Laplacian and in the
    affine upsampling fit."""
    c00 = s11 * s22 - s12 * s12
    c01 = s02 * s12 - s01 * s22
    c02 = s01 * s12 - s02 * s11
    c11 = s00 * s22 - s02 * s02
    c12 = s01 * s02 - s00 * s12
    c22 = s00 * s11 - s01 * s01
    det = s00 * c00 + s01 * c01 + s02 * c02
    return c00 / det, c01 / det, c02 / det, c11 / det, c12 / det, c22 / det


@njit(cache=True, inline="always")
def window_statistics(s0, s1, s2, q00, q01, q02, q11, q12, q22, size, reg):
    """A window's mean colour μ and Δ = (Σ + reg·U)⁻¹, Σ = mean(I Iᵀ) − μμᵀ (Levin et al. 2008 eq. 12; He et al.
    2010 eq. 5), from its colour sums ``s`` = Σ I_c and ``q`` = Σ I_a I_b (00 01 02 11 12 22) over ``size``
    pixels: (μ0, μ1, μ2, Δ00, Δ01, Δ02, Δ11, Δ12, Δ22). One formulation for the Laplacian's Δ_k
    (:func:`window_inverse`) and the affine upsampling's fit (:func:`affine_coefficients`)."""
    m0, m1, m2 = s0 / size, s1 / size, s2 / size
    d00, d01, d02, d11, d12, d22 = symmetric_inverse(
        q00 / size - m0 * m0 + reg, q01 / size - m0 * m1, q02 / size - m0 * m2,
        q11 / size - m1 * m1 + reg, q12 / size - m1 * m2, q22 / size - m2 * m2 + reg)
    return m0, m1, m2, d00, d01, d02, d11, d12, d22


@njit(cache=True, nogil=True)
def window_inverse(image, valid, reg, inv, starts, runs, start, stop):
    """Per window w_k (centre k) of rows ``start`` … ``stop`` − 1 in the runs of window centres
    ``runs[starts[y]]`` … ``runs[starts[y + 1] − 1]`` (each [x0, x1), clipped to the array): the 6 distinct entries
    (00, 01, 02, 11, 12, 22) of Δ_k = (Σ_k + reg·U)⁻¹ into the planes ``inv`` (6×H×W), by the adjugate, where
    ``valid[k]`` and the window lies inside the array, else zero. Elsewhere ``inv`` is not written (no product
    reads it there: a big crop's pages outside its band's windows are never touched). ``image`` is 3 colour planes
    (3×H×W). Σ_k = mean(I Iᵀ) − μ_k μ_kᵀ over the window (Levin et al. 2008 eq. 12)."""
    h, w = valid.shape
    r = RADIUS
    size = (2 * r + 1) ** 2
    for y in range(start, stop):
        for n in range(starts[y], starts[y + 1]):
            for x in range(max(runs[n, 0], 0), min(runs[n, 1], w)):
                if valid[y, x] == 0 or y < r or y >= h - r or x < r or x >= w - r:
                    for c in range(6):
                        inv[c, y, x] = 0.0
                    continue
                s0 = s1 = s2 = 0.0
                q00 = q01 = q02 = q11 = q12 = q22 = 0.0
                for j in range(y - r, y + r + 1):
                    for i in range(x - r, x + r + 1):
                        a, b, c = np.float64(image[0, j, i]), np.float64(image[1, j, i]), np.float64(image[2, j, i])
                        s0 += a
                        s1 += b
                        s2 += c
                        q00 += a * a
                        q01 += a * b
                        q02 += a * c
                        q11 += b * b
                        q12 += b * c
                        q22 += c * c
                _, _, _, d00, d01, d02, d11, d12, d22 = window_statistics(
                    s0, s1, s2, q00, q01, q02, q11, q12, q22, size, reg)
                inv[0, y, x], inv[1, y, x], inv[2, y, x] = d00, d01, d02
                inv[3, y, x], inv[4, y, x], inv[5, y, x] = d11, d12, d22


@njit(cache=True, nogil=True)
def _window_row(image, inv, valid, p, y, row, sums, x0, x1):
    """Levin's affine coefficients of p for the windows centred on row y at columns x0 … x1 − 1 (He et al. eq. 11):
    a_k = Δ_k (mean(I p) − μ_k p̄_k) and b_k = p̄_k − a_kᵀ μ_k, into the planes ``row[:, x + r]`` (4×(W + 2r));
    zero for windows not used and in the r columns of padding at each end (−r ≤ x0, x1 ≤ W + r; the rest of
    ``row`` is left as it was).

    The window sums are separable: each column's sums over the window rows (Σp, ΣI p, ΣI: 7 planes of ``sums``)
    first, then 2r+1 columns per window. Every loop runs along a row over planes with no branch (windows not used
    have Δ_k = 0 and are masked by ``valid``), so the compiler vectorises them (SIMD across pixels). Column
    indices are unsigned: numba tests a signed index for wrap-around (a negative index counts from the end) at
    every access, which it cannot prove away for a run-time start and which stops the vectorising (GT04-sized
    product: 5.3 ms with int64 columns from 0, 3.5 ms with these)."""
    h, w = p.shape
    r = RADIUS
    ur = np.uint64(r)
    inv_size = 1.0 / (2 * r + 1) ** 2
    row[:, x0 + r:x1 + r] = 0.0
    if y < r or y >= h - r:
        return
    first, last = max(x0, r), min(x1, w - r)
    if first >= last:
        return
    c0_, c1_ = np.uint64(first - r), np.uint64(last + r)
    for x in range(c0_, c1_):
        sp = s0 = s1 = s2 = m0 = m1 = m2 = 0.0
        for j in range(y - r, y + r + 1):
            v = p[j, x]
            c0, c1, c2 = np.float64(image[0, j, x]), np.float64(image[1, j, x]), np.float64(image[2, j, x])
            sp += v
            s0 += c0 * v
            s1 += c1 * v
            s2 += c2 * v
            m0 += c0
            m1 += c1
            m2 += c2
        sums[0, x], sums[1, x], sums[2, x], sums[3, x] = sp, s0, s1, s2
        sums[4, x], sums[5, x], sums[6, x] = m0, m1, m2
    for x in range(np.uint64(first), np.uint64(last)):
        sp = s0 = s1 = s2 = m0 = m1 = m2 = 0.0
        for i in range(x - ur, x + ur + np.uint64(1)):
            sp += sums[0, i]
            s0 += sums[1, i]
            s1 += sums[2, i]
            s2 += sums[3, i]
            m0 += sums[4, i]
            m1 += sums[5, i]
            m2 += sums[6, i]
        pm = sp * inv_size
        m0 *= inv_size
        m1 *= inv_size
        m2 *= inv_size
        c0 = s0 * inv_size - m0 * pm
        c1 = s1 * inv_size - m1 * pm
        c2 = s2 * inv_size - m2 * pm
        a0 = inv[0, y, x] * c0 + inv[1, y, x] * c1 + inv[2, y, x] * c2
        a1 = inv[1, y, x] * c0 + inv[3, y, x] * c1 + inv[4, y, x] * c2
        a2 = inv[2, y, x] * c0 + inv[4, y, x] * c1 + inv[5, y, x] * c2
        xr = x + ur
        row[0, xr], row[1, xr], row[2, xr] = a0, a1, a2
        row[3, xr] = (pm - a0 * m0 - a1 * m1 - a2 * m2) * np.float64(valid[y, x])


@njit(cache=True, nogil=True)
def _window_runs(image, inv, valid, p, j, row, sums, starts, runs):
    """Window row j's coefficients (:func:`_window_row`) over its runs of window centres, ``runs[starts[j]]`` …
    ``runs[starts[j + 1] − 1]`` (each [x0, x1), −r <= x0 < x1 <= W + r)."""
    for n in range(starts[j], starts[j + 1]):
        _window_row(image, inv, valid, p, j, row, sums, runs[n, 0], runs[n, 1])


@njit(cache=True, nogil=True)
def laplacian_rows(image, inv, valid, count, p, ring, sums, out, y0, y1, out_starts, out_runs, window_starts,
                   window_runs):
    """Rows y0 … y1 − 1 of out = L p (He et al. eqs. 11-13): (L p)_i = n_i p_i − Σ_{k ∋ i} (a_kᵀ I_i + b_k) over
    the n_i (``count``) valid windows holding i, in one sweep down the rows, at each row's runs of output columns
    only (row y's runs are ``out_runs[out_starts[y]]`` … ``out_runs[out_starts[y + 1] − 1]``, each (lo, hi, at):
    columns [lo, hi) go to the 1-D ``out`` from index ``at`` on — y·W + lo for an H×W output, or one after another
    for a vector of the region's pixels only). Nothing else of ``out`` is written (a solve needs L p only at its
    unknown pixels, about half of a crop around a roto's band; one run [0, W) per row is the whole product). The
    windows' coefficients are computed only at ``window_runs`` (rows (x0, x1) of window centres, indexed by
    ``window_starts`` the same way): they must hold every window [lo − r, hi + r) of the output runs of rows
    j − r … j + r (the output region dilated by a window, :class:`.laplacian.ProductRegion`).
    ``ring`` ((2r+1)×4×(W+2r)) holds the coefficients of the 2r+1 window rows that output row y reads, never a
    whole image of them; ``sums`` (7×(W+2r)) is scratch for the separable window sums (over the rows, then over
    2r+1 columns). Each output pixel gets the same operations in the same order whatever the runs (bit for bit)."""
    h, w = p.shape
    r = RADIUS
    span = 2 * r + 1
    for y in range(max(y0 - r, 0), min(y0 + r, h)):
        _window_runs(image, inv, valid, p, y, ring[y % span], sums, window_starts, window_runs)
    for y in range(y0, y1):
        if y + r < h:
            _window_runs(image, inv, valid, p, y + r, ring[(y + r) % span], sums, window_starts, window_runs)
        lo, hi = max(y - r, 0), min(y + r, h - 1)
        for n in range(out_starts[y], out_starts[y + 1]):
            lo_x, hi_x, at = out_runs[n, 0], out_runs[n, 1], out_runs[n, 2] - out_runs[n, 0]
            # each window column's coefficients summed over the window rows holding y (windows lo_x − r …
            # hi_x + r − 1, stored at lo_x … hi_x + 2r − 1)
            a, b = np.uint64(lo_x), np.uint64(hi_x + 2 * r)
            first = ring[lo % span]
            for k in range(4):
                for i in range(a, b):
                    sums[k, i] = first[k, i]
            for j in range(lo + 1, hi + 1):
                row = ring[j % span]
                for k in range(4):
                    for i in range(a, b):
                        sums[k, i] += row[k, i]
            for x in range(np.uint64(lo_x), np.uint64(hi_x)):
                a0 = a1 = a2 = b_sum = 0.0
                for i in range(x, x + np.uint64(span)):  # windows x - r … x + r, stored at x … x + 2r
                    a0 += sums[0, i]
                    a1 += sums[1, i]
                    a2 += sums[2, i]
                    b_sum += sums[3, i]
                out[at + x] = np.float64(count[y, x]) * p[y, x] - (
                    a0 * np.float64(image[0, y, x]) + a1 * np.float64(image[1, y, x])
                    + a2 * np.float64(image[2, y, x])) - b_sum


@njit(cache=True, nogil=True)
def laplacian_diagonal(image, inv, valid, out, start, stop):
    """Rows ``start`` … ``stop`` − 1 of out = diag(L): Σ_{k ∋ i} (1 − (1 + (I_i − μ_k)ᵀ Δ_k (I_i − μ_k)) / |w|)
    over the valid windows (eq. 12), window by window (μ_k once per window, each term added to the window's pixels
    in those rows; the windows whose rows straddle the range's ends are visited by both neighbouring blocks, and
    each pixel gets its terms in the windows' raster order either way)."""
    h, w = valid.shape
    r = RADIUS
    size = (2 * r + 1) ** 2
    out[start:stop, :] = 0.0
    for y in range(max(r, start - r), min(h - r, stop + r)):
        for x in range(r, w - r):
            if valid[y, x] == 0:
                continue
            m0 = m1 = m2 = 0.0
            for j in range(y - r, y + r + 1):
                for i in range(x - r, x + r + 1):
                    m0 += np.float64(image[0, j, i])
                    m1 += np.float64(image[1, j, i])
                    m2 += np.float64(image[2, j, i])
            m0 /= size
            m1 /= size
            m2 /= size
            d0, d1, d2, d3, d4, d5 = inv[0, y, x], inv[1, y, x], inv[2, y, x], inv[3, y, x], inv[4, y, x], inv[5, y, x]
            for j in range(max(y - r, start), min(y + r + 1, stop)):
                for i in range(x - r, x + r + 1):
                    e0 = np.float64(image[0, j, i]) - m0
                    e1 = np.float64(image[1, j, i]) - m1
                    e2 = np.float64(image[2, j, i]) - m2
                    quad = (d0 * e0 * e0 + d3 * e1 * e1 + d5 * e2 * e2
                            + 2.0 * (d1 * e0 * e1 + d2 * e0 * e2 + d4 * e1 * e2))
                    out[j, i] += 1.0 - (1.0 + quad) / size


@njit(cache=True, nogil=True)
def foreground_half_sweep(image, alpha, fg, bg, plate, plate_weight, eps_r, omega, colour, start, stop):
    """One colour's half of a red-black Gauss-Seidel sweep of Germer et al.'s multilevel foreground energy
    (ICPR 2020), rows ``start`` … ``stop`` − 1, in place on ``fg`` and ``bg`` (H×W×3): each pixel (y, x) with
    (x + y) % 2 == ``colour`` solves its 2×2 system in (F_i, B_i) per channel,

        [α² + W, α(1−α); α(1−α), (1−α)² + W + λ_B] [F; B] = [αI + Σ w F_j; (1−α)I + Σ w B_j + λ_B·plate],

    with w = ε_r + ω|α_i − α_j| over the 4-neighbours and W = Σ w, the neighbours fixed; F, B ≥ 0. A pixel's
    neighbours are all of the other colour, so the pixels of one colour do not read each other: in place, in any
    order or in blocks of rows, the result is the same. λ_B = ``plate_weight`` (0: ``plate`` is not read)."""
    h, w = alpha.shape
    for y in range(start, stop):
        for x in range((y + colour) % 2, w, 2):
            a = np.float64(alpha[y, x])
            wsum = 0.0
            sf0 = sf1 = sf2 = sb0 = sb1 = sb2 = 0.0
            for k in range(4):
                j, i = y, x
                if k == 0:
                    j = y - 1
                elif k == 1:
                    j = y + 1
                elif k == 2:
                    i = x - 1
                else:
                    i = x + 1
                if j < 0 or j >= h or i < 0 or i >= w:
                    continue
                wt = eps_r + omega * abs(a - alpha[j, i])
                wsum += wt
                sf0 += wt * fg[j, i, 0]
                sf1 += wt * fg[j, i, 1]
                sf2 += wt * fg[j, i, 2]
                sb0 += wt * bg[j, i, 0]
                sb1 += wt * bg[j, i, 1]
                sb2 += wt * bg[j, i, 2]
            m01 = a * (1.0 - a)
            d00 = a * a + wsum
            d11 = (1.0 - a) * (1.0 - a) + wsum + plate_weight
            det = d00 * d11 - m01 * m01
            if abs(det) < 1e-12:
                det = 1e-12
            for c in range(3):
                sf = sf0 if c == 0 else (sf1 if c == 1 else sf2)
                sb = sb0 if c == 0 else (sb1 if c == 1 else sb2)
                r0 = a * image[y, x, c] + sf
                r1 = (1.0 - a) * image[y, x, c] + sb
                if plate_weight != 0.0:
                    r1 += plate_weight * plate[y, x, c]
                fg[y, x, c] = max((d11 * r0 - m01 * r1) / det, 0.0)
                bg[y, x, c] = max((d00 * r1 - m01 * r0) / det, 0.0)


@njit(cache=True, nogil=True)
def foreground_sweeps(image, alpha, fg, bg, plate, plate_weight, eps_r, omega, iterations):
    """``iterations`` red-black Gauss-Seidel sweeps at one level of Germer et al.'s multilevel foreground (ICPR
    2020), in place on ``fg`` and ``bg``: red then black halves (:func:`foreground_half_sweep`) over all rows."""
    for _ in range(iterations):
        for colour in range(2):
            foreground_half_sweep(image, alpha, fg, bg, plate, plate_weight, eps_r, omega, colour, 0, alpha.shape[0])


@njit(cache=True, nogil=True)
def best_colour_pairs(colour, fgs, bgs, sigma, separation, alpha, confidence, start, stop):
    """Robust Matting's sample selection (Wang & Cohen, CVPR 2007, §3) per pixel i = ``start`` … ``stop`` − 1 of
    ``colour`` (3×N): over all
    candidate pairs (F, B) of ``fgs`` and ``bgs`` (k×3×N), α̂ = clip((I − B)·(F − B) / ‖F − B‖², 0, 1) (eq. 2) of
    the pair with the smallest squared distance ratio R² = ‖I − B − α̂(F − B)‖² / ‖F − B‖² (eq. 3, first pair on
    ties), into ``alpha``; its confidence exp(−R²/σ²) (eq. 6) · (1 − exp(−‖F − B‖²/τ²)), τ = ``separation``,
    into ``confidence``. One pass per pixel, no temporaries; float32 like the candidates."""
    inv_sigma2 = np.float32(1.0 / (sigma * sigma))
    inv_tau2 = np.float32(1.0 / (separation * separation))
    tiny = np.float32(1e-6)
    for i in range(start, stop):
        best_ratio2 = np.float32(np.inf)
        best_alpha = best_sep2 = np.float32(0.0)
        for b in range(bgs.shape[0]):
            b0, b1, b2 = bgs[b, 0, i], bgs[b, 1, i], bgs[b, 2, i]
            cb0, cb1, cb2 = colour[0, i] - b0, colour[1, i] - b1, colour[2, i] - b2  # I − B
            for f in range(fgs.shape[0]):
                fb0, fb1, fb2 = fgs[f, 0, i] - b0, fgs[f, 1, i] - b1, fgs[f, 2, i] - b2  # F − B
                sep2 = fb0 * fb0 + fb1 * fb1 + fb2 * fb2 + tiny
                a = min(max((cb0 * fb0 + cb1 * fb1 + cb2 * fb2) / sep2, np.float32(0.0)), np.float32(1.0))
                e0, e1, e2 = cb0 - a * fb0, cb1 - a * fb1, cb2 - a * fb2
                ratio2 = (e0 * e0 + e1 * e1 + e2 * e2) / sep2
                if ratio2 < best_ratio2:
                    best_ratio2, best_alpha, best_sep2 = ratio2, a, sep2
        alpha[i] = best_alpha
        confidence[i] = np.exp(-best_ratio2 * inv_sigma2) * (np.float32(1.0) - np.exp(-best_sep2 * inv_tau2))


@njit(cache=True, nogil=True)
def expand_label(pixels, at, dist, nearest, radius, colour, label, out, start, stop):
    """One label's pass of the known-region expansion (Gastal & Oliveira 2010 §4.1), in place on the flat trimap
    ``out``, for i = ``start`` … ``stop`` − 1: unknown pixel ``at[i]`` takes ``label`` when its nearest pixel of
    that label, ``nearest[i]``, is within ``radius`` (distance ``dist[i]``) and its colour (``pixels``: H·W×3
    float32) within ``colour`` (Euclidean, float32 as numpy's norm); a pixel the other label's pass took already
    goes back to unknown (0.5). Each i writes only its own pixel ``at[i]``."""
    for i in range(start, stop):
        if dist[i] > radius:
            continue
        j, k = at[i], nearest[i]
        d0 = pixels[j, 0] - pixels[k, 0]
        d1 = pixels[j, 1] - pixels[k, 1]
        d2 = pixels[j, 2] - pixels[k, 2]
        if np.sqrt(d0 * d0 + d1 * d1 + d2 * d2) <= colour:
            out[j] = label if out[j] == np.float32(0.5) else np.float32(0.5) if out[j] != label else label


@njit(cache=True, nogil=True)
def zero_positions(source, positions):
    """The flat indices of the zeros of ``source`` (H×W uint8) in raster order, into ``positions`` (one per zero):
    ``np.flatnonzero(source == 0)`` in one pass without its boolean frame."""
    k = 0
    flat = source.reshape(-1)
    for j in range(flat.size):
        if flat[j] == 0:
            positions[k] = j
            k += 1


@njit(cache=True, nogil=True)
def gather_nearest(dist, labels, positions, at, out_dist, out_index, start, stop):
    """For i = ``start`` … ``stop`` − 1, pixel ``at[i]``'s distance to its nearest zero of a distance transform
    (``dist``, H×W) and that zero's flat index, from OpenCV's DIST_LABEL_PIXEL ``labels`` (H×W: zeros numbered
    1, 2, … in raster order, :func:`zero_positions` of the same source)."""
    flat_dist, flat_labels = dist.reshape(-1), labels.reshape(-1)
    for i in range(start, stop):
        out_dist[i] = flat_dist[at[i]]
        out_index[i] = positions[flat_labels[at[i]] - 1]


@njit(cache=True, nogil=True)
def gather_colours(pixels, index, out, start, stop):
    """out[:, i] = pixels[index[i]] for i = ``start`` … ``stop`` − 1 (``pixels`` H·W×3, ``out`` 3×N): numpy's
    ``pixels[index].T`` without the N×3 temporary and its transposing copy."""
    for i in range(start, stop):
        j = index[i]
        for c in range(3):
            out[c, i] = pixels[j, c]


@njit(cache=True, nogil=True)
def gather_runs(source, moves, out, start, stop):
    """Runs ``start`` … ``stop`` − 1 of ``moves`` (rows (at_source, at_out, length)): out[at_out + i] =
    source[at_source + i], i < length (an image's runs of pixels into a vector of them; 1-D arrays)."""
    for n in range(start, stop):
        s, t = moves[n, 0], moves[n, 1]
        for i in range(moves[n, 2]):
            out[t + i] = np.float64(source[s + i])


@njit(cache=True, nogil=True)
def scatter_runs(source, moves, out, start, stop):
    """The inverse of :func:`gather_runs`: out[at_source + i] = source[at_out + i] (a vector of an image's runs of
    pixels back into the image)."""
    for n in range(start, stop):
        s, t = moves[n, 0], moves[n, 1]
        for i in range(moves[n, 2]):
            out[s + i] = source[t + i]


@njit(cache=True, nogil=True)
def box_candidates(image, trimap, label, rows, columns, radii, at, width, y0, x0, ring, out):
    """The colour prior's local-mean candidates (Wang & Cohen 2007's candidates, here box means) of one label at
    every scale: for each unknown pixel ``at[i]`` (flat index into an H×``width`` frame, ascending) and each radius
    ``radii[s]``, ``out[1 + s, :, i]`` = the mean colour of the label's pixels (``trimap`` == ``label``) of
    ``image`` (H×W×3) in the (2r+1)² box around it — its colour sums over its count, each scaled by 1/(2r+1)² to
    float32 as OpenCV's normalised box filter gives them — or the nearest known colour ``out[0, :, i]`` where the
    box holds none (count ≤ 1e-3); in float32 as numpy did it from OpenCV's blur.

    The box sums come from a summed-area table (Crow, SIGGRAPH 1984) of (colour, 1) over the frame rows ``rows``
    and columns ``columns`` (positions ``y0`` … and ``x0`` … of the frame, beyond its edges where the boxes reach
    there), which may repeat frame rows and columns (the frame's edges reflected, as OpenCV reads beyond
    them). Only the table rows the current pixels' boxes reach are kept, in ``ring`` (2·max(radii) + 2 rows ×
    (len(columns) + 1) × 4 float64): 5 MB for a 1080p frame instead of a frame-sized table or box output. Sums of
    8-bit colours are exact in float64 (up to 2^53 / 255² pixels' worth), so a box's sum from four corners is
    exactly what a box filter's running sums give."""
    slots = ring.shape[0]
    reach = (slots - 2) // 2
    ring[0, :, :] = 0.0  # table row 0: nothing summed
    built = 1  # table rows 0 … built − 1 are in the ring (row t in slot t % slots)
    for i in range(at.size):
        y = at[i] // width - y0  # the pixel's table row and column (its box's top left corner is y − r, x − r)
        x = at[i] % width - x0
        while built <= y + reach + 1:  # table row built = row built − 1 plus frame row rows[built − 1]
            above, row = ring[(built - 1) % slots], ring[built % slots]
            source = rows[built - 1]
            s0 = s1 = s2 = s3 = 0.0
            row[0, :] = 0.0
            for c in range(columns.size):
                column = columns[c]
                if trimap[source, column] == label:
                    s0 += np.float64(image[source, column, 0])
                    s1 += np.float64(image[source, column, 1])
                    s2 += np.float64(image[source, column, 2])
                    s3 += 1.0
                row[c + 1, 0] = above[c + 1, 0] + s0
                row[c + 1, 1] = above[c + 1, 1] + s1
                row[c + 1, 2] = above[c + 1, 2] + s2
                row[c + 1, 3] = above[c + 1, 3] + s3
            built += 1
        for s in range(radii.size):
            r = radii[s]
            scale = 1.0 / ((2 * r + 1) * (2 * r + 1))
            top, bottom = ring[(y - r) % slots], ring[(y + r + 1) % slots]
            left, right = x - r, x + r + 1
            count = np.float32((bottom[right, 3] - top[right, 3] - bottom[left, 3] + top[left, 3]) * scale)
            if count > np.float32(1e-3):
                inv = np.float32(1.0) / count
                for c in range(3):
                    total = bottom[right, c] - top[right, c] - bottom[left, c] + top[left, c]
                    out[1 + s, c, i] = np.float32(total * scale) * inv
            else:
                for c in range(3):
                    out[1 + s, c, i] = out[0, c, i]


@njit(cache=True, nogil=True)
def _dot_chunk(a, b, start, stop):
    """Σ a_i b_i for i = ``start`` … ``stop`` − 1, added in order."""
    total = 0.0
    for i in range(np.uint64(start), np.uint64(stop)):  # unsigned: no wrap-around test per access
        total += a[i] * b[i]
    return total


@njit(cache=True, nogil=True)
def dot(a, b):
    """aᵀb of two 1-D float64 vectors: a plain loop over each :data:`SUM_CHUNK` elements, the chunks' sums added in
    order (one chunk: the plain loop's sum). Instead of numpy's dot, which hands each call to a multi-threaded BLAS:
    its thread hand-offs cost 5-30 ms per call on a loaded 2-core machine even for 15k elements."""
    total = 0.0
    for start in range(0, a.size, SUM_CHUNK):
        total += _dot_chunk(a, b, start, min(start + SUM_CHUNK, a.size))
    return total


@njit(cache=True, nogil=True)
def dot_chunks(a, b, sums, first, last):
    """Chunks ``first`` … ``last`` − 1 of :func:`dot`: ``sums[c]`` = chunk c's Σ a_i b_i. Added in order by the
    caller, they give :func:`dot`'s sum bit for bit, however the chunks were shared between threads."""
    for c in range(first, last):
        sums[c] = _dot_chunk(a, b, c * SUM_CHUNK, min((c + 1) * SUM_CHUNK, a.size))


@njit(cache=True, nogil=True)
def _cg_update_chunk(x, r, p, ap, precond, step, start, stop):
    """:func:`cg_update` over elements ``start`` … ``stop`` − 1; returns their (Σ precond·r², Σ r²)."""
    rz = rr = 0.0
    for i in range(np.uint64(start), np.uint64(stop)):  # unsigned: no wrap-around test per access
        x[i] += step * p[i]
        r[i] -= step * ap[i]
        rz += precond[i] * r[i] * r[i]
        rr += r[i] * r[i]
    return rz, rr


@njit(cache=True, nogil=True)
def cg_update(x, r, p, ap, precond, step):
    """One conjugate-gradient update, in place: x += step·p, r −= step·Ap. Returns (rᵀz, rᵀr) with z = M⁻¹r
    (Jacobi: precond·r), which is never stored: :func:`cg_direction` recomputes it. Sums chunk by chunk as
    :func:`dot`."""
    rz = rr = 0.0
    for start in range(0, x.size, SUM_CHUNK):
        chunk_rz, chunk_rr = _cg_update_chunk(x, r, p, ap, precond, step, start, min(start + SUM_CHUNK, x.size))
        rz += chunk_rz
        rr += chunk_rr
    return rz, rr


@njit(cache=True, nogil=True)
def cg_update_chunks(x, r, p, ap, precond, step, sums, first, last):
    """Chunks ``first`` … ``last`` − 1 of :func:`cg_update`: the same update of x and r there, chunk c's
    (Σ precond·r², Σ r²) into ``sums[c]`` (the caller adds them in order, as :func:`dot_chunks`)."""
    for c in range(first, last):
        sums[c, 0], sums[c, 1] = _cg_update_chunk(x, r, p, ap, precond, step, c * SUM_CHUNK,
                                                  min((c + 1) * SUM_CHUNK, x.size))


@njit(cache=True, nogil=True)
def cg_direction(p, r, precond, beta, start, stop):
    """The next conjugate direction, in place on elements ``start`` … ``stop`` − 1: p = M⁻¹r + beta·p (Jacobi:
    M⁻¹r = precond·r)."""
    for i in range(np.uint64(start), np.uint64(stop)):  # unsigned: no wrap-around test per access
        p[i] = precond[i] * r[i] + beta * p[i]


@njit(cache=True, nogil=True)
def _restrict_chunk(lv, mask, shift, v, start, stop):
    """:func:`restrict_and_shift` over elements ``start`` … ``stop`` − 1; returns their Σ v·lv."""
    total = 0.0
    for i in range(np.uint64(start), np.uint64(stop)):  # unsigned: no wrap-around test per access
        lv[i] = mask[i] * lv[i] + shift[i] * v[i]
        total += v[i] * lv[i]
    return total


@njit(cache=True, nogil=True)
def restrict_and_shift(lv, mask, shift, v):
    """The solve's operator from L v, in place: lv = mask·(L v) + shift·v (rows of known pixels dropped, the data
    term's diagonal added). Returns vᵀlv, CG's curvature pᵀAp, from the same pass (summed as :func:`dot`)."""
    total = 0.0
    for start in range(0, v.size, SUM_CHUNK):
        total += _restrict_chunk(lv, mask, shift, v, start, min(start + SUM_CHUNK, v.size))
    return total


@njit(cache=True, nogil=True)
def restrict_and_shift_chunks(lv, mask, shift, v, sums, first, last):
    """Chunks ``first`` … ``last`` − 1 of :func:`restrict_and_shift`: the same update of lv there, chunk c's
    Σ v·lv into ``sums[c]`` (the caller adds them in order, as :func:`dot_chunks`)."""
    for c in range(first, last):
        sums[c] = _restrict_chunk(lv, mask, shift, v, c * SUM_CHUNK, min((c + 1) * SUM_CHUNK, v.size))


@njit(cache=True, nogil=True)
def solve_terms(mask, weight, prior, initial, data_weight, data, b, precond, x, start, stop):
    """The alpha solve's per-pixel terms in one pass over 1-D arrays (the same values as numpy's whole-array
    formulation, which took a temporary per operation): with m = mask (1 on unknown pixels),
    data = λ·c·m (Robust Matting eq. 8's λC), b = data·α̂ − m·(L α_known) (Levin eq. 14's right-hand side plus
    the data term), precond = 1 / max(diag(L) + data, 1e-2) on unknown pixels and 0 elsewhere (Jacobi, clamped:
    diag(L) can be tiny in flat windows at small ε), x = initial·m (CG's start, zero on known pixels).
    ``b`` holds L α_known and ``precond`` diag(L) on entry (overwritten: two planes fewer at the solve's peak).
    Elements ``start`` … ``stop`` − 1."""
    for i in range(start, stop):
        m = np.float64(mask[i])
        d = data_weight * np.float64(weight[i]) * m
        data[i] = d
        b[i] = d * np.float64(prior[i]) - m * b[i]
        precond[i] = 1.0 / max(precond[i] + d, 1e-2) if mask[i] > 0 else 0.0
        x[i] = np.float64(initial[i]) * m


@njit(cache=True, inline="always")
def _reflected(i, n):
    """Index ``i`` of an axis of ``n`` pixels, reflected at its ends as OpenCV's BORDER_REFLECT (…, 1, 0 | 0, 1, …,
    n − 1 | n − 1, n − 2, …) for reaches up to n."""
    if i < 0:
        return -i - 1
    if i >= n:
        return 2 * n - i - 1
    return i


@njit(cache=True, nogil=True)
def affine_coefficients(image, alpha, reg, coeffs, start, stop):
    """Levin's local affine model α ≈ aᵀI + b fitted per window by guided-filter least squares (He, Sun, Tang,
    ECCV 2010, eqs. 5-6): a = (Σ + reg·U)⁻¹ (mean(I α) − μ ᾱ), b = ᾱ − aᵀμ, with Σ = mean(I Iᵀ) − μμᵀ inverted by
    the adjugate, over the (2r+1)² window centred at each pixel of ``image`` (H×W×3) and ``alpha`` (H×W), its
    pixels beyond the edges reflected as OpenCV's BORDER_REFLECT; the window means summed here in float64, with
    no whole-image planes of them (13 float64 planes, ~48 MB for the 1080p roto's level 1, when OpenCV's box filter
    made them). Out ``coeffs`` (4×H×W: a0, a1, a2, b), rows ``start`` … ``stop`` − 1."""
    h, w = alpha.shape
    r = RADIUS
    size = (2 * r + 1) ** 2
    for y in range(start, stop):
        for x in range(w):
            s0 = s1 = s2 = sa = 0.0
            q00 = q01 = q02 = q11 = q12 = q22 = 0.0
            c0 = c1 = c2 = 0.0
            for dj in range(-r, r + 1):
                j = _reflected(y + dj, h)
                for di in range(-r, r + 1):
                    i = _reflected(x + di, w)
                    a, b, c = np.float64(image[j, i, 0]), np.float64(image[j, i, 1]), np.float64(image[j, i, 2])
                    v = np.float64(alpha[j, i])
                    s0 += a
                    s1 += b
                    s2 += c
                    sa += v
                    q00 += a * a
                    q01 += a * b
                    q02 += a * c
                    q11 += b * b
                    q12 += b * c
                    q22 += c * c
                    c0 += a * v
                    c1 += b * v
                    c2 += c * v
            m0, m1, m2, d00, d01, d02, d11, d12, d22 = window_statistics(
                s0, s1, s2, q00, q01, q02, q11, q12, q22, size, reg)
            ma = sa / size
            v0 = c0 / size - m0 * ma
            v1 = c1 / size - m1 * ma
            v2 = c2 / size - m2 * ma
            a0 = d00 * v0 + d01 * v1 + d02 * v2
            a1 = d01 * v0 + d11 * v1 + d12 * v2
            a2 = d02 * v0 + d12 * v1 + d22 * v2
            coeffs[0, y, x], coeffs[1, y, x], coeffs[2, y, x] = a0, a1, a2
            coeffs[3, y, x] = ma - a0 * m0 - a1 * m1 - a2 * m2


@njit(cache=True, inline="always")
def _linear_tap(plane, c, r0, r1, c0, c1, u0, u1, v0, v1):
    """Plane ``c`` of ``plane`` (k×h×w) interpolated bilinearly between rows ``r0``, ``r1`` (weights ``u0``,
    ``u1``) and columns ``c0``, ``c1`` (weights ``v0``, ``v1``): along the row first, as OpenCV's resize does."""
    top = plane[c, r0, c0] * v0 + plane[c, r0, c1] * v1
    bottom = plane[c, r1, c0] * v0 + plane[c, r1, c1] * v1
    return top * u0 + bottom * u1


@njit(cache=True, nogil=True)
def affine_upsample_evaluate(coeffs, rows, row_weights, columns, column_weights, image, out, start, stop):
    """Levin's affine model α = aᵀI + b (PAMI 2008 eq. 3, §6: "interpolate the coefficients") on the fine H×W×3
    ``image``, rows ``start`` … ``stop`` − 1 of ``out`` (H×W float32): the coarse coefficient planes ``coeffs``
    (4×h×w float64: a0, a1, a2, b) are interpolated bilinearly per fine pixel — fine row y lies between coarse rows
    ``rows[y]`` with weights ``row_weights[y]``, column x between ``columns[x]`` with ``column_weights[x]``
    (:func:`.laplacian.linear_taps`: OpenCV's INTER_LINEAR geometry) — and evaluated in float64 in the order
    b + a0·I0 + a1·I1 + a2·I2. One pass and no full-size coefficient planes (four float64 ones, 47 MB at 1080p,
    when each was resized by OpenCV first)."""
    for y in range(start, stop):
        r0, r1 = rows[y, 0], rows[y, 1]
        u0, u1 = row_weights[y, 0], row_weights[y, 1]
        for x in range(out.shape[1]):
            c0, c1 = columns[x, 0], columns[x, 1]
            v0, v1 = column_weights[x, 0], column_weights[x, 1]
            value = _linear_tap(coeffs, 3, r0, r1, c0, c1, u0, u1, v0, v1)
            value += _linear_tap(coeffs, 0, r0, r1, c0, c1, u0, u1, v0, v1) * np.float64(image[y, x, 0])
            value += _linear_tap(coeffs, 1, r0, r1, c0, c1, u0, u1, v0, v1) * np.float64(image[y, x, 1])
            value += _linear_tap(coeffs, 2, r0, r1, c0, c1, u0, u1, v0, v1) * np.float64(image[y, x, 2])
            out[y, x] = value


@njit(cache=True, nogil=True)
def galerkin_fine(image, inv, valid, unknown, data, ac, l1):
    """The Galerkin coarse operator Pᵀ(L_uu + D)P of the alpha solve for 2×2 aggregation (P piecewise constant:
    fine pixel (y, x) belongs to coarse pixel (y // 2, x // 2); known pixels belong to none), as a 3×3 stencil
    ``ac`` (9 × ⌈H/2⌉ × ⌈W/2⌉, offset (dy, dx) at plane (dy + 1)·3 + dx + 1), assembled window by window from
    Levin et al. 2008 eq. 12 — L_ij = Σ_k δ_ij − (1 + (I_i − μ_k)ᵀ Δ_k (I_j − μ_k)) / |w| — without storing L; D
    is ``data`` (λc). A fine 3×3 window spans at most 2×2 aggregates, so the coarse stencil is 3×3.
    ``l1`` (H×W) gets Σ_k Σ_j |L^k_ij| + D_i ≥ Σ_j |A_ij| on unknown pixels, the diagonal of an ℓ1-Jacobi smoother
    (Baker, Falgout, Kolev, Yang 2011), convergent for any SPD A."""
    h, w = unknown.shape
    ac[:, :, :] = 0.0
    l1[:, :] = 0.0
    ys, xs = np.empty(9, np.int64), np.empty(9, np.int64)
    e = np.empty((3, 9))  # I_i − μ_k of the window's pixels
    for y in range(1, h - 1):
        for x in range(1, w - 1):
            if valid[y, x] == 0:
                continue
            n = 0
            for j in range(y - 1, y + 2):
                for i in range(x - 1, x + 2):
                    ys[n], xs[n] = j, i
                    for c in range(3):
                        e[c, n] = np.float64(image[c, j, i])
                    n += 1
            if unknown[y - 1:y + 2, x - 1:x + 2].sum() == 0:
                continue
            for c in range(3):
                e[c] -= e[c].sum() / 9.0
            d0, d1, d2, d3, d4, d5 = inv[0, y, x], inv[1, y, x], inv[2, y, x], inv[3, y, x], inv[4, y, x], inv[5, y, x]
            for a in range(9):
                if unknown[ys[a], xs[a]] == 0:
                    continue
                g0 = d0 * e[0, a] + d1 * e[1, a] + d2 * e[2, a]  # Δ_k (I_a − μ_k)
                g1 = d1 * e[0, a] + d3 * e[1, a] + d4 * e[2, a]
                g2 = d2 * e[0, a] + d4 * e[1, a] + d5 * e[2, a]
                for b in range(9):
                    if unknown[ys[b], xs[b]] == 0:
                        continue
                    value = (1.0 if a == b else 0.0) - (1.0 + g0 * e[0, b] + g1 * e[1, b] + g2 * e[2, b]) / 9.0
                    offset = (ys[b] // 2 - ys[a] // 2 + 1) * 3 + xs[b] // 2 - xs[a] // 2 + 1
                    ac[offset, ys[a] // 2, xs[a] // 2] += value
                    l1[ys[a], xs[a]] += abs(value)
    for y in range(h):
        for x in range(w):
            if unknown[y, x]:
                ac[4, y // 2, x // 2] += data[y, x]
                l1[y, x] += data[y, x]


@njit(cache=True, nogil=True)
def galerkin_stencil(s, ac):
    """Pᵀ S P for a 3×3 stencil operator ``s`` (9×H×W, :func:`galerkin_fine`'s layout) and 2×2 aggregation: again
    a 3×3 stencil, into ``ac`` (9 × ⌈H/2⌉ × ⌈W/2⌉)."""
    _, h, w = s.shape
    ac[:, :, :] = 0.0
    for y in range(h):
        for x in range(w):
            for o in range(9):
                c = s[o, y, x]
                if c == 0.0:
                    continue
                yn, xn = y + o // 3 - 1, x + o % 3 - 1
                oy = yn // 2 - y // 2 + 1
                ox = xn // 2 - x // 2 + 1
                ac[oy * 3 + ox, y // 2, x // 2] += c


@njit(cache=True, nogil=True)
def stencil_apply(s, v, out):
    """out = S v for a 3×3 stencil operator ``s`` (9×H×W) and an H×W vector ``v``."""
    _, h, w = s.shape
    for y in range(h):
        for x in range(w):
            t = 0.0
            for o in range(9):
                yn, xn = y + o // 3 - 1, x + o % 3 - 1
                if 0 <= yn < h and 0 <= xn < w:
                    t += s[o, y, x] * v[yn, xn]
            out[y, x] = t
