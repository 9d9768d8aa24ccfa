"""Each training loss against a hand computation on tiny tensors (numbers worked out in the comments)."""
from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mattebox.training import losses  # noqa: E402


def t(rows, channels=1):
    """A 1×C×H×W float64 tensor from nested lists (H×W, or C×H×W when channels > 1)."""
    x = torch.tensor(rows, dtype=torch.float64)
    return x.reshape(1, channels, *x.shape[-2:])


def test_separation_l1_normalises_soft_and_hard_pixels_separately():
    gt = t([[0.0, 0.5], [1.0, 0.25]])
    alpha = t([[0.1, 0.7], [0.8, 0.25]])
    # soft {0.5, 0.25}: errors 0.2, 0 -> 0.1; hard {0, 1}: errors 0.1, 0.2 -> 0.15
    assert losses.separation_l1(alpha, gt).item() == pytest.approx(0.25)
    # no soft pixels: only the hard mean counts (no NaN from an empty set)
    assert losses.separation_l1(t([[0.5, 0.0]]), t([[1.0, 0.0]])).item() == pytest.approx(0.25)


def test_gradient_loss_forward_differences():
    alpha, gt = t([[0.0, 1.0], [0.0, 0.0]]), torch.zeros(1, 1, 2, 2, dtype=torch.float64)
    # ∂x: row0 1, row1 0 -> 0.5 ; ∂y: col0 0, col1 −1 -> 0.5
    assert losses.gradient_loss(alpha, gt).item() == pytest.approx(1.0)
    region = torch.tensor([[True, True], [False, False]]).reshape(1, 1, 2, 2)
    # only the row-0 x difference has both pixels in the region: |1| -> 1; no y pair -> 0
    assert losses.gradient_loss(alpha, gt, region).item() == pytest.approx(1.0)


def test_premultiplied_composition_loss():
    image = t([[0.5, 0.2]])
    fg_premultiplied, gt, background = t([[0.3, 0.0]]), t([[0.5, 0.0]]), t([[0.2, 0.1]])
    # pixel 0: 0.3 + 0.5·0.2 = 0.4 -> |0.5 − 0.4| = 0.1 ; pixel 1: 0 + 1·0.1 -> |0.2 − 0.1| = 0.1
    assert losses.premultiplied_composition_loss(fg_premultiplied, gt, image, background).item() == \
        pytest.approx(0.1)


def _numpy_laplacian_band(x: np.ndarray) -> np.ndarray:
    """Reference: one Burt–Adelson band by explicit loops (reflect borders, 5-tap binomial)."""
    k1 = np.array([1, 4, 6, 4, 1], float) / 16
    kernel = np.outer(k1, k1)

    def blur(img):
        padded = np.pad(img, 2, mode="reflect")
        out = np.zeros_like(img)
        for i in range(img.shape[0]):
            for j in range(img.shape[1]):
                out[i, j] = (padded[i:i + 5, j:j + 5] * kernel).sum()
        return out

    down = blur(x)[::2, ::2]
    up = np.zeros_like(x)
    up[::2, ::2] = 4 * down
    return x - blur(up), down


def test_laplacian_pyramid_loss_matches_loop_reference_and_ignores_offsets():
    rng = np.random.default_rng(0)
    a, g = rng.random((8, 8)), rng.random((8, 8))
    band_a0, down_a = _numpy_laplacian_band(a)
    band_g0, down_g = _numpy_laplacian_band(g)
    band_a1, _ = _numpy_laplacian_band(down_a)
    band_g1, _ = _numpy_laplacian_band(down_g)
    expected = (np.abs(band_a0 - band_g0).mean() + 2 * np.abs(band_a1 - band_g1).mean()) / 2
    got = losses.laplacian_pyramid_loss(t(a.tolist()), t(g.tolist()), levels=2).item()
    assert got == pytest.approx(expected, rel=1e-10)
    # band-pass only: a constant offset costs nothing, a change in detail does
    assert losses.laplacian_pyramid_loss(t(a.tolist()) + 0.3, t(a.tolist())).item() == pytest.approx(0, abs=1e-12)
    assert got > 0.01


def test_semantic_cross_entropy():
    assert losses.semantic_cross_entropy(torch.zeros(1, 3, 2, 2, dtype=torch.float64),
                                         t([[0.0, 0.5], [1.0, 1.0]])).item() == pytest.approx(math.log(3))
    logits = torch.tensor([2.0, 0.0, 0.0], dtype=torch.float64).reshape(1, 3, 1, 1)
    # class 0 (background) has logit 2: −log(e²/(e²+2))
    assert losses.semantic_cross_entropy(logits, t([[0.0]])).item() == \
        pytest.approx(-math.log(math.e ** 2 / (math.e ** 2 + 2)))
    # the same logits against 'transition' (class 1): −log(1/(e²+2))
    assert losses.semantic_cross_entropy(logits, t([[0.5]])).item() == pytest.approx(math.log(math.e ** 2 + 2))


def test_charbonnier_and_detail_losses():
    assert losses.charbonnier(t([[0.3]]), t([[0.0]])).item() == pytest.approx(math.sqrt(0.09 + 1e-12))
    detail, gt = t([[0.2, 0.9], [0.0, 1.0]]), t([[0.5, 0.9], [0.0, 1.0]])
    trimap = t([[0.5, 0.5], [0.0, 1.0]])
    # transition pixels (0,0), (0,1): Charbonnier 0.3, 0 -> 0.15; ∂x pair inside: (0.9−0.2) − 0.4 = 0.3
    assert losses.detail_loss(detail, gt, trimap).item() == pytest.approx(0.15 + 0.3, abs=1e-5)  # ε = 1e-6 on each term


def test_confidence_loss_learns_the_error_and_does_not_move_alpha():
    confidence = t([[0.1, 0.5]]).requires_grad_()
    alpha = t([[0.2, 0.9]]).requires_grad_()
    gt = t([[0.0, 1.0]])
    loss = losses.confidence_loss(confidence, alpha, gt)  # |0.1 − 0.2| = 0.1, |0.5 − 0.1| = 0.4
    assert loss.item() == pytest.approx(0.25)
    loss.backward()
    assert alpha.grad is None and confidence.grad is not None


def test_known_loss_counts_only_known_pixels():
    alpha, trimap = t([[0.2, 0.5], [0.9, 0.3]]), t([[0.0, 0.5], [1.0, 0.5]])
    assert losses.known_loss(alpha, trimap).item() == pytest.approx(0.15)  # (0.2 + 0.1) / 2


def test_ddc_loss_hand_computation():
    # one row of three pixels, red channel only: I = 0, 0.1, 1.0 ; α = 0, 0.3, 1 ; window 3, top-2 neighbours
    image = torch.zeros(1, 3, 1, 3, dtype=torch.float64)
    image[0, 0, 0] = torch.tensor([0.0, 0.1, 1.0])
    alpha = t([[0.0, 0.3, 1.0]])
    # pixel 0: itself (0) + pixel 1 (d 0.1, α0−α1 = −0.3): |−0.3 − 0.1| = 0.4
    # pixel 1: itself + pixel 0 (d 0.1, α1−α0 = 0.3): 0.2 ; pixel 2: itself + pixel 1 (d 0.9, Δα 0.7): 0.2
    assert losses.ddc_loss(alpha, image, window=3, top_k=2).item() == pytest.approx(0.8 / 6)
    terms = losses.alpha_free_loss(alpha, image, t([[0.0, 0.5, 1.0]]), window=3, top_k=2)
    assert terms["ddc"].item() == pytest.approx(10 * 0.8 / 6) and terms["known"].item() == pytest.approx(0.0)


def test_ddc_loss_matches_unfold_reference_and_is_minimal_where_alpha_follows_colour():
    torch.manual_seed(0)
    image = torch.rand(2, 3, 12, 13, dtype=torch.float64)
    alpha = torch.rand(2, 1, 12, 13, dtype=torch.float64)
    k, window = 11, 11
    # reference in the authors' unfold form, with out-of-image neighbours excluded
    unfold = torch.nn.functional.unfold
    cols = unfold(image, window, padding=5).view(2, 3, window ** 2, 12, 13)
    inside = unfold(torch.ones(1, 1, 12, 13, dtype=torch.float64), window, padding=5).view(1, window ** 2, 12, 13)
    dist = torch.linalg.vector_norm(image.view(2, 3, 1, 12, 13) - cols, dim=1).masked_fill(inside == 0, math.inf)
    dist, index = torch.topk(dist, k, dim=1, largest=False)
    alpha_cols = unfold(alpha, window, padding=5).view(2, window ** 2, 12, 13)
    expected = (torch.gather(alpha - alpha_cols, 1, index) - dist).abs().mean()
    assert losses.ddc_loss(alpha, image).item() == pytest.approx(expected.item(), rel=1e-12)
    # α constant: every term is |0 − d| so the loss is the mean neighbour distance, never below it
    flat = losses.ddc_loss(torch.full_like(alpha, 0.5), image)
    assert flat.item() == pytest.approx(dist.mean().item(), rel=1e-12)


def test_ddc_loss_rejects_bad_arguments():
    image, alpha = torch.zeros(1, 3, 2, 2), torch.zeros(1, 1, 2, 2)
    with pytest.raises(ValueError, match="window"):
        losses.ddc_loss(alpha, image, window=4)
    with pytest.raises(ValueError, match="top_k"):
        losses.ddc_loss(alpha, image, window=11, top_k=11)


def test_losses_are_differentiable_and_finite():
    torch.manual_seed(1)
    alpha = torch.rand(2, 1, 16, 16, requires_grad=True)
    gt = (torch.rand(2, 1, 16, 16) > 0.5).float()
    image = torch.rand(2, 3, 16, 16)
    trimap = torch.full_like(gt, 0.5)
    total = sum(losses.parallax_loss(alpha, gt, alpha * image, image, image).values())
    total = total + sum(losses.alpha_free_loss(alpha, image, trimap).values())
    total.backward()
    assert torch.isfinite(alpha.grad).all() and alpha.grad.abs().sum() > 0
