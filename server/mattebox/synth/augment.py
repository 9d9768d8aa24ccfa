"""Training augmentation: trimaps by random dilation/erosion, photometric jitter of the layers, and degradations
of the composite (noise, JPEG, blur). numpy + OpenCV only; every random choice comes from the generator passed in.

Colour jitter and alpha gamma act on the *layers* before compositing, so the ground truth stays exact; noise, JPEG
and blur act on the network's input only (the clean composite stays the target of composition losses).
"""
from __future__ import annotations

from typing import Tuple

import cv2
import numpy as np

#: the Parallax paper's dilation/erosion range (iterations of a 3×3 kernel) at its training resolution
PAPER_ITERATIONS = (60, 120)
#: the resolution those iterations refer to: the long side of the full-resolution portraits patches come from
PAPER_RESOLUTION = 1024


def random_trimap(alpha: np.ndarray, rng: np.random.Generator, iterations: Tuple[int, int] = PAPER_ITERATIONS,
                  reference_size: int = PAPER_RESOLUTION, cover_soft: bool = True) -> np.ndarray:
    """Trimap H×W float32 {0, 0.5, 1} from a ground-truth alpha (Parallax paper Sec. 5.1): binarise α at 0.5,
    erode for the foreground and dilate for the background by independent random iteration counts drawn from
    ``iterations`` scaled by ``max(H, W) / reference_size`` (at least 1), the band between them unknown.

    ``cover_soft`` also marks every 0 < α < 1 pixel unknown (the DIM convention), so a known label is never wrong;
    without it, strands beyond the dilated band are labelled background, as in the paper.
    """
    if alpha.ndim != 2:
        raise ValueError(f"alpha must be H×W, got shape {alpha.shape}")
    scale = max(alpha.shape) / float(reference_size)
    lo, hi = iterations
    erode_iters = max(1, int(round(rng.uniform(lo, hi) * scale)))
    dilate_iters = max(1, int(round(rng.uniform(lo, hi) * scale)))
    binary = (alpha >= 0.5).astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    foreground = cv2.erode(binary, kernel, iterations=erode_iters).astype(bool)
    background = ~cv2.dilate(binary, kernel, iterations=dilate_iters).astype(bool)
    trimap = np.full(alpha.shape, 0.5, np.float32)
    trimap[foreground] = 1.0
    trimap[background] = 0.0
    if cover_soft:
        trimap[(alpha > 0) & (alpha < 1)] = 0.5
    return trimap


def colour_jitter(image: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """Random brightness (×0.7–1.3), contrast, saturation (±30 %) and per-channel gain (±8 %) of an H×W×3 image
    in [0, 1]; ``strength`` scales every range (0 = identity)."""
    x = image.astype(np.float32)
    gain = 1 + strength * rng.uniform(-0.3, 0.3)
    channel_gain = 1 + strength * rng.uniform(-0.08, 0.08, 3).astype(np.float32)
    x = x * gain * channel_gain
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * (1 + strength * rng.uniform(-0.3, 0.3))  # saturation
    mean = x.mean()
    x = mean + (x - mean) * (1 + strength * rng.uniform(-0.25, 0.25))  # contrast
    return np.clip(x, 0, 1).astype(np.float32)


def alpha_gamma(alpha: np.ndarray, rng: np.random.Generator, spread: float = 0.3) -> np.ndarray:
    """α^γ with log γ uniform in ±``spread`` (Parallax Sec. 5.1 'random gamma transformations'); keeps 0 and 1."""
    return (alpha ** float(np.exp(rng.uniform(-spread, spread)))).astype(np.float32)


def gaussian_noise(image: np.ndarray, rng: np.random.Generator, sigma_max: float = 0.03) -> np.ndarray:
    """Additive Gaussian noise of a random σ in [0, sigma_max]."""
    sigma = rng.uniform(0, sigma_max)
    return np.clip(image + rng.normal(0, sigma, image.shape).astype(np.float32), 0, 1).astype(np.float32)


def jpeg(image: np.ndarray, rng: np.random.Generator, quality: Tuple[int, int] = (40, 95)) -> np.ndarray:
    """Encode/decode an sRGB H×W×3 image in [0, 1] as JPEG at a random quality."""
    q = int(rng.integers(quality[0], quality[1] + 1))
    data = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    ok, encoded = cv2.imencode(".jpg", data[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    return (cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1] / 255.0).astype(np.float32)


def gaussian_blur(image: np.ndarray, rng: np.random.Generator, sigma_max: float = 1.2) -> np.ndarray:
    """Gaussian blur of a random σ in [0.3, sigma_max] (defocus / resampling softness)."""
    sigma = rng.uniform(0.3, sigma_max)
    return cv2.GaussianBlur(image, (0, 0), sigma).astype(np.float32)


def degrade(image: np.ndarray, rng: np.random.Generator, p_noise: float = 0.5, p_jpeg: float = 0.3,
            p_blur: float = 0.2) -> np.ndarray:
    """Camera-like degradations of a network input (sRGB in [0, 1]), each applied with its probability:
    blur, then noise, then JPEG."""
    draws = rng.random(3)
    if draws[0] < p_blur:
        image = gaussian_blur(image, rng)
    if draws[1] < p_noise:
        image = gaussian_noise(image, rng)
    if draws[2] < p_jpeg:
        image = jpeg(image, rng)
    return image
