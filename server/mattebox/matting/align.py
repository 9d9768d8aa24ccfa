"""The aligned views of a frame pair (Parallax Portrait Matting §4.2–4.3, Fig. 3, and the inputs listed in §4.4).

Naming follows the paper: the **base** frame ``I1`` is the request's ``image`` (the frame to matte), the
**alternate** frame ``I0`` its ``second``. ``M^B_{0→1}`` / ``M^F_{0→1}`` warp frame 0 onto frame 1 with the
background / foreground motion (:mod:`.motion`); ``M^B_{1→0}`` warps frame 1 onto frame 0 with frame 0's background
motion. Frame 0's trimap ``Tr0`` is the caller's when given, else ``Tr1`` carried into frame 0 by the raw flow.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from .motion import DISFlow, Motion, motion_from_flows, warp


@dataclass
class AlignedPair:
    """Everything the two-frame solvers consume; every image is on the base frame's H×W grid unless noted."""
    base: np.ndarray  #: I1, H×W×3 (as given)
    background_aligned: np.ndarray  #: I^B_{0→1} = M^B_{0→1}(I0), H×W×3: background lines up with I1
    foreground_aligned: np.ndarray  #: I^F_{0→1} = M^F_{0→1}(I0), H×W×3: foreground lines up with I1
    companion: np.ndarray  #: M^F_{0→1}(M^B_{1→0}(I1)), H×W×3: I1's background moved like I^F's background
    trimap: np.ndarray  #: Tr1, H×W in {0, 0.5, 1}
    warped_trimap: np.ndarray  #: M^F_{0→1}(Tr0), H×W in {0, 0.5, 1} (nearest-neighbour warp)
    second_trimap: np.ndarray  #: Tr0 on frame 0's grid, H×W in {0, 0.5, 1}
    motion: Motion  #: frame 1 -> frame 0 flows and masks on frame 1's grid
    second_motion: Motion  #: frame 0 -> frame 1 flows and masks on frame 0's grid


def align_pair(image: np.ndarray, second: np.ndarray, trimap: np.ndarray, second_trimap: Optional[np.ndarray] = None,
               flow_model=None) -> AlignedPair:
    """Estimate both flows once and build the paper's aligned views. ``image``/``second``: H×W×3 float32 in
    [0, 1] (sRGB-encoded for the flow; the warps are applied to whatever is passed); ``trimap``: H×W of ``image``."""
    if image.shape != second.shape:
        raise ValueError(f"second: expected the image's shape {image.shape}, got {second.shape}")
    if trimap.shape != image.shape[:2]:
        raise ValueError(f"trimap: expected {image.shape[:2]}, got {trimap.shape}")
    model = flow_model or DISFlow()
    forward = model.flow(image, second)  # on frame 1, pointing into frame 0
    backward = model.flow(second, image)  # on frame 0, pointing into frame 1
    if second_trimap is None:
        second_trimap = warp(trimap.astype(np.float32), backward, cv2.INTER_NEAREST)
    motion = motion_from_flows(forward, backward, trimap)
    second_motion = motion_from_flows(backward, forward, second_trimap)
    base_on_second = warp(image, second_motion.background)  # M^B_{1→0}(I1)
    return AlignedPair(
        base=image,
        background_aligned=warp(second, motion.background),
        foreground_aligned=warp(second, motion.foreground),
        companion=warp(base_on_second, motion.foreground),
        trimap=trimap,
        warped_trimap=warp(second_trimap.astype(np.float32), motion.foreground, cv2.INTER_NEAREST),
        second_trimap=second_trimap.astype(np.float32),
        motion=motion,
        second_motion=second_motion,
    )
