"""Classical two-frame solve: background revealed by parallax becomes a known B in the unknown band.

For a base-frame pixel x of the trimap's unknown band, the background-aligned second frame I^B(x) = M^B_{0→1}(I0)(x)
shows the background behind x *if* the second frame sees background there. Frame 0's pixel at x + b(x) shows the
base-frame foreground point x + b(x) − f(x) (b, f: background/foreground flow, §4.2), so it is pure background when
the single-frame alpha estimate α_s is ~0 in a small neighbourhood of x + b(x) − f(x) (the neighbourhood absorbs
flow error), and the two layers moved apart (|f − b| ≥ ``min_parallax_px``). There B = I^B(x) is known, and
alpha and foreground follow as for any known background (:mod:`.known_background`: the
least-squares α_B of the compositing equation in linear light, as a soft data term weighted by colour-separation
and alignment confidences, in the matting-Laplacian solve; the direct F = (I − (1 − α)B)/α trusted in proportion
to α). σ_f here is the position error of a background flow extrapolated into the band (1 px).

Where B is not known the weight is zero and the result is the single-frame closed-form solution (per-pixel
fallback).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Optional

import cv2
import numpy as np

from ..colour import linear_to_srgb
from ..contract import no_progress
from ..matting.alpha import SolverSettings, solve_alpha
from ..matting.foreground import multilevel
from ..matting.known_background import KnownBackgroundSettings, background_alpha, foreground_with_background
from .align import AlignedPair, align_pair
from .motion import fill_nearest, warp


@dataclass
class PairSettings:
    #: α_B's data term: λ = 0.3; σ_f = 1 px, the position error of the extrapolated background flow (the
    #: alignment factor took 20 training pairs, seeds 20 000–20 019, from 1.05× to 0.92× single-frame SAD)
    background: KnownBackgroundSettings = field(
        default_factory=lambda: KnownBackgroundSettings(prior_weight=0.3, position_sigma_px=1.0))
    clear_alpha: float = 0.02  #: α_s below this counts as background in frame 0
    clear_radius: int = 2  #: … over a (2r+1)² neighbourhood (absorbs flow error)
    min_parallax_px: float = 1.0  #: the layers must move apart by this much for B to be new information
    revealed_colour: float = 0.02  #: |I − B| above this (linear) = background hidden in frame 1, revealed in frame 0
    min_coverage: float = 0.01  #: the pair is usable when at least this fraction of the band has B known


def known_background(aligned: AlignedPair, single_alpha: np.ndarray, settings: PairSettings) -> np.ndarray:
    """H×W bool: unknown-band pixels whose background-aligned second-frame colour is pure background."""
    motion = aligned.motion
    band = aligned.trimap == 0.5
    # α_s dilated: any foreground within clear_radius of the sampled point disqualifies it
    size = 2 * settings.clear_radius + 1
    hazy = cv2.dilate((single_alpha > settings.clear_alpha).astype(np.uint8), np.ones((size, size), np.uint8))
    # frame-0 pixel x + b(x) shows frame-1 foreground point x + b(x) − f(x)
    offset = motion.background - motion.foreground  # H×W×2
    hazy_there = warp(hazy.astype(np.float32), offset, cv2.INTER_NEAREST) > 0
    parallax = np.linalg.norm(offset, axis=-1) >= settings.min_parallax_px
    return band & ~hazy_there & parallax


def solve_pair(image: np.ndarray, second: np.ndarray, trimap: np.ndarray, solver: SolverSettings,
               settings: Optional[PairSettings] = None, progress: Callable = no_progress,
               single_alpha: Optional[np.ndarray] = None):
    """Two-frame alpha and foreground. ``image``/``second``: H×W×3 linear float32; ``trimap``: H×W {0, .5, 1}.
    Returns (alpha H×W, foreground H×W×3 linear, info dict)."""
    settings = settings or PairSettings()
    image_srgb = linear_to_srgb(np.clip(image, 0, 1)).astype(np.float32)
    second_srgb = linear_to_srgb(np.clip(second, 0, 1)).astype(np.float32)
    if single_alpha is None:
        progress("alpha", 0, 2, "single-frame")
        single_alpha = solve_alpha(image_srgb, trimap, solver, progress)
    progress("align", 0, 1)
    aligned = align_pair(image_srgb, second_srgb, trimap)
    band = trimap == 0.5
    known = known_background(aligned, single_alpha, settings)
    b_lin = warp(second, aligned.motion.background)  # M^B_{0→1}(I0) in linear light
    fg_lin = fill_nearest(image, trimap == 1)  # the image itself when there is no definite foreground
    alpha_b, confidence = background_alpha(image, b_lin, fg_lin, settings.background)
    revealed = known & (np.linalg.norm(image - b_lin, axis=-1) > settings.revealed_colour)
    weight = np.where(known, settings.background.prior_weight * confidence, 0.0)
    band_count = max(int(band.sum()), 1)
    coverage = float(known.sum()) / band_count
    usable = coverage >= settings.min_coverage
    if usable:
        progress("alpha", 1, 2, "two-frame")
        alpha = solve_alpha(image_srgb, trimap, solver, progress,
                            prior=(alpha_b.astype(np.float32), weight.astype(np.float32)))
    else:
        alpha = single_alpha
    progress("foreground", 0, 1)
    foreground = multilevel(image, alpha)
    if usable:
        foreground = foreground_with_background(image, alpha, b_lin, known, foreground)
    parallax = float(np.median(np.linalg.norm(aligned.motion.background - aligned.motion.foreground,
                                              axis=-1)[band])) if band.any() else 0.0
    info: Dict = {"pair_usable": bool(usable), "revealed_coverage": round(float(revealed.sum()) / band_count, 4),
                  "known_background_coverage": round(coverage, 4),
                  "flow_inconsistent_fraction": round(float(aligned.motion.occluded[band].mean()) if band.any()
                                                      else 0.0, 4),
                  "median_parallax_px": round(parallax, 3)}
    if not usable:
        info["pair_why"] = (f"the second frame shows pure background behind {coverage:.1%} of the unknown band "
                            f"(at least {settings.min_coverage:.0%} needed; the layers moved {parallax:.2f} px apart): "
                            "single-frame result")
    return alpha, foreground, info
