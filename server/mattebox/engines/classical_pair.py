"""Engine "classical-pair": the classical engine plus a second frame (mattebox.matting.twoframe).

Without ``second``, or with a clean plate (a better known background than parallax reveals), it is exactly the
classical engine. Result info adds ``pair_usable`` and
``revealed_coverage`` (fraction of the unknown band where the second frame reveals background the first hides).
"""
from __future__ import annotations

import time

from ..contract import MatteRequest, MatteResult, Progress, no_progress
from ..matting.alpha import PRESETS
from ..matting.motion import MIN_FLOW_SIDE
from ..matting.twoframe import solve_pair
from .classical import ClassicalEngine


class ClassicalPairEngine(ClassicalEngine):
    name = "classical-pair"
    description = ("two-frame classical matting: background revealed by parallax in a second frame becomes a known "
                   "background prior in the closed-form solve (Parallax Portrait Matting alignment); single-frame "
                   "fallback per pixel")
    uses = ("second", "trimap", "mask", "background")

    def matte(self, request: MatteRequest, progress: Progress = no_progress) -> MatteResult:
        height, width = request.shape
        why = None
        if request.second is None:
            why = "no second frame given"
        elif request.background is not None:
            why = ("a clean plate was given: it shows the background everywhere, a second frame only where "
                   "parallax reveals it")
        elif min(height, width) < MIN_FLOW_SIDE:
            why = f"the frames are {width}×{height} px, too small for optical flow (at least {MIN_FLOW_SIDE} px a side)"
        if why is not None:
            result = super().matte(request, progress)
            result.info.update(pair_usable=False, revealed_coverage=0.0, pair_why=why)
            return result
        if request.second.shape != request.image.shape:
            raise ValueError(f"second: expected the image's shape {request.image.shape}, got {request.second.shape}")
        started = time.perf_counter()
        progress("guidance")
        trimap, guidance = self.guidance(request)
        quality = request.param("quality", "balanced")
        alpha, foreground, pair_info = solve_pair(request.image, request.second, trimap, PRESETS[quality],
                                                  progress=progress)
        info = {"guidance": guidance, "quality": quality, "unknown_fraction": float((trimap == 0.5).mean()),
                "timings": {"total": round(time.perf_counter() - started, 4)}, **pair_info}
        return MatteResult(alpha=alpha, foreground=foreground, trimap=trimap, info=info)
