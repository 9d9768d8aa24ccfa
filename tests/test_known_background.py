"""Matting with a known background: the clean-plate path of the classical engine (and the pieces the two-frame
solver shares with it)."""
from __future__ import annotations

import numpy as np
import pytest

from mattebox.contract import MatteRequest
from mattebox.engines import get
from mattebox.matting.known_background import (KnownBackgroundSettings, background_alpha,
                                                         difference_mask)
from mattebox.evaluation import sad
from mattebox.synth.pairs import make_pair

SETTINGS = KnownBackgroundSettings(prior_weight=1.0, position_sigma_px=1.0)


def _with_plate(seed: int, size=(120, 160)):
    """A composite over a richly textured background and its clean plate (own noise, 1 % darker)."""
    pair = make_pair(seed, size=size, real_alpha=False)
    rng = np.random.default_rng(seed)
    noisy = lambda x: np.clip(x + rng.normal(0, 0.004, x.shape), 0, 1).astype(np.float32)  # noqa: E731
    return pair, noisy(pair.image), noisy(pair.background * 0.99)


def test_background_alpha_inverts_the_linear_compositing_equation_and_distrusts_texture():
    rng = np.random.default_rng(3)
    alpha = rng.uniform(0, 1, (24, 32)).astype(np.float32)
    foreground = np.broadcast_to(np.float32([0.9, 0.6, 0.2]), (24, 32, 3))
    flat = np.broadcast_to(np.float32([0.05, 0.1, 0.4]), (24, 32, 3))
    image = alpha[..., None] * foreground + (1 - alpha[..., None]) * flat  # linear light
    alpha_b, confidence = background_alpha(image, flat, foreground, SETTINGS)
    np.testing.assert_allclose(alpha_b, alpha, atol=1e-5)  # exact in linear light (sRGB would be biased)
    assert confidence.min() > 0.99  # well separated colours, no texture: trusted
    ramp = np.linspace(0, 1, 32, dtype=np.float32)
    textured = flat + 0.3 * np.sin(ramp * 40)[None, :, None]  # steep background texture
    image = alpha[..., None] * foreground + (1 - alpha[..., None]) * textured
    alpha_b, textured_confidence = background_alpha(image, textured, foreground, SETTINGS)
    np.testing.assert_allclose(alpha_b, alpha, atol=1e-4)
    assert np.median(textured_confidence[:, 1:-1]) < 0.5 * np.median(confidence)  # a 1 px flow error would show


def test_difference_matte_finds_the_subject_fills_holes_and_ignores_noise():
    pair, image, plate = _with_plate(21)
    mask = difference_mask(image, plate)
    truth = pair.alpha >= 0.5
    assert ((mask > 0.5) & truth).sum() / ((mask > 0.5) | truth).sum() > 0.75
    assert not difference_mask(plate, plate).any()  # the plate against itself: nothing
    ring = np.zeros((40, 40, 3), np.float32) + 0.2
    ring_plate = ring.copy()
    ring[8:32, 8:32] = 0.9
    ring[16:24, 16:24] = 0.2  # a hole showing the background: still inside the subject
    assert difference_mask(ring, ring_plate)[20, 20] == 1.0


def test_clean_plate_lowers_alpha_error_and_guides_the_matte():
    engine = get("classical")
    errors = {"without": 0.0, "with": 0.0}
    for seed in (20002, 20005, 20010):  # hair over textured backgrounds; 0.56x, 0.93x, 0.59x today
        pair, image, plate = _with_plate(seed, size=(240, 320))
        band = pair.trimap == 0.5
        without = engine.matte(MatteRequest(image=image, trimap=pair.trimap))
        with_plate = engine.matte(MatteRequest(image=image, trimap=pair.trimap, background=plate))
        errors["without"] += sad(without.alpha, pair.alpha, band)
        errors["with"] += sad(with_plate.alpha, pair.alpha, band)
        assert with_plate.info["foreground_method"].endswith("+plate")
    assert errors["with"] < 0.8 * errors["without"], errors
    auto = engine.matte(MatteRequest(image=image, background=plate))  # no trimap, no mask: difference matte
    assert auto.info["guidance"] == "plate:difference"
    everywhere = np.ones_like(band)
    grabcut = engine.matte(MatteRequest(image=image))
    assert sad(auto.alpha, pair.alpha, everywhere) < sad(grabcut.alpha, pair.alpha, everywhere)


def test_plate_errors_and_the_pair_engine_prefers_the_plate():
    pair, image, plate = _with_plate(4, size=(48, 64))
    with pytest.raises(ValueError, match="background"):
        get("classical").matte(MatteRequest(image=image, trimap=pair.trimap, background=plate[:40]))
    result = get("classical-pair").matte(MatteRequest(image=image, second=pair.second, trimap=pair.trimap,
                                                      background=plate))
    assert not result.info["pair_usable"] and "clean plate" in result.info["pair_why"]
    assert result.info["foreground_method"].endswith("+plate")


def test_multilevel_with_the_plate_as_a_prior_on_b_recovers_the_foreground_better():
    from mattebox.matting.foreground import multilevel
    from mattebox.evaluation import foreground_mse

    plain = with_plate = 0.0
    for seed in (20001, 20002, 20004, 20006):  # with the true alpha: 0.56x, 0.91x, 0.81x, 0.40x today
        pair, image, plate = _with_plate(seed, size=(120, 160))
        band = (pair.alpha > 0.02) & (pair.alpha < 0.98)
        plain += foreground_mse(multilevel(image, pair.alpha), pair.foreground, pair.alpha, band)
        with_plate += foreground_mse(multilevel(image, pair.alpha, background=plate), pair.foreground, pair.alpha,
                                     band)
    assert with_plate < 0.85 * plain, (with_plate, plain)
