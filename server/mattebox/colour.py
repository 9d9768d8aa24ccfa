"""Colourspace and premultiplication conversions (the IEC 61966-2-1 sRGB transfer function is
mattebox_plugin.colour's, which hosts share)."""
from __future__ import annotations

import numpy as np

from mattebox_plugin.colour import linear_to_srgb, srgb_to_linear  # noqa: F401  (one transfer function, shared)


def unpremultiply(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Straight colour from premultiplied colour; where alpha is 0 the colour is left as is (it is 0 anyway)."""
    a = alpha[..., None] if alpha.ndim == rgb.ndim - 1 else alpha
    safe = np.where(a > 1e-6, a, 1.0).astype(np.float32)
    return (rgb / safe).astype(np.float32)


def to_colorspace(linear: np.ndarray, colorspace: str) -> np.ndarray:
    """Convert linear-light values to a wire colourspace ('linear', 'srgb' or 'data' = unchanged)."""
    return linear_to_srgb(linear) if colorspace == "srgb" else linear.astype(np.float32, copy=False)


def from_colorspace(values: np.ndarray, colorspace: str) -> np.ndarray:
    """Convert wire values in 'linear', 'srgb' or 'data' to linear light."""
    return srgb_to_linear(values) if colorspace == "srgb" else values.astype(np.float32, copy=False)
