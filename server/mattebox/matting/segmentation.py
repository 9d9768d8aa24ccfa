"""Automatic foreground masks from segmentation networks, used for guidance when their weights are installed.

Two networks, tried in this order by the engine (:meth:`.engine.ClassicalEngine.guidance`):

* **U^2-Net-p** (Qin et al. 2020), the published salient-object weights rembg ships, installed by
  ``mattebox models pull u2netp`` as ``<models dir>/u2netp.safetensors`` (:mod:`mattebox.models.u2netp`).
  :func:`u2netp_saliency` preprocesses as rembg does (``SimpleSession.predict``): 8-bit RGB resized to 320x320
  with Lanczos, divided by its maximum, ImageNet mean/std; the fused sigmoid output, min-max normalised.
* a small in-house encoder-decoder (below), for weights a studio trained itself.

The classical engine never needs either: with no weights guidance falls back to GrabCut
(:func:`.guidance.grabcut_mask`). torch is imported only when a network runs, never on import.

Weights: ``$MATTEBOX_SEGMENTATION_WEIGHTS`` or ``<cache>/models/classical-segmentation.npz`` (see
:func:`mattebox.paths.cache_dir`) holding the state dict of :func:`build_network` as named float arrays
(``.npz``, read with ``allow_pickle=False``) or a ``.pt`` state dict (read with ``torch.load(weights_only=True)``).
Nothing is fetched from a network. The network is a small encoder-decoder (four stride-2 3×3 conv stages,
bilinear upsampling with skip connections, U-Net style: Ronneberger, Fischer, Brox, MICCAI 2015) that outputs
one foreground logit per pixel at 1/1 of its input, run on a copy scaled to ``input_side`` on the long side.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from ..paths import cache_dir

U2NETP_SIDE = 320  #: U^2-Net-p's input side (rembg's SimpleSession)

WEIGHTS_ENV = "MATTEBOX_SEGMENTATION_WEIGHTS"
WIDTHS = (16, 32, 64, 96)  #: channels of the four encoder stages
INPUT_SIDE = 384  #: long side of the network's input
MEAN = np.array([0.485, 0.456, 0.406], np.float32)  #: ImageNet normalisation (sRGB input)
STD = np.array([0.229, 0.224, 0.225], np.float32)

_cache = {}
_u2netp_cache = {}


def weights_path() -> Optional[Path]:
    """The installed weights file, or None."""
    env = os.environ.get(WEIGHTS_ENV)
    candidates = [Path(env)] if env else [cache_dir() / "models" / "classical-segmentation.npz",
                                          cache_dir() / "models" / "classical-segmentation.pt"]
    return next((p for p in candidates if p.is_file()), None)


def build_network():
    """The segmentation network (torch.nn.Module), randomly initialised."""
    import torch
    from torch import nn

    def stage(cin, cout, stride):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    class SegmentationNet(nn.Module):
        def __init__(self):
            super().__init__()
            chans = (3,) + WIDTHS
            self.encoder = nn.ModuleList(stage(chans[i], chans[i + 1], 2) for i in range(len(WIDTHS)))
            self.decoder = nn.ModuleList(stage(WIDTHS[i + 1] + WIDTHS[i], WIDTHS[i], 1)
                                         for i in reversed(range(len(WIDTHS) - 1)))
            self.head = nn.Conv2d(WIDTHS[0], 1, 1)

        def forward(self, x):  # x: B×3×H×W normalised sRGB -> B×1×H×W logits
            size = x.shape[-2:]
            skips = []
            for block in self.encoder:
                x = block(x)
                skips.append(x)
            for block, skip in zip(self.decoder, reversed(skips[:-1])):
                x = nn.functional.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
                x = block(torch.cat([x, skip], dim=1))
            return nn.functional.interpolate(self.head(x), size=size, mode="bilinear", align_corners=False)

    return SegmentationNet()


def load_segmenter(path: Path):
    """The network with weights from ``path`` (eval mode, CPU). Raises ValueError naming the file when the
    weights do not match the architecture."""
    key = (str(path), path.stat().st_mtime)
    if key in _cache:
        return _cache[key]
    import torch

    net = build_network()
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as arrays:
            state = {name: torch.from_numpy(arrays[name]) for name in arrays.files}
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"segmentation weights {path} do not match the network: {exc}") from None
    net.eval()
    _cache.clear()
    _cache[key] = net
    return net


def segmentation_mask(image_srgb: np.ndarray, path: Path, input_side: int = INPUT_SIDE) -> np.ndarray:
    """Foreground probability H×W float32 in [0, 1] for an sRGB image H×W×3 in [0, 1]."""
    import torch

    net = load_segmenter(path)
    h, w = image_srgb.shape[:2]
    scale = input_side / max(h, w)
    size = (max(16, int(round(w * scale))), max(16, int(round(h * scale))))
    small = (cv2.resize(image_srgb.astype(np.float32), size, interpolation=cv2.INTER_AREA) - MEAN) / STD
    with torch.inference_mode():
        logits = net(torch.from_numpy(np.ascontiguousarray(small.transpose(2, 0, 1)))[None])  # 1×1×h×w
    prob = torch.sigmoid(logits)[0, 0].numpy()
    return cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)


def u2netp_weights() -> Optional[Path]:
    """The installed U^2-Net-p weights file (``mattebox models pull u2netp``), or None. No torch, no hashing."""
    from ..models.registry import get_spec
    from ..models.weights import weights_status

    present, _, path = weights_status(get_spec("u2netp"))
    return path if present else None


def load_u2netp(path: Path):
    """U^2-Net-p with the installed weights, sha256-checked against the install's sidecar (eval mode, CPU)."""
    key = (str(path), path.stat().st_mtime)
    if key not in _u2netp_cache:
        from ..models.registry import build, get_spec
        from ..models.weights import load_spec_weights

        net = build("u2netp")
        load_spec_weights(net, get_spec("u2netp"))
        _u2netp_cache.clear()
        _u2netp_cache[key] = net.eval()
    return _u2netp_cache[key]


def u2netp_saliency(image_srgb: np.ndarray, path: Path) -> np.ndarray:
    """U^2-Net-p's saliency at 320x320, float32 in [0, 1] (min-max normalised), preprocessed as rembg does."""
    import torch
    from PIL import Image

    image8 = (np.clip(image_srgb[..., :3], 0, 1) * 255 + 0.5).astype(np.uint8)
    small = np.asarray(Image.fromarray(image8).resize((U2NETP_SIDE, U2NETP_SIDE), Image.LANCZOS), np.float32)
    small = (small / max(float(small.max()), 1.0) - MEAN) / STD
    with torch.inference_mode():
        pred = load_u2netp(path)(torch.from_numpy(np.ascontiguousarray(small.transpose(2, 0, 1)))[None])["alpha"]
    pred = pred[0, 0].numpy()
    low, high = float(pred.min()), float(pred.max())
    return ((pred - low) / max(high - low, 1e-12)).astype(np.float32)


def u2netp_mask(image_srgb: np.ndarray, path: Path) -> np.ndarray:
    """U^2-Net-p's foreground probability H x W float32 in [0, 1] at the image's size (bilinear upsampling)."""
    h, w = image_srgb.shape[:2]
    return np.clip(cv2.resize(u2netp_saliency(image_srgb, path), (w, h), interpolation=cv2.INTER_LINEAR), 0, 1)
