"""The classical engine through the matting contract: guidance sources, foreground, progress, bad input."""
from __future__ import annotations

import numpy as np
import pytest

from mattebox.colour import srgb_to_linear
from mattebox.contract import JobCancelled, MatteRequest
from mattebox.engines import get
from mattebox.matting.foreground import blur_fusion, multilevel
from mattebox.matting.guidance import auto_band_width, trimap_from_mask
from mattebox.paths import alphamatting_dir


@pytest.fixture(autouse=True)
def no_installed_weights(tmp_path, monkeypatch):
    """Make sure no segmentation weights from this machine's cache are picked up."""
    monkeypatch.setenv("MATTEBOX_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MATTEBOX_SEGMENTATION_WEIGHTS", raising=False)


def disc_scene(h=72, w=96, seed=0):
    """Linear-light composite: a textured orange disc with a soft edge over a textured blue background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    radius = np.hypot(yy - h / 2, xx - w / 2)
    alpha = np.clip((h * 0.3 - radius) / 3.0 + 0.5, 0, 1).astype(np.float32)
    fg = (np.array([0.8, 0.35, 0.05]) + 0.05 * rng.random((h, w, 3))).astype(np.float32)
    bg = (np.array([0.05, 0.15, 0.6]) + 0.05 * rng.random((h, w, 3))).astype(np.float32)
    image = alpha[..., None] * fg + (1 - alpha[..., None]) * bg
    return image.astype(np.float32), alpha, fg, bg


def test_trimap_guidance_alpha_and_linear_foreground():
    image, alpha, fg, _ = disc_scene()
    trimap = trimap_from_mask(alpha, band_width=10)
    result = get("classical").matte(MatteRequest(image=image, trimap=trimap)).check(alpha.shape)
    assert result.info["guidance"] == "trimap" and result.info["foreground_method"] == "multilevel"
    unknown = trimap == 0.5
    assert np.abs(result.alpha - alpha)[unknown].mean() < 0.05
    visible = alpha > 0.3
    assert np.abs(result.foreground - fg)[visible].mean() < 0.05  # decontaminated, in linear light
    np.testing.assert_array_equal(result.trimap, trimap)


def test_mask_guidance_scales_the_band_with_the_image():
    image, alpha, _, _ = disc_scene()
    result = get("classical").matte(MatteRequest(image=image, mask=(alpha > 0.5).astype(np.float32)))
    assert result.info["guidance"] == "mask"
    assert set(np.unique(result.trimap)) == {0.0, 0.5, 1.0}
    assert auto_band_width((2000, 1000)) == 100 and auto_band_width((40, 30)) == 4
    wide = trimap_from_mask((alpha > 0.5).astype(np.float32), band_width=16)  # the auto band here is ~5 px
    assert 0 < (result.trimap == 0.5).sum() < (wide == 0.5).sum()


@pytest.mark.parametrize("band", [2, 9, 40])
def test_mask_band_is_never_narrower_than_an_elliptical_kernels(band):
    """trimap_from_mask erodes and dilates by a distance transform (cost independent of the band): its definite
    regions lie inside those cv2's elliptical kernel of the same radius gave, so no band got narrower."""
    import cv2

    yy, xx = np.mgrid[:120, :160]
    mask = (((yy - 60) / 45.0) ** 2 + ((xx - 70) / 60.0) ** 2 < 1).astype(np.float32)
    mask[50:54, 100:150] = 1.0  # a thin arm
    trimap = trimap_from_mask(mask, band)
    radius = max(1, int(round(band / 2)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    inside = (mask >= 0.5).astype(np.uint8)
    assert (trimap == 1.0).any() and (trimap == 0.0).any()
    assert not ((trimap == 1.0) & (cv2.erode(inside, kernel) == 0)).any()
    assert not ((trimap == 0.0) & (cv2.dilate(inside, kernel) > 0)).any()


def test_automatic_guidance_falls_back_to_grabcut_without_weights():
    image, alpha, _, _ = disc_scene(96, 128)
    result = get("classical").matte(MatteRequest(image=image, params={"quality": "fast"}))
    assert result.info["guidance"] == "auto:grabcut" and result.info["foreground_method"] == "blur_fusion"
    assert np.abs(result.alpha - alpha).mean() < 0.1  # the disc is found


def test_grabcut_keeps_a_subject_that_runs_off_the_bottom_edge_and_is_deterministic():
    """A portrait's shoulders cross the frame edge: that strip must not be forced to background."""
    from mattebox.matting.guidance import grabcut_mask

    h, w = 120, 160
    ys, xs = np.mgrid[:h, :w]
    rng = np.random.default_rng(0)
    image = np.empty((h, w, 3), np.float32)
    image[:] = [0.2, 0.35, 0.6]
    image += 0.05 * np.sin(xs / 5.0)[..., None] + rng.normal(0, 0.01, (h, w, 3)).astype(np.float32)  # backdrop
    head = ((xs - 80) / 22.0) ** 2 + ((ys - 45) / 28.0) ** 2 <= 1
    shoulders = (ys >= 68) & (np.abs(xs - 80) <= 50)  # joins the head, reaches the bottom row
    subject = head | shoulders
    image[subject] = [0.85, 0.55, 0.35]
    mask = grabcut_mask(np.clip(image, 0, 1)) > 0.5
    assert mask[h - 3:, 40:120].mean() > 0.9  # the part on the bottom strip is kept
    assert (mask & subject).sum() / (mask | subject).sum() > 0.9
    assert np.array_equal(mask, grabcut_mask(np.clip(image, 0, 1)) > 0.5)


def test_foreground_methods_decontaminate_a_known_composite():
    image, alpha, fg, _ = disc_scene()
    visible = alpha > 0.2
    for estimate in (multilevel, blur_fusion):
        estimate_fg = estimate(image, alpha)
        assert estimate_fg.shape == image.shape and estimate_fg.dtype == np.float32
        err = np.abs(alpha[..., None] * (estimate_fg - fg))[visible].mean()
        assert err < 0.03, estimate.__name__
        assert err < np.abs(alpha[..., None] * (image - fg))[visible].mean()  # better than the raw plate


def test_foreground_sweeps_converge_to_every_pixels_two_by_two_system():
    """Germer et al.'s per-pixel system (see kernels.foreground_sweeps) holds at each pixel once the compiled
    red-black sweeps have converged at one level: F, B solve it with the neighbours fixed."""
    from mattebox.matting.kernels import foreground_sweeps

    rng = np.random.default_rng(4)
    h, w, eps_r, omega = 7, 9, 5e-3, 1.0
    image = (0.2 + 0.6 * rng.random((h, w, 3))).astype(np.float32)
    alpha = rng.random((h, w)).astype(np.float32)
    fg = np.full((h, w, 3), 0.5, np.float32)
    bg = fg.copy()
    foreground_sweeps(image, alpha, fg, bg, np.zeros((1, 1, 3), np.float32), 0.0, eps_r, omega, 400)
    a = alpha.astype(np.float64)
    for y in range(h):
        for x in range(w):
            weights = [(j, i, eps_r + omega * abs(a[y, x] - a[j, i]))
                       for j, i in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)) if 0 <= j < h and 0 <= i < w]
            total = sum(wt for _, _, wt in weights)
            system = np.array([[a[y, x] ** 2 + total, a[y, x] * (1 - a[y, x])],
                               [a[y, x] * (1 - a[y, x]), (1 - a[y, x]) ** 2 + total]])
            rhs = np.stack([a[y, x] * image[y, x] + sum(wt * fg[j, i] for j, i, wt in weights),
                            (1 - a[y, x]) * image[y, x] + sum(wt * bg[j, i] for j, i, wt in weights)])
            np.testing.assert_allclose(system @ np.stack([fg[y, x], bg[y, x]]), rhs, atol=1e-5)


def test_progress_stages_and_cancel():
    image, alpha, _, _ = disc_scene()
    trimap = trimap_from_mask(alpha, band_width=10)
    stages = []
    get("classical").matte(MatteRequest(image=image, trimap=trimap),
                           progress=lambda stage, done=0, total=0, message="": stages.append(stage))
    assert stages[0] == "guidance" and "alpha" in stages and "foreground" in stages and stages[-1] == "done"

    def cancel(stage, done=0, total=0, message=""):
        if stage == "alpha":
            raise JobCancelled()
    with pytest.raises(JobCancelled):
        get("classical").matte(MatteRequest(image=image, trimap=trimap), progress=cancel)


def test_outputs_without_foreground_skip_it():
    image, alpha, _, _ = disc_scene()
    result = get("classical").matte(MatteRequest(image=image, trimap=trimap_from_mask(alpha, 10),
                                                 params={"outputs": ["alpha"]}))
    assert result.info["foreground_method"] == "none" and "foreground" not in result.info["timings"]


@pytest.mark.parametrize("params, field", [({"quality": "ultra"}, "params.quality"),
                                           ({"foreground_method": "magic"}, "params.foreground_method")])
def test_bad_params_name_the_field(params, field):
    image, alpha, _, _ = disc_scene(16, 16)
    with pytest.raises(ValueError, match=field):
        get("classical").matte(MatteRequest(image=image, trimap=trimap_from_mask(alpha, 4), params=params))


@pytest.mark.skipif(alphamatting_dir() is None, reason="../shared/data/alphamatting-dev is absent")
def test_alphamatting_gt05_narrow_trimap():
    from mattebox import evaluation as ev

    image, gt, trimap = ev.load_sample(alphamatting_dir(), "GT05", "trimap1")
    request = MatteRequest(image=srgb_to_linear(image[..., :3] / 255.0), trimap=trimap,
                           params={"outputs": ["alpha"]})
    alpha = get("classical").matte(request).alpha
    assert ev.sad(alpha, gt, trimap == 0.5) < 1.25  # pymatting cf: 1.26


def test_a_band_that_swallows_the_background_is_warned_about():
    """Band width 80 on a small frame leaves no definite background: the matte comes back with a warning the hosts
    show (plugin client.result_notes), instead of an all-white alpha and no word."""
    from mattebox.contract import MatteRequest
    from mattebox.engines.classical import ClassicalEngine
    from mattebox_plugin.client import result_notes

    image = np.full((60, 80, 3), 0.2, np.float32)
    image[20:40, 30:50] = 0.8
    mask = np.zeros((60, 80), np.float32)
    mask[20:40, 30:50] = 1.0
    wide = ClassicalEngine().matte(MatteRequest(image=image, mask=mask, params={"band_width": 80}))
    assert "no definite background" in wide.info["warnings"][0]
    notes = result_notes([wide.info])
    assert any("warning on 1 frame(s): the guidance leaves no definite background" in note for note in notes)
    narrow = ClassicalEngine().matte(MatteRequest(image=image, mask=mask, params={"band_width": 6}))
    assert "warnings" not in narrow.info and result_notes([narrow.info]) == []
