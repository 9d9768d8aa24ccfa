"""Procedural foregrounds with thin structures, rendered with exact alpha and colour.

Every foreground is painted at ``supersample``× resolution into an opaque colour layer and a binary coverage
layer, then area-averaged: ``α = mean(coverage)`` and ``αF = mean(coverage · colour)``, so ``F = αF / α`` is the
exact colour of what covers the pixel and ``αF + (1 − α)B`` is the exact composite of that supersampled scene over
any background. Semi-transparent material (fabric) multiplies coverage by its opacity; motion blur averages the
premultiplied layers along the motion path, which is exact for a foreground moving over a still background.

All functions take ``size = (H, W)`` and a ``numpy.random.Generator`` and return ``(foreground H×W×3 float32
linear light, alpha H×W float32 in [0, 1])``; the same generator state gives the same pixels.
"""
from __future__ import annotations

from typing import Callable, Dict, Tuple

import cv2
import numpy as np

Foreground = Tuple[np.ndarray, np.ndarray]


class _Canvas:
    """A supersampled scene: opacity in [0, 1] and opaque colour per subpixel, painted front to back by 'over'."""

    def __init__(self, size: Tuple[int, int], supersample: int):
        self.size, self.scale = size, supersample
        h, w = size[0] * supersample, size[1] * supersample
        self.opacity = np.zeros((h, w), np.float32)
        self.premultiplied = np.zeros((h, w, 3), np.float32)

    @property
    def shape(self) -> Tuple[int, int]:
        return self.opacity.shape

    def paint(self, coverage: np.ndarray, colour: np.ndarray, opacity: float = 1.0) -> None:
        """Composite a layer (coverage H×W in [0, 1] or bool, colour RGB or H×W×3 linear) *over* the canvas."""
        a = coverage.astype(np.float32) * opacity
        colour = np.broadcast_to(np.asarray(colour, np.float32), (*self.shape, 3))
        self.premultiplied = a[..., None] * colour + (1 - a[..., None]) * self.premultiplied
        self.opacity = a + (1 - a) * self.opacity

    def stroke(self, points: np.ndarray, thickness: int, colour: np.ndarray) -> None:
        """Paint an opaque polyline (subpixel coordinates): binary coverage 'over' is an overwrite, done in place."""
        polyline = [np.round(points).astype(np.int32)]
        cv2.polylines(self.opacity, polyline, False, 1.0, thickness, cv2.LINE_8)
        cv2.polylines(self.premultiplied, polyline, False, tuple(float(c) for c in colour), thickness, cv2.LINE_8)

    def motion_blur(self, length: float, angle: float) -> None:
        """Average the premultiplied layers along a straight motion path (exact for a moving layer)."""
        taps = max(2, int(round(length * self.scale)))
        kernel = np.zeros((taps, taps), np.float32)
        c = (taps - 1) / 2
        for t in np.linspace(-c, c, taps * 2):
            kernel[int(round(c + t * np.sin(angle))), int(round(c + t * np.cos(angle)))] = 1
        kernel /= kernel.sum()
        self.opacity = cv2.filter2D(self.opacity, -1, kernel, borderType=cv2.BORDER_CONSTANT)
        self.premultiplied = cv2.filter2D(self.premultiplied, -1, kernel, borderType=cv2.BORDER_CONSTANT)
        # OpenCV filters large kernels through the DFT, which leaves ~1e-7 ripples where nothing was painted:
        # snap them away so empty stays exactly empty (and opaque exactly opaque)
        empty = self.opacity < 1e-5
        self.opacity[empty] = 0
        self.premultiplied[empty] = 0
        self.opacity[self.opacity > 1 - 1e-5] = 1

    def resolve(self) -> Foreground:
        h, w = self.size
        alpha = cv2.resize(self.opacity, (w, h), interpolation=cv2.INTER_AREA)
        premultiplied = cv2.resize(self.premultiplied, (w, h), interpolation=cv2.INTER_AREA)
        alpha = np.clip(alpha, 0, 1)
        foreground = premultiplied / np.maximum(alpha, 1e-6)[..., None]
        # where nothing covers a pixel F is undefined: fill it from the nearest covered colour (what F-estimation
        # methods are scored against only where α > 0, but compositors like a smooth F)
        empty = alpha <= 1e-6
        if empty.all():
            foreground[:] = 0.5
        elif empty.any():
            _, labels = cv2.distanceTransformWithLabels(empty.astype(np.uint8), cv2.DIST_L2, 5,
                                                        labelType=cv2.DIST_LABEL_PIXEL)
            covered = ~empty
            lookup = np.zeros((labels.max() + 1, 3), np.float32)
            lookup[labels[covered]] = foreground[covered]
            foreground[empty] = lookup[labels[empty]]
        return np.clip(foreground, 0, 1).astype(np.float32), alpha.astype(np.float32)


def _random_colour(rng: np.random.Generator, base=None, spread: float = 0.08) -> np.ndarray:
    """A linear-light colour: random, or a small variation of ``base``."""
    if base is None:
        return (0.1 + 0.8 * rng.random(3, dtype=np.float32)) ** 2.2
    return np.clip(base * (1 + rng.normal(0, spread, 3)), 0, 1).astype(np.float32)


def _body(canvas: _Canvas, rng: np.random.Generator, colour: np.ndarray):
    """An opaque head/torso-like ellipse low in the frame with a shading texture; returns (centre, axes)."""
    sh, sw = canvas.shape
    centre = np.array([sw * rng.uniform(0.35, 0.65), sh * rng.uniform(0.55, 0.75)])
    axes = np.array([sw * rng.uniform(0.15, 0.25), sh * rng.uniform(0.22, 0.32)])
    mask = np.zeros((sh, sw), np.uint8)
    cv2.ellipse(mask, (int(centre[0]), int(centre[1])), (int(axes[0]), int(axes[1])), rng.uniform(-20, 20), 0, 360,
                1, -1)
    yy, xx = np.mgrid[:sh, :sw].astype(np.float32)
    shading = 0.7 + 0.3 * np.sin(xx / (rng.uniform(10, 30) * canvas.scale) + yy / (rng.uniform(20, 60) * canvas.scale))
    canvas.paint(mask, colour[None, None, :] * shading[..., None])
    return centre, axes


def _strands(canvas: _Canvas, rng: np.random.Generator, roots: np.ndarray, directions: np.ndarray,
             lengths: np.ndarray, width_px: Tuple[float, float], colour: np.ndarray, curl: float) -> None:
    """Paint curved strands (quadratic bends plus a little waviness) from ``roots`` along ``directions``; widths
    in output pixels, so sub-pixel strands give fractional alpha."""
    s = canvas.scale
    steps = 24
    t = np.linspace(0, 1, steps)[:, None]
    for root, direction, length in zip(roots, directions, lengths):
        normal = np.array([-direction[1], direction[0]])
        bend = rng.normal(0, curl)
        wave = rng.normal(0, curl * 0.15) * np.sin(t * rng.uniform(2, 8) + rng.uniform(0, 6))
        points = root + direction * t * length + normal * (bend * t ** 2 * length * 0.4 + wave * length)
        thickness = max(1, int(round(rng.uniform(*width_px) * s)))
        canvas.stroke(points, thickness, _random_colour(rng, colour, 0.12))


def hair_foreground(size: Tuple[int, int], rng: np.random.Generator, strands: int = 220,
                    supersample: int = 4) -> Foreground:
    """A head-like solid blob with long hair strands (0.3–2.5 px wide curves) flowing out of its top half."""
    canvas = _Canvas(size, supersample)
    hair = _random_colour(rng)
    centre, axes = _body(canvas, rng, _random_colour(rng))
    theta = rng.uniform(np.pi * 1.05, np.pi * 1.95, strands)  # strands leave the top half
    directions = np.stack([np.cos(theta), np.sin(theta)], 1)
    roots = centre + directions * axes * 0.9
    lengths = rng.uniform(0.08, 0.35, strands) * canvas.shape[0]
    _strands(canvas, rng, roots, directions, lengths, (0.3, 2.5), hair, curl=0.8)
    return canvas.resolve()


def fur_foreground(size: Tuple[int, int], rng: np.random.Generator, hairs: int = 900,
                   supersample: int = 4) -> Foreground:
    """An animal-like body whose whole outline is covered in dense short fur (many sub-pixel strands)."""
    canvas = _Canvas(size, supersample)
    coat = _random_colour(rng)
    centre, axes = _body(canvas, rng, coat)
    theta = rng.uniform(0, 2 * np.pi, hairs)
    outward = np.stack([np.cos(theta), np.sin(theta)], 1)
    jitter = rng.normal(0, 0.35, hairs)
    directions = np.stack([np.cos(theta + jitter), np.sin(theta + jitter)], 1)
    roots = centre + outward * axes * rng.uniform(0.85, 1.0, (hairs, 1))
    lengths = rng.uniform(0.02, 0.07, hairs) * canvas.shape[0]
    _strands(canvas, rng, roots, directions, lengths, (0.2, 1.0), coat, curl=0.4)
    return canvas.resolve()


def fabric_foreground(size: Tuple[int, int], rng: np.random.Generator, supersample: int = 4) -> Foreground:
    """An opaque body wearing a semi-transparent veil: a woven region (threads with gaps) of uniform opacity
    0.25–0.75 and a frayed, wavy edge, the chiffon case of the alpha-free paper's Fig. 8."""
    canvas = _Canvas(size, supersample)
    _body(canvas, rng, _random_colour(rng))
    sh, sw = canvas.shape
    yy, xx = np.mgrid[:sh, :sw].astype(np.float32)
    edge = sh * rng.uniform(0.45, 0.75) + sh * 0.05 * np.sin(xx / (sw * rng.uniform(0.05, 0.15)) + rng.uniform(0, 6))
    top = sh * rng.uniform(0.1, 0.35)
    region = (yy > top) & (yy < edge)
    left, right = sorted(rng.uniform(0.05, 0.95, 2) * sw)
    region &= (xx > min(left, sw * 0.3)) & (xx < max(right, sw * 0.7))
    period = rng.uniform(1.5, 4.0) * supersample  # thread spacing in subpixels
    angle = rng.uniform(0, np.pi)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    fill = rng.uniform(0.5, 0.85)
    weave = (np.mod(u, period) < period * fill) | (np.mod(v, period) < period * fill)
    canvas.paint(region & weave, _random_colour(rng), opacity=float(rng.uniform(0.25, 0.75)))
    return canvas.resolve()


def motion_blurred_foreground(size: Tuple[int, int], rng: np.random.Generator, supersample: int = 4) -> Foreground:
    """A moving subject: a hair or fur foreground's scene blurred along a random straight path of 3–15 px."""
    canvas = _Canvas(size, supersample)
    centre, axes = _body(canvas, rng, _random_colour(rng))
    theta = rng.uniform(np.pi * 1.05, np.pi * 1.95, 80)
    directions = np.stack([np.cos(theta), np.sin(theta)], 1)
    _strands(canvas, rng, centre + directions * axes * 0.9, directions,
             rng.uniform(0.05, 0.25, 80) * canvas.shape[0], (0.5, 2.0), _random_colour(rng), curl=0.6)
    canvas.motion_blur(length=rng.uniform(3, 15), angle=rng.uniform(0, np.pi))
    return canvas.resolve()


#: name -> generator; data sets sample these uniformly
FOREGROUNDS: Dict[str, Callable[..., Foreground]] = {
    "hair": hair_foreground,
    "fur": fur_foreground,
    "fabric": fabric_foreground,
    "motion": motion_blurred_foreground,
}

