"""Matting where the background behind a pixel is known: from a clean plate (this engine) or revealed by parallax
in a second frame (:mod:`mattebox.matting.twoframe`).

With B known, the compositing equation I = αF + (1 − α)B leaves α and F; with F taken from the nearest definite
foreground, the least-squares alpha is

    α_B = (I − B)·(F − B) / |F − B|²

(Chuang et al., "A Bayesian approach to digital matting", CVPR 2001, eq. 8 with known F and B), evaluated in
linear light, where the equation holds. It enters the matting-Laplacian solve as a soft data term whose weight
is λ times two confidences (:func:`background_alpha`):

* colour separation ``|F − B|²/(|F − B|² + σ²)``: vanishing where foreground and background colours agree;
* alignment: B carries a position error of about σ_f pixels (a flow extrapolated into the band; a plate shot a
  moment apart on a tripod), i.e. a colour error σ_f·|∇B| and an alpha error σ_α = σ_f·|∇B|/|F − B|; the weight
  is 1/(1 + σ_α²/τ²). On richly textured backgrounds this keeps a sub-pixel misregistration from writing texture
  into alpha.

Given α, the straight foreground follows from the same equation, F = (I − (1 − α)B)/α; it is ill-conditioned for
small α, so :func:`foreground_with_background` trusts it in proportion to α (:data:`DIRECT_F_RAMP`).

A clean plate also gives the guidance: a **difference matte** (the oldest keyer: |I − B| over a noise threshold is
foreground) becomes the trimap when the request has neither a trimap nor a mask (:func:`difference_mask`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import cv2
import numpy as np

from ..colour import linear_to_srgb
from .alpha import solve_alpha
from .foreground import multilevel
from .sampling import nearest_known

#: direct F = (I − (1 − α)B)/α is trusted from α = lo (not at all) to α = hi (fully). It is exact with the true α
#: (premultiplied-F MSE 0.11e-4 vs 0.56e-4 for multilevel) but divides α's error by α: on 12 synthetic pairs with
#: a clean plate (seeds 20 000–20 011) ramps (0.1, 0.4) / (0.3, 0.8) / (0.5, 1) gave 4.6 / 3.2 / 3.0e-4 against
#: 2.9e-4 without the plate, and alpha SAD 0.50 / 0.47 / 0.48x no plate through the refinement.
DIRECT_F_RAMP = (0.5, 1.0)


@dataclass
class KnownBackgroundSettings:
    prior_weight: float  #: λ, the data term's weight relative to the matting Laplacian
    position_sigma_px: float  #: σ_f, the expected position error of B (px)
    colour_sigma: float = 0.02  #: σ (linear light): |F − B| at which the colour confidence reaches one half
    alpha_tolerance: float = 0.03  #: τ: alignment confidence halves where the alpha error σ_α reaches τ
    refinements: int = 0  #: re-solves with F recovered from the known background (:func:`solve_with_plate`)


def background_alpha(image: np.ndarray, background: np.ndarray, foreground: np.ndarray,
                     settings: KnownBackgroundSettings) -> Tuple[np.ndarray, np.ndarray]:
    """(α_B, confidence), both H×W float32, from known background and foreground colours (all H×W×3 linear
    light): the least-squares alpha of I = αF + (1 − α)B and the product of the colour-separation and alignment
    confidences described in the module docstring."""
    diff = foreground - background
    contrast = np.sum(diff * diff, axis=-1)
    alpha_b = np.clip(np.sum((image - background) * diff, axis=-1) / np.maximum(contrast, 1e-8), 0, 1)
    grad_x = cv2.Sobel(background, cv2.CV_32F, 1, 0, ksize=3) / 8.0  # per-pixel derivatives
    grad_y = cv2.Sobel(background, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    gradient2 = np.sum(grad_x * grad_x + grad_y * grad_y, axis=-1)
    alpha_error2 = settings.position_sigma_px ** 2 * gradient2 / np.maximum(contrast, 1e-8)  # σ_α²
    separation = contrast / (contrast + settings.colour_sigma ** 2)
    confidence = separation / (1.0 + alpha_error2 / settings.alpha_tolerance ** 2)
    return alpha_b.astype(np.float32), confidence.astype(np.float32)


def plate_prior(image: np.ndarray, plate: np.ndarray, trimap: np.ndarray, settings: KnownBackgroundSettings,
                foreground: Optional[np.ndarray] = None) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """The clean plate's data term for :func:`~.alpha.solve_alpha`: (α_B, λ·confidence), H×W each, over the
    trimap's unknown pixels (``image``, ``plate`` H×W×3 linear). F is ``foreground`` when given, else the colour
    of each pixel's nearest definite-foreground pixel; None when there is neither (no definite foreground)."""
    unknown = trimap == 0.5
    if foreground is None:
        near = nearest_known(trimap, 1.0, np.flatnonzero(unknown))
        if near is None or not unknown.any():
            return None
        foreground = image.copy()
        foreground[unknown] = image.reshape(-1, 3)[near[1]]
    alpha_b, confidence = background_alpha(image, plate, foreground, settings)
    return alpha_b, np.where(unknown, settings.prior_weight * confidence, 0.0).astype(np.float32)


def solve_with_plate(image: np.ndarray, image_srgb: np.ndarray, plate: np.ndarray, trimap: np.ndarray,
                     solver, settings: KnownBackgroundSettings, progress=None) -> np.ndarray:
    """α (H×W) with a clean plate: the closed-form solve with the plate's data term, F first the nearest definite
    foreground colour, then ``settings.refinements`` times the foreground recovered with the plate
    (:func:`foreground_with_background` over a multilevel estimate: inside hair the nearest definite foreground
    is often another colour) and α solved again."""
    report = progress or (lambda *a, **k: None)
    alpha = solve_alpha(image_srgb, trimap, solver, report, prior=plate_prior(image, plate, trimap, settings))
    for _ in range(settings.refinements):
        foreground = foreground_with_background(image, alpha, plate, 1.0, multilevel(image, alpha))
        alpha = solve_alpha(image_srgb, trimap, solver, report,
                            prior=plate_prior(image, plate, trimap, settings, foreground))
    return alpha


def foreground_with_background(image: np.ndarray, alpha: np.ndarray, background: np.ndarray, known: np.ndarray,
                               fallback: np.ndarray) -> np.ndarray:
    """H×W×3 linear straight foreground: F = (I − (1 − α)B)/α where the background is ``known`` (H×W bool or
    weight in [0, 1]), trusted in proportion to α (:data:`DIRECT_F_RAMP`); ``fallback`` (an estimate from the
    image alone) elsewhere."""
    a3 = alpha[..., None]
    direct = np.clip((image - (1 - a3) * background) / np.maximum(a3, 1e-3), 0, 1)
    lo, hi = DIRECT_F_RAMP
    trust = (known * np.clip((alpha - lo) / (hi - lo), 0, 1))[..., None]
    return (trust * direct + (1 - trust) * fallback).astype(np.float32)


def difference_mask(image: np.ndarray, plate: np.ndarray, threshold: float = 0.1, blur_px: float = 1.5,
                    min_area: float = 0.002) -> np.ndarray:
    """H×W float32 {0, 1}: where ``image`` differs from the clean ``plate`` (both H×W×3 linear) by more than
    ``threshold`` (Euclidean distance of the sRGB-encoded colours, after a Gaussian blur of ``blur_px`` that
    averages sensor noise), holes filled, components smaller than ``min_area`` of the frame dropped."""
    a, b = (cv2.GaussianBlur(linear_to_srgb(np.clip(x, 0, 1)).astype(np.float32), (0, 0), blur_px)
            for x in (image, plate))
    moved = (np.linalg.norm(a - b, axis=-1) > threshold).astype(np.uint8)
    moved = cv2.morphologyEx(moved, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(moved, connectivity=8)
    keep = np.zeros(count, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_area * moved.size
    mask = keep[labels]
    # fill holes: background is what the frame border reaches through non-foreground pixels
    outside = np.ones((mask.shape[0] + 2, mask.shape[1] + 2), np.uint8)  # a frame of background around it
    outside[1:-1, 1:-1] = ~mask
    cv2.floodFill(outside, None, (0, 0), 2)
    return (outside[1:-1, 1:-1] != 2).astype(np.float32)
