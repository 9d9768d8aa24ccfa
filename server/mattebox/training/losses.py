"""Training losses of the papers mattebox implements, one function each.

Conventions: ``alpha``/``gt`` B×1×H×W in [0, 1]; colour images B×3×H×W (sRGB-encoded in [0, 1], the values the
networks see); ``trimap`` B×1×H×W with values exactly 0, 0.5, 1. Every loss returns a scalar tensor and is a
*mean* over the pixels it counts (papers that write sums are normalised by the pixel count so the weights do not
depend on the crop size); an empty region contributes 0, never NaN.

Papers (``../shared/papers``):

* Parallax Portrait Matting (Cai et al.), Sec. 4.4: :func:`separation_l1`, :func:`laplacian_pyramid_loss`,
  :func:`gradient_loss`, :func:`premultiplied_composition_loss`; :func:`parallax_loss` is their sum.
* PP-Matting (Chen et al. 2022), Sec. 3.2: :func:`semantic_cross_entropy` (Eq. 4) and :func:`detail_loss`
  (Eq. 6–8, built on :func:`charbonnier`) for the semantic and detail heads. The fused alpha is trained with the
  same terms as every other model's (trainer.objective_terms), not with the paper's fusion loss (Eq. 9–11), so
  the supervised objective stays one objective that models can be compared under.
* Mask2Alpha, Sec. 3.2: :func:`confidence_loss`.
* Training Matting Models without Alpha Labels (Liu et al. 2024): :func:`known_loss` and the directional distance
  consistency :func:`ddc_loss` (Eq. 9, 11×11 window, top-11 neighbours); :func:`alpha_free_loss` = known + 10·DDC.
"""
from __future__ import annotations

import functools
from typing import Dict, Optional

import torch
import torch.nn.functional as F

TRIMAP_BACKGROUND, TRIMAP_UNKNOWN, TRIMAP_FOREGROUND = 0.0, 0.5, 1.0


def masked_mean(values: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean of ``values`` over ``mask`` (broadcast to values' shape); 0 when the mask is empty."""
    if mask is None:
        return values.mean() if values.numel() else values.new_zeros(())
    mask = mask.to(values.dtype).expand_as(values)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def _unknown(trimap: torch.Tensor) -> torch.Tensor:
    return (trimap - TRIMAP_UNKNOWN).abs() < 0.25


# ------------------------------------------------------------------------------------------ Parallax (Sec. 4.4)
def separation_l1(alpha: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """L_sep: the L1 error normalised separately over soft pixels S (0 < α_gt < 1) and hard pixels H (α_gt ∈ {0, 1}),
    ``1/|S| Σ_S |α − α_gt| + 1/|H| Σ_H |α − α_gt|``, so the few soft pixels weigh as much as all hard ones."""
    error = (alpha - gt).abs()  # B×1×H×W
    soft = (gt > 0) & (gt < 1)
    return masked_mean(error, soft) + masked_mean(error, ~soft)


def _gauss_kernel(device, dtype) -> torch.Tensor:
    """The 5×5 binomial kernel [1 4 6 4 1]ᵀ[1 4 6 4 1] / 256 of a Burt–Adelson pyramid, 1×1×5×5."""
    row = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], device=device, dtype=dtype)
    return (torch.outer(row, row) / 256.0)[None, None]


def _gauss_blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    x = F.pad(x.reshape(b * c, 1, h, w), (2, 2, 2, 2), mode="reflect")
    return F.conv2d(x, kernel).reshape(b, c, h, w)


def laplacian_pyramid(x: torch.Tensor, levels: int) -> list:
    """Band-pass levels ``x_l − up(down(x_l))`` of a Laplacian pyramid (odd sizes cropped to even), finest first."""
    kernel = _gauss_kernel(x.device, x.dtype)
    bands = []
    current = x
    for _ in range(levels):
        current = current[..., : current.shape[-2] // 2 * 2, : current.shape[-1] // 2 * 2]
        if min(current.shape[-2:]) < 4:  # reflect padding by 2 needs at least 3 pixels after downsampling
            break
        down = _gauss_blur(current, kernel)[..., ::2, ::2]
        up = torch.zeros_like(current)
        up[..., ::2, ::2] = down * 4
        bands.append(current - _gauss_blur(up, kernel))
        current = down
    return bands


def laplacian_pyramid_loss(alpha: torch.Tensor, gt: torch.Tensor, levels: int = 5) -> torch.Tensor:
    """L_laplacian: ``Σ_l 2^l · mean|L_l(α) − L_l(α_gt)| / levels`` over Laplacian pyramid bands (as in ViTMatte and
    the prior work the Parallax paper follows). Insensitive to a constant offset by construction."""
    pred_bands, gt_bands = laplacian_pyramid(alpha, levels), laplacian_pyramid(gt, levels)
    loss = alpha.new_zeros(())
    for level, (p, g) in enumerate(zip(pred_bands, gt_bands)):
        loss = loss + (2 ** level) * (p - g).abs().mean()
    return loss / levels


def gradient_loss(alpha: torch.Tensor, gt: torch.Tensor, region: Optional[torch.Tensor] = None) -> torch.Tensor:
    """L_grad: L1 between forward-difference spatial gradients of α and α_gt, ``mean|∂xα − ∂xα_gt| +
    mean|∂yα − ∂yα_gt|``; with ``region`` only differences whose both pixels lie in it count."""
    dx = (alpha[..., :, 1:] - alpha[..., :, :-1]) - (gt[..., :, 1:] - gt[..., :, :-1])  # B×1×H×(W−1)
    dy = (alpha[..., 1:, :] - alpha[..., :-1, :]) - (gt[..., 1:, :] - gt[..., :-1, :])  # B×1×(H−1)×W
    if region is None:
        return masked_mean(dx.abs()) + masked_mean(dy.abs())
    rx = region[..., :, 1:] & region[..., :, :-1]
    ry = region[..., 1:, :] & region[..., :-1, :]
    return masked_mean(dx.abs(), rx) + masked_mean(dy.abs(), ry)


def premultiplied_composition_loss(fg_premultiplied: torch.Tensor, gt: torch.Tensor, image: torch.Tensor,
                                   background: torch.Tensor) -> torch.Tensor:
    """L_composition = mean|I − (αF_pred + (1 − α_gt)·B_gt)|: the predicted premultiplied foreground recomposed with
    the ground-truth premultiplied background must give the input image back."""
    return (image - (fg_premultiplied + (1 - gt) * background)).abs().mean()


def parallax_loss(alpha: torch.Tensor, gt: torch.Tensor, fg_premultiplied: Optional[torch.Tensor] = None,
                  image: Optional[torch.Tensor] = None, background: Optional[torch.Tensor] = None
                  ) -> Dict[str, torch.Tensor]:
    """L_total = L_sep + L_laplacian + L_grad + L_composition (the last only when a foreground head exists)."""
    terms = {"sep": separation_l1(alpha, gt), "laplacian": laplacian_pyramid_loss(alpha, gt),
             "grad": gradient_loss(alpha, gt)}
    if fg_premultiplied is not None:
        terms["composition"] = premultiplied_composition_loss(fg_premultiplied, gt, image, background)
    return terms


# ----------------------------------------------------------------------------------------- PP-Matting (Sec. 3.2)
def trimap_classes(trimap: torch.Tensor) -> torch.Tensor:
    """Trimap B×1×H×W {0, 0.5, 1} -> class indices B×H×W: 0 background, 1 transition, 2 foreground."""
    return torch.round(trimap[:, 0] * 2).long().clamp(0, 2)


def semantic_cross_entropy(logits: torch.Tensor, trimap: torch.Tensor) -> torch.Tensor:
    """L_s (Eq. 4): 3-class cross-entropy of the semantic map (B×3×H×W logits) against the trimap's classes,
    averaged over all pixels Ω = Ω_f ∪ Ω_b ∪ Ω_t."""
    return F.cross_entropy(logits, trimap_classes(trimap))


def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-pixel sqrt((p − t)² + ε²), the differentiable absolute difference of PP-Matting Eq. 7 and 10."""
    return torch.sqrt((pred - target) ** 2 + eps * eps)


def detail_loss(detail: torch.Tensor, gt: torch.Tensor, trimap: torch.Tensor) -> torch.Tensor:
    """L_d (Eq. 6–8): Charbonnier alpha loss + gradient loss of the detail map, counted in the transition region."""
    region = _unknown(trimap)
    return masked_mean(charbonnier(detail, gt), region) + gradient_loss(detail, gt, region)


# ------------------------------------------------------------------------------------------ Mask2Alpha (Sec. 3.2)
def confidence_loss(confidence: torch.Tensor, alpha: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """L_C = mean| c − |α_p − α_g| |: the confidence head learns to predict the error of the alpha it produced.
    The error is a target (detached): this loss trains the confidence head, not the alpha."""
    return (confidence - (alpha - gt).abs().detach()).abs().mean()


# ------------------------------------------------------------------------------------- alpha-free (Liu et al.)
def known_loss(alpha: torch.Tensor, trimap: torch.Tensor) -> torch.Tensor:
    """L_known: L1 between α and the trimap over the known pixels only (trimap 0 or 1), i.e. scaled by N/N_known
    as the paper's Sec. 4.1 says."""
    return masked_mean((alpha - trimap).abs(), ~_unknown(trimap))


def ddc_loss(alpha: torch.Tensor, image: torch.Tensor, window: int = 11, top_k: int = 11) -> torch.Tensor:
    """Directional distance consistency (Eq. 9): for each pixel i, take the ``top_k`` pixels j of the
    ``window``×``window`` neighbourhood most similar to i in colour (Euclidean RGB distance, i itself included) and
    penalise ``|(α_i − α_j) − ‖I_i − I_j‖|``; mean over pixels and neighbours.

    Keeping the sign of α_i − α_j makes the minimum over a symmetric pair 2‖I_i − I_j‖, reached whenever
    |α_i − α_j| ≤ ‖I_i − I_j‖ (Eq. 10): alpha may change only as fast as colour does, and flat known regions
    are not pushed to copy texture. Neighbours outside the image are never selected (the authors' code pads
    with zeros, which lets dark pixels pick the padding).
    """
    if window % 2 != 1 or window < 1:
        raise ValueError(f"window must be a positive odd number, got {window}")
    b, _, h, w = alpha.shape
    radius = window // 2
    smallest_neighbourhood = min(h, radius + 1) * min(w, radius + 1)  # a corner pixel's in-image neighbours
    if not 1 <= top_k <= smallest_neighbourhood:
        raise ValueError(f"top_k must be in 1..{smallest_neighbourhood} for a {h}×{w} image and window {window}, "
                         f"got {top_k}")
    unfold = functools.partial(F.unfold, kernel_size=window, padding=radius)
    with torch.no_grad():  # the colour side is a fixed target: no gradient, no autograd memory
        neighbours = unfold(image).view(b, 3, window * window, h, w)  # B×3×window²×H×W
        squared = ((image.unsqueeze(2) - neighbours) ** 2).sum(1)  # B×window²×H×W
        inside = unfold(torch.ones_like(image[:1, :1])).view(1, window * window, h, w) > 0
        squared = squared.masked_fill(~inside, float("inf"))
        nearest, index = torch.topk(squared, k=top_k, dim=1, largest=False)  # B×k×H×W
        nearest = nearest.sqrt()
    alpha_neighbours = unfold(alpha).view(b, window * window, h, w)  # B×window²×H×W
    alpha_differences = alpha - torch.gather(alpha_neighbours, 1, index)  # B×k×H×W: α_i − α_j
    return (alpha_differences - nearest.to(alpha.dtype)).abs().mean()


def alpha_free_loss(alpha: torch.Tensor, image: torch.Tensor, trimap: torch.Tensor, ddc_weight: float = 10.0,
                    window: int = 11, top_k: int = 11) -> Dict[str, torch.Tensor]:
    """Eq. 11: L = L_known + λ·L_DDC with λ = 10, needing only the image and a trimap (no alpha labels). DDC
    supervises the whole matte: restricting it to the unknown band breaks continuity (paper Table 5)."""
    return {"known": known_loss(alpha, trimap), "ddc": ddc_weight * ddc_loss(alpha, image, window, top_k)}
