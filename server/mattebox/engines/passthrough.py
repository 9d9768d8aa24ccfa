"""The passthrough engine: no matting, for diagnostics. Alpha is the given mask (or trimap, or 1) and the
foreground is the image, so a host or benchmark can check a pixel round trip exactly and time the transport
without an engine's cost."""
from __future__ import annotations

import numpy as np

from ..contract import Engine, MatteRequest, MatteResult, Progress, no_progress


class PassthroughEngine(Engine):
    name = "passthrough"
    kind = "diagnostic"
    description = "diagnostic: alpha = mask (or trimap, or 1), foreground = image; times the transport"
    uses = ("mask", "trimap")

    def matte(self, request: MatteRequest, progress: Progress = no_progress) -> MatteResult:
        progress("passthrough")
        shape = request.shape
        guide = request.mask if request.mask is not None else request.trimap
        alpha = guide if guide is not None else np.ones(shape, np.float32)
        trimap = request.trimap if request.trimap is not None else np.full(shape, 0.5, np.float32)
        return MatteResult(alpha=alpha, foreground=request.image, trimap=trimap, info={"guidance": "passthrough"})
