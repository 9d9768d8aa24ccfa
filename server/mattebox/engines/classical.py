"""The classical engine: guidance -> closed-form alpha -> foreground decontamination. No weights, CPU only.

Alpha is solved on the sRGB-encoded image (the colour-line model and the matting data sets are perceptual);
the foreground is solved in linear light so that compositors reproduce the plate: I = αF + (1 − α)B there.

A clean plate (request ``background``) makes B known everywhere (:mod:`mattebox.matting.known_background`): a
difference matte gives the guidance when there is no trimap or mask, α_B from the compositing equation becomes a
data term of the solve, and the foreground is solved directly from the plate where α allows.

The maths is :mod:`mattebox.matting`; this module maps the contract's request and params onto it.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Tuple

import numpy as np

from ..contract import Engine, MatteRequest, MatteResult, Progress, no_progress
from ..matting import compiled, segmentation
from ..matting.alpha import PRESETS, solve_alpha
from ..matting.foreground import blur_fusion, multilevel
from ..matting.guidance import (grabcut_mask, guidance_warning, is_precise_roto, tighten_mask, trimap_from_mask,
                                trimap_from_saliency, unknown_where_background_coloured)
from ..matting.known_background import (KnownBackgroundSettings, difference_mask, foreground_with_background,
                                        solve_with_plate)

#: params.segmenter: 'auto' uses the segmentation networks whose weights are installed, 'grabcut' none
SEGMENTERS = ("auto", "grabcut")
#: foreground_method 'auto' per quality preset: blur-fusion is ~10x faster, multilevel more accurate
AUTO_FOREGROUND = {"fast": "blur_fusion", "balanced": "multilevel", "best": "multilevel"}
FOREGROUND_METHODS = {"multilevel": multilevel, "blur_fusion": blur_fusion}
#: a clean plate's data term: λ, the plate's expected misregistration σ_f (a locked-off or re-aligned plate) and
#: one re-solve with the foreground recovered from the plate. On 12 synthetic pairs (seeds 20 000–20 011, plate
#: with its own noise and a ±2 % exposure change) SAD vs no plate: λ 0.3 / 1 / 3 -> 0.55 / 0.52 / 0.50 with one
#: refinement, 0.70 at λ 3 without; a second refinement adds < 0.01.
#: solver changes for a trimap the engine made from U^2-Net-p's saliency ('auto:u2netp', 'mask+u2netp'): its band
#: is wider and looser than a drawn trimap's, so the solve leaves more haze over background (the levels remap
#: ``snap`` 0.03 -> 0.05, the value the trimap bench also scores best, 4.48 vs 4.54, capped there because a larger
#: remap erases faint strands) and the colour-sampling data term has more to carry (λ 0.005 -> 0.01, the best of
#: 0.0025/0.005/0.01/0.02 on GT01-04). bench/auto.py, tuned on GT01-04, checked on GT05-08: docs/classical.md.
SALIENCY_SOLVER = {"snap": 0.05, "data_weight": 0.01}
SALIENCY_GUIDANCE = ("auto:u2netp", "mask+u2netp")
PLATE = KnownBackgroundSettings(prior_weight=3.0, position_sigma_px=0.3, refinements=1)


class ClassicalEngine(Engine):
    name = "classical"
    kind = "classical"
    description = ("closed-form matting (Levin et al.) with a colour-sampling prior, solved matrix-free "
                   "coarse-to-fine over the unknown band; multilevel / blur-fusion foreground; no weights, CPU")
    uses = ("trimap", "mask", "background")

    def matte(self, request: MatteRequest, progress: Progress = no_progress) -> MatteResult:
        quality = request.param("quality", "balanced")
        if quality not in PRESETS:
            raise ValueError(f"params.quality: expected one of {sorted(PRESETS)}, got {quality!r}")
        compiled.threads()  # a bad MATTEBOX_THREADS named on every frame, not only on those big enough to use it
        method = request.param("foreground_method", "auto")
        if method == "auto":
            method = AUTO_FOREGROUND[quality]
        if method not in FOREGROUND_METHODS:
            raise ValueError(f"params.foreground_method: expected 'auto' or one of {sorted(FOREGROUND_METHODS)}, "
                             f"got {method!r}")
        timings = {}
        t = time.perf_counter()
        progress("guidance", 0, 1)
        trimap, guidance = self.guidance(request)
        timings["guidance"] = time.perf_counter() - t
        progress("alpha", 0, 1)
        t = time.perf_counter()
        plate = request.background
        if plate is not None and plate.shape != request.image.shape:
            raise ValueError(f"background: expected the image's shape {request.image.shape}, got {plate.shape}")
        if plate is not None:
            alpha = solve_with_plate(request.image, request.image_srgb, plate, trimap, PRESETS[quality], PLATE,
                                     progress)
        else:
            settings = PRESETS[quality]
            if guidance in SALIENCY_GUIDANCE:
                settings = dataclasses.replace(settings, **SALIENCY_SOLVER)
            alpha = solve_alpha(request.image_srgb, trimap, settings, progress)
        timings["alpha"] = time.perf_counter() - t
        if "foreground" in request.param("outputs", ("alpha", "foreground")) or \
                "premultiplied" in request.param("outputs", ()):
            progress("foreground", 0, 1, method)
            t = time.perf_counter()
            if plate is not None:  # the plate as a prior on B, then where α is high F follows from it exactly
                method = "multilevel+plate"
                foreground = foreground_with_background(request.image, alpha, plate, 1.0,
                                                        multilevel(request.image, alpha, background=plate))
            else:
                foreground = FOREGROUND_METHODS[method](request.image, alpha)
            timings["foreground"] = time.perf_counter() - t
        else:  # not requested: skip the work, return the plate (contract: a foreground of the input's shape)
            method, foreground = "none", request.image.astype(np.float32, copy=False)
        progress("done", 1, 1)
        info = {"engine": self.name, "guidance": guidance, "foreground_method": method, "quality": quality,
                "unknown_fraction": float(np.mean(trimap == 0.5)),
                "timings": {k: round(v, 4) for k, v in timings.items()}}
        warnings = [guidance_warning(trimap)]
        if guidance not in ("trimap", "plate:difference") and request.param("segmenter", "auto") == "auto":
            warnings.append(segmentation.u2netp_upgrade_hint())  # the network would have run: say why it did not
        warnings = [warning for warning in warnings if warning]
        if warnings:
            info["warnings"] = warnings
        return MatteResult(alpha=alpha, foreground=foreground, trimap=trimap, info=info)

    @staticmethod
    def guidance(request: MatteRequest) -> Tuple[np.ndarray, str]:
        """(trimap, how it was made): 'trimap' (given), 'mask+u2netp' (a rough mask tightened by U^2-Net-p's
        saliency inside it), 'mask' (given mask -> trimap: a precise roto, told by :func:`is_precise_roto` from the
        image before the network runs or by :func:`tighten_mask` after, or any mask without the network),
        'plate:difference' (a clean plate's difference matte
        -> trimap), 'auto:u2netp' (installed U^2-Net-p -> saliency -> trimap, background-coloured
        definite foreground at its edge made unknown; unless the saliency holds no definite foreground anywhere),
        'auto:segmentation' (installed in-house segmentation network -> mask -> trimap) or 'auto:grabcut'
        (classical fallback).

        ``params.segmenter``: 'auto' (the networks when installed) or 'grabcut' (no network: masks as drawn,
        GrabCut for automatic guidance)."""
        band = request.param("band_width", 0)
        segmenter = request.param("segmenter", "auto")
        if segmenter not in SEGMENTERS:
            raise ValueError(f"params.segmenter: expected one of {list(SEGMENTERS)}, got {segmenter!r}")
        if request.trimap is not None:
            return request.trimap, "trimap"
        u2netp = segmentation.u2netp_weights() if segmenter == "auto" else None
        if request.mask is not None:
            # a roto whose edge lies on the image's edges is taken as drawn without running the network (which
            # would say the same, tighten_mask); only a mask the image does not vouch for goes on to it
            if u2netp is not None and not is_precise_roto(request.mask, request.image_srgb):
                trimap = tighten_mask(request.mask, segmentation.u2netp_mask(request.image_srgb, u2netp), band)
                if trimap is not None:
                    return trimap, "mask+u2netp"
            return trimap_from_mask(request.mask, band), "mask"
        if request.background is not None and request.background.shape == request.image.shape:
            mask = difference_mask(request.image, request.background)
            if mask.any():
                return trimap_from_mask(mask, band), "plate:difference"
        if u2netp is not None:
            trimap = trimap_from_saliency(segmentation.u2netp_mask(request.image_srgb, u2netp), band)
            # a frame with no subject the network is sure of anywhere (bench/twoframe.py's bikes clip: a taxi roof
            # under street lights) gives a trimap without foreground, all band: then the guidance below decides
            if (trimap == 1.0).any():
                if not band:  # the automatic margin: the colour models may widen it (a band_width given is kept)
                    trimap = unknown_where_background_coloured(trimap, request.image_srgb)
                return trimap, "auto:u2netp"
        weights = segmentation.weights_path() if segmenter == "auto" else None
        if weights is not None:
            mask = segmentation.segmentation_mask(request.image_srgb, weights)
            return trimap_from_mask(mask, band), "auto:segmentation"
        return trimap_from_mask(grabcut_mask(request.image_srgb), band), "auto:grabcut"
