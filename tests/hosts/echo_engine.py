"""A server engine that echoes its inputs, so host tests can check exactly which pixels a plug-in sent
(like the diagnostic `passthrough` engine, but it also returns the second frame or the clean plate, to test their
plumbing).

alpha = the trimap if one was sent, else the mask, else zeros; foreground = the second frame if one was sent,
else the clean plate (``background``) if one was sent, else the image. Loaded into a test server with
``MATTEBOX_ENGINES=test-echo=tests.hosts.echo_engine:EchoEngine``.
"""
from __future__ import annotations

import numpy as np

from mattebox.contract import Engine, MatteResult


class EchoEngine(Engine):
    name = "test-echo"
    description = "test engine: alpha = the guide, foreground = the second frame (or the clean plate, or the image)"
    uses = ("second", "background", "mask", "trimap")

    def matte(self, request, progress):
        progress("echo", 1, 1)
        guide = request.trimap if request.trimap is not None else request.mask
        alpha = np.zeros(request.shape, np.float32) if guide is None else guide.astype(np.float32)
        colour = next(c for c in (request.second, request.background, request.image) if c is not None)
        guidance = "trimap" if request.trimap is not None else ("mask" if request.mask is not None else "none")
        return MatteResult(alpha=alpha.copy(), foreground=colour[..., :3].astype(np.float32).copy(),
                           trimap=np.full(request.shape, 0.5, np.float32),
                           info={"guidance": guidance, "second": request.second is not None,
                                 "background": request.background is not None})
