"""The classical engine: guidance -> closed-form alpha -> foreground decontamination. No weights, CPU only."""
from __future__ import annotations

import time

import numpy as np

from ...contract import Engine, MatteRequest, MatteResult, Progress, no_progress
from .alpha import PRESETS, solve_alpha
from .foreground import blur_fusion, multilevel
from .guidance import grabcut_mask, trimap_from_mask

#: foreground_method 'auto' per quality preset: blur-fusion is ~10x faster, multilevel more accurate
AUTO_FOREGROUND = {"fast": "blur_fusion", "balanced": "multilevel", "best": "multilevel"}


class ClassicalEngine(Engine):
    name = "classical"
    kind = "classical"
    description = ("closed-form matting (Levin et al.) solved matrix-free over the unknown band, "
                   "multilevel / blur-fusion foreground; no weights, CPU")
    uses = ("trimap", "mask")

    def matte(self, request: MatteRequest, progress: Progress = no_progress) -> MatteResult:
        timings = {}
        started = time.perf_counter()
        progress("guidance")
        trimap, guidance = self.guidance(request)
        timings["guidance"] = time.perf_counter() - started
        quality = request.param("quality", "balanced")
        progress("alpha", 0, 1)
        t = time.perf_counter()
        alpha = solve_alpha(request.image_srgb, trimap, PRESETS[quality], progress)
        timings["alpha"] = time.perf_counter() - t
        method = request.param("foreground_method", "auto")
        if method == "auto":
            method = AUTO_FOREGROUND[quality]
        progress("foreground", 0, 1, method)
        t = time.perf_counter()
        estimate = multilevel if method == "multilevel" else blur_fusion
        foreground = estimate(request.image, alpha)
        timings["foreground"] = time.perf_counter() - t
        info = {"guidance": guidance, "foreground_method": method, "quality": quality,
                "unknown_fraction": float(np.mean(trimap == 0.5)),
                "timings": {k: round(v, 4) for k, v in timings.items()}}
        return MatteResult(alpha=alpha, foreground=foreground, trimap=trimap, info=info)

    @staticmethod
    def guidance(request: MatteRequest):
        """(trimap, how it was made): given trimap, else mask -> trimap, else an automatic mask -> trimap."""
        band = request.param("band_width", 0)
        if request.trimap is not None:
            return request.trimap, "trimap"
        if request.mask is not None:
            return trimap_from_mask(request.mask, band), "mask"
        return trimap_from_mask(grabcut_mask(request.image_srgb), band), "auto:grabcut"
