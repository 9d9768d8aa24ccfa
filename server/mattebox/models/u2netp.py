"""U^2-Net-p (Qin, Zhang, Huang, Dehghan, Zaiane, Jagersand: "U^2-Net: Going deeper with nested U-structure for
salient object detection", Pattern Recognition 2020): the 4.7 MB salient-object network rembg runs, used here as
automatic guidance (a foreground mask that the classical engine turns into a trimap).

Architecture as the paper's Fig. 2 / Tab. 1 ("U^2-Net†": every RSU block has 16 middle and 64 output channels):
six encoder stages of residual U-blocks RSU-7, -6, -5, -4, -4F, -4F joined by 2x2 max-pooling (ceil mode), five
decoder stages taking the upsampled deeper output concatenated with the encoder skip, a 3x3 side output per
stage upsampled to the input size, and a 1x1 fusion of the six (eq. 1); the fused side through a sigmoid is the
saliency map (the first output, which rembg uses). Upsampling is bilinear to the skip's size (align_corners
False), as in the published code's ``_upsample_like``.

The weights come from the ONNX export shipped in rembg, whose exporter folded each BatchNorm into its
convolution. So this module is the inference form: every REBNCONV is a biased 3x3 convolution and a ReLU, with
no BatchNorm; :func:`from_onnx` fills it from the ONNX initialisers. It is not meant for training.

The automatic guidance does not run this port: it runs the published ONNX graph itself with OpenCV's DNN module
(:mod:`mattebox.matting.segmentation`), so that no torch is imported on the classical path. This port is the
independent implementation both are checked against (tests/test_u2netp.py: onnxruntime and cv2.dnn, <= 1e-4).
"""
from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as F
from torch import nn


class ConvReLU(nn.Module):
    """REBNCONV with its BatchNorm folded into the convolution: 3x3 conv (dilation ``dilation``) + ReLU."""

    def __init__(self, cin: int, cout: int, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation)
        # without BatchNorm, PyTorch's default init lets deep narrow ReLU chains die; He init (He et al., ICCV
        # 2015) with a small positive bias keeps a randomly initialised (test) model's units alive
        nn.init.kaiming_normal_(self.conv.weight, nonlinearity="relu")
        nn.init.constant_(self.conv.bias, 0.1)

    def forward(self, x):
        return F.relu(self.conv(x))


def _up_like(x, target):
    return F.interpolate(x, size=target.shape[-2:], mode="bilinear", align_corners=False)


def _pool(x):
    return F.max_pool2d(x, 2, 2, ceil_mode=True)


class RSU(nn.Module):
    """Residual U-block RSU-L (paper sec. 3.1, Fig. 2): an input conv, an encoder of ``depth`` convs (the last
    dilated 2) with max-pooling between the first ``depth - 2``, a mirrored decoder, and the residual
    ``decoder(x) + input_conv(x)``. ``dilated=True`` is RSU-4F: no pooling, dilations 1, 2, 4, 8 instead."""

    def __init__(self, depth: int, cin: int, mid: int, cout: int, dilated: bool = False):
        super().__init__()
        self.dilated = dilated
        self.inconv = ConvReLU(cin, cout)
        rates = [2 ** i for i in range(depth)] if dilated else [1] * (depth - 1) + [2]
        self.encoder = nn.ModuleList(ConvReLU(cout if i == 0 else mid, mid, rates[i]) for i in range(depth))
        # decoder i (deepest first) sees the concatenation of the deeper result and encoder level depth-2-i
        self.decoder = nn.ModuleList(ConvReLU(2 * mid, cout if i == depth - 2 else mid, rates[depth - 2 - i])
                                     for i in range(depth - 1))

    def forward(self, x):
        hxin = self.inconv(x)
        skips: List[torch.Tensor] = []
        hx = hxin
        for i, conv in enumerate(self.encoder):
            pooled = not self.dilated and 0 < i < len(self.encoder) - 1
            hx = conv(_pool(hx) if pooled else hx)
            skips.append(hx)
        hx = skips.pop()
        for i, conv in enumerate(self.decoder):
            skip = skips.pop()
            if i > 0 and not self.dilated:
                hx = _up_like(hx, skip)
            hx = conv(torch.cat((hx, skip), 1))
        return hx + hxin


class U2NetP(nn.Module):
    """U^2-Net-p. ``forward(image)`` (B x 3 x H x W, ImageNet-normalised sRGB) returns ``{"alpha": saliency}``,
    B x 1 x H x W in [0, 1] (sigmoid of the fused side output; "alpha" as every registry model names its
    matte, though this one is a coarse mask), plus ``"sides"`` (sigmoids of side 1..6) with ``sides=True``.
    ``mid``/``width`` 16/64 is the published model; smaller values build the same graph for tests."""

    #: (RSU depth, dilated) of encoder stages 1..6; decoder stages 5..1 mirror stages 5..1
    STAGES = ((7, False), (6, False), (5, False), (4, False), (4, True), (4, True))

    def __init__(self, mid: int = 16, width: int = 64, in_channels: int = 3):
        super().__init__()
        self.encoder = nn.ModuleList(RSU(depth, in_channels if i == 0 else width, mid, width, dilated)
                                     for i, (depth, dilated) in enumerate(self.STAGES))
        self.decoder = nn.ModuleList(RSU(depth, 2 * width, mid, width, dilated)
                                     for depth, dilated in reversed(self.STAGES[:5]))
        self.side = nn.ModuleList(nn.Conv2d(width, 1, 3, padding=1) for _ in range(6))
        self.fuse = nn.Conv2d(6, 1, 1)

    def forward(self, image, sides: bool = False):
        skips: List[torch.Tensor] = []
        hx = image
        for i, stage in enumerate(self.encoder):
            hx = stage(_pool(hx) if i else hx)
            skips.append(hx)
        deepest = skips.pop()
        decoded = [deepest]  # stage 6, then decoder stages 5, 4, 3, 2, 1
        hx = deepest
        for stage in self.decoder:
            skip = skips.pop()
            hx = stage(torch.cat((_up_like(hx, skip), skip), 1))
            decoded.append(hx)
        # side outputs in the published order: side1 from decoder stage 1 ... side6 from encoder stage 6
        maps = [conv(feature) for conv, feature in zip(self.side, reversed(decoded))]
        maps = [maps[0]] + [_up_like(m, maps[0]) for m in maps[1:]]
        out = {"alpha": torch.sigmoid(self.fuse(torch.cat(maps, 1)))}
        if sides:
            out["sides"] = [torch.sigmoid(m) for m in maps]
        return out


def from_onnx(onnx_bytes: bytes, **config) -> U2NetP:
    """U2NetP(**config) in eval mode with every convolution filled from an ONNX export of the same network
    (:func:`~mattebox.models.onnx_reader.conv_state_dict`, which checks each shape and dilation)."""
    from .onnx_reader import conv_state_dict

    model = U2NetP(**config)
    model.load_state_dict(conv_state_dict(onnx_bytes, model), strict=True)
    return model.eval()
