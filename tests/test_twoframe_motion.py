"""Motion and alignment of a frame pair (mattebox.matting.motion / .align): fast, tiny synthetic images."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from mattebox.synth.backgrounds import textured_background
from mattebox.matting.align import align_pair
from mattebox.matting.motion import DISFlow, consistency, fill_nearest, inconsistent, separate_flows, warp


def _texture(seed=0, size=(96, 128)):
    return textured_background(size, np.random.default_rng(seed)) ** (1 / 2.2)


def _shift(image, dx, dy):
    return cv2.warpAffine(image, np.float32([[1, 0, dx], [0, 1, dy]]), image.shape[1::-1],
                          borderMode=cv2.BORDER_REFLECT)


def test_flow_recovers_a_known_translation():
    target = _texture()
    source = _shift(target, 3.0, -2.0)  # source(p) = target(p - t)  =>  target(p) = source(p + t)
    flow = DISFlow().flow(target, source)
    assert flow.shape == (96, 128, 2)
    np.testing.assert_allclose(np.median(flow[16:-16, 16:-16], axis=(0, 1)), [3.0, -2.0], atol=0.25)
    # warping the source back onto the target reproduces it away from the borders
    assert np.abs(warp(source, flow) - target)[16:-16, 16:-16].mean() < 0.02


def test_flow_rejects_frames_of_different_sizes():
    with pytest.raises(ValueError, match="differ in size"):
        DISFlow().flow(_texture(), _texture(size=(64, 64)))


def test_forward_backward_consistency_is_zero_for_a_rigid_shift_and_large_for_a_wrong_flow():
    forward = np.tile(np.float32([2.0, 1.0]), (20, 30, 1))
    assert consistency(forward, -forward)[5:-5, 5:-5].max() < 1e-5
    assert consistency(forward, forward)[5:-5, 5:-5].min() > 4.0


def test_inconsistency_tolerance_grows_with_the_motion():
    """Sundaram et al. 2010 eq. 5: the same 1.5 px residual is noise on a 20 px motion, an error on a 1 px one."""
    for speed, expected in ((1.0, True), (20.0, False)):
        forward = np.tile(np.float32([speed, 0.0]), (20, 30, 1))
        backward = -forward + np.float32([1.5, 0.0])  # residual |w + ŵ| = 1.5 px everywhere
        assert bool(inconsistent(forward, backward)[5:-5, 5:-5].all()) is expected
    rigid = np.tile(np.float32([20.0, 3.0]), (20, 30, 1))
    assert not inconsistent(rigid, -rigid)[5:-5, 5:-5].any()


def test_fill_nearest_copies_the_closest_valid_value():
    field = np.zeros((5, 7, 2), np.float32)
    field[:, :2] = 1.0
    field[:, 5:] = 2.0
    valid = np.zeros((5, 7), bool)
    valid[:, :2] = valid[:, 5:] = True
    filled = fill_nearest(field, valid)
    assert (filled[:, 2] == 1.0).all() and (filled[:, 4] == 2.0).all()
    assert (filled[valid] == field[valid]).all()


def test_separate_flows_take_each_layer_from_its_own_trimap_region():
    flow = np.zeros((10, 10, 2), np.float32)
    trimap = np.full((10, 10), 0.5, np.float32)
    trimap[:, :3], trimap[:, 7:] = 1.0, 0.0
    flow[:, :3] = [4.0, 0.0]
    flow[:, 3:] = [9.0, 9.0]  # band values are garbage and must not leak into either layer
    flow[:, 7:] = [-1.0, 0.0]
    fg, bg = separate_flows(flow, trimap)
    assert (fg == [4.0, 0.0]).all(axis=-1).all()
    assert (bg == [-1.0, 0.0]).all(axis=-1).all()


def test_aligned_views_line_up_each_layer():
    """Foreground (left half) moves by 4 px, background by 0: I^B matches I1 on the background, I^F on the
    foreground, and the companion frame is I1 with its background moved like I^F's."""
    rng = np.random.default_rng(1)
    h, w = 96, 128
    bg = _texture(2, (h, w))
    fg = textured_background((h, w), rng) ** (1 / 2.2) * 0.5 + 0.5
    alpha = np.zeros((h, w), np.float32)
    alpha[24:72, 32:80] = 1.0
    image = alpha[..., None] * fg + (1 - alpha[..., None]) * bg
    fg2, alpha2 = _shift(fg, 4, 0), _shift(alpha, 4, 0)
    second = alpha2[..., None] * fg2 + (1 - alpha2[..., None]) * bg
    trimap = np.where(alpha > 0.5, 1.0, 0.0).astype(np.float32)
    ring = cv2.dilate(alpha, np.ones((13, 13))) - cv2.erode(alpha, np.ones((13, 13)))
    trimap[ring > 0] = 0.5
    pair = align_pair(image.astype(np.float32), second.astype(np.float32), trimap)
    core_fg = cv2.erode(alpha, np.ones((21, 21))) > 0
    core_bg = cv2.dilate(alpha, np.ones((31, 31))) == 0
    core_bg[:8], core_bg[-8:], core_bg[:, :8], core_bg[:, -8:] = False, False, False, False
    assert np.abs(pair.background_aligned - image)[core_bg].mean() < 0.02
    assert np.abs(pair.foreground_aligned - image)[core_fg].mean() < 0.03
    np.testing.assert_allclose(np.median(pair.motion.foreground[core_fg], axis=0), [4, 0], atol=0.3)
    np.testing.assert_allclose(np.median(pair.motion.background[core_bg], axis=0), [0, 0], atol=0.3)
    assert set(np.unique(pair.warped_trimap)) <= {0.0, 0.5, 1.0}
    assert pair.companion.shape == image.shape and pair.second_trimap.shape == trimap.shape
    # the companion is I1 with its background moved like I^F's: it matches I^F on the background
    assert np.abs(pair.companion - pair.foreground_aligned)[core_bg].mean() < 0.03
    assert np.abs(pair.companion - image)[core_bg].mean() > 0.05  # … which did move (by 4 px)


def test_align_pair_names_a_mismatched_second_frame():
    with pytest.raises(ValueError, match="second"):
        align_pair(np.zeros((8, 8, 3), np.float32), np.zeros((8, 9, 3), np.float32), np.zeros((8, 8), np.float32))


def test_inspect_pair_writes_the_aligned_views(tmp_path):
    from mattebox.cli import main
    from mattebox.synth.pairs import make_pair

    pair = make_pair(2, size=(48, 64), real_alpha=False)
    to8 = lambda x: (np.clip(x, 0, 1) ** (1 / 2.2) * 255 + 0.5).astype(np.uint8)[..., ::-1]  # noqa: E731
    cv2.imwrite(str(tmp_path / "a.png"), to8(pair.image))
    cv2.imwrite(str(tmp_path / "b.png"), to8(pair.second))
    cv2.imwrite(str(tmp_path / "t.png"), (pair.trimap * 255).astype(np.uint8))
    out = tmp_path / "out"
    assert main(["inspect-pair", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--trimap",
                 str(tmp_path / "t.png"), "--out", str(out)]) == 0
    for name in ("background_aligned", "foreground_aligned", "companion", "warped_trimap", "flow_foreground",
                 "flow_background", "occluded", "disoccluded"):
        written = cv2.imread(str(out / f"{name}.png"))
        assert written is not None and written.shape[:2] == (48, 64), name
    assert main(["inspect-pair", str(tmp_path / "a.png"), str(tmp_path / "missing.png"), "--out", str(out)]) == 2
