"""Metrics against hand computations (Deep Image Matting evaluation code semantics)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from mattebox import evaluation as ev
from mattebox.paths import alphamatting_dir


def test_sad_and_mse_count_only_the_region():
    pred = np.array([[0.0, 0.5], [1.0, 0.2]], np.float32)
    gt = np.array([[1.0, 0.0], [1.0, 0.0]], np.float32)
    region = np.array([[False, True], [True, True]])
    assert ev.sad(pred, gt, region) == pytest.approx((0.5 + 0.0 + 0.2) / 1000)
    assert ev.mse(pred, gt, region) == pytest.approx((0.25 + 0.0 + 0.04) / 3)


def test_gradient_kernel_matches_gaussgradient_m():
    hx = ev.gauss_gradient_kernel(1.4)
    # halfsize = ceil(1.4 * sqrt(-2 log(sqrt(2 pi) 1.4 0.01))) = 4
    assert hx.shape == (9, 9)
    assert math.isclose(float((hx ** 2).sum()), 1.0, rel_tol=1e-12)
    np.testing.assert_allclose(hx, -hx[:, ::-1])  # odd in x
    np.testing.assert_allclose(hx, hx[::-1, :])  # even in y
    assert hx[4, 3] > 0 > hx[4, 5]  # -x * gauss: positive left of centre


def test_gradient_error_is_zero_for_equal_and_rescaled_mattes():
    gt = np.tile(np.linspace(0, 1, 16, dtype=np.float32), (8, 1))
    region = np.ones(gt.shape, bool)
    assert ev.grad(gt, gt, region) == 0.0
    assert ev.grad(0.5 * gt, gt, region) == pytest.approx(0.0, abs=1e-12)  # mat2gray normalises
    assert ev.grad(np.zeros_like(gt), gt, region) > 0


def test_gradient_of_a_ramp_by_hand():
    """A unit ramp along x (after mat2gray, slope 1/(W-1)) has |∇| = slope·Σ_ij hx_ij·(−j) in the interior."""
    w = 32
    gt = np.tile(np.arange(w, dtype=np.float64) / (w - 1), (32, 1))
    hx = ev.gauss_gradient_kernel(1.4)
    j = np.arange(-4, 5)[None, :]
    expected = abs(float((hx * (-j)).sum()) / (w - 1))  # convolution flips the kernel
    region = np.zeros(gt.shape, bool)
    region[10:20, 10:20] = True
    flat = np.full(gt.shape, 0.3)
    assert ev.grad(flat, gt, region) == pytest.approx(100 * expected ** 2 / 1000, rel=1e-9)


def test_connectivity_error_by_hand():
    gt = np.array([[1.0, 1.0, 0.0]])
    pred = np.array([[1.0, 0.5, 0.0]])
    region = np.ones(gt.shape, bool)
    # pixel 1 leaves the shared component at 0.6 -> level 0.5; d_gt = 0.5 >= 0.15 -> phi_gt = 0.5, phi_pred = 1
    assert ev.conn(pred, gt, region) == pytest.approx(0.5 / 1000)
    assert ev.conn(gt, gt, region) == 0.0


def test_foreground_mse_uses_premultiplied_colour():
    fg_gt = np.zeros((1, 2, 3))
    fg = np.ones((1, 2, 3))
    alpha = np.array([[0.5, 0.0]])
    region = np.ones((1, 2), bool)
    assert ev.foreground_mse(fg, fg_gt, alpha, region) == pytest.approx((0.25 + 0.0) / 2)


@pytest.mark.skipif(alphamatting_dir() is None, reason="../shared/data/alphamatting-dev is absent")
def test_eval_cli_on_one_image(tmp_path, capsys):
    from mattebox.cli import main

    out = tmp_path / "eval.json"
    assert main(["eval", "--images", "GT05", "--trimap", "trimap1", "--json", str(out)]) == 0
    import json

    result = json.loads(out.read_text())
    assert result["rows"][0]["image"] == "GT05" and 0 < result["mean"]["sad"] < 5
    assert "| **mean** |" in capsys.readouterr().out


def test_eval_image_names_accept_a_png_suffix_and_name_what_is_missing():
    available = ["GT01", "GT05", "GT10"]
    assert ev.image_names("GT10.png, GT01", available) == ["GT10", "GT01"]
    message = ev.image_names("GT10,GT99.png", available)
    assert isinstance(message, str) and "GT99" in message and "GT01" in message


def test_eval_cli_refuses_an_unknown_image_without_a_traceback(tmp_path, capsys):
    from mattebox.cli import main

    for sub in ("image", "alpha", "trimap1", "trimap2"):
        (tmp_path / sub).mkdir()
    (tmp_path / "image" / "GT01.png").write_bytes(b"")
    assert main(["eval", "--data", str(tmp_path), "--images", "GT10.png"]) == 2
    assert "--images: no image named GT10" in capsys.readouterr().err
