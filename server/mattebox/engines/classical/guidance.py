"""Guidance: the trimap an alpha solver needs, from whatever the user gave.

Order (DESIGN §4.1): a given trimap is used as is; else a coarse mask becomes a trimap by erosion/dilation;
else an automatic foreground mask is made and turned into a trimap the same way.

Band width: the Parallax Portrait Matting paper builds trimaps with an unknown band of about 100 px for 1–2K
portraits (§4, "trimap generation"), i.e. about 5 % of the long side; ``band_width=0`` uses that proportion,
with a floor of 4 px for tiny images.

Automatic mask: GrabCut (Rother, Kolmogorov, Blake, SIGGRAPH 2004) initialised with the frame's border as
background, on a downscaled copy, is the classical fallback. A learned segmentation model is used instead when
its weights are installed (see :mod:`mattebox.engines.classical.segmentation`).
"""
from __future__ import annotations

from typing import Tuple

import cv2
import numpy as np

BAND_FRACTION = 0.05  #: unknown band as a fraction of the long side (≈100 px at 2K, Parallax paper §4)


def auto_band_width(shape: Tuple[int, int]) -> int:
    return max(4, int(round(BAND_FRACTION * max(shape))))


def trimap_from_mask(mask: np.ndarray, band_width: float = 0) -> np.ndarray:
    """Trimap {0, 0.5, 1} from a coarse mask: the band of ``band_width`` px (total) around the mask's 0.5
    contour is unknown. ``band_width`` 0 scales with image size (:func:`auto_band_width`)."""
    band = float(band_width) or auto_band_width(mask.shape)
    radius = max(1, int(round(band / 2)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    binary = (mask >= 0.5).astype(np.uint8)
    sure_fg = cv2.erode(binary, kernel)
    maybe_fg = cv2.dilate(binary, kernel)
    trimap = np.full(mask.shape, 0.5, np.float32)
    trimap[sure_fg > 0] = 1.0
    trimap[maybe_fg == 0] = 0.0
    # a soft mask's own partial values are uncertain too
    trimap[(mask > 0.05) & (mask < 0.95)] = 0.5
    return trimap


def grabcut_mask(image_srgb: np.ndarray, max_side: int = 400, border: float = 0.04, iterations: int = 5) -> np.ndarray:
    """Automatic foreground mask by GrabCut: a frame of ``border`` (fraction of each side) is background, the
    rest is 'probably foreground'. Runs on a copy scaled to ``max_side``; returns H×W float32 {0, 1}."""
    h, w = image_srgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    small = cv2.resize(image_srgb, (max(1, int(w * scale)), max(1, int(h * scale))), interpolation=cv2.INTER_AREA)
    small8 = (np.clip(small, 0, 1) * 255 + 0.5).astype(np.uint8)
    sh, sw = small8.shape[:2]
    bx, by = max(1, int(border * sw)), max(1, int(border * sh))
    gc_mask = np.full((sh, sw), cv2.GC_PR_FGD, np.uint8)
    gc_mask[:by], gc_mask[-by:], gc_mask[:, :bx], gc_mask[:, -bx:] = (cv2.GC_BGD,) * 4
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(small8, gc_mask, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    fg = np.isin(gc_mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)
    # keep the largest connected component: GrabCut leaves specks
    count, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    if count > 1:
        largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        fg = (labels == largest).astype(np.uint8)
    return cv2.resize(fg.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
