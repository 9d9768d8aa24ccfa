"""Image files in and out: PNG, JPEG, TIFF and EXR through OpenCV (RGB order, no silent dtype changes).

Colourspace convention for files: integer images (8/16-bit PNG, JPEG, TIFF) are sRGB-encoded; float images (EXR,
float TIFF) are scene-linear. EXR outputs are always linear float32; PNG previews are sRGB 8-bit.
"""
from __future__ import annotations

from pathlib import Path
from typing import Tuple

import numpy as np


def _cv2():
    import cv2  # imported on first use: keeps `mattebox --help` and the client light

    return cv2


class ImageReadError(ValueError):
    pass


def read_image(path: str) -> Tuple[np.ndarray, str]:
    """Read an image file -> (H×W×C array in its file dtype, RGB(A) order; colourspace 'srgb' or 'linear')."""
    cv2 = _cv2()
    if not Path(path).is_file():
        raise ImageReadError(f"{path}: no such file")
    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise ImageReadError(f"{path}: not an image OpenCV can read (PNG, JPEG, TIFF, EXR)")
    if array.ndim == 3:
        if array.shape[2] == 3:
            array = cv2.cvtColor(array, cv2.COLOR_BGR2RGB)
        elif array.shape[2] == 4:
            array = cv2.cvtColor(array, cv2.COLOR_BGRA2RGBA)
    colorspace = "linear" if array.dtype.kind == "f" else "srgb"
    if array.dtype.kind == "f" and array.dtype != np.float32:
        array = array.astype(np.float32)
    return np.ascontiguousarray(array), colorspace


def read_gray(path: str) -> np.ndarray:
    """Read a mask or trimap -> H×W float32 in [0, 1] (first channel of colour files)."""
    array, _ = read_image(path)
    if array.ndim == 3:
        array = array[:, :, 0]
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    return array.astype(np.float32)


def write_exr(path: str, array: np.ndarray) -> None:
    """Write a float32 EXR (H×W, H×W×3 RGB or H×W×4 RGBA)."""
    cv2 = _cv2()
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 3 and array.shape[2] == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    elif array.ndim == 3 and array.shape[2] == 4:
        array = cv2.cvtColor(array, cv2.COLOR_RGBA2BGRA)
    if not cv2.imwrite(str(path), array, [cv2.IMWRITE_EXR_TYPE, cv2.IMWRITE_EXR_TYPE_FLOAT]):
        raise OSError(f"could not write {path}")


def write_png(path: str, array: np.ndarray, bits: int = 8) -> None:
    """Write values in [0, 1] (already display-encoded) as an 8- or 16-bit PNG."""
    cv2 = _cv2()
    scale, dtype = (255.0, np.uint8) if bits == 8 else (65535.0, np.uint16)
    out = (np.clip(np.asarray(array, dtype=np.float32), 0.0, 1.0) * scale + 0.5).astype(dtype)
    if out.ndim == 3 and out.shape[2] == 3:
        out = cv2.cvtColor(out, cv2.COLOR_RGB2BGR)
    elif out.ndim == 3 and out.shape[2] == 4:
        out = cv2.cvtColor(out, cv2.COLOR_RGBA2BGRA)
    if not cv2.imwrite(str(path), out):
        raise OSError(f"could not write {path}")


def read_linear_rgb(path: str) -> Tuple[np.ndarray, str]:
    """Read a plate -> (H×W×3 float32 linear light, its file's colourspace): integers scaled to [0, 1], a grey
    image repeated into three channels, an alpha channel dropped, sRGB files linearised."""
    from .colour import from_colorspace

    array, colorspace = read_image(path)
    values = array.astype(np.float32) / (255.0 if array.dtype == np.uint8 else 65535.0) \
        if array.dtype.kind == "u" else array.astype(np.float32)
    if values.ndim == 2:
        values = values[:, :, None]
    rgb = np.repeat(values, 3, axis=2) if values.shape[2] == 1 else values[:, :, :3]
    return np.ascontiguousarray(from_colorspace(rgb, colorspace), np.float32), colorspace
