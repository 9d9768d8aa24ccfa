"""Key-frame guidance carried through a shot: a mask or trimap on some frames becomes a trimap on every frame.

For frame t, the nearest key before it (``kb``) and after it (``ka``) are each brought onto frame t with the
shot's composed optical flow (:mod:`.flow`), as a soft field S (a mask, or a trimap's 0 / 0.5 / 1) and a
confidence C (forward-backward consistency along the chain). Where both exist they are blended with weights
``C_b·(ka − t)`` and ``C_a·(t − kb)``: the nearer key counts more, and a key whose view is occluded counts less.

The unknown band is then re-derived on frame t, not carried: from a **mask** key, the band of the key's width
around the carried mask's 0.5 contour (:func:`~mattebox.matting.guidance.trimap_from_mask`); from a
**trimap** key, the carried definite regions. Either band widens on each side by ``growth_fraction`` of how far
the nearest key's edge travelled to reach frame t, rounded to whole pixels: flow error grows with the motion
carried, not with the number of frames (DIS under-estimates a small subject's motion at its rim by 10–25 %); a
still subject keeps the key's band however far the key is (rounded up, the flow's sub-pixel noise alone widened it
by a pixel each side: keys SAD 1.15x → 1.08x the roto's on the bench's shots, and the solves were slower). Either
way, pixels where the carried field is ambiguous or the confidence is below ``min_confidence`` become unknown. A key
frame itself keeps its guidance as given.

Everything here is a pure function of the frames between the keys and the keys, so any chunk of a shot derives the
same trimap for the same frame.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import cv2
import numpy as np

from ..matting.guidance import auto_band_width, trimap_from_mask
from ..matting.motion import warp
from .flow import ShotFlows, layer_flow

MASK, TRIMAP = "mask", "trimap"


@dataclass(frozen=True)
class Key:
    """Guidance given on one frame: ``kind`` 'mask' (H×W in [0, 1]) or 'trimap' (H×W in {0, 0.5, 1})."""
    kind: str
    value: np.ndarray
    band_width: float = 0  #: a mask key's unknown band (px, 0: scaled to the image)

    def __post_init__(self):
        if self.kind not in (MASK, TRIMAP):
            raise ValueError(f"key kind: expected 'mask' or 'trimap', got {self.kind!r}")


@dataclass
class PropagationSettings:
    min_confidence: float = 0.2  #: below this, a carried pixel is unknown
    ambiguous: float = 0.15  #: a carried field within this of 0.5 … 1−this … is unknown (soft, mis-tracked)
    #: the band widens on each side by this fraction of the distance (px) the key's edge travelled (the 90th
    #: percentile over the carried edge), rounded: 1/3 keeps a small disc moving 1.5 px a frame inside its band 6
    #: frames on
    growth_fraction: float = 1.0 / 3.0
    max_growth_px: int = 12
    #: keys are carried with optical flow on frames resized by this: full resolution, as flow errors add up along
    #: the chain (half resolution: SAD 1.19x instead of 1.14x the roto's on the bench's held-out shots)
    flow_scale: float = 1.0


def bracketing_keys(frame: int, keys: Dict[int, Key]) -> Tuple[Optional[int], Optional[int]]:
    """(nearest key frame ≤ frame, nearest key frame ≥ frame); None where the shot has none on that side."""
    before = [k for k in keys if k <= frame]
    after = [k for k in keys if k >= frame]
    return (max(before) if before else None), (min(after) if after else None)


def carried(flows: ShotFlows, frame: int, key_frame: int, key: Key) -> Tuple[np.ndarray, np.ndarray, float]:
    """(S, C, travel): the key's field warped onto ``frame`` along the foreground layer's motion, its confidence, and
    how far (px, 90th percentile) the field's edge travelled.

    The subject (a mask's inside, a trimap's foreground) moves as one layer and so does its edge: the key is
    warped with the flow of the subject's interior (:func:`~.flow.layer_flow`), located on ``frame`` by a first
    warp with the raw flow. Pixels whose source lies outside the key's frame get confidence 0."""
    flow, confidence = flows.span(frame, key_frame)
    value = key.value.astype(np.float32)
    rough = warp(value, flow)
    layer = layer_flow(flow, confidence, rough >= (0.5 if key.kind == MASK else 1.0 - 1e-3))
    if layer is not None:
        flow, confidence = layer
    field = warp(value, flow)
    h, w = field.shape
    grid_x = np.arange(w, dtype=np.float32)[None, :] + flow[..., 0]
    grid_y = np.arange(h, dtype=np.float32)[:, None] + flow[..., 1]
    inside = (grid_x >= 0) & (grid_x <= w - 1) & (grid_y >= 0) & (grid_y <= h - 1)  # left the key's frame: unknown
    edge = (field > 0.02) & (field < 0.98)
    travel = float(np.percentile(np.hypot(flow[..., 0], flow[..., 1])[edge], 90)) if edge.any() else 0.0
    return field, np.where(inside, confidence, 0.0).astype(np.float32), travel


def trimap_for_frame(flows: ShotFlows, frame: int, keys: Dict[int, Key],
                     settings: Optional[PropagationSettings] = None) -> Tuple[np.ndarray, str]:
    """(trimap {0, 0.5, 1}, how it was made) for ``frame`` from the shot's ``keys`` (frame -> :class:`Key`)."""
    settings = settings or PropagationSettings()
    if not keys:
        raise ValueError("keys: a shot needs guidance on at least one frame")
    if frame in keys:
        key = keys[frame]
        value = key.value.astype(np.float32)
        return (value if key.kind == TRIMAP else trimap_from_mask(value, key.band_width)), f"key:{key.kind}"
    before, after = bracketing_keys(frame, keys)
    sides = [(k, keys[k], abs(frame - k)) for k in (before, after) if k is not None]
    fields = [carried(flows, frame, k, key) for k, key, _ in sides]  # (S, C, travel) per side
    total = sum(distance for _, _, distance in sides)
    weights = [c * (1.0 if len(sides) == 1 else (total - distance) / total)
               for (_, c, _), (_, _, distance) in zip(fields, sides)]
    weight_sum = np.sum(weights, axis=0)
    field = np.sum([w * s for w, (s, _, _) in zip(weights, fields)], axis=0) / np.maximum(weight_sum, 1e-6)
    confidence = np.max([c for _, c, _ in fields], axis=0)
    kinds = {key.kind for _, key, _ in sides}
    travel = min(zip((distance for _, _, distance in sides), (t for _, _, t in fields)))[1]  # the nearest key's
    grow = min(settings.max_growth_px, int(np.round(settings.growth_fraction * travel)))
    if kinds == {MASK}:
        band = max(key.band_width or auto_band_width(field.shape) for _, key, _ in sides)
        trimap = trimap_from_mask(field, band + 2 * grow)
    else:  # a trimap key on either side: carry the definite regions, eroded with the distance travelled
        trimap = np.full(field.shape, 0.5, np.float32)
        trimap[field >= 1.0 - settings.ambiguous] = 1.0
        trimap[field <= settings.ambiguous] = 0.0
        if grow > 0:
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
            sure_fg = cv2.erode((trimap == 1.0).astype(np.uint8), kernel) > 0
            sure_bg = cv2.erode((trimap == 0.0).astype(np.uint8), kernel) > 0
            trimap = np.where(sure_fg, 1.0, np.where(sure_bg, 0.0, 0.5)).astype(np.float32)
    ambiguous = (field > settings.ambiguous) & (field < 1.0 - settings.ambiguous)
    trimap[ambiguous | (confidence < settings.min_confidence)] = 0.5
    how = "propagated:" + "+".join(f"{k}" for k, _, _ in sides)
    return trimap.astype(np.float32), how
