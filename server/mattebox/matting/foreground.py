"""Foreground decontamination: given I and α, find straight F (and B) with I ≈ αF + (1 − α)B.

Two methods, both run in linear light so the result composites back to the plate in a linear compositor:

* :func:`multilevel` — Germer, Uelwer, Conrad, Harmeling, "Fast Multi-Level Foreground Estimation", ICPR 2020:
  minimise Σ_i (α_i F_i + (1−α_i) B_i − I_i)² + Σ_{i~j} (ε_r + ω|α_i − α_j|)(‖F_i − F_j‖² + ‖B_i − B_j‖²),
  coarse to fine: at each level the per-pixel 2×2 system in (F_i, B_i) is solved with the neighbours fixed
  (red-black Gauss-Seidel sweeps here, compiled: :func:`.compiled.foreground_sweeps`, on both cores at large
  levels; the paper sweeps in scan order), then the result is upsampled.
  Paper values: ε_r = 5·10⁻³, ω = 1, 10 iterations on small levels and 2 on large ones, small size 32.
* :func:`blur_fusion` — Forte & Pitié, "Approximate Fast Foreground Colour Estimation", ICIP 2021, eq. 6:
  F = F̂ + α(I − αF̂ − (1−α)B̂), with F̂ = blur(αI)/blur(α), B̂ = blur((1−α)I)/blur(1−α); applied twice
  ("Blur-Fusion x2") with radii 90 then 6, the second pass blurring the first pass's F.
"""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from . import compiled

_NO_PLATE = np.zeros((1, 1, 3), np.float32)  # what the sweeps get without a plate (then never read)


def multilevel(image: np.ndarray, alpha: np.ndarray, eps_r: float = 5e-3, omega: float = 1.0,
               small_size: int = 32, small_iterations: int = 10, big_iterations: int = 2,
               background: Optional[np.ndarray] = None, background_weight: float = 1.0) -> np.ndarray:
    """Straight foreground F (H×W×3 float32) by multi-level estimation (Germer et al. 2020).

    ``background``: a clean plate (H×W×3 linear) as a prior on B, the energy gaining λ_B Σ‖B_i − plate_i‖²
    (λ_B = ``background_weight``). Soft, not B held at the plate: with B fixed, F = (I − (1 − α)B)/α turns every
    alpha error into a colour error (premultiplied-F MSE 4.8e-4 vs 2.3e-4 soft at λ_B = 1 on 12 synthetic pairs
    with plates, seeds 20 000–20 011; λ_B 0.01 / 0.1 / 1 -> 2.6 / 2.4 / 2.3e-4, 2.6e-4 without the prior)."""
    h, w = alpha.shape
    levels = max(1, int(np.ceil(np.log2(max(h, w)))))
    fg = bg = None
    for level in range(levels + 1):
        lh = max(1, int(round(h ** (level / levels))))
        lw = max(1, int(round(w ** (level / levels))))
        img = cv2.resize(image, (lw, lh), interpolation=cv2.INTER_NEAREST) if (lh, lw) != (h, w) else image
        a = cv2.resize(alpha, (lw, lh), interpolation=cv2.INTER_NEAREST) if (lh, lw) != (h, w) else alpha
        img = img.reshape(lh, lw, 3)  # cv2 drops the channel axis of 1-pixel-wide results
        a = a.reshape(lh, lw)
        plate = None
        if background is not None:
            plate = (cv2.resize(background, (lw, lh), interpolation=cv2.INTER_NEAREST) if (lh, lw) != (h, w)
                     else background).reshape(lh, lw, 3)
        if fg is None:  # the image's mean colour (OpenCV sums in float64: numpy's float32 mean took 26 ms at 1080p)
            mean = np.array(cv2.mean(np.ascontiguousarray(image, np.float32))[:3], np.float32)
            fg = np.repeat(mean[None, None], lh * lw, 0).reshape(lh, lw, 3)
            bg = fg.copy() if plate is None else plate.copy()
        else:
            fg = cv2.resize(fg, (lw, lh), interpolation=cv2.INTER_NEAREST).reshape(lh, lw, 3)
            bg = cv2.resize(bg, (lw, lh), interpolation=cv2.INTER_NEAREST).reshape(lh, lw, 3)
        fg, bg = (np.ascontiguousarray(x, np.float32) for x in (fg, bg))  # updated in place by the sweeps
        iterations = small_iterations if max(lh, lw) <= small_size else big_iterations
        sweeps = compiled.in_blocks(lh * lw, "foreground_sweeps")
        sweeps(np.ascontiguousarray(img, np.float32), np.ascontiguousarray(a, np.float32), fg, bg,
               _NO_PLATE if plate is None else np.ascontiguousarray(plate, np.float32),
               0.0 if plate is None else float(background_weight), eps_r, omega, iterations)
    return fg


def blur_fusion(image: np.ndarray, alpha: np.ndarray, radii=(90, 6)) -> np.ndarray:
    """Straight foreground by Blur-Fusion (Forte & Pitié 2021, eq. 6), one pass per radius."""
    a = alpha[..., None].astype(np.float32)
    fg = image.astype(np.float32)
    bg = image.astype(np.float32)
    for radius in radii:
        size = (2 * radius + 1, 2 * radius + 1)
        blur_a = cv2.blur(alpha, size)[..., None]
        blur_fa = cv2.blur(fg * a, size)
        blur_b1a = cv2.blur(1 - alpha, size)[..., None]
        blur_b = cv2.blur(bg * (1 - a), size)
        fg_hat = blur_fa / (blur_a + 1e-5)
        bg_hat = blur_b / (blur_b1a + 1e-5)
        fg = fg_hat + a * (image - a * fg_hat - (1 - a) * bg_hat)
        fg = np.clip(fg, 0.0, None)
        bg = bg_hat
    return fg.astype(np.float32)
