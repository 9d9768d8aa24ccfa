"""Automatic foreground mask from a small segmentation network, used for guidance when its weights are installed.

The classical engine never needs it: with no weights (the default) guidance falls back to GrabCut
(:func:`.guidance.grabcut_mask`). torch is imported only inside :func:`load_segmenter`, never on import.

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

from ...paths import cache_dir

WEIGHTS_ENV = "MATTEBOX_SEGMENTATION_WEIGHTS"
WIDTHS = (16, 32, 64, 96)  #: channels of the four encoder stages
INPUT_SIDE = 384  #: long side of the network's input
MEAN = np.array([0.485, 0.456, 0.406], np.float32)  #: ImageNet normalisation (sRGB input)
STD = np.array([0.229, 0.224, 0.225], np.float32)

_cache = {}


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
