"""Synthetic shots with exact alpha in every frame, for video-matting metrics (docs/shots.md).

A foreground layer (α, F) drifts smoothly — translation along a slow curve plus a small rotation — over a textured
background that pans, and every frame gets its own sensor noise, so per-frame solves flicker the way they do on
real plates while the picture itself changes smoothly. Frame ``t`` is composited exactly as
``I_t = α_t F_t + (1 − α_t) B_t + n_t`` in linear light, so ``alphas[t]`` is the ground truth of frame ``t``.

Layers: the alpha of an alphamatting-dev image when the data set is present, with the foreground colour that
image implies (Germer et al.'s multilevel estimate from the photo and its true alpha), else the procedural hair of
:mod:`.foregrounds`; backgrounds from :mod:`.backgrounds`. A shot is a pure function of (seed, options).
**Held-out seeds** for benches: :data:`HELD_OUT_SHOT_SEEDS`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import cv2
import numpy as np

from ..paths import alphamatting_dir
from .backgrounds import textured_background
from .foregrounds import hair_foreground
from .pairs import trimap_from_alpha

#: seeds reserved for evaluation (bench/shots.py uses the first N)
HELD_OUT_SHOT_SEEDS = range(2_000_000, 2_001_000)


@dataclass
class SyntheticShot:
    """Per-frame lists; images H×W×3 float32 linear light, alphas H×W float32."""
    frames: List[np.ndarray]
    alphas: List[np.ndarray]
    foregrounds: List[np.ndarray]
    source: str  #: "hair" or "alphamatting:<name>"
    band: int  #: unknown band (px) of :meth:`trimap`
    #: per frame, the 2×3 affine map from the layer's own coordinates onto the frame (the true foreground motion)
    moves: List[np.ndarray] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.frames)

    def layer_flow(self, t: int, s: int) -> np.ndarray:
        """H×W×2 float32 true flow of the foreground layer on frame ``t`` into frame ``s`` (the convention of
        :mod:`mattebox.matting.motion`: ``α_t(p) = α_s(p + d(p))`` up to resampling): ``p + d = M_s M_t⁻¹ p``."""
        h, w = self.alphas[t].shape
        to_s = np.vstack([self.moves[s], [0, 0, 1]]) @ np.linalg.inv(np.vstack([self.moves[t], [0, 0, 1]]))
        xs, ys = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
        flow = np.stack([to_s[0, 0] * xs + to_s[0, 1] * ys + to_s[0, 2] - xs,
                         to_s[1, 0] * xs + to_s[1, 1] * ys + to_s[1, 2] - ys], axis=-1)
        return flow.astype(np.float32)

    def trimap(self, t: int) -> np.ndarray:
        """The animated-roto trimap of frame ``t``: every fractional pixel unknown, dilated by ``band`` px."""
        return trimap_from_alpha(self.alphas[t], self.band)


def _real_layer(size: Tuple[int, int], rng: np.random.Generator) -> Optional[Tuple[np.ndarray, np.ndarray, str]]:
    """(foreground, alpha, source) from a random alphamatting-dev image covering ``size``, or None without it."""
    root = alphamatting_dir()
    names = sorted((root / "alpha").glob("*.png")) if root is not None else []
    if not names:
        return None
    from ..colour import srgb_to_linear
    from ..matting.foreground import multilevel

    path = names[int(rng.integers(len(names)))]
    image = cv2.cvtColor(cv2.imread(str(root / "image" / path.name), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    alpha = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    h, w = size
    scale = max(h / alpha.shape[0], w / alpha.shape[1])
    dsize = (int(np.ceil(alpha.shape[1] * scale)), int(np.ceil(alpha.shape[0] * scale)))
    y0, x0 = (dsize[1] - h) // 2, (dsize[0] - w) // 2
    alpha = cv2.resize(alpha, dsize, interpolation=cv2.INTER_AREA)[y0:y0 + h, x0:x0 + w].astype(np.float32) / 255
    image = srgb_to_linear(cv2.resize(image, dsize, interpolation=cv2.INTER_AREA)[y0:y0 + h, x0:x0 + w] / 255.0)
    foreground = np.clip(multilevel(image, alpha), 0.0, 1.0).astype(np.float32)
    return foreground, np.ascontiguousarray(alpha), f"alphamatting:{path.stem}"


def make_shot(seed: int, size: Tuple[int, int] = (240, 320), length: int = 24, noise_sigma: float = 0.01,
              drift_px: float = 6.0, drift_period: float = 60.0, pan_px_per_frame: float = 1.5, band: int = 6,
              real_alpha: Optional[bool] = None) -> SyntheticShot:
    """One synthetic shot of ``length`` frames of ``size`` (H, W).

    ``drift_px``, ``drift_period``: amplitude (px) and period (frames) of the foreground's smooth path (at most
    2π·drift_px/drift_period px a frame: a subject moving slowly, as most plates that flicker do);
    ``pan_px_per_frame``: background pan speed; ``noise_sigma``: per-frame Gaussian sensor noise (linear light).
    ``real_alpha`` None: every other seed uses an alphamatting-dev layer when the data set is present."""
    rng = np.random.default_rng(seed)
    h, w = size
    layer = _real_layer(size, rng) if (real_alpha is None and seed % 2 == 1) or real_alpha else None
    if layer is None:
        foreground, alpha = hair_foreground(size, rng)
        source = "hair"
    else:
        foreground, alpha, source = layer
    margin = int(np.ceil(pan_px_per_frame * length + 8))
    canvas = textured_background((h + 2 * margin, w + 2 * margin), rng)
    pan = rng.uniform(-1.0, 1.0, 2)
    pan *= pan_px_per_frame / max(float(np.linalg.norm(pan)), 1e-6)
    phase, omega = rng.uniform(0, 2 * np.pi, 2), rng.uniform(0.6, 1.4, 2) * 2 * np.pi / drift_period
    spin = rng.uniform(-2.0, 2.0)  # degrees over the shot
    frames, alphas, foregrounds, moves = [], [], [], []
    for t in range(length):
        offset = drift_px * (np.sin(omega * t + phase) - np.sin(phase))
        move = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), spin * t / max(length - 1, 1), 1.0)
        move[:, 2] += offset
        a_t = cv2.warpAffine(alpha, move, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        f_t = cv2.warpAffine(foreground, move, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        shift = np.float32([[1, 0, -(margin + pan[0] * t)], [0, 1, -(margin + pan[1] * t)]])
        b_t = cv2.warpAffine(canvas, shift, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        image = a_t[..., None] * f_t + (1.0 - a_t[..., None]) * b_t
        image = image + rng.normal(0.0, noise_sigma, image.shape).astype(np.float32)
        frames.append(np.clip(image, 0.0, 1.0).astype(np.float32))
        alphas.append(np.clip(a_t, 0.0, 1.0).astype(np.float32))
        foregrounds.append(f_t.astype(np.float32))
        moves.append(move)
    return SyntheticShot(frames=frames, alphas=alphas, foregrounds=foregrounds, source=source, band=band,
                         moves=moves)
