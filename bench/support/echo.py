"""The bench-only echo engine: alpha = the mask, foreground = the image, trimap = the mask, no new arrays, so a
transport benchmark times the protocol, validation and copies and nothing else. Registered only in bench server
processes (MATTEBOX_ENGINES="echo=bench.support.echo:EchoEngine", with the repository root on PYTHONPATH)."""
from __future__ import annotations

import numpy as np

from mattebox.contract import Engine, MatteRequest, MatteResult, Progress, no_progress


class EchoEngine(Engine):
    name = "echo"
    kind = "diagnostic"
    description = "bench only: returns its inputs (alpha = mask, foreground = image)"
    uses = ("mask",)

    def matte(self, request: MatteRequest, progress: Progress = no_progress) -> MatteResult:
        alpha = request.mask if request.mask is not None else np.ones(request.shape, np.float32)
        return MatteResult(alpha=alpha, foreground=request.image, trimap=alpha, info={"guidance": "echo"})
