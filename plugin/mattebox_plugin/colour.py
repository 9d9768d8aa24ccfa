"""The sRGB transfer function (IEC 61966-2-1), shared by the server's codec and the hosts that hand over 8-bit
sRGB pixels (Blender's byte images). numpy is needed here, as in every caller; the rest of the package runs
without it."""
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
