"""Richly textured procedural backgrounds (the hard case for matting: background detail that resembles
foreground detail). numpy + OpenCV only, deterministic by the generator passed in."""
from __future__ import annotations

from typing import Tuple

import cv2
import numpy as np


def fractal_noise(size: Tuple[int, int], rng: np.random.Generator, octaves: int = 6,
                  persistence: float = 0.6) -> np.ndarray:
    """Sum of upsampled random grids (value noise), H×W float32 in [0, 1]."""
    h, w = size
    out = np.zeros((h, w), np.float32)
    amplitude, total = 1.0, 0.0
    for octave in range(octaves):
        cells = 2 ** (octave + 2)
        grid = rng.random((cells, max(2, int(cells * w / h))), dtype=np.float32)
        out += amplitude * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amplitude
        amplitude *= persistence
    out /= total
    return np.clip((out - out.min()) / max(float(np.ptp(out)), 1e-6), 0, 1)


def textured_background(size: Tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """H×W×3 float32 linear-light background: coloured fractal noise, random stripes and fine high-frequency
    grain, as in the Parallax paper's 'richly textured' backgrounds."""
    h, w = size
    palette = rng.random((3, 3), dtype=np.float32)
    base = fractal_noise(size, rng)
    colour = palette[0] * (1 - base[..., None]) + palette[1] * base[..., None]
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(6, 40)
    stripes = 0.5 + 0.5 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    colour = colour * (0.7 + 0.3 * stripes[..., None]) + 0.15 * palette[2] * stripes[..., None]
    grain = fractal_noise(size, rng, octaves=8, persistence=0.9)
    colour *= 0.8 + 0.4 * grain[..., None]
    return np.clip(colour, 0.0, 1.0).astype(np.float32) ** 2.2  # display-like values -> linear
