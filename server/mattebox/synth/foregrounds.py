"""Procedural foregrounds with thin structures, rendered with exact alpha and colour.

Coverage is computed by drawing at ``supersample``× resolution and area-averaging, so alpha is the true pixel
coverage of the strands (up to the supersampling), not an approximation learned from data.
"""
from __future__ import annotations

from typing import Tuple

import cv2
import numpy as np


def hair_foreground(size: Tuple[int, int], rng: np.random.Generator, strands: int = 220,
                    supersample: int = 4) -> Tuple[np.ndarray, np.ndarray]:
    """A head-like solid blob with hair strands (1–3 px wide curves) flowing out of it.

    Returns (foreground H×W×3 float32 linear, alpha H×W float32 in [0, 1]).
    """
    h, w = size
    sh, sw = h * supersample, w * supersample
    coverage = np.zeros((sh, sw), np.uint8)
    centre = np.array([sw * rng.uniform(0.4, 0.6), sh * rng.uniform(0.55, 0.7)])
    axes = (int(sw * rng.uniform(0.16, 0.22)), int(sh * rng.uniform(0.25, 0.32)))
    cv2.ellipse(coverage, (int(centre[0]), int(centre[1])), axes, 0, 0, 360, 255, -1, cv2.LINE_AA)
    for _ in range(strands):
        theta = rng.uniform(np.pi * 1.05, np.pi * 1.95)  # strands leave the top half
        start = centre + np.array([np.cos(theta) * axes[0], np.sin(theta) * axes[1]]) * 0.9
        length = rng.uniform(0.08, 0.3) * sh
        bend = rng.normal(0, 0.8)
        steps = 24
        t = np.linspace(0, 1, steps)[:, None]
        direction = np.array([np.cos(theta), np.sin(theta)])
        normal = np.array([-direction[1], direction[0]])
        points = start + direction * t * length + normal * (bend * (t ** 2) * length * 0.4)
        thickness = max(1, int(round(rng.uniform(0.6, 2.5) * supersample / 2)))
        cv2.polylines(coverage, [np.round(points).astype(np.int32)], False, 255, thickness, cv2.LINE_AA)
    alpha = cv2.resize(coverage.astype(np.float32) / 255.0, (w, h), interpolation=cv2.INTER_AREA)
    hue = rng.random(3, dtype=np.float32)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    shading = 0.75 + 0.25 * np.sin(xx / rng.uniform(5, 15) + yy / rng.uniform(20, 40))
    foreground = (0.15 + 0.7 * hue)[None, None, :] * shading[..., None]
    return np.clip(foreground, 0, 1).astype(np.float32) ** 2.2, np.clip(alpha, 0, 1).astype(np.float32)
