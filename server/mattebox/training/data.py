"""Training and held-out samples made on the fly, deterministic by seed.

A sample is a foreground (procedural thin structures from :mod:`mattebox.synth.foregrounds`, or a real alpha of
alphamatting-dev with its foreground colour estimated by multilevel foreground estimation) composited in linear
light over a richly textured background (:mod:`mattebox.synth.backgrounds`), with layer jitter, a trimap by random
dilation/erosion and camera-like degradations of the input (:mod:`mattebox.synth.augment`).

Seeds: training sample ``i`` uses seed ``base_seed + i``; the held-out set uses the fixed range
``HELDOUT_SEEDS``. :class:`SynthMattingDataset` refuses any training seed inside that range or the pair
generator's ``HELD_OUT_SEEDS``, so held-out samples are never trained on. alphamatting-dev images used as
training foregrounds are listed in the config and excluded from alphamatting-dev evaluation (see
:func:`mattebox.training.evaluate.alphamatting_names`). With ``two_frame`` a sample is a synthetic parallax pair
with its flow-aligned views (Parallax Portrait Matting §4.2–4.3, §5.1).

Network-side values: colour images are sRGB-encoded in [0, 1] (datasets and the papers' networks work on
perceptual values); composites are formed in linear light, then encoded.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ..colour import linear_to_srgb, srgb_to_linear
from ..synth import augment
from ..synth.backgrounds import textured_background
from ..synth.foregrounds import FOREGROUNDS

#: seeds of the held-out synthetic set: [start, start + 100000); training seeds must stay below the start
HELDOUT_SEED_START = 2_000_000_000
HELDOUT_SEED_COUNT = 100_000
HELDOUT_SEEDS = range(HELDOUT_SEED_START, HELDOUT_SEED_START + HELDOUT_SEED_COUNT)


@dataclass
class DataConfig:
    """What samples look like. Field names are the keys of a training config's ``"data"`` object."""

    crop: int = 128  #: square sample size in pixels
    kinds: Sequence[str] = tuple(FOREGROUNDS)  #: procedural foreground kinds to draw from
    #: alphamatting-dev names used as real foregrounds (then excluded from alphamatting-dev evaluation)
    alphamatting_foregrounds: Sequence[str] = ()
    alphamatting_fraction: float = 0.0  #: share of samples using those real foregrounds
    trimap_iterations: Tuple[int, int] = augment.PAPER_ITERATIONS
    trimap_reference: int = augment.PAPER_RESOLUTION  #: iterations are scaled by crop / this
    trimap_cover_soft: bool = True
    colour_jitter: float = 1.0
    alpha_gamma: float = 0.5  #: probability of a random α^γ
    degrade: bool = True
    #: two-frame samples: a synthetic parallax pair (mattebox.synth.pairs, hair foregrounds) and the aligned views
    #: the Parallax net takes (mattebox.matting.align.align_pair): bg_aligned, fg_aligned, companion, warped_trimap
    two_frame: bool = False

    @classmethod
    def from_dict(cls, values: Dict) -> "DataConfig":
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"data: unknown keys {sorted(unknown)} (expected some of "
                             f"{sorted(cls.__dataclass_fields__)})")
        config = cls(**values)
        bad = [k for k in config.kinds if k not in FOREGROUNDS]
        if bad:
            raise ValueError(f"data.kinds: unknown foreground kinds {bad} (expected some of {sorted(FOREGROUNDS)})")
        if config.crop < 16:
            raise ValueError(f"data.crop must be at least 16 pixels, got {config.crop}")
        if config.alphamatting_fraction > 0 and not config.alphamatting_foregrounds:
            raise ValueError("data.alphamatting_fraction > 0 needs data.alphamatting_foregrounds (names like GT01)")
        return config


def load_alphamatting(name: str, trimap_dir: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image sRGB H×W×3 float32 in [0, 1], ground-truth alpha H×W, trimap H×W {0, 0.5, 1})."""
    from ..imageio import read_gray, read_image
    from ..paths import alphamatting_dir

    folder = alphamatting_dir()
    if folder is None:
        raise FileNotFoundError("alphamatting-dev is not available (set MATTEBOX_ALPHAMATTING, or remove "
                                "data.alphamatting_foregrounds to train without it)")
    image, _ = read_image(str(folder / "image" / f"{name}.png"))
    trimap = read_gray(str(folder / trimap_dir / f"{name}.png"))
    trimap = np.where(trimap < 0.25, 0.0, np.where(trimap > 0.75, 1.0, 0.5)).astype(np.float32)
    return (image[..., :3] / 255.0).astype(np.float32), read_gray(str(folder / "alpha" / f"{name}.png")), trimap


@functools.lru_cache(maxsize=16)
def alphamatting_foreground(name: str) -> Tuple[np.ndarray, np.ndarray]:
    """(foreground H×W×3 linear, alpha H×W) of an alphamatting-dev image: its ground-truth alpha and a foreground
    colour estimated from the photo by multilevel foreground estimation (Germer et al. 2020)."""
    from ..matting.foreground import multilevel

    image, alpha, _ = load_alphamatting(name, "trimap1")
    linear = srgb_to_linear(image).astype(np.float32)
    foreground = multilevel(linear, alpha.astype(np.float32))
    return np.clip(foreground, 0, 1).astype(np.float32), alpha.astype(np.float32)


def _real_foreground(size: int, rng: np.random.Generator, names: Sequence[str]):
    """A random square crop (scale 0.5–1.0 of the short side) of a real foreground, centred near its edge."""
    foreground, alpha = alphamatting_foreground(names[int(rng.integers(len(names)))])
    h, w = alpha.shape
    side = int(min(h, w) * rng.uniform(0.5, 1.0))
    edge = np.argwhere((alpha > 0.05) & (alpha < 0.95))
    cy, cx = edge[int(rng.integers(len(edge)))] if len(edge) else (h // 2, w // 2)
    y0 = int(np.clip(cy - side // 2, 0, h - side))
    x0 = int(np.clip(cx - side // 2, 0, w - side))
    crop = (slice(y0, y0 + side), slice(x0, x0 + side))
    fg = cv2.resize(foreground[crop], (size, size), interpolation=cv2.INTER_AREA)
    a = cv2.resize(alpha[crop], (size, size), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        fg, a = fg[:, ::-1], a[:, ::-1]
    return np.ascontiguousarray(fg), np.ascontiguousarray(a)


def _two_frame_sample(seed: int, config: DataConfig, rng: np.random.Generator) -> Dict[str, np.ndarray]:
    """A parallax pair (procedural hair only: the pair generator's alphamatting-dev alphas would leak the
    evaluation set) with this module's trimap and degradations, plus the aligned views estimated by optical flow
    from the degraded frames, as at inference."""
    from ..synth.pairs import make_pair
    from ..matting.align import align_pair

    pair = make_pair(seed, (config.crop, config.crop), real_alpha=False)
    clean = linear_to_srgb(np.clip(pair.image, 0, 1)).astype(np.float32)
    second = linear_to_srgb(np.clip(pair.second, 0, 1)).astype(np.float32)
    trimap = augment.random_trimap(pair.alpha, rng, config.trimap_iterations, config.trimap_reference,
                                   config.trimap_cover_soft)
    image = augment.degrade(clean, rng) if config.degrade else clean
    second = augment.degrade(second, rng) if config.degrade else second
    aligned = align_pair(image, second, trimap)
    return {"image": image, "clean": clean, "alpha": pair.alpha.astype(np.float32),
            "foreground": linear_to_srgb(pair.foreground).astype(np.float32),
            "background": linear_to_srgb(pair.background).astype(np.float32), "trimap": trimap,
            "bg_aligned": aligned.background_aligned.astype(np.float32),
            "fg_aligned": aligned.foreground_aligned.astype(np.float32),
            "companion": aligned.companion.astype(np.float32),
            "warped_trimap": aligned.warped_trimap.astype(np.float32)}


def make_sample(seed: int, config: DataConfig) -> Dict[str, np.ndarray]:
    """One sample, a pure function of (seed, config). Arrays (float32, sRGB-encoded colour):
    ``image`` H×W×3 network input (degraded), ``clean`` H×W×3 exact composite, ``alpha`` H×W, ``foreground``
    H×W×3, ``background`` H×W×3, ``trimap`` H×W {0, 0.5, 1}."""
    rng = np.random.default_rng(seed)
    if config.two_frame:
        return _two_frame_sample(seed, config, np.random.default_rng([seed, 1]))
    size = (config.crop, config.crop)
    if config.alphamatting_foregrounds and rng.random() < config.alphamatting_fraction:
        fg, alpha = _real_foreground(config.crop, rng, config.alphamatting_foregrounds)
    else:
        kind = config.kinds[int(rng.integers(len(config.kinds)))]
        fg, alpha = FOREGROUNDS[kind](size, rng)
    bg = textured_background(size, rng)
    if config.colour_jitter > 0:
        fg = colour_jitter_linear(fg, rng, config.colour_jitter)
        bg = colour_jitter_linear(bg, rng, config.colour_jitter)
    if rng.random() < config.alpha_gamma:
        alpha = augment.alpha_gamma(alpha, rng)
    composite = alpha[..., None] * fg + (1 - alpha[..., None]) * bg
    clean = linear_to_srgb(np.clip(composite, 0, 1)).astype(np.float32)
    trimap = augment.random_trimap(alpha, rng, config.trimap_iterations, config.trimap_reference,
                                   config.trimap_cover_soft)
    image = augment.degrade(clean, rng) if config.degrade else clean
    return {"image": image, "clean": clean, "alpha": alpha.astype(np.float32),
            "foreground": linear_to_srgb(fg).astype(np.float32), "background": linear_to_srgb(bg).astype(np.float32),
            "trimap": trimap}


def colour_jitter_linear(linear: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Colour jitter applied on sRGB-encoded values (perceptual ranges), returned in linear light."""
    return srgb_to_linear(augment.colour_jitter(linear_to_srgb(linear), rng, strength)).astype(np.float32)


def to_tensors(sample: Dict[str, np.ndarray]):
    """numpy H×W(×C) arrays -> torch C×H×W float32 tensors."""
    out = {}
    for key, value in sample.items():
        array = value[None] if value.ndim == 2 else value.transpose(2, 0, 1)
        out[key] = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    return out


def single_threaded_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: one OpenCV thread per worker. The workers already use every core between
    them; OpenCV's own pool (one thread per core in each worker) would oversubscribe the machine N-fold."""
    cv2.setNumThreads(1)


class SynthMattingDataset(Dataset):
    """Training samples ``base_seed + index`` for index in [0, length): a torch Dataset of tensor dicts."""

    def __init__(self, config: DataConfig, length: int, base_seed: int = 0):
        seeds = range(base_seed, base_seed + length)
        for held_out in reserved_seed_ranges():
            if base_seed < 0 or (seeds.start < held_out.stop and held_out.start < seeds.stop):
                raise ValueError(f"training seeds {seeds.start}..{seeds.stop - 1} overlap the held-out range "
                                 f"{held_out.start}..{held_out.stop - 1}; choose another seed")
        self.config, self.length, self.base_seed = config, length, base_seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        if not 0 <= index < self.length:
            raise IndexError(index)
        return to_tensors(make_sample(self.base_seed + index, self.config))


def reserved_seed_ranges() -> List[range]:
    """Seed ranges training must never draw: this module's held-out set and the pair generator's."""
    ranges = [HELDOUT_SEEDS]
    try:
        from ..synth.pairs import HELD_OUT_SEEDS as PAIR_HELD_OUT_SEEDS
    except ImportError:
        return ranges
    return ranges + [PAIR_HELD_OUT_SEEDS]


def heldout_samples(count: int, config: DataConfig) -> List[Dict[str, np.ndarray]]:
    """The first ``count`` held-out samples (fixed seeds, same recipe as training)."""
    if count > HELDOUT_SEED_COUNT:
        raise ValueError(f"at most {HELDOUT_SEED_COUNT} held-out samples, asked for {count}")
    return [make_sample(HELDOUT_SEED_START + i, config) for i in range(count)]

