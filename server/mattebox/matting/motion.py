"""Motion between the two frames (Parallax Portrait Matting §4.2, Fig. 2).

Conventions: a *flow* is an H×W×2 float32 field ``d`` (x, y order, pixels) defined on a **target** frame such that
``target(p) ≈ source(p + d(p))``; warping the source onto the target is then ``cv2.remap(source, p + d)``
(:func:`warp`). The paper's ``M_{0→1}`` (warp frame 0 onto the base frame 1) is a flow with target = base image,
source = second frame.

* :class:`DISFlow` — OpenCV DIS optical flow (Kroeger et al., ECCV 2016), preset MEDIUM, on CPU. Anything with a
  ``flow(target, source)`` method can replace it (a learned model such as GMFlow, as in the paper).
* :func:`consistency` / :func:`inconsistent` — forward-backward check: where ``d_ts(p) + d_st(p + d_ts(p)) ≠ 0``
  the pixel is occluded in the source (or the flow is wrong); the tolerance grows with the motion (Sundaram, Brox
  and Keutzer, "Dense point trajectories by GPU-accelerated large displacement optical flow", ECCV 2010, eq. 5).
* :func:`separate_flows` — foreground/background flow: the flow inside the trimap's definite foreground
  (background) region, filled everywhere else by its nearest neighbour (paper: "we replace the estimated motion in
  uncertain regions with the values of its nearest neighbor inside the certain region").
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

import cv2
import numpy as np

#: smallest height and width DIS flow is run on: OpenCV 4.14's DIS raises under 8 px and crashes the process
#: (SIGSEGV) on frames under 16 rows that are 3-16x as wide (e.g. 12×48), measured over 1-40 px by 4-16384 px
MIN_FLOW_SIDE = 16

#: Sundaram et al. 2010 eq. 5: inconsistent where |w + ŵ|² > RELATIVE·(|w|² + |ŵ|²) + ABSOLUTE_PX2
CONSISTENCY_RELATIVE = 0.01
CONSISTENCY_ABSOLUTE_PX2 = 0.5


class DISFlow:
    """Dense inverse search optical flow on 8-bit grey images; ``flow(target, source) -> H×W×2`` float32."""

    def __init__(self, preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM):
        self.preset = preset

    @staticmethod
    def _grey(image: np.ndarray) -> np.ndarray:
        """H×W×3 float in [0, 1] (any encoding; sRGB preferred) -> H×W uint8."""
        grey = image if image.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(image, np.float32), cv2.COLOR_RGB2GRAY)
        return np.clip(grey * 255.0 + 0.5, 0, 255).astype(np.uint8)

    def flow(self, target: np.ndarray, source: np.ndarray) -> np.ndarray:
        if target.shape[:2] != source.shape[:2]:
            raise ValueError(f"flow: target {target.shape[:2]} and source {source.shape[:2]} differ in size")
        if min(target.shape[:2]) < MIN_FLOW_SIDE:
            height, width = target.shape[:2]
            raise ValueError(f"flow: frames of {width}×{height} px are too small for optical flow (at least "
                             f"{MIN_FLOW_SIDE} px a side)")
        dis = cv2.DISOpticalFlow_create(self.preset)  # not thread-safe: one per call
        return dis.calc(self._grey(target), self._grey(source), None)  # H×W×2 float32


@lru_cache(maxsize=4)
def _pixel_grid(h: int, w: int) -> np.ndarray:
    """H×W×2 float32 pixel coordinates (x, y), read-only: the identity map every warp of that size adds its flow to
    (built once per frame size instead of once per warp)."""
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    grid = np.stack([xs, ys], axis=-1)
    grid.flags.writeable = False
    return grid


def sample_grid(flow: np.ndarray, box=None, size=None) -> np.ndarray:
    """H×W×2 float32 absolute source coordinates p + d(p) for cv2.remap (one two-channel map). ``box`` (a pair of
    slices, with the frame's ``size`` (H, W)): ``flow`` covers only that box of the target frame."""
    grid = _pixel_grid(*flow.shape[:2]) if box is None else _pixel_grid(*size)[box]
    return grid + np.asarray(flow, np.float32)


def warp(source: np.ndarray, flow: np.ndarray, interpolation: int = cv2.INTER_LINEAR, box=None) -> np.ndarray:
    """Backward-warp ``source`` onto the flow's target frame (border pixels replicated); ``interpolation`` an
    OpenCV flag (INTER_NEAREST for labels, INTER_CUBIC where bilinear's blur matters). ``box``: ``flow`` covers
    only this box (a pair of slices) of a target frame the size of ``source``, and so does the result: the same
    values as the whole warp's there, for the cost of the box."""
    return cv2.remap(np.ascontiguousarray(source), sample_grid(flow, box, source.shape[:2]), None, interpolation,
                     borderMode=cv2.BORDER_REPLICATE)


def consistency(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """H×W float32 forward-backward residual |d_ts(p) + d_st(p + d_ts(p))| in pixels, on the target frame."""
    return np.linalg.norm(forward + warp(backward, forward), axis=-1)


def inconsistent(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """H×W bool on the target frame: the forward-backward check of Sundaram et al. 2010 (eq. 5),
    |w + ŵ|² > 0.01(|w|² + |ŵ|²) + 0.5 with w = d_ts(p) and ŵ = d_st(p + w): a fixed pixel tolerance would flag
    most of a fast-moving frame (39% of a real stereo pair at 1 px), this one scales with the motion."""
    return _inconsistent(forward, warp(backward, forward))


def _inconsistent(forward: np.ndarray, there: np.ndarray) -> np.ndarray:
    """:func:`inconsistent` given ``there`` = ŵ, the backward flow already sampled at p + w."""
    residual2 = np.sum((forward + there) ** 2, axis=-1)
    scale2 = np.sum(forward ** 2, axis=-1) + np.sum(there ** 2, axis=-1)
    return residual2 > CONSISTENCY_RELATIVE * scale2 + CONSISTENCY_ABSOLUTE_PX2


def fill_nearest(field: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Replace ``field`` outside ``valid`` (H×W bool) by its value at the nearest valid pixel (L2 distance,
    cv2.distanceTransformWithLabels). Returns a copy; all-invalid input is returned unchanged."""
    if valid.all() or not valid.any():
        return field.copy()
    _, labels = cv2.distanceTransformWithLabels((~valid).astype(np.uint8), cv2.DIST_L2, 5,
                                                labelType=cv2.DIST_LABEL_PIXEL)
    ys, xs = np.nonzero(valid)
    lookup = np.zeros((labels.max() + 1, 2), np.int64)  # label -> coordinates of that valid pixel
    lookup[labels[ys, xs]] = np.stack([ys, xs], axis=1)
    src = lookup[labels]  # H×W×2
    return field[src[..., 0], src[..., 1]]


@dataclass
class Motion:
    """Flows on the target frame (all H×W×2 float32) and the masks derived from them (H×W bool)."""
    raw: np.ndarray  #: optical flow target -> source
    foreground: np.ndarray  #: M^F: flow of the definite foreground, nearest-filled elsewhere
    background: np.ndarray  #: M^B: flow of the definite background, nearest-filled elsewhere
    occluded: np.ndarray  #: target pixels not visible in the source (forward-backward check fails)
    disoccluded: np.ndarray  #: source pixels not visible in the target, mapped onto the source frame's grid
    residual: np.ndarray  #: H×W float32 forward-backward residual in px


def separate_flows(flow: np.ndarray, trimap: np.ndarray, reliable: Optional[np.ndarray] = None):
    """(foreground flow, background flow): the flow of each definite trimap region (optionally only its
    ``reliable`` pixels, when enough remain) filled into the rest by nearest-neighbour inpainting."""
    out = []
    for label in (1.0, 0.0):
        region = trimap == label
        if reliable is not None and (region & reliable).sum() >= max(16, 0.2 * region.sum()):
            region = region & reliable
        out.append(fill_nearest(flow, region) if region.any() else flow.copy())
    return out[0], out[1]


def motion_from_flows(forward: np.ndarray, backward: np.ndarray, trimap: np.ndarray) -> Motion:
    """:class:`Motion` on the target frame from both raw flows (target -> source and source -> target)."""
    there = warp(backward, forward)  # ŵ: sampled once for the residual and the occlusion test
    residual = np.linalg.norm(forward + there, axis=-1)
    occluded = _inconsistent(forward, there)
    disoccluded = inconsistent(backward, forward)
    fg, bg = separate_flows(forward, trimap, ~occluded)
    return Motion(raw=forward, foreground=fg, background=bg, occluded=occluded, disoccluded=disoccluded,
                  residual=residual)

