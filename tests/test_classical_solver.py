"""The classical alpha solver's pieces against brute-force references on tiny synthetic images."""
from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from mattebox.matting.alpha import SolverSettings, expand_known, prepare, solve_alpha
from mattebox.matting.laplacian import MattingLaplacian, ProductRegion, affine_upsample, linear_taps
from mattebox.matting.sampling import alpha_prior, nearest_known


def dense_levin_laplacian(image: np.ndarray, eps: float, r: int = 1) -> np.ndarray:
    """Levin et al. 2008 eq. 12, summed window by window (windows fully inside the image), float64."""
    h, w = image.shape[:2]
    n = (2 * r + 1) ** 2
    lap = np.zeros((h * w, h * w))
    index = np.arange(h * w).reshape(h, w)
    for y in range(r, h - r):
        for x in range(r, w - r):
            win = index[y - r:y + r + 1, x - r:x + r + 1].ravel()
            colours = image.reshape(-1, 3)[win].astype(np.float64)
            mu = colours.mean(0)
            cov = (colours - mu).T @ (colours - mu) / n
            inv = np.linalg.inv(cov + eps / n * np.eye(3))
            d = colours - mu
            block = np.eye(n) - (1 + d @ inv @ d.T) / n
            lap[np.ix_(win, win)] += block
    return lap


def two_colour_composite(h=40, w=48, seed=0):
    """I = αF + (1−α)B with constant F and B and a soft vertical edge; (image, alpha, trimap)."""
    x = np.linspace(-1, 1, w, dtype=np.float32)
    alpha = np.clip(0.5 + 2.0 * x, 0, 1)[None, :].repeat(h, 0)
    fg, bg = np.array([0.9, 0.6, 0.2], np.float32), np.array([0.1, 0.3, 0.7], np.float32)
    image = alpha[..., None] * fg + (1 - alpha[..., None]) * bg
    image += np.random.default_rng(seed).normal(0, 0.002, image.shape).astype(np.float32)
    trimap = np.where(alpha <= 0.0, 0.0, np.where(alpha >= 1.0, 1.0, 0.5)).astype(np.float32)
    # widen the unknown band by 4 px each side, as a user's trimap would be
    trimap[:, 8:40] = np.where((trimap[:, 8:40] == 0) | (trimap[:, 8:40] == 1), 0.5, trimap[:, 8:40])
    return image, alpha, trimap


@pytest.mark.parametrize("eps", [1e-7, 1e-3])
def test_matrix_free_laplacian_equals_levin_eq12(eps):
    image = np.random.default_rng(1).random((6, 7, 3)).astype(np.float32)
    dense = dense_levin_laplacian(image, eps)
    lap = MattingLaplacian(image, eps=eps)
    p = np.random.default_rng(2).random((6, 7)).astype(np.float32)
    np.testing.assert_allclose(lap.apply(p).ravel(), dense @ p.ravel(), rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(lap.diagonal().ravel(), np.diag(dense), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(lap.apply(np.ones((6, 7), np.float32)), 0.0, atol=1e-3)  # constants: null space


def test_the_product_in_blocks_of_rows_equals_one_sweep_bit_for_bit():
    """The product in blocks of rows at once (the worker threads) gives the one-thread result exactly, so a solve
    does not depend on the thread count; both are Levin's L, also with windows left out (the band's mosaics)."""
    rng = np.random.default_rng(3)
    image = rng.random((13, 9, 3)).astype(np.float32)
    valid = (rng.random((13, 9)) > 0.2).astype(np.uint8)
    p = rng.random((13, 9))
    one = MattingLaplacian(image, valid=valid, blocks=1).apply(p)
    for blocks in (2, 3, 13):
        np.testing.assert_array_equal(MattingLaplacian(image, valid=valid, blocks=blocks).apply(p), one)
    full = MattingLaplacian(image, blocks=4).apply(p)
    np.testing.assert_allclose(full.ravel(), dense_levin_laplacian(image, 1e-7) @ p.ravel(), rtol=2e-3, atol=2e-3)



@pytest.mark.parametrize("blocks", [1, 3, None])
def test_the_product_over_a_region_equals_the_whole_product_there_and_writes_nothing_else(blocks):
    """A solve asks for L p only at its unknown pixels: a :class:`ProductRegion` of them (each row's runs, several
    per row, at the edges and inside, rows without any) computes those pixels, bit for bit as the whole product does,
    sets up only the windows they lie in and leaves every other pixel of ``out`` as it was; its blocks hold equal
    work, not equal rows (None: as many as the region's work gives, here one)."""
    rng = np.random.default_rng(5)
    image = rng.random((17, 23, 3)).astype(np.float32)
    p = rng.random((17, 23))
    unknown = np.zeros((17, 23), bool)
    unknown[0, 5] = unknown[3, 0:4] = unknown[4, 19:23] = unknown[9, 11] = True
    unknown[3, 8:10] = unknown[3, 15] = True
    unknown[12:16, 2:20] = rng.random((4, 18)) > 0.5
    unknown[16, 22] = True
    region = ProductRegion.around(unknown, 1)
    runs = region.out_runs[region.out_starts[3]:region.out_starts[4]]
    assert runs.tolist() == [[0, 4, 69], [8, 10, 77], [15, 16, 84]]  # (columns, where they go: 3·23 + first)
    assert region.out_starts[1] == region.out_starts[2] == region.out_starts[3]  # rows 1, 2: no run
    windows = region.window_runs[region.window_starts[2]:region.window_starts[3]]
    assert windows.tolist() == [[-1, 5], [7, 11], [14, 17]]  # row 3's runs widened by a window (and the padding)
    whole = MattingLaplacian(image, blocks=blocks).apply(p)
    restricted = MattingLaplacian(image, blocks=blocks, region=region)
    # Δ_k set up at the region's windows only (and the same there as for the whole image)
    inside = region.windows[1:-1, 1:-1] == 1
    np.testing.assert_array_equal(restricted.inv_cov[:, 1:-1, 1:-1][:, inside],
                                  MattingLaplacian(image, blocks=blocks).inv_cov[:, 1:-1, 1:-1][:, inside])
    assert (restricted.inv_cov[:, 1:-1, 1:-1][:, inside] != 0).all()
    out = np.full((17, 23), np.nan)
    restricted.apply(p, out=out)
    np.testing.assert_array_equal(out[unknown], whole[unknown])
    assert np.isnan(out[~unknown]).all()
    np.testing.assert_array_equal(restricted.diagonal()[unknown], MattingLaplacian(image).diagonal()[unknown])
    # packed: the output is a vector of the region's pixels in raster order, the same values
    packed = MattingLaplacian(image, blocks=blocks, region=ProductRegion.around(unknown, 1, packed=True))
    np.testing.assert_array_equal(packed.apply(p), whole[unknown])


def test_the_packed_layout_holds_the_unknown_pixels_and_spreads_back_around_the_known_ones():
    """CropOperator's packed vectors: compact() gathers the unknown pixels in raster order, full() puts them back
    with the known pixels from ``fill``, and apply() of a packed vector is the whole product at the unknown pixels
    of that vector spread out with zeros (what CG's masked vectors are)."""
    from mattebox.matting.laplacian import CropOperator

    rng = np.random.default_rng(8)
    image = rng.random((19, 21, 3)).astype(np.float32)
    unknown = rng.random((19, 21)) > 0.6
    unknown[:, 0] = unknown[0, :] = True  # runs at the crop's edges
    op = CropOperator(image, unknown, 1e-7, 1)
    x = rng.random((19, 21)).astype(np.float32)
    packed = op.compact(x)
    assert packed.dtype == np.float64 and packed.shape == (unknown.sum(),)
    np.testing.assert_array_equal(packed, x[unknown])
    fill = rng.random((19, 21))
    spread = op.full(packed * 2, fill)
    np.testing.assert_array_equal(spread[unknown], 2 * x[unknown].astype(np.float64))
    np.testing.assert_array_equal(spread[~unknown], fill[~unknown])
    whole = MattingLaplacian(image).apply(np.where(unknown, x, 0.0))
    np.testing.assert_array_equal(op.apply(packed), whole[unknown])
    np.testing.assert_array_equal(op.apply_crop(x), MattingLaplacian(image).apply(x)[unknown])
    np.testing.assert_array_equal(op.diagonal(), MattingLaplacian(image).diagonal()[unknown])


def test_blocks_of_equal_work_cut_the_rows_where_the_work_is():
    """compiled.run_blocks with a cost per row: a region whose work sits in its first rows gets blocks of equal
    work (the first few rows against the rest), not of equal rows."""
    cost = np.concatenate([[0], np.cumsum([100] * 4 + [1] * 96)])  # 400 units in rows 0-3, 96 in rows 4-99
    from mattebox.matting import compiled

    seen = compiled.run_blocks(lambda block, lo, hi: (lo, hi), 2, 0, 100, cost)
    assert seen == [(0, 3), (3, 100)]
    assert compiled.run_blocks(lambda block, lo, hi: (lo, hi), 2, 0, 100) == [(0, 50), (50, 100)]


def test_the_compiled_laplacian_refuses_a_window_radius_it_does_not_implement():
    with pytest.raises(ValueError, match="radius"):
        MattingLaplacian(np.zeros((8, 8, 3), np.float32), r=2)


def test_affine_upsample_reproduces_an_affine_function_of_the_image():
    rng = np.random.default_rng(3)
    fine = rng.random((48, 64, 3)).astype(np.float32)  # texture: every window's colours span 3-D
    coarse = cv2_resize(fine, (32, 24))
    coefficients, offset = np.array([0.3, 0.2, -0.1], np.float32), 0.25
    alpha_coarse = coarse @ coefficients + offset
    out = affine_upsample(alpha_coarse, coarse, fine, eps=1e-8)
    np.testing.assert_allclose(out, fine @ coefficients + offset, atol=2e-3)


def cv2_resize(image, size):
    import cv2

    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def test_nearest_known_and_expansion():
    trimap = np.full((5, 5), 0.5, np.float32)
    trimap[:, 0] = 1.0
    trimap[:, 4] = 0.0
    where = np.zeros((5, 5), bool)
    where[2, 3] = where[4, 1] = True
    dist, nearest = nearest_known(trimap, 1.0, np.flatnonzero(where))
    assert dist[0] == pytest.approx(3.0, abs=0.1) and list(nearest) == [2 * 5 + 0, 4 * 5 + 0]  # (2, 0), (4, 0)
    assert nearest_known(np.full((3, 3), 0.5, np.float32), 1.0, np.flatnonzero(where[:3, :3])) is None
    image = np.zeros((5, 5, 3), np.float32)
    image[:, :2] = 1.0  # column 1 has the foreground's colour, column 3 the background's
    out = expand_known(image, trimap, radius=2, colour=0.01)
    assert out[2, 1] == 1.0 and out[2, 3] == 0.0
    assert out[2, 2] == 0.0  # background colour, 2 px from the background column


def random_scene(seed: int, shape=(48, 64)):
    """A noisy image with flat patches (so expansion has colour matches) and a trimap with all three labels."""
    rng = np.random.default_rng(seed)
    image = rng.random(shape + (3,), dtype=np.float32)
    image[::7, ::5] = image[0, 0]  # repeated colours near and far
    trimap = np.full(shape, 0.5, np.float32)
    trimap[:, :12] = 1.0
    trimap[:, -12:] = 0.0
    trimap[rng.random(shape) < 0.05] = 1.0
    trimap[rng.random(shape) < 0.05] = 0.0
    return image, trimap


@pytest.mark.parametrize("seed", [0, 1])
def test_compiled_expansion_equals_the_numpy_formulation(seed):
    """kernels.expand_label replaced a vectorised pass: the same trimap, bit for bit (Gastal & Oliveira §4.1:
    within radius and colour of a label's nearest pixel; qualifying for both labels stays unknown)."""
    image, trimap = random_scene(seed)
    radius, colour = 4, 0.3
    expected = trimap.copy()
    unknown = trimap == 0.5
    at = np.flatnonzero(unknown)
    pixels = image.reshape(-1, 3)
    for label in (0.0, 1.0):
        dist, nearest = nearest_known(trimap, label, at)
        close = (dist <= radius) & (np.linalg.norm(pixels[at] - pixels[nearest], axis=1) <= colour)
        hit = np.zeros_like(unknown)
        hit.reshape(-1)[at[close]] = True
        both = hit & (expected != 0.5) & (expected != label)
        expected[hit] = label
        expected[both] = 0.5
    out = expand_known(image, trimap, radius, colour)
    assert (out != trimap).any() and ((out == 0.5) & (trimap == 0.5)).any()  # it expanded, and not everything
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("label", [0.0, 1.0])
def test_compiled_nearest_known_equals_the_numpy_formulation(label):
    """nearest_known's look-ups (kernels.zero_positions, gather_nearest) replaced numpy's flatnonzero of the
    label's pixels and three gathers: the same distances and flat indices, bit for bit."""
    import cv2

    image, trimap = random_scene(3)
    at = np.flatnonzero(trimap == 0.5)
    source = (trimap != label).astype(np.uint8)
    dist, labels = cv2.distanceTransformWithLabels(source, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    near_dist, near_index = nearest_known(trimap, label, at)
    np.testing.assert_array_equal(near_dist, dist.reshape(-1)[at])
    np.testing.assert_array_equal(near_index, np.flatnonzero(source == 0)[labels.reshape(-1)[at] - 1])
    assert (trimap.reshape(-1)[near_index] == label).all()


@pytest.mark.parametrize("seed, shape", [(2, None), (4, None), (6, (7, 5))])
def test_box_candidates_from_summed_area_tables_equal_opencvs_box_filter(seed, shape):
    """The colour prior's box means come from a summed-area table per label over the unknown pixels' rows and
    columns widened by the largest radius (kernels.box_candidates), reflected at the frame's edges:
    the same candidate colours, bit for bit, as OpenCV's normalised box filter of the whole frame's label colours
    and 0/1 weight (BORDER_REFLECT_101), read at the unknown pixels (mean colour = colour sums × 1/count in
    float32), or the nearest known colour where the box holds none — for 8-bit colours, near the frame's edges
    and with boxes wider than the frame."""
    import cv2

    from mattebox.matting.sampling import _colour_candidates

    image, trimap = random_scene(seed, shape or (48, 64))
    if shape is not None:  # a frame smaller than the widest box, the labels scattered
        trimap = np.random.default_rng(seed).choice(np.float32([0.0, 0.5, 1.0]), shape)
        trimap[0, 0], trimap[-1, -1] = 1.0, 0.5
    image = np.round(image * 255).astype(np.float32) / 255  # 8-bit colours
    unknown = trimap == 0.5
    at = np.flatnonzero(unknown)
    ys, xs = np.flatnonzero(unknown.any(axis=1)), np.flatnonzero(unknown.any(axis=0))
    radii = (1, 4, 9)
    out = _colour_candidates(image, trimap, 1.0, at, radii, (ys[0], ys[-1] + 1, xs[0], xs[-1] + 1))
    np.testing.assert_array_equal(out[0], image.reshape(-1, 3)[nearest_known(trimap, 1.0, at)[1]].T)
    weight = (trimap == 1.0).astype(np.float32)
    weighted = np.concatenate([image * weight[..., None], weight[..., None]], axis=2)
    branches = set()
    for s, radius in enumerate(radii, 1):
        box = cv2.blur(weighted, (2 * radius + 1, 2 * radius + 1)).reshape(-1, 4)[at]
        count = box[:, 3]
        inv = 1.0 / np.maximum(count, 1e-3)
        expected = np.where(count > 1e-3, box[:, :3].T * inv, out[0])
        branches |= set(count > 1e-3)
        np.testing.assert_array_equal(out[s], expected)
    assert branches == {True, False} or shape is not None  # both branches taken


def test_compiled_affine_upsampling_equals_opencvs_resize_then_evaluation():
    """kernels.affine_upsample_evaluate replaced four cv2.resize calls (INTER_LINEAR, float64 planes at the fine
    size) and an evaluation b + Σ_c a_c·I_c: the same α up to float64 rounding, for shrink factors of 2 and
    odd sizes (the crops' halves round up), and bit for bit the numpy formulation of its taps (row first)."""
    from mattebox.matting import kernels

    rng = np.random.default_rng(5)
    for (hc, wc), (h, w) in (((7, 9), (13, 17)), ((7, 9), (14, 18)), ((5, 4), (5, 4)), ((456, 811), (911, 1622))):
        coeffs = rng.normal(0, 3, (4, hc, wc))
        image = rng.random((h, w, 3)).astype(np.float32)
        resized = [cv2.resize(plane, (w, h), interpolation=cv2.INTER_LINEAR) for plane in coeffs]
        rows, row_weights = linear_taps(hc, h)
        columns, column_weights = linear_taps(wc, w)
        out = np.empty((h, w), np.float32)
        kernels.affine_upsample_evaluate(coeffs, rows, row_weights, columns, column_weights, image, out, 0, h)
        expected = resized[3].copy()
        for c in range(3):
            expected += resized[c] * image[:, :, c]
        np.testing.assert_allclose(out, expected.astype(np.float32), rtol=1e-6, atol=1e-6)
        taps = np.empty((4, h, w))
        for c, plane in enumerate(coeffs):
            along = plane[:, columns[:, 0]] * column_weights[:, 0] + plane[:, columns[:, 1]] * column_weights[:, 1]
            taps[c] = along[rows[:, 0]] * row_weights[:, :1] + along[rows[:, 1]] * row_weights[:, 1:]
            np.testing.assert_allclose(taps[c], resized[c], rtol=0, atol=1e-13)  # OpenCV's geometry
        expected = taps[3].copy()
        for c in range(3):
            expected += taps[c] * image[:, :, c]
        np.testing.assert_array_equal(out, expected.astype(np.float32))


def test_compiled_affine_fit_equals_the_numpy_formulation_on_opencvs_box_means():
    """kernels.affine_coefficients fits the guided filter per window (He et al. 2010 eqs. 5-6: Σ + reg·U inverted by
    the adjugate, a = Δ(mean(Iα) − μᾱ), b = ᾱ − aᵀμ) from window sums it adds itself, edges reflected; it replaced
    OpenCV's box means (BORDER_REFLECT) of 13 float64 planes and a fit from them: the same a and b to rounding,
    flat windows (Σ ≈ 0: Δ ≈ U/reg) and the frame's edges included."""
    from mattebox.matting import kernels

    rng = np.random.default_rng(7)
    shape, reg = (11, 14), 1e-4 / 9
    image = rng.random(shape + (3,)).astype(np.float32)
    image[3:8, 4:10] = image[5, 6]  # flat windows
    alpha = rng.random(shape).astype(np.float32)
    box = (lambda x: cv2.blur(x, (3, 3), borderType=cv2.BORDER_REFLECT))
    ch = [image[:, :, c].astype(np.float64) for c in range(3)]
    m = [box(c) for c in ch]
    pairs = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))
    s00, s01, s02, s11, s12, s22 = (box(ch[a] * ch[b]) - m[a] * m[b] + (reg if a == b else 0.0) for a, b in pairs)
    c00, c01, c02 = s11 * s22 - s12 * s12, s02 * s12 - s01 * s22, s01 * s12 - s02 * s11
    c11, c12, c22 = s00 * s22 - s02 * s02, s01 * s02 - s00 * s12, s00 * s11 - s01 * s01
    det = s00 * c00 + s01 * c01 + s02 * c02
    d00, d01, d02, d11, d12, d22 = (c / det for c in (c00, c01, c02, c11, c12, c22))
    mean_alpha = box(alpha.astype(np.float64))
    v = [box(c * alpha) - mc * mean_alpha for c, mc in zip(ch, m)]
    a = (d00 * v[0] + d01 * v[1] + d02 * v[2], d01 * v[0] + d11 * v[1] + d12 * v[2],
         d02 * v[0] + d12 * v[1] + d22 * v[2])
    b = mean_alpha - a[0] * m[0] - a[1] * m[1] - a[2] * m[2]
    coeffs = np.empty((4,) + shape)
    kernels.affine_coefficients(image, alpha, reg, coeffs, 0, shape[0])
    for got, want in zip(coeffs, (*a, b)):
        np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-9)


def test_compiled_solve_terms_equal_the_numpy_formulation():
    """kernels.solve_terms replaced the alpha solve's whole-array numpy set-up: λC, the right-hand side, the
    clamped Jacobi preconditioner and CG's start, bit for bit."""
    from mattebox.matting import kernels

    rng = np.random.default_rng(6)
    n = 500
    mask = (rng.random(n) < 0.6).astype(np.uint8)
    weight, prior, initial = (rng.random(n).astype(np.float32) for _ in range(3))
    known_product = rng.normal(0, 1, n)
    diagonal = rng.random(n) * 0.02  # some below the 1e-2 clamp
    data_weight = 0.005
    data = data_weight * weight.astype(np.float64) * mask
    expected = (data, data * prior - mask * known_product,
                np.where(mask > 0, 1.0 / np.maximum(diagonal + data, 1e-2), 0.0), initial.astype(np.float64) * mask)
    assert (diagonal + data < 1e-2).any() and (diagonal + data > 1e-2).any()  # both sides of the clamp
    out = [np.empty(n), known_product.copy(), diagonal.copy(), np.empty(n)]  # b and precond start as L α_k, diag
    kernels.solve_terms(mask, weight, prior, initial, data_weight, *out, 0, n)
    for got, want in zip(out, expected):
        np.testing.assert_array_equal(got, want)


def test_alpha_prior_recovers_two_colour_alpha_with_confidence():
    image, alpha, trimap = two_colour_composite()
    prior, confidence = alpha_prior(image, trimap)
    unknown = trimap == 0.5
    assert np.abs(prior - alpha)[unknown].mean() < 0.02
    assert confidence[unknown].mean() > 0.5 and confidence[~unknown].max() == 0.0


@pytest.mark.parametrize("coarse_unknowns", [10 ** 9, 200])  # single level, and a forced 2-3 level cascade
def test_solve_alpha_recovers_a_two_colour_composite(coarse_unknowns):
    image, alpha, trimap = two_colour_composite()
    settings = SolverSettings(coarse_unknowns=coarse_unknowns, coarse_min_side=8, expand_radius=0)
    out = solve_alpha(image, trimap, settings)
    unknown = trimap == 0.5
    assert out.dtype == np.float32 and out.shape == trimap.shape
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert np.abs(out - alpha)[unknown].mean() < 0.03
    np.testing.assert_array_equal(out[trimap == 1.0], 1.0)
    np.testing.assert_array_equal(out[trimap == 0.0], 0.0)


def test_a_prepared_solve_equals_a_fresh_one_bit_for_bit():
    image, _, trimap = two_colour_composite(64, 64)
    settings = SolverSettings(coarse_unknowns=200, coarse_min_side=8)
    prepared = prepare(image, trimap, settings)
    assert prepared.samples is not None and (prepared.trimap == 0.5).sum() < (trimap == 0.5).sum()  # expanded
    expanded = prepared.trimap.copy()
    fresh = solve_alpha(image, trimap, settings)
    for _ in range(2):  # a shot solves each frame twice with one Prepared: the solve must leave it as it was
        np.testing.assert_array_equal(solve_alpha(image, trimap, settings, prepared=prepared), fresh)
    np.testing.assert_array_equal(prepared.trimap, expanded)


@pytest.mark.parametrize("band_fraction", [1e-6, 10.0])  # the crop's operator, and the band-only one
def test_a_kept_operator_serves_a_second_solve_bit_for_bit(band_fraction):
    """(Without settling, so that the second solve, from its own start, polishes every unknown pixel as a fresh
    polish does: the next test has a settled first solve.)"""
    image, _, trimap = two_colour_composite(64, 64)
    settings = SolverSettings(coarse_unknowns=200, coarse_min_side=8, band_fraction=band_fraction, tile=8,
                              settle=0.0)
    polish = replace(settings, finest_iterations=5)
    rng = np.random.default_rng(3)
    prior = (rng.random(trimap.shape).astype(np.float32), np.full(trimap.shape, 0.3, np.float32))
    fresh = [solve_alpha(image, trimap, settings),
             solve_alpha(image, trimap, polish, prior=prior, initial=np.full(trimap.shape, 0.5, np.float32))]
    prepared = prepare(image, trimap, settings, keep_operator_bytes=1 << 30)
    first = solve_alpha(image, trimap, settings, prepared=prepared)
    assert prepared.kept.operator is not None
    held = prepared.kept.operator[0]
    second = solve_alpha(image, trimap, polish, prior=prior, initial=np.full(trimap.shape, 0.5, np.float32),
                         prepared=prepared)
    assert prepared.kept.operator[0] is held  # the second solve took it, and did not build its own
    np.testing.assert_array_equal(first, fresh[0])
    np.testing.assert_array_equal(second, fresh[1])
    prepared.kept.release()
    assert prepared.kept.operator is None


def test_a_settled_first_solve_keeps_its_settled_pixels_for_the_second():
    """With settling, the solve that keeps its operator settles as a fresh one does (the same α), and the second
    solve, from any start, leaves the settled pixels as the first fixed them and polishes the rest."""
    image, _, trimap = two_colour_composite(96, 96)
    settings = SolverSettings(coarse_unknowns=200, coarse_min_side=8, settle=0.2)  # (many settled pixels)
    prepared = prepare(image, trimap, settings, keep_operator_bytes=1 << 30)
    first = solve_alpha(image, trimap, settings, prepared=prepared)
    np.testing.assert_array_equal(first, solve_alpha(image, trimap, settings))
    settled = prepared.kept.trimap  # the crop's: the unknown pixels' bounding box and a window's margin (2 px)
    ys, xs = np.nonzero(prepared.trimap == 0.5)
    y0, x0 = max(ys.min() - 2, 0), max(xs.min() - 2, 0)
    fixed = np.zeros(trimap.shape, bool)
    fixed[y0:y0 + settled.shape[0], x0:x0 + settled.shape[1]] = settled != 0.5
    fixed &= prepared.trimap == 0.5
    assert fixed.any() and (fixed != (prepared.trimap == 0.5)).any()
    start = np.full(trimap.shape, 0.5, np.float32)
    second = solve_alpha(image, trimap, replace(settings, finest_iterations=5), initial=start, prepared=prepared)
    np.testing.assert_array_equal(second[fixed], first[fixed])
    assert not np.array_equal(second[~fixed], first[~fixed])


def test_an_operator_over_the_budget_is_not_kept():
    image, _, trimap = two_colour_composite(64, 64)
    prepared = prepare(image, trimap, SolverSettings(), keep_operator_bytes=100)
    solve_alpha(image, trimap, SolverSettings(), prepared=prepared)
    assert prepared.kept.operator is None


def test_solve_alpha_without_unknowns_returns_the_trimap():
    trimap = np.zeros((8, 8), np.float32)
    trimap[:, 4:] = 1.0
    np.testing.assert_array_equal(solve_alpha(np.random.rand(8, 8, 3).astype(np.float32), trimap), trimap)


def test_solver_reports_progress_in_its_loop():
    image, _, trimap = two_colour_composite(64, 64)
    calls = []
    solve_alpha(image, trimap, SolverSettings(tolerance=0.0, max_iterations=30, expand_radius=0),
                progress=lambda stage, done, total: calls.append((stage, done, total)))
    assert calls and all(stage == "alpha" for stage, _, _ in calls) and calls[-1][1] >= 20


def test_frames_smaller_than_a_window_use_the_colour_prior():
    image = np.array([[[1.0, 0.0, 0.0], [0.5, 0.0, 0.5], [0.0, 0.0, 1.0]]], np.float32)  # 1×3: red, mix, blue
    trimap = np.array([[1.0, 0.5, 0.0]], np.float32)
    out = solve_alpha(image, trimap, SolverSettings(expand_radius=0, snap=0.0))
    np.testing.assert_allclose(out, [[1.0, 0.5, 0.0]], atol=1e-5)


def test_band_operator_equals_the_full_operator_on_band_vectors():
    from mattebox.matting.laplacian import BandOperator

    rng = np.random.default_rng(5)
    image = rng.random((45, 70, 3)).astype(np.float32)
    unknown = np.zeros((45, 70), bool)
    unknown[10:14, 3:60] = True  # a thin band, and a blob touching the crop's border
    unknown[30:45, 50:70] = True
    p = np.where(unknown, rng.random((45, 70)), 0).astype(np.float32)
    band = BandOperator(image, unknown, eps=1e-5, r=1, tile=8)
    assert band.count < (45 // 8 + 1) * (70 // 8 + 1)  # only tiles with unknowns
    full = MattingLaplacian(image, eps=1e-5).apply(p)
    out = band.full(band.apply(band.compact(p)), fill=np.zeros_like(p))
    np.testing.assert_allclose(out[unknown], full[unknown], rtol=1e-3, atol=1e-3)
    np.testing.assert_array_equal(band.full(band.compact(p), fill=p), p)
    anything = rng.random((45, 70)).astype(np.float32)  # apply_crop reads known pixels outside the tiles too
    lap = MattingLaplacian(image, eps=1e-5)
    np.testing.assert_allclose(band.full(band.apply_crop(anything), fill=np.zeros_like(p))[unknown],
                               lap.apply(anything)[unknown], rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(band.full(band.diagonal(), fill=np.zeros_like(p))[unknown],
                               lap.diagonal()[unknown], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("seed", [10, 12])
def test_the_solve_is_stable_under_perturbations_below_one_code_value(seed):
    """Hair over a texture of similar colours (a synthetic pair's base frame): noise of 1e-5, far below one 8-bit
    code value, must not move the matte. With the operator in float32 it did (max |Δα| 0.24, mean 2.5e-3 for seed
    10: L p lost positive semi-definiteness at ε = 1e-7 and CG diverged), so results depended on rounding."""
    from mattebox.colour import linear_to_srgb
    from mattebox.synth.pairs import make_pair

    pair = make_pair(seed, size=(120, 160))
    image = linear_to_srgb(pair.image).astype(np.float32)
    noisy = np.clip(image + np.random.default_rng(1).normal(0, 1e-5, image.shape).astype(np.float32), 0, 1)
    a, b = solve_alpha(image, pair.trimap), solve_alpha(noisy, pair.trimap)
    assert np.abs(a - b).mean() < 2e-4 and np.abs(a - b).max() < 0.05



def kernel_cases(rng):
    """(name, arguments) of each kernel the engine runs in blocks (compiled.in_blocks), on random data with every
    branch taken; the arguments that are written to are arrays (fresh copies are made per call)."""
    from mattebox.matting import kernels

    h, w = 23, 17
    image = rng.random((3, h, w)).astype(np.float32)
    image[:, 5:12, 4:9] = 0.5  # flat windows (tiny covariance)
    valid = (rng.random((h, w)) > 0.2).astype(np.uint8)
    inv = np.zeros((6, h, w))
    starts = np.arange(h + 1)  # one run of windows per row: [-1, w + 1), clipped
    runs = np.tile(np.array([[-1, w + 1]]), (h, 1))
    kernels.window_inverse(image, valid, 1e-7 / 9, inv, starts, runs, 0, h)
    n = 301
    flat_trimap = np.where(rng.random(h * w) < 0.5, 0.5, rng.integers(0, 2, h * w)).astype(np.float32)
    at = np.flatnonzero(flat_trimap == 0.5)
    pixels = rng.random((h * w, 3)).astype(np.float32)
    box = rng.random((h * w, 4)).astype(np.float32)
    box[::3, 3] = 0.0  # boxes without known pixels
    mask = (rng.random(n) < 0.6).astype(np.uint8)
    return [
        ("window_inverse", (image, valid, 1e-7 / 9, np.empty((6, h, w)), starts, runs, 0, h)),
        ("laplacian_diagonal", (image, inv, valid, np.empty((h, w)), 0, h)),
        ("affine_coefficients", (rng.random((h, w, 3)).astype(np.float32), rng.random((h, w)).astype(np.float32),
                                 1e-4 / 9, np.empty((4, h, w)), 0, h)),
        ("affine_upsample_evaluate", (rng.normal(0, 1, (4, (h + 1) // 2, (w + 1) // 2)),
                                      *linear_taps((h + 1) // 2, h), *linear_taps((w + 1) // 2, w),
                                      rng.random((h, w, 3)).astype(np.float32), np.empty((h, w), np.float32), 0, h)),
        ("solve_terms", (mask, *(rng.random(n).astype(np.float32) for _ in range(3)), 0.005, np.empty(n),
                         rng.normal(0, 1, n), rng.random(n) * 0.02, np.empty(n), 0, n)),
        ("cg_direction", (rng.normal(0, 1, n), rng.normal(0, 1, n), rng.random(n), 0.7, 0, n)),
        ("expand_label", (pixels, at, rng.random(at.size).astype(np.float32) * 8, rng.integers(0, h * w, at.size),
                          5, 0.6, np.float32(1.0), flat_trimap, 0, at.size)),
        ("gather_nearest", (rng.random((h, w)).astype(np.float32), rng.integers(1, 50, (h, w)).astype(np.int32),
                            rng.integers(0, h * w, 49), at, np.empty(at.size, np.float32), np.empty(at.size, np.int64),
                            0, at.size)),
        ("gather_colours", (pixels, at, np.empty((3, at.size), np.float32), 0, at.size)),
        ("best_colour_pairs", (rng.random((3, n)).astype(np.float32), rng.random((4, 3, n)).astype(np.float32),
                               rng.random((4, 3, n)).astype(np.float32), 0.1, 0.1, np.empty(n, np.float32),
                               np.empty(n, np.float32), 0, n)),
        ("foreground_sweeps", (rng.random((h, w, 3)).astype(np.float32), rng.random((h, w)).astype(np.float32),
                               rng.random((h, w, 3)).astype(np.float32), rng.random((h, w, 3)).astype(np.float32),
                               rng.random((h, w, 3)).astype(np.float32), 0.5, 5e-3, 1.0, 3)),
    ]


@pytest.mark.parametrize("blocks", [2, 3, 7])
def test_each_kernel_in_blocks_equals_the_serial_kernel_bit_for_bit(blocks, monkeypatch):
    """Every kernel's work in blocks on the worker threads (compiled.in_blocks: its rows or items in blocks) writes
    exactly what the serial kernel writes, so no result depends on the number of threads; also for blocks of a few
    rows (7 blocks of 23 rows: the diagonal's windows straddle the blocks' ends)."""
    from mattebox.matting import compiled

    monkeypatch.setattr(compiled, "row_blocks", lambda pixels, per_block=0: blocks)
    for name, args in kernel_cases(np.random.default_rng(11)):
        serial = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        parallel = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        getattr(compiled, name)(*serial)
        in_blocks = compiled.in_blocks(10 ** 9, name)
        assert in_blocks is not getattr(compiled, name), name
        in_blocks(*parallel)
        for one, other in zip(serial, parallel):
            if isinstance(one, np.ndarray):
                np.testing.assert_array_equal(other, one, err_msg=name)


def test_blocks_run_at_once_on_two_threads_and_an_error_waits_for_the_other():
    """compiled.run_blocks runs the first block on the calling thread and the second on a worker thread, at once
    (each block here waits until both have started: one after the other, they would never finish), and returns
    their results in block order; a block's error is raised only after the other block has ended."""
    import threading

    from mattebox.matting import compiled

    started = threading.Barrier(2, timeout=60)
    threads = {}

    def work(block, lo, hi):
        threads[block] = threading.get_ident()
        started.wait()
        return (block, lo, hi)

    assert compiled.run_blocks(work, 2, 10, 21) == [(0, 10, 15), (1, 15, 21)]
    assert threads[0] == threading.get_ident() and threads[1] != threads[0]
    failed, ended = threading.Event(), []

    def failing(block, lo, hi):
        if block == 0:
            failed.set()
            raise ValueError("block 0")
        assert failed.wait(60)
        ended.append(block)

    with pytest.raises(ValueError, match="block 0"):
        compiled.run_blocks(failing, 2, 0, 9)
    assert ended == [1]


def test_tasks_of_a_big_frame_run_at_once_and_their_blocks_stay_on_their_thread(monkeypatch):
    """compiled.run_tasks runs independent tasks of a big frame at once (each waits here until both have started)
    and returns their results in order; work in blocks inside a task runs on that task's thread (with one worker,
    a task waiting for a block queued behind the other task would stall); a small frame's tasks run in turn."""
    import threading

    from mattebox.matting import compiled

    monkeypatch.setenv("MATTEBOX_THREADS", "2")
    started = threading.Barrier(2, timeout=60)

    def task(name):
        started.wait()
        blocks = compiled.run_blocks(lambda block, lo, hi: threading.get_ident(), 2, 0, 10)
        return name, set(blocks) == {threading.get_ident()}

    big = 4 * compiled.PARALLEL_PIXELS
    assert compiled.run_tasks(big, lambda: task("a"), lambda: task("b")) == [("a", True), ("b", True)]
    order = []
    assert compiled.run_tasks(1000, lambda: order.append(1) or 1, lambda: order.append(2) or 2) == [1, 2]
    assert order == [1, 2]


def test_the_thread_count_comes_from_mattebox_threads_or_the_cpus(monkeypatch):
    from mattebox.matting import compiled

    monkeypatch.setenv("MATTEBOX_THREADS", "3")
    assert compiled.threads() == 3
    assert compiled.row_blocks(2 * compiled.PARALLEL_PIXELS - 1) == 1
    assert compiled.row_blocks(10 * compiled.PARALLEL_PIXELS) == 3
    assert compiled.in_blocks(2 * compiled.PARALLEL_PIXELS, "laplacian_diagonal") is not compiled.laplacian_diagonal
    assert compiled.in_blocks(2 * compiled.PARALLEL_PIXELS, "dot") is compiled.dot  # memory-bound: later
    assert compiled.in_blocks(2 * compiled.STREAMING_PIXELS, "dot") is not compiled.dot
    monkeypatch.setenv("MATTEBOX_THREADS", "many")
    with pytest.raises(ValueError, match="MATTEBOX_THREADS: expected a whole number"):
        compiled.threads()
    monkeypatch.delenv("MATTEBOX_THREADS")
    assert compiled.threads() >= 1


def test_a_bad_mattebox_threads_is_named_on_a_small_frame_too(monkeypatch):
    """Small frames never run in blocks, so they never needed the thread count: the engine still reads it first,
    so a typo is named on the first frame a user mattes, not on the first big one."""
    from mattebox.contract import MatteRequest
    from mattebox.engines.classical import ClassicalEngine

    image, _, trimap = two_colour_composite(32, 32)
    monkeypatch.setenv("MATTEBOX_THREADS", "two")
    with pytest.raises(ValueError, match="MATTEBOX_THREADS: expected a whole number of threads, got 'two'"):
        ClassicalEngine().matte(MatteRequest(image=image, trimap=trimap))
    monkeypatch.setenv("MATTEBOX_THREADS", "2")
    assert ClassicalEngine().matte(MatteRequest(image=image, trimap=trimap)).alpha.shape == (32, 32)


def test_vector_sums_add_fixed_chunks_in_order_whatever_the_threads(monkeypatch):
    """CG's sums (dot, cg_update, restrict_and_shift) add SUM_CHUNK elements in a plain loop, then the chunks' sums
    in order: one chunk is the plain loop's sum, and their work in blocks of chunks on threads gives the same sums
    and vectors."""
    from mattebox.matting import compiled

    rng = np.random.default_rng(12)
    small = rng.normal(0, 1, (2, 1000))
    assert compiled.dot(*small) == np.cumsum(small[0] * small[1])[-1]  # cumsum adds in order
    n = 2 * compiled.SUM_CHUNK + 12_345  # three chunks
    a, b = rng.normal(0, 1, (2, n))
    chunked = 0.0
    for start in range(0, n, compiled.SUM_CHUNK):
        chunked += np.cumsum(a[start:start + compiled.SUM_CHUNK] * b[start:start + compiled.SUM_CHUNK])[-1]
    assert compiled.dot(a, b) == chunked
    vectors = rng.normal(0, 1, (4, n))
    precond = rng.random(n)
    serial = vectors.copy()
    sums = compiled.cg_update(*serial, precond, 0.3)
    mask = (rng.random(n) < 0.5).astype(np.uint8)
    product = vectors[0].copy()  # restrict_and_shift: the operator's rows and shift, and the curvature vᵀAv
    curvature = compiled.restrict_and_shift(product, mask, precond, a)
    np.testing.assert_array_equal(product, mask * vectors[0] + precond * a)
    assert curvature == compiled.dot(a, product)
    for blocks in (2, 3, 5):
        monkeypatch.setattr(compiled, "row_blocks", lambda pixels, per_block=0, blocks=blocks: blocks)
        assert compiled.in_blocks(n, "dot")(a, b) == chunked
        parallel = vectors.copy()
        assert compiled.in_blocks(n, "cg_update")(*parallel, precond, 0.3) == sums
        np.testing.assert_array_equal(parallel, serial)
        parallel = vectors[0].copy()
        assert compiled.in_blocks(n, "restrict_and_shift")(parallel, mask, precond, a) == curvature
        np.testing.assert_array_equal(parallel, product)


def test_a_solve_and_its_foreground_on_threads_equal_the_serial_ones_bit_for_bit(monkeypatch):
    """The engine's calls run in blocks on threads where compiled.row_blocks says so (1080p and 4K frames); forced
    into blocks at a small size, the expansion, prior, coarse-to-fine solve and multilevel foreground give the
    serial results exactly."""
    from mattebox.matting import compiled
    from mattebox.matting.foreground import multilevel

    image, _, trimap = two_colour_composite(96, 80)
    settings = SolverSettings(coarse_unknowns=200, coarse_min_side=8, expand_radius=3)
    serial = solve_alpha(image, trimap, settings)
    serial_fg = multilevel(image, serial)
    monkeypatch.setattr(compiled, "row_blocks", lambda pixels, per_block=0: 3)
    threaded = solve_alpha(image, trimap, settings)
    np.testing.assert_array_equal(threaded, serial)
    np.testing.assert_array_equal(multilevel(image, serial), serial_fg)


def test_the_finest_level_fixes_the_unknown_pixels_the_coarse_solution_leaves_flat():
    """Settling (#21): an unknown pixel whose 5×5 neighbourhood the upsampled coarse α leaves within ``settle`` of
    0 or 1 is fixed there before the full-resolution solve; pixels near an edge stay unknown; known pixels count at
    their values; nothing happens with ``settle`` 0, below the finest level or from a given start."""
    from mattebox.matting import alpha as alpha_module

    initial = np.full((20, 30), 0.01, np.float32)
    initial[:, 15:] = 0.995
    initial[:, 14:16] = 0.5  # an edge: its 5×5 neighbourhood is not flat
    trimap = np.full((20, 30), 0.5, np.float32)
    trimap[0, :] = 1.0  # a known pixel next to a flat-at-0 region: that region's top rows are not flat at 0
    initial[0, :] = 1.0
    unknown = trimap == 0.5
    left = alpha_module._settle(initial, trimap, unknown, 0.03)
    assert (trimap[5:, :12] == 0.0).all() and (initial[5:, :12] == 0.0).all()
    assert (trimap[5:, 18:] == 1.0).all()
    assert left[5:, 12:18].all() and left[1:3, :12].all()  # near the edge, and next to the known row of 1s
    assert (left == (trimap == 0.5)).all()

    calls = []
    real = alpha_module._settle
    image, _, trimap = two_colour_composite(64, 64)
    settings = SolverSettings(coarse_unknowns=200, coarse_min_side=8)
    try:
        alpha_module._settle = lambda *args: calls.append(args[2].sum()) or real(*args)
        solve_alpha(image, trimap, settings)
        assert len(calls) == 1  # the finest level only
        solve_alpha(image, trimap, replace(settings, settle=0.0))
        solve_alpha(image, trimap, settings, initial=np.full(trimap.shape, 0.5, np.float32))
        assert len(calls) == 1
        solve_alpha(image, trimap, settings, prepared=prepare(image, trimap, settings, keep_operator_bytes=1 << 30))
        assert len(calls) == 2  # a solve that keeps its operator settles too (the second keeps what it fixed)
    finally:
        alpha_module._settle = real


def test_a_band_the_coarse_levels_leave_all_flat_settles_whole_and_the_solve_returns_it():
    """Every unknown pixel settled (a band wholly inside a flat background, far from the subject's edge): nothing
    is left for the finest level, which returns the settled values instead of building an operator over no
    pixels (it raised from the band-only operator's empty mosaic: bench/cleanplate.py found it)."""
    image = np.zeros((96, 128, 3), np.float32)
    image[:, 64:] = 1.0
    trimap = np.zeros((96, 128), np.float32)
    trimap[:, 64:] = 1.0
    trimap[20:70, 10:40] = 0.5  # unknown, but all background-coloured and 24 px from the edge
    settings = SolverSettings(coarse_unknowns=200, coarse_min_side=8, expand_radius=0)  # (no expansion: it would
    # make the band known before the solve)
    for band_fraction in (0.1, 1.0):
        alpha = solve_alpha(image, trimap, replace(settings, band_fraction=band_fraction))
        assert alpha.shape == trimap.shape and (alpha[20:70, 10:40] == 0.0).all() and (alpha[:, 64:] == 1.0).all()
