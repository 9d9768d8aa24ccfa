"""Procedural foregrounds (exact alpha/colour, deterministic) and training augmentation."""
from __future__ import annotations

import numpy as np
import pytest

from mattebox.synth import augment, foregrounds


@pytest.mark.parametrize("kind", sorted(foregrounds.FOREGROUNDS))
def test_foregrounds_are_deterministic_valid_and_have_thin_structures(kind):
    make = foregrounds.FOREGROUNDS[kind]
    fg, alpha = make((96, 80), np.random.default_rng(7))
    fg2, alpha2 = make((96, 80), np.random.default_rng(7))
    assert fg.shape == (96, 80, 3) and alpha.shape == (96, 80)
    assert fg.dtype == np.float32 and alpha.dtype == np.float32
    assert np.array_equal(fg, fg2) and np.array_equal(alpha, alpha2)
    assert 0 <= alpha.min() and alpha.max() <= 1 and 0 <= fg.min() and fg.max() <= 1
    assert (alpha == 1).any() and (alpha == 0).any()
    assert ((alpha > 0.02) & (alpha < 0.98)).sum() > 40  # real fractional coverage, not a hard mask
    other, _ = make((96, 80), np.random.default_rng(8))
    assert not np.array_equal(fg, other)


def test_supersampled_coverage_is_exact_area_average():
    canvas = foregrounds._Canvas((2, 2), supersample=2)
    coverage = np.zeros((4, 4), bool)
    coverage[0, 0] = coverage[0, 1] = True  # half of the top-left pixel
    coverage[2:, 2:] = True  # all of the bottom-right pixel
    canvas.paint(coverage, np.array([0.2, 0.4, 0.6], np.float32))
    fg, alpha = canvas.resolve()
    assert alpha.tolist() == [[0.5, 0.0], [0.0, 1.0]]
    np.testing.assert_allclose(fg[0, 0], [0.2, 0.4, 0.6], rtol=1e-6)
    np.testing.assert_allclose(fg[1, 1], [0.2, 0.4, 0.6], rtol=1e-6)
    np.testing.assert_allclose(fg[0, 1], [0.2, 0.4, 0.6], rtol=1e-6)  # empty pixel filled from nearest colour


def test_semi_transparent_paint_and_motion_blur_keep_premultiplied_consistency():
    canvas = foregrounds._Canvas((8, 8), supersample=2)
    canvas.paint(np.ones((16, 16), bool), np.array([1.0, 0.0, 0.0], np.float32), opacity=0.4)
    fg, alpha = canvas.resolve()
    np.testing.assert_allclose(alpha, 0.4, rtol=1e-6)
    np.testing.assert_allclose(fg[..., 0], 1.0, rtol=1e-5)
    canvas = foregrounds._Canvas((16, 16), supersample=2)
    square = np.zeros((32, 32), bool)
    square[8:24, 8:24] = True
    canvas.paint(square, np.array([0.0, 1.0, 0.0], np.float32))
    canvas.motion_blur(length=6, angle=0.0)
    fg, alpha = canvas.resolve()
    assert ((alpha > 0.05) & (alpha < 0.95)).any()  # blurred edges are fractional
    covered = alpha > 0.01
    np.testing.assert_allclose(fg[covered, 1], 1.0, rtol=1e-4)  # colour of a single-colour layer survives blur


def test_random_trimap_scales_band_with_size_and_covers_soft_pixels():
    alpha = np.zeros((200, 200), np.float32)
    alpha[50:150, 50:150] = 1
    alpha[100, 20:50] = 0.3  # a thin strand outside the body
    trimap = augment.random_trimap(alpha, np.random.default_rng(0))
    assert set(np.unique(trimap).tolist()) <= {0.0, 0.5, 1.0}
    band = (trimap == 0.5).sum(axis=1)[100 - 30]  # a row through the square, away from the strand
    # at 200 px the paper's 60–120 iterations scale to 12–24 px of erosion and of dilation, on both edges
    assert 2 * (12 + 12) <= band <= 2 * (24 + 24)
    assert (trimap[100, 20:50] == 0.5).all()
    assert trimap[100, 100] == 1.0 and trimap[5, 5] == 0.0
    hard = augment.random_trimap(alpha, np.random.default_rng(0), cover_soft=False)
    assert (hard[100, 20:25] == 0.0).all()  # beyond the dilation, strands are labelled background
    with pytest.raises(ValueError, match="alpha"):
        augment.random_trimap(np.zeros((4, 4, 3)), np.random.default_rng(0))


def test_augmentations_are_deterministic_and_bounded():
    image = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    for fn in (augment.colour_jitter, augment.gaussian_noise, augment.jpeg, augment.gaussian_blur, augment.degrade):
        a, b = fn(image, np.random.default_rng(5)), fn(image, np.random.default_rng(5))
        assert a.shape == image.shape and a.dtype == np.float32
        assert np.array_equal(a, b) and 0 <= a.min() and a.max() <= 1
    np.testing.assert_allclose(augment.colour_jitter(image, np.random.default_rng(1), strength=0.0), image, atol=1e-6)
    assert np.abs(augment.jpeg(image, np.random.default_rng(1)) - image).mean() > 0.01
    gamma = augment.alpha_gamma(np.array([0.0, 0.5, 1.0], np.float32), np.random.default_rng(2))
    assert gamma[0] == 0 and gamma[2] == 1 and 0 < gamma[1] < 1
