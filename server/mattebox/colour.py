"""Colourspace and premultiplication conversions (IEC 61966-2-1 sRGB transfer function)."""
from __future__ import annotations

import numpy as np


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """sRGB-encoded values -> linear light (piecewise IEC 61966-2-1; values above 1 follow the power curve)."""
    x = np.asarray(x, dtype=np.float32)
    low = x / np.float32(12.92)
    high = np.power((np.maximum(x, 0.04045) + np.float32(0.055)) / np.float32(1.055), np.float32(2.4))
    return np.where(x <= 0.04045, low, high).astype(np.float32)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """Linear light -> sRGB-encoded values (inverse of :func:`srgb_to_linear`)."""
    x = np.asarray(x, dtype=np.float32)
    low = x * np.float32(12.92)
    high = np.float32(1.055) * np.power(np.maximum(x, 0.0031308), np.float32(1 / 2.4)) - np.float32(0.055)
    return np.where(x <= 0.0031308, low, high).astype(np.float32)


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
