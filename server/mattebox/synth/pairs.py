"""Synthetic parallax pairs (Parallax Portrait Matting §5.1 "training data", following its ref. [23]).

A base frame ``I1 = α1·F1 + (1 − α1)·B1`` and a second view ``I0`` in which the foreground layer (α, F) and the
background layer B each move by their own random affine transform — the difference is the parallax — plus a smooth
non-rigid displacement of about ``noise_px`` pixels per layer ("random noise (approximately 10 pixels) to these
transformations"). Ground truth (α, F) is returned for both frames.

Layers: alpha from alphamatting-dev's ground truth when the data set is present (``real_alpha`` of the pairs,
with a procedural foreground colour since the data set has no foreground layer), else
:func:`~mattebox.synth.foregrounds.hair_foreground`; backgrounds are always
:func:`~mattebox.synth.backgrounds.textured_background` (richly textured: the hard case for single-frame matting).

Determinism: a pair is a pure function of (seed, size, options). **Held-out evaluation seeds:**
:data:`HELD_OUT_SEEDS` (1_000_000 … 1_000_999); training code must draw seeds outside that range.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import cv2
import numpy as np

from ..paths import alphamatting_dir
from .backgrounds import fractal_noise, textured_background
from .foregrounds import hair_foreground

#: seeds reserved for evaluation (bench/twoframe.py uses the first N of them)
HELD_OUT_SEEDS = range(1_000_000, 1_001_000)


@dataclass
class ParallaxPair:
    """All images H×W(×3) float32; colours linear light. Frame 1 is the base frame, frame 0 the second view."""
    image: np.ndarray  #: I1
    second: np.ndarray  #: I0
    alpha: np.ndarray  #: α1 (ground truth)
    foreground: np.ndarray  #: F1
    background: np.ndarray  #: B1
    second_alpha: np.ndarray  #: α0
    second_foreground: np.ndarray  #: F0
    trimap: np.ndarray  #: Tr1 from α1: unknown band = {0<α<1} ∪ edges, dilated by ``band`` px
    parallax_px: float  #: |foreground shift − background shift| at the image centre
    alpha_source: str  #: "hair" or "alphamatting:<name>"
    #: true layer motions on frame 1's grid, H×W×2, pointing into frame 0 (the convention of
    #: :class:`mattebox.matting.motion.Motion`: frame-1 point p of that layer is at p + d(p) in frame 0)
    foreground_flow: Optional[np.ndarray] = None
    background_flow: Optional[np.ndarray] = None


def trimap_from_alpha(alpha: np.ndarray, band: int) -> np.ndarray:
    """{0, 0.5, 1} trimap whose unknown region covers every fractional (0.02 < α < 0.98) alpha pixel, dilated by
    ``band`` px."""
    fractional = ((alpha > 0.02) & (alpha < 0.98)).astype(np.uint8)
    edges = cv2.morphologyEx((alpha >= 0.5).astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    unknown = cv2.dilate(fractional | edges, kernel) > 0
    trimap = np.where(alpha >= 0.5, 1.0, 0.0).astype(np.float32)
    trimap[unknown] = 0.5
    return trimap


def _real_alphas() -> List:
    root = alphamatting_dir()
    return sorted((root / "alpha").glob("*.png")) if root is not None else []


def _layer_map(size: Tuple[int, int], rng: np.random.Generator, shift: np.ndarray, rotation_deg: float,
               scale: float, noise_px: float, offset: float = 0.0) -> np.ndarray:
    """H×W×2 float32 backward map (source coordinates for each second-view pixel) of one layer: the inverse of an
    affine motion about the image centre plus a smooth random displacement spanning ``noise_px`` px peak to peak per
    axis."""
    h, w = size
    ys, xs = np.mgrid[:h, :w].astype(np.float32)
    cx, cy = w / 2.0, h / 2.0
    theta = np.deg2rad(rotation_deg)
    cos, sin = np.cos(theta) / scale, np.sin(theta) / scale
    dx, dy = xs - cx - shift[0], ys - cy - shift[1]
    src_x = cos * dx + sin * dy + cx
    src_y = -sin * dx + cos * dy + cy
    for grid in (src_x, src_y):
        noise = fractal_noise(size, rng, octaves=1) - 0.5  # smooth (4-cell cubic grid), in [-0.5, 0.5]
        grid += noise_px * noise
    return np.ascontiguousarray(np.stack([src_x + offset, src_y + offset], axis=-1), np.float32)


def _invert_map(mapping: np.ndarray, offset: float, iterations: int = 50, tolerance: float = 1e-3) -> np.ndarray:
    """Flow on frame 1's grid pointing into frame 0 for a layer whose backward map (frame-0 pixel -> frame-1
    source coordinate + ``offset``) is ``mapping``: the fixed point q = q + (p + offset − mapping(q)), which
    converges because the layer maps are small perturbations of a shift."""
    h, w = mapping.shape[:2]
    grid = np.stack(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)), axis=-1)
    q = grid.copy()
    for _ in range(iterations):
        at = cv2.remap(mapping, q[..., 0], q[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        step = grid + offset - at
        q += step
        if float(np.abs(step).max()) < tolerance:
            break
    return np.ascontiguousarray(q - grid, np.float32)


def make_pair(seed: int, size: Tuple[int, int] = (240, 320), noise_px: float = 10.0, band: int = 6,
              real_alpha: Optional[bool] = None) -> ParallaxPair:
    """One synthetic parallax pair; ``size`` is (H, W). ``real_alpha``: None -> every other seed uses an
    alphamatting-dev alpha when the data set is present."""
    rng = np.random.default_rng(seed)
    h, w = size
    reals = _real_alphas()
    use_real = bool(reals) and (seed % 2 == 1 if real_alpha is None else real_alpha)
    if use_real:
        path = reals[int(rng.integers(len(reals)))]
        raw = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0
        scale = max(h / raw.shape[0], w / raw.shape[1])  # cover, then centre-crop
        raw = cv2.resize(raw, (int(np.ceil(raw.shape[1] * scale)), int(np.ceil(raw.shape[0] * scale))),
                         interpolation=cv2.INTER_AREA)
        y0, x0 = (raw.shape[0] - h) // 2, (raw.shape[1] - w) // 2
        alpha = np.ascontiguousarray(raw[y0:y0 + h, x0:x0 + w])
        hue = 0.15 + 0.7 * rng.random(3, dtype=np.float32)
        shade = 0.6 + 0.4 * fractal_noise(size, rng, octaves=4)
        foreground = (hue[None, None, :] * shade[..., None]).astype(np.float32) ** 2.2
        source = f"alphamatting:{path.stem}"
    else:
        foreground, alpha = hair_foreground(size, rng)
        source = "hair"
    margin = int(np.ceil(3 * noise_px + 40))
    canvas = textured_background((h + 2 * margin, w + 2 * margin), rng)
    background = np.ascontiguousarray(canvas[margin:margin + h, margin:margin + w])
    image = alpha[..., None] * foreground + (1.0 - alpha[..., None]) * background

    bg_shift = rng.uniform(-8, 8, 2)
    parallax = rng.uniform(5, 14) * np.array([np.cos(a := rng.uniform(0, 2 * np.pi)), np.sin(a)])
    fg_map = _layer_map(size, rng, bg_shift + parallax, rng.uniform(-2, 2), rng.uniform(0.97, 1.03), noise_px)
    bg_map = _layer_map(size, rng, bg_shift, rng.uniform(-1, 1), rng.uniform(0.99, 1.01), noise_px,
                        offset=float(margin))
    second_alpha = cv2.remap(alpha, fg_map, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    second_fg = cv2.remap(foreground, fg_map, None, cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    second_bg = cv2.remap(canvas, bg_map, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    second = second_alpha[..., None] * second_fg + (1.0 - second_alpha[..., None]) * second_bg
    return ParallaxPair(image=image.astype(np.float32), second=second.astype(np.float32), alpha=alpha,
                        foreground=foreground, background=background, second_alpha=second_alpha,
                        second_foreground=second_fg, trimap=trimap_from_alpha(alpha, band),
                        parallax_px=float(np.linalg.norm(parallax)), alpha_source=source,
                        foreground_flow=_invert_map(fg_map, 0.0), background_flow=_invert_map(bg_map, float(margin)))
