"""Colour sampling for the alpha solve: nearest known pixels and a per-pixel α prior with a confidence.

The prior follows Robust Matting (Wang & Cohen, "Optimized Color Sampling for Robust Matting", CVPR 2007, §3):
for candidate foreground/background colour pairs (F, B) the estimate α̂ is the projection of I on the segment
B→F (eq. 2), the pair kept is the one with the smallest *distance ratio*
R = ‖I − (α̂F + (1 − α̂)B)‖ / ‖F − B‖ (eq. 3), and the confidence is exp(−R²/σ²) (eq. 6). The solver then adds
the data term λ Σ_i c_i (α_i − α̂_i)² to Levin's smoothness αᵀLα (Robust Matting eq. 8).

Candidates here are cheap and vectorised instead of sampled along the boundary: for each label, the colour of the
nearest known pixel (Shared Matting's nearest-sample idea, Gastal & Oliveira 2010) and local means of the known
colours at several scales (normalised box filters), so a pixel sees near and far, sharp and averaged colours.
The confidence is also scaled by 1 − exp(−‖F − B‖²/τ²): where F and B are alike the ratio R says nothing.
"""
from __future__ import annotations

from typing import Optional, Tuple

import cv2
import numpy as np

from . import compiled

UNKNOWN = 0.5


def nearest_known(trimap: np.ndarray, label: float, at: np.ndarray):
    """(distance, index), 1-D over the pixels at flat indices ``at`` (ascending, as np.flatnonzero gives them):
    the distance to and the flat index (into the H×W frame) of each one's nearest pixel with ``label`` (None when
    the trimap has no such pixel). The look-ups are compiled passes (:func:`.compiled.gather_nearest`)."""
    source = (trimap != label).astype(np.uint8)  # zeros at pixels of this label
    zeros = source.size - np.count_nonzero(source)
    if zeros == 0:
        return None
    dist, labels = cv2.distanceTransformWithLabels(source, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    # DIST_LABEL_PIXEL numbers the zero pixels 1, 2, … in raster order, which is np.flatnonzero's order
    positions = np.empty(zeros, np.int64)
    compiled.zero_positions(source, positions)
    del source
    near_dist, near_index = np.empty(at.size, np.float32), np.empty(at.size, np.int64)
    compiled.in_blocks(at.size, "gather_nearest")(
        dist, labels, positions, at, near_dist, near_index, 0, at.size)
    return near_dist, near_index


def _gather_colours(pixels: np.ndarray, index: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out`` (3×N) = the colours of ``pixels`` (H·W×3) at flat indices ``index``
    (:func:`.compiled.gather_colours`)."""
    compiled.in_blocks(index.size, "gather_colours")(pixels, index, out, 0, index.size)
    return out


def reflected(first: int, stop: int, size: int) -> np.ndarray:
    """The frame indices of positions ``first`` … ``stop`` − 1 along an axis of ``size`` pixels, positions beyond
    the frame reflected about its end pixels as OpenCV's default border (BORDER_REFLECT_101: …, 2, 1 | 0, 1, 2, …)
    (int64)."""
    position = np.arange(first, stop)
    if size == 1:
        return np.zeros_like(position)
    period = 2 * (size - 1)
    position = np.abs(position) % period
    return np.where(position < size, position, period - position)


def _colour_candidates(image: np.ndarray, trimap: np.ndarray, label: float, at: np.ndarray,
                       scales: Tuple[int, ...], box: Tuple[int, int, int, int]) -> Optional[np.ndarray]:
    """Candidate colours of ``label`` for the N unknown pixels (flat indices ``at``, within the frame's rows
    box[0] … box[1] − 1 and columns box[2] … box[3] − 1): (1 + len(scales))×3×N float32, the nearest known pixel's
    colour first, then the mean known colour in a box of each radius in ``scales`` (OpenCV's normalised box
    filter of the label's colours and of its 0/1 weight, read at the unknown pixels; :func:`.compiled.box_candidates`
    from a summed-area table over the unknown pixels' rows and columns widened by the largest radius); None when the
    trimap has no pixel of ``label``."""
    near = nearest_known(trimap, label, at)
    if near is None:
        return None
    out = np.empty((1 + len(scales), 3, at.size), np.float32)
    _gather_colours(np.ascontiguousarray(image).reshape(-1, 3), near[1], out[0])
    del near
    reach = max(scales)
    (y0, y1, x0, x1), (h, w) = box, trimap.shape
    rows, columns = reflected(y0 - reach, y1 + reach, h), reflected(x0 - reach, x1 + reach, w)
    ring = np.empty((2 * reach + 2, columns.size + 1, 4))  # the summed-area table's rows in reach
    compiled.box_candidates(np.ascontiguousarray(image), np.ascontiguousarray(trimap), np.float32(label), rows,
                            columns, np.array(scales, np.int64), at, w, y0 - reach, x0 - reach, ring, out)
    return out


def alpha_prior(image: np.ndarray, trimap: np.ndarray, scales: Tuple[int, ...] = (4, 16, 48),
                sigma: float = 0.1, separation: float = 0.1):
    """(α̂, confidence), both H×W float32 (zero outside the unknown region), from the best of all candidate
    pairs by the distance ratio (Robust Matting eqs. 2, 3, 6; the pair search is the compiled
    :func:`.compiled.best_colour_pairs`)."""
    prior = np.zeros(trimap.shape, np.float32)
    confidence = np.zeros(trimap.shape, np.float32)
    unknown = trimap == UNKNOWN
    at = np.flatnonzero(unknown)
    if not at.size:
        return prior, confidence
    ys, xs = np.flatnonzero(unknown.any(axis=1)), np.flatnonzero(unknown.any(axis=0))
    box = (ys[0], ys[-1] + 1, xs[0], xs[-1] + 1)
    del unknown
    # each label's candidates on a thread of its own where a frame is big enough to cut its work into blocks
    both = (lambda: _colour_candidates(image, trimap, 1.0, at, scales, box),
            lambda: _colour_candidates(image, trimap, 0.0, at, scales, box))
    fgs, bgs = compiled.run_tasks(trimap.size, *both)
    if fgs is None or bgs is None:
        return prior, confidence
    colour = _gather_colours(np.ascontiguousarray(image).reshape(-1, 3), at, np.empty((3, at.size), np.float32))
    best_alpha, best_confidence = np.empty(at.size, np.float32), np.empty(at.size, np.float32)
    compiled.in_blocks(at.size, "best_colour_pairs")(
        colour, fgs, bgs, sigma, separation, best_alpha, best_confidence, 0, at.size)
    prior.reshape(-1)[at] = best_alpha
    confidence.reshape(-1)[at] = best_confidence
    return prior, confidence
