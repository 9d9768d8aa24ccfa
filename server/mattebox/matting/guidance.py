"""Guidance: the trimap an alpha solver needs, from whatever the user gave.

Order (DESIGN §4.1): a given trimap is used as is; else a coarse mask becomes a trimap by erosion/dilation;
else an automatic foreground mask is made and turned into a trimap the same way.

Band width: the Parallax Portrait Matting paper builds trimaps with an unknown band of about 100 px for 1–2K
portraits (§4, "trimap generation"), i.e. about 5 % of the long side; ``band_width=0`` uses that proportion,
with a floor of 4 px for tiny images.

Automatic mask: U^2-Net-p's saliency when its weights are installed (``mattebox models pull u2netp``; see
:mod:`mattebox.matting.segmentation`), made into a trimap by :func:`trimap_from_saliency`; else GrabCut
(Rother, Kolmogorov, Blake, SIGGRAPH 2004) initialised with the frame's border as background, on a downscaled
copy, the classical fallback. With a user's rough mask the network's saliency inside it tightens the band
(:func:`tighten_mask`), unless the image alone shows the mask is a precise roto (:func:`is_precise_roto`): then
the network does not run. In the automatic mode, colour models of the definite regions then reopen background-
coloured definite foreground at the subject's edge (:func:`unknown_where_background_coloured`).
"""
from __future__ import annotations

from typing import Optional, Tuple

import cv2
import numpy as np

from ..contract import InputError
from . import compiled

BAND_FRACTION = 0.05  #: unknown band as a fraction of the long side (≈100 px at 2K, Parallax paper §4)


def auto_band_width(shape: Tuple[int, int]) -> int:
    return max(4, int(round(BAND_FRACTION * max(shape))))


def guidance_warning(trimap: np.ndarray) -> Optional[str]:
    """Why a trimap cannot give a trustworthy matte, or None: with no definite background (a band wide enough to
    swallow it) the solve has nothing to call background and alpha comes out white; with no definite foreground,
    black. Results carry it in ``info["warnings"]`` and the hosts show it."""
    if not (trimap == 0.0).any():
        return ("the guidance leaves no definite background (the unknown band covers all of it): the matte cannot "
                "separate the subject; use a narrower band_width or a tighter mask")
    if not (trimap == 1.0).any():
        return ("the guidance leaves no definite foreground (no pixel is surely the subject): the matte cannot "
                "separate the subject; use a narrower band_width or a larger mask")
    return None


def trimap_from_mask(mask: np.ndarray, band_width: float = 0) -> np.ndarray:
    """Trimap {0, 0.5, 1} from a coarse mask: the band of ``band_width`` px (total) around the mask's 0.5
    contour is unknown. ``band_width`` 0 scales with image size (:func:`auto_band_width`)."""
    band = float(band_width) or auto_band_width(mask.shape)
    radius = max(1, int(round(band / 2)))
    inside = mask >= 0.5
    trimap = np.full(mask.shape, 0.5, np.float32)
    # the two erosions (a distance transform each, ~35 ms at 1080p) at once on big frames (OpenCV releases the GIL)
    both = (lambda: _erode(inside, radius), lambda: _erode(~inside, radius))
    core, outside = compiled.run_tasks(mask.size, *both)
    trimap[core] = 1.0
    trimap[outside] = 0.0
    # a soft mask's own partial values are uncertain too
    trimap[(mask > 0.05) & (mask < 0.95)] = 0.5
    return trimap


#: U^2-Net-p saliency -> trimap (:func:`trimap_from_saliency`), chosen on alphamatting-dev by bench/auto.py's
#: sweep (docs/classical.md, "Automatic guidance"): saliency >= SALIENCY_FG is foreground and < SALIENCY_BG
#: background, each eroded by a margin: NARROW_BAND of the long side where the network's edge is crisp, WIDE_BAND
#: where it is soft (hair, fur): where more than SOFT_SHARE of a window SOFT_WINDOW wide is soft saliency.
SALIENCY_FG = 0.95
SALIENCY_BG = 0.05
NARROW_BAND = 0.0125
WIDE_BAND = 0.04
SOFT_WINDOW = 0.06
SOFT_SHARE = 0.1
#: a rough mask is tightened by the network only when the saliency inside it keeps at least this share of it
#: (else the network found another subject, and the user's mask is taken as drawn)
TIGHTEN_MIN_SHARE = 0.3
#: ... and only when its edge lies farther than this (fraction of the long side) from the saliency's, on average
#: (:func:`edge_offset`): closer, it is a precise roto, which the network's coarser edge (320 px across the frame)
#: would only blur. 1 % = 8 px at 800 px, 19 px at 1080p. Measured with the real network: on alphamatting-dev
#: (800 px, offsets capped at 20 px) the true alpha's 0.5 contour lies 0.8-3.4 px off (1.6-8.8 px when moved 2 px
#: in or out), a lasso 10-30 px off 17.6-23.4 px, 20-60 px off 20.5-25.8 px; bench/speed.py's 1080p portrait:
#: its roto 1.3 px, lassos 39-50 px (docs/classical.md).
PRECISE_EDGE = 0.01


def _erode(region: np.ndarray, radius: int) -> np.ndarray:
    """``region`` (bool) eroded by a disc of ``radius`` px: the pixels farther than ``radius`` + ½ (the digital
    disc's reach) from every pixel outside it, by an exact Euclidean distance transform (Felzenszwalb &
    Huttenlocher 2012), whose cost does not grow with the radius: cv2.erode with an elliptical kernel took 0.37 s
    for a 1080p mask's 48 px band, this 0.05 s. It erodes a little more than that kernel did (a 1080p mask at
    r = 2…48: 0.2 % fewer pixels kept), never less, so bands are never narrower. The frame's outside counts as
    inside the region, so a subject (or a background) running off the frame is not eroded from the frame edge."""
    distance = cv2.distanceTransform(region.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return distance > radius + 0.5


def _threshold_trimap(saliency: np.ndarray, band: float) -> np.ndarray:
    side = max(saliency.shape)
    radius = max(1, round(band * side))
    trimap = np.full(saliency.shape, 0.5, np.float32)
    trimap[_erode(saliency >= SALIENCY_FG, radius)] = 1.0
    trimap[_erode(saliency < SALIENCY_BG, radius)] = 0.0
    return trimap


def trimap_from_saliency(saliency: np.ndarray, band_width: float = 0) -> np.ndarray:
    """Trimap {0, 0.5, 1} from a saliency map in [0, 1] (U^2-Net-p's).

    Confident foreground (>= SALIENCY_FG) and background (< SALIENCY_BG) are shrunk by a margin, so the unknown
    band is the network's soft zone plus that margin on each side. The margin adapts: a crisp edge matches the
    subject closely and a narrow band (NARROW_BAND of the long side) leaves the solver less to get wrong, while
    hair and fur, which the network marks with a wide soft zone, need room (WIDE_BAND). Where more than
    SOFT_SHARE of a SOFT_WINDOW-wide window is soft saliency the wide margin applies. ``band_width`` > 0
    instead makes a band of that many pixels around the 0.5 contour, as for a user's mask
    (:func:`trimap_from_mask`)."""
    if band_width:
        return trimap_from_mask(saliency, band_width)
    soft = ((saliency >= SALIENCY_BG) & (saliency < SALIENCY_FG)).astype(np.float32)
    window = max(3, round(SOFT_WINDOW * max(saliency.shape)) | 1)
    hairy = cv2.blur(soft, (window, window)) > SOFT_SHARE
    return np.where(hairy, _threshold_trimap(saliency, WIDE_BAND), _threshold_trimap(saliency, NARROW_BAND))


#: :func:`unknown_where_background_coloured`: the ring of definite foreground (fraction of the long side, = WIDE_BAND)
#: whose background-coloured pixels become unknown, and the bins per channel of its colour histograms
COLOUR_RING = WIDE_BAND
COLOUR_BINS = 16


def _colour_histogram(codes: np.ndarray, bins: int) -> np.ndarray:
    """Normalised ``bins``³ RGB histogram of histogram codes, smoothed by a [1, 2, 1] / 4 kernel along each axis
    (a bin edge splits no colour cluster)."""
    hist = np.bincount(codes, minlength=bins ** 3).astype(np.float64).reshape(bins, bins, bins)
    hist /= max(codes.size, 1)
    for axis in range(3):
        padded = np.pad(hist, [(1, 1) if a == axis else (0, 0) for a in range(3)])
        below, above = np.take(padded, range(0, bins), axis), np.take(padded, range(2, bins + 2), axis)
        hist = 0.25 * below + 0.5 * hist + 0.25 * above
    return hist.ravel()


def unknown_where_background_coloured(trimap: np.ndarray, image_srgb: np.ndarray) -> np.ndarray:
    """The trimap with definite-foreground pixels near its edge made unknown where their colour is more likely
    background than foreground.

    A saliency network is confident over hair and fur that lets the background through (strands over sky): its
    definite foreground then pins alpha to 1 on pixels that are partly or wholly background. A colour model of
    each side (Ruzon & Tomasi 2000; GrabCut's, Rother et al. 2004, as histograms): normalised RGB histograms
    (COLOUR_BINS³) of the definite foreground and background; a definite-foreground pixel within COLOUR_RING of
    the long side from the foreground's edge whose colour has the higher background likelihood (the Bayes
    decision with equal priors) becomes unknown, and the solver decides its alpha. Deeper inside the subject a
    background-like colour (dark clothes on a dark room) stays foreground."""
    foreground, background = trimap == 1.0, trimap == 0.0
    if not foreground.any() or not background.any():
        return trimap
    bins = COLOUR_BINS
    q = (np.clip(image_srgb[..., :3], 0, 1) * (bins - 1e-3)).astype(np.int64)
    codes = (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]
    fg_hist, bg_hist = _colour_histogram(codes[foreground], bins), _colour_histogram(codes[background], bins)
    ring = foreground & ~_erode(foreground, max(1, round(COLOUR_RING * max(trimap.shape))))
    refined = trimap.copy()
    refined[ring & (bg_hist[codes] > fg_hist[codes])] = 0.5
    return refined


def edge_offset(drawn: np.ndarray, found: np.ndarray, reach: float) -> float:
    """Mean distance in px from the edge of region ``drawn`` to the edge of region ``found`` (bool H x W), each
    distance capped at ``reach``: the area where the two regions disagree within ``reach`` px of ``drawn``'s edge,
    over that edge's length (pixels of ``drawn`` next to one outside it). Between two roughly parallel curves
    area / length is their distance; a thin strand one region has and the other lacks adds its small area only.
    The frame's outside is no edge (as in :func:`_erode`). inf when ``drawn`` has no edge."""
    inside = cv2.distanceTransform(drawn.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    outside = cv2.distanceTransform((~drawn).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    length = np.count_nonzero(inside == 1)
    if not length:
        return float("inf")
    near = np.maximum(inside, outside) <= reach + 0.5  # one of the two is 0 at every pixel
    return np.count_nonzero(near & (drawn != found)) / length


#: :func:`edge_on_image_edge`: a mask whose edge lies on the image's edges is a precise roto, told without the
#: network. Measured on a copy at most ROTO_SIDE px on the long side; the gradient profile across the edge reaches
#: ROTO_REACH px either side, and offsets of ROTO_INNER px and more are off the edge; the frame is cut into
#: ROTO_CELLS x ROTO_CELLS cells, each with at least ROTO_MIN_EDGE edge pixels judged on its own; a cell is on an
#: image edge when the gradient at the edge is more than ROTO_CONTRAST x its largest off the edge, and the mask is a
#: roto when such cells hold at least ROTO_SHARE of its edge. Chosen on 29 frames (alphamatting-dev GT01-08,
#: bench/speed.py's 1080p portrait, 20 synthetic pairs at 960x540 to 3840x2160): 580 loose lassos and grown masks
#: score at most 0.025, the true rotos median 0.70 (18 of 29 >= ROTO_SHARE, the 1080p portrait 1.00), no mask the
#: network would tighten above 0.29 (docs/classical.md, "Guidance").
ROTO_SIDE = 1000
ROTO_REACH = 16
ROTO_INNER = 3
ROTO_CELLS = 8
ROTO_MIN_EDGE = 10
ROTO_CONTRAST = 1.5
ROTO_SHARE = 0.5


def edge_on_image_edge(mask: np.ndarray, image_srgb: np.ndarray) -> float:
    """Share of the edge of ``mask`` >= 0.5 (by length) that lies on an edge of the image: 1 for a precise roto,
    near 0 for a loose lasso, whose edge lies over background with the subject's edge well inside it.

    The profile of the image gradient across the mask's edge (the gradient's component along the edge's normal,
    over the three sRGB channels, averaged on the iso-distance curves of the signed distance d to the edge,
    |d| <= ROTO_REACH): a roto's edge sits on the subject's, so the profile peaks at d = ±1 (the pixels either
    side of it); a lasso's lies over background, flat there, with the subject's edge a peak at d of 20-60 px
    inside. Judged per cell of a ROTO_CELLS² grid, so a partial roto whose cut runs across the subject, or a
    lasso that follows the subject along one side, is not carried by the rest of its edge. The frame is first
    shrunk by the smallest integer factor that brings its long side to ROTO_SIDE or under; the frame's outside
    is no edge (as in :func:`edge_offset`). 0 when the mask has no edge."""
    h, w = mask.shape
    factor = -(-max(h, w) // ROTO_SIDE)  # an integer factor: OpenCV's fast box filter (1080p: 2, 960x540)
    image = np.ascontiguousarray(image_srgb[..., :3], np.float32)
    drawn = mask.astype(np.float32, copy=False)
    if factor > 1:
        size = (max(1, round(w / factor)), max(1, round(h / factor)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        drawn = cv2.resize(drawn, size, interpolation=cv2.INTER_AREA)
    drawn = (drawn >= 0.5).astype(np.uint8)
    h, w = drawn.shape
    d = cv2.distanceTransform(drawn, cv2.DIST_L2, cv2.DIST_MASK_PRECISE) - \
        cv2.distanceTransform(1 - drawn, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    band = np.flatnonzero(np.abs(d) <= ROTO_REACH + 0.5)  # flat indices: np.take gathers them fast
    if not band.size:
        return 0.0
    normal_x = cv2.Sobel(d, cv2.CV_32F, 1, 0, ksize=3).ravel().take(band)
    normal_y = cv2.Sobel(d, cv2.CV_32F, 0, 1, ksize=3).ravel().take(band)
    length = np.hypot(normal_x, normal_y) + 1e-6
    unit_x, unit_y = (normal_x / length)[:, None], (normal_y / length)[:, None]
    across = cv2.Sobel(image, cv2.CV_32F, 1, 0, ksize=3).reshape(-1, 3).take(band, axis=0) * unit_x
    across += cv2.Sobel(image, cv2.CV_32F, 0, 1, ksize=3).reshape(-1, 3).take(band, axis=0) * unit_y
    gradient = np.sqrt(np.einsum("ij,ij->i", across, across))
    bins = 2 * ROTO_REACH + 1
    cells = ROTO_CELLS * ROTO_CELLS
    ys, xs = np.divmod(band, w)
    index = ((ys * ROTO_CELLS // h) * ROTO_CELLS + xs * ROTO_CELLS // w) * bins + \
        np.rint(d.ravel().take(band)).astype(np.int64) + ROTO_REACH
    count = np.bincount(index, minlength=cells * bins).reshape(cells, bins)
    profile = np.bincount(index, gradient, cells * bins).reshape(cells, bins) / np.maximum(count, 1)
    beside = [ROTO_REACH - 1, ROTO_REACH + 1]  # d = -1, +1: the pixels either side of the edge
    at_edge = profile[:, beside].mean(axis=1)
    off_edge = np.concatenate([profile[:, :ROTO_REACH - ROTO_INNER + 1], profile[:, ROTO_REACH + ROTO_INNER:]],
                              axis=1).max(axis=1)
    edge_pixels = count[:, beside].sum(axis=1)
    judged = edge_pixels >= ROTO_MIN_EDGE
    if not judged.any():
        return 0.0
    on_edge = judged & (at_edge > ROTO_CONTRAST * off_edge)  # strictly: a flat image has no edge
    return float(edge_pixels[on_edge].sum() / edge_pixels[judged].sum())


def is_precise_roto(mask: np.ndarray, image_srgb: np.ndarray) -> bool:
    """Whether ``mask`` is a precise roto by the image alone (:func:`edge_on_image_edge` >= ROTO_SHARE), so the
    network need not run to say so (:func:`tighten_mask` would take it as drawn). Conservative: False sends a
    mask on to the network, which still takes a roto as drawn."""
    return edge_on_image_edge(mask, image_srgb) >= ROTO_SHARE


def tighten_mask(mask: np.ndarray, saliency: np.ndarray, band_width: float = 0):
    """Trimap from a user's rough mask and the network's saliency, or None to take the mask as drawn.

    A loose lasso drawn 20-60 px outside the subject puts sky inside the mask's sure-foreground core (a halo in
    the matte). Inside the mask (grown by half the automatic band, so a lasso that cuts a little into the subject
    still reaches its edge), the saliency is the better edge: the trimap is :func:`trimap_from_saliency` of the
    saliency there, and everything outside the grown mask is background. The mask is taken as drawn (None)
    when the saliency there keeps under TIGHTEN_MIN_SHARE of its area (the network has found something else) or
    when its edge lies on average within PRECISE_EDGE × the frame's long side of the saliency's 0.5 contour
    (:func:`edge_offset`, measured up to the growth radius out): a precise roto, whose edge is better than the
    network's. The engine asks :func:`is_precise_roto` first, which tells most rotos without the saliency."""
    drawn = mask >= 0.5
    if not drawn.any():
        return None
    radius = max(1, auto_band_width(mask.shape) // 2)
    grown = ~_erode(~drawn, radius)  # the mask dilated by the disc
    inside = np.where(grown, saliency, 0.0).astype(np.float32)
    if (inside >= 0.5).sum() < TIGHTEN_MIN_SHARE * drawn.sum():
        return None
    if edge_offset(drawn, saliency >= 0.5, radius) <= PRECISE_EDGE * max(mask.shape):
        return None
    trimap = trimap_from_saliency(inside, band_width)
    trimap[~grown] = 0.0
    return trimap


def border_labels(image8: np.ndarray, border: float, bins: int = 16, density: float = 0.002,
                  min_background: float = 0.2) -> np.ndarray:
    """GrabCut's initial labels (H×W uint8): a frame of ``border`` (fraction of each side) is background except
    where the subject runs off the frame, the rest is "probably foreground".

    A subject cut by the frame edge (a portrait's shoulders at the bottom, a cat filling the frame) puts its own
    colours on that side's strip; marking them definite background makes GrabCut cut the subject off. So a strip
    pixel is definite background only when its colour (``bins``³ RGB histogram, lightly smoothed) is common —
    at least ``density`` of the pixels — on the *other three* sides' strips; otherwise it starts as "probably
    foreground" and GrabCut decides; if under ``min_background`` of the frame qualifies, the whole frame is
    background as before. (On alphamatting-dev, where every subject touches the bottom edge, the mask's
    mean IoU with the ground truth goes from 0.75 to 0.85.)"""
    h, w = image8.shape[:2]
    bx, by = max(1, int(border * w)), max(1, int(border * h))
    labels = np.full((h, w), cv2.GC_PR_FGD, np.uint8)
    q = (image8 // (256 // bins)).astype(np.int64)
    code = (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]
    strips = [(slice(0, by), slice(None)), (slice(h - by, h), slice(None)),
              (slice(None), slice(0, bx)), (slice(None), slice(w - bx, w))]
    frame = np.zeros((h, w), bool)
    for strip in strips:
        frame[strip] = True
    for i, strip in enumerate(strips):
        others = np.concatenate([code[s].ravel() for j, s in enumerate(strips) if j != i])
        hist = np.bincount(others, minlength=bins ** 3).astype(np.float32) / max(others.size, 1)
        hist = cv2.GaussianBlur(hist.reshape(bins, bins * bins), (3, 3), 0).ravel()  # tolerate bin edges
        common = hist[code[strip]] >= density
        labels[strip] = np.where(common, cv2.GC_BGD, labels[strip])
    if (labels[frame] == cv2.GC_BGD).mean() < min_background:  # no side agrees with another: plain frame
        labels[frame] = cv2.GC_BGD
    return labels


def grabcut_mask(image_srgb: np.ndarray, max_side: int = 400, border: float = 0.04, iterations: int = 5) -> np.ndarray:
    """Automatic foreground mask by GrabCut (Rother, Kolmogorov, Blake, SIGGRAPH 2004), initialised by
    :func:`border_labels`. Runs on a copy scaled to ``max_side``; returns H×W float32 {0, 1}."""
    h, w = image_srgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    small = cv2.resize(image_srgb, (max(1, int(w * scale)), max(1, int(h * scale))), interpolation=cv2.INTER_AREA)
    small8 = (np.clip(small, 0, 1) * 255 + 0.5).astype(np.uint8)
    gc_mask = border_labels(small8, border)
    background = np.isin(gc_mask, (cv2.GC_BGD, cv2.GC_PR_BGD))
    if background.all() or not background.any():
        # GrabCut needs pixels of both kinds to seed its colour models: a frame of 1 or 2 px a side is all border
        raise InputError(f"the image is {w}×{h} px: too small to find the subject automatically (its border leaves "
                         f"no inside)", field="buffers", hint="send a mask or a trimap with it")
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)  # GrabCut seeds its colour models with k-means: the same frame must give the same mask
    cv2.grabCut(small8, gc_mask, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    fg = np.isin(gc_mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)
    # keep the largest connected component: GrabCut leaves specks
    count, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    if count > 1:
        largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        fg = (labels == largest).astype(np.uint8)
    return cv2.resize(fg.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
