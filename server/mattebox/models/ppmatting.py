"""PP-Matting (Chen et al. 2022, pp-matting.txt sec. 3.1-3.3) laid out exactly as PaddleSeg's implementation
(Matting/ppmatting/models/ppmatting.py with the HRNet of Matting/ppmatting/models/backbone/hrnet.py), so that
PaddleSeg's published .pdparams load one to one through :mod:`.ppmatting_convert`.

* HRNet (Wang et al. 2020): a stem of two stride-2 3×3 ConvBNReLU (64 ch), stage 1 of bottlenecks, stages 2-4
  with 2/3/4 parallel branches of widths W·(1, 2, 4, 8) and repeated multi-resolution fusion. Every 3×3 conv uses
  Paddle's ``padding='same'``: at stride 2 it pads asymmetrically, more on the bottom/right (:class:`Conv2dSame`).
* SCB (semantic context branch): pyramid pooling (bins 1, 3, 5) on the 1/32 feature, five stages of
  ConvBNReLU ×3 + ×2 bilinear upsampling fed with upsampled pyramid features, a last stage giving 3-class logits
  (PaddleSeg's order: 0 foreground, 1 transition, 2 background).
* HRDB (high-resolution detail branch): the stem's 1/2 feature and HRNet's 1/4 branch upsampled to full size,
  residual blocks and 1×1 convs with gated spatial convolutions guided by SCB stages 0, 2 and 4 (eqs. 2-3).
* Fusion (sec. 3.3, PaddleSeg ``PPMatting.fusion``): argmax of the softmaxed semantic map; alpha = detail inside
  the transition class, 1 in the foreground class, 0 in the background class.

Every BatchNorm has eps 1e-5 (Paddle's momentum 0.9 is torch's 0.1); every bilinear resize uses
align_corners=False (Paddle's align_mode 0 = half-pixel, as torch). Sub-module names are PaddleSeg's, so a
checkpoint maps key for key (BatchNorm ``_mean``/``_variance`` -> ``running_mean``/``running_var``).

forward(image B×3×H×W normalised with mean = std = 0.5, H and W multiples of 32) -> {"alpha": B×1×H×W,
"semantic": B×3×H×W logits in mattebox's class order (background, transition, foreground; training/losses.py),
"detail": B×1×H×W}. :func:`predict` runs a whole frame as PaddleSeg's inference does (resize, normalise, resize
back).
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .vit import check_input

#: PaddleSeg's semantic classes (PPMatting.fusion)
PADDLE_FOREGROUND, PADDLE_TRANSITION, PADDLE_BACKGROUND = 0, 1, 2
#: input normalisation of every PaddleSeg matting config (transforms.Normalize defaults)
MEAN = STD = (0.5, 0.5, 0.5)
#: PaddleSeg's inference resizes each side down to a multiple of this (transforms.ResizeToIntMult)
SIZE_MULTIPLE = 32


def _bilinear(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


# -- Paddle layer equivalents ---------------------------------------------------------------------------------------
class Conv2dSame(nn.Conv2d):
    """Paddle's ``padding='same'``: output ceil(in / stride); the total padding max((out-1)·s + (k-1)·d + 1 - in,
    0) is split with the smaller half on the top/left (for a stride-2 3×3 conv on an even size: 0 before, 1 after).
    """

    def forward(self, x):
        pads = []
        for size, k, s, d in zip(x.shape[-2:], self.kernel_size, self.stride, self.dilation):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        return F.conv2d(F.pad(x, (left, right, top, bottom)), self.weight, self.bias, self.stride, 0,
                        self.dilation, self.groups)


def paddle_conv(cin: int, cout: int, kernel: int, stride: int = 1, padding="same", dilation: int = 1,
                bias: bool = True) -> nn.Conv2d:
    """nn.Conv2D as Paddle builds it; ``padding='same'`` is symmetric at stride 1 (odd kernels), else Conv2dSame."""
    if padding == "same":
        if stride == 1 and kernel % 2:
            return nn.Conv2d(cin, cout, kernel, 1, (kernel - 1) // 2 * dilation, dilation, bias=bias)
        return Conv2dSame(cin, cout, kernel, stride, 0, dilation, bias=bias)
    return nn.Conv2d(cin, cout, kernel, stride, padding, dilation, bias=bias)


class ConvBN(nn.Module):
    """paddleseg.models.layers.ConvBN (``_conv`` + ``_batch_norm``); ConvBNReLU adds a ReLU."""
    relu = False

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, padding="same", dilation: int = 1,
                 bias: bool = True):
        super().__init__()
        self._conv = paddle_conv(cin, cout, kernel, stride, padding, dilation, bias)
        self._batch_norm = nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1)

    def forward(self, x):
        x = self._batch_norm(self._conv(x))
        return F.relu(x) if self.relu else x


class ConvBNReLU(ConvBN):
    relu = True


# -- HRNet (backbone/hrnet.py) ---------------------------------------------------------------------------------------
class BottleneckBlock(nn.Module):
    def __init__(self, cin: int, filters: int, downsample: bool):
        super().__init__()
        self.conv1 = ConvBNReLU(cin, filters, 1, bias=False)
        self.conv2 = ConvBNReLU(filters, filters, 3, bias=False)
        self.conv3 = ConvBN(filters, filters * 4, 1, bias=False)
        self.conv_down = ConvBN(cin, filters * 4, 1, bias=False) if downsample else None

    def forward(self, x):
        residual = x if self.conv_down is None else self.conv_down(x)
        return F.relu(self.conv3(self.conv2(self.conv1(x))) + residual)


class HRBasicBlock(nn.Module):
    def __init__(self, cin: int, filters: int):
        super().__init__()
        self.conv1 = ConvBNReLU(cin, filters, 3, bias=False)
        self.conv2 = ConvBN(filters, filters, 3, bias=False)

    def forward(self, x):
        return F.relu(self.conv2(self.conv1(x)) + x)


class HighResolutionModule(nn.Module):
    """Branches of basic blocks, then every branch fuses every other: higher resolutions reach lower ones through
    chains of stride-2 3×3 ConvBN(ReLU), lower ones are 1×1 ConvBN then bilinear upsampled. Children are named
    as PaddleSeg's Branches/FuseLayers name them (``bb_st2_1_branch_layer_1_1``, ``residual_st2_1_layer_2_1_1``).
    ``outputs`` limits the fused outputs computed (the rest are never used downstream)."""

    def __init__(self, channels: Sequence[int], blocks: int, name: str):
        super().__init__()
        self.branches_func = nn.Module()
        self.branch_names: List[List[str]] = []
        for i, c in enumerate(channels):
            names = [f"bb_{name}_branch_layer_{i + 1}_{j + 1}" for j in range(blocks)]
            for block_name in names:
                self.branches_func.add_module(block_name, HRBasicBlock(c, c))
            self.branch_names.append(names)
        self.fuse_func = nn.Module()
        #: fuse_names[i][j]: the module names taking branch j to branch i (empty for j == i)
        self.fuse_names: List[List[List[str]]] = []
        for i, ci in enumerate(channels):
            row = []
            for j, cj in enumerate(channels):
                names = []
                if j > i:
                    names.append(f"residual_{name}_layer_{i + 1}_{j + 1}")
                    self.fuse_func.add_module(names[-1], ConvBN(cj, ci, 1, bias=False))
                elif j < i:
                    cin = cj
                    for k in range(i - j):
                        names.append(f"residual_{name}_layer_{i + 1}_{j + 1}_{k + 1}")
                        last = k == i - j - 1
                        layer = (ConvBN if last else ConvBNReLU)(cin, ci if last else cj, 3, stride=2, bias=False)
                        self.fuse_func.add_module(names[-1], layer)
                        cin = ci if last else cj
                row.append(names)
            self.fuse_names.append(row)

    def forward(self, xs: List[torch.Tensor], outputs: Optional[Sequence[int]] = None) -> List[Optional[torch.Tensor]]:
        xs = [self._chain(self.branches_func, names, x) for names, x in zip(self.branch_names, xs)]
        out: List[Optional[torch.Tensor]] = []
        for i, row in enumerate(self.fuse_names):
            if outputs is not None and i not in outputs:
                out.append(None)
                continue
            total = xs[i]
            for j, names in enumerate(row):
                if j > i:
                    total = total + _bilinear(self._chain(self.fuse_func, names, xs[j]), xs[i].shape[-2:])
                elif j < i:
                    total = total + self._chain(self.fuse_func, names, xs[j])
            out.append(F.relu(total))
        return out

    @staticmethod
    def _chain(parent: nn.Module, names: Sequence[str], x: torch.Tensor) -> torch.Tensor:
        for name in names:
            x = getattr(parent, name)(x)
        return x


class HRNet(nn.Module):
    """HRNet-W{width} as PaddleSeg builds it (HRNet_W18 / HRNet_W48: blocks 4 everywhere, modules 1/4/3 in
    stages 2-4). forward -> [stem 1/2 feature (64 ch), branch outputs at 1/4, 1/8, 1/16, 1/32]; ``outputs`` picks
    which of the four branch outputs the last module computes (others come back as None)."""

    def __init__(self, width: int = 18, stage1_channels: int = 64, blocks: Sequence[int] = (4, 4, 4, 4),
                 modules: Sequence[int] = (1, 4, 3)):
        super().__init__()
        self.widths = [width * 2 ** i for i in range(4)]
        self.feat_channels = [64] + self.widths
        self.conv_layer1_1 = ConvBNReLU(3, 64, 3, stride=2, bias=False)
        self.conv_layer1_2 = ConvBNReLU(64, 64, 3, stride=2, bias=False)
        self.la1 = nn.Module()
        self.la1_names = [f"bb_layer2_{i + 1}" for i in range(blocks[0])]
        for i, name in enumerate(self.la1_names):
            self.la1.add_module(name, BottleneckBlock(64 if i == 0 else stage1_channels * 4, stage1_channels, i == 0))
        previous = [stage1_channels * 4]
        self.transition_names: List[List[Optional[str]]] = []
        self.stage_names: List[List[str]] = []
        for n, (tag, stage) in enumerate(zip(("tr1", "tr2", "tr3"), ("st2", "st3", "st4"))):
            channels = self.widths[:n + 2]
            transition = nn.Module()
            names: List[Optional[str]] = []
            for i, c in enumerate(channels):
                name = f"transition_{tag}_layer_{i + 1}"
                if i < len(previous) and previous[i] != c:
                    transition.add_module(name, ConvBNReLU(previous[i], c, 3, bias=False))
                elif i >= len(previous):
                    transition.add_module(name, ConvBNReLU(previous[-1], c, 3, stride=2, bias=False))
                else:
                    name = None
                names.append(name)
            setattr(self, tag, transition)
            self.transition_names.append(names)
            block = nn.Module()
            module_names = [f"stage_{stage}_{m + 1}" for m in range(modules[n])]
            for m, module_name in enumerate(module_names):
                block.add_module(module_name, HighResolutionModule(channels, blocks[n + 1], f"{stage}_{m + 1}"))
            setattr(self, stage, block)
            self.stage_names.append(module_names)
            previous = channels

    def forward(self, x: torch.Tensor, outputs: Optional[Sequence[int]] = None) -> List[Optional[torch.Tensor]]:
        stem = self.conv_layer1_1(x)
        y = self.conv_layer1_2(stem)
        for name in self.la1_names:
            y = getattr(self.la1, name)(y)
        xs = [y]
        for tag, stage, names, module_names in zip(("tr1", "tr2", "tr3"), ("st2", "st3", "st4"),
                                                   self.transition_names, self.stage_names):
            transition = getattr(self, tag)
            xs = [xs[min(i, len(xs) - 1)] if name is None else getattr(transition, name)(xs[min(i, len(xs) - 1)])
                  for i, name in enumerate(names)]
            for m, module_name in enumerate(module_names):
                last = stage == "st4" and m == len(module_names) - 1
                xs = getattr(getattr(self, stage), module_name)(xs, outputs if last else None)
        return [stem] + xs


# -- SCB ---------------------------------------------------------------------------------------------------------
class PPModule(nn.Module):
    """paddleseg.models.layers.PPModule without dimension reduction: adaptive average pools (bins), 1×1
    ConvBNReLU each, upsampled and concatenated after the input in reverse bin order, then a 3×3 ConvBNReLU."""

    def __init__(self, cin: int, cout: int, bins: Sequence[int] = (1, 3, 5)):
        super().__init__()
        self.stages = nn.ModuleList(nn.Sequential(nn.AdaptiveAvgPool2d(b), ConvBNReLU(cin, cin, 1)) for b in bins)
        self.conv_bn_relu2 = ConvBNReLU(cin * (len(bins) + 1), cout, 3, padding=1)

    def forward(self, x):
        pooled = [_bilinear(stage(x), x.shape[-2:]) for stage in self.stages]
        return self.conv_bn_relu2(torch.cat([x] + pooled[::-1], 1))


class Upsample(nn.Module):
    def __init__(self, scale: int):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        return F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)


class SCB(nn.Module):
    """Semantic context branch (pp-matting sec. 3.1). PaddleSeg's widths: psp 512, mid (512, 256, 128, 128, 64,
    64), out (256, 128, 64, 64, 64, 3); stage i > 0 takes 2·out[i-1] channels (its input and the pyramid feature
    upsampled to its size), stage 0 psp + the backbone's channels. Stage 0's 2nd and 3rd convs are dilated 2."""

    def __init__(self, cin: int, psp_channels: int = 512, mid: Sequence[int] = (512, 256, 128, 128, 64, 64),
                 out: Sequence[int] = (256, 128, 64, 64, 64, 3)):
        super().__init__()
        if len(mid) != 6 or len(out) != 6 or out[-1] != 3:
            raise ValueError(f"SCB needs 6 mid and 6 out widths ending in 3 classes, got mid={mid}, out={out}")
        self.out_channels = list(out)
        inputs = [psp_channels + cin] + [2 * c for c in out[:4]] + [out[4]]
        self.psp_module = PPModule(cin, psp_channels)
        self.psps = nn.ModuleList(nn.Sequential(ConvBNReLU(psp_channels, out[i], 3, padding=1), Upsample(2 ** (i + 1)))
                                  for i in range(4))
        stages = []
        for i in range(5):
            d = 2 if i == 0 else 1
            stages.append(nn.Sequential(ConvBNReLU(inputs[i], mid[i], 3, padding=1),
                                        ConvBNReLU(mid[i], mid[i], 3, padding=d, dilation=d),
                                        ConvBNReLU(mid[i], out[i], 3, padding=d, dilation=d), Upsample(2)))
        stages.append(nn.Sequential(ConvBNReLU(inputs[5], mid[5], 3, padding=1),
                                    ConvBNReLU(mid[5], mid[5], 3, padding=1), nn.Conv2d(mid[5], out[5], 3, 1, 1)))
        self.scb_stages = nn.ModuleList(stages)

    def forward(self, x) -> List[torch.Tensor]:
        psp_x = self.psp_module(x)
        psps = [psp(psp_x) for psp in self.psps]
        logits = []
        for i, stage in enumerate(self.scb_stages):
            if i == 0:
                x = stage(torch.cat((psp_x, x), 1))
            elif i <= len(psps):
                x = stage(torch.cat((psps[i - 1], x), 1))
            else:
                x = stage(x)
            logits.append(x)
        return logits


# -- HRDB ------------------------------------------------------------------------------------------------------------
class ConvBNLayer(nn.Module):
    """resnet_vd.ConvBNLayer (no vd pooling at stride 1): conv (padding (k-1)/2, no bias), BatchNorm."""

    def __init__(self, cin: int, cout: int, kernel: int):
        super().__init__()
        self._conv = nn.Conv2d(cin, cout, kernel, 1, (kernel - 1) // 2, bias=False)
        self._batch_norm = nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1)

    def forward(self, x):
        return self._batch_norm(self._conv(x))


class ResBlock(nn.Module):
    """resnet_vd.BasicBlock at stride 1: 3×3 ConvBN-ReLU, 3×3 ConvBN, plus the input (a 1×1 ConvBN when the
    widths differ, ``shortcut=False``), ReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv0 = ConvBNLayer(cin, cout, 3)
        self.conv1 = ConvBNLayer(cout, cout, 3)
        self.short = ConvBNLayer(cin, cout, 1) if cin != cout else None

    def forward(self, x):
        y = self.conv1(F.relu(self.conv0(x)))
        return F.relu((x if self.short is None else self.short(x)) + y)


class GatedSpatialConv(nn.Module):
    """Guidance flow gate (pp-matting eqs. 2-3; PaddleSeg GatedSpatailConv2d): α = σ(BN(conv(ReLU(conv(BN(d ‖
    g)))))), output conv1×1(d ⊙ (α + 1)) without bias."""

    def __init__(self, channels: int):
        super().__init__()
        c = channels + 1
        self._gate_conv = nn.Sequential(nn.BatchNorm2d(c, eps=1e-5, momentum=0.1), nn.Conv2d(c, c, 1), nn.ReLU(),
                                        nn.Conv2d(c, 1, 1), nn.BatchNorm2d(1, eps=1e-5, momentum=0.1), nn.Sigmoid())
        self.conv = nn.Conv2d(channels, channels, 1, bias=False)

    def forward(self, x, gate):
        return self.conv(x * (self._gate_conv(torch.cat([x, gate], 1)) + 1))


class HRDB(nn.Module):
    """High-resolution detail branch (pp-matting sec. 3.2): per step a residual block, a 1×1 conv narrowing the
    width (64 -> 32 -> 16 -> 8 in PaddleSeg), and a gate guided by a 1×1 conv of SCB stage ``guides[i]``."""

    def __init__(self, cin: int, scb_channels: Sequence[int], channels: Sequence[int] = (64, 32, 16, 8),
                 guides: Sequence[int] = (0, 2, 4)):
        super().__init__()
        if len(channels) != len(guides) + 1:
            raise ValueError(f"HRDB needs one more width than guides, got channels={channels}, guides={guides}")
        self.guides = tuple(guides)
        self.gf_list = nn.ModuleList(nn.Conv2d(scb_channels[i], 1, 1) for i in guides)
        self.res_list = nn.ModuleList([ResBlock(cin, channels[0])] + [ResBlock(c, c) for c in channels[1:-1]])
        self.convs = nn.ModuleList(nn.Conv2d(channels[i], channels[i + 1], 1) for i in range(len(channels) - 1))
        self.gates = nn.ModuleList(GatedSpatialConv(c) for c in channels[1:])
        self.detail_conv = nn.Conv2d(channels[-1], 1, 1, bias=False)

    def forward(self, x, scb_logits: List[torch.Tensor]):
        for i, guide in enumerate(self.guides):
            x = self.convs[i](self.res_list[i](x))
            gate = _bilinear(self.gf_list[i](scb_logits[guide]), x.shape[-2:])
            x = self.gates[i](x, gate)
        return self.detail_conv(x)


# -- the model -------------------------------------------------------------------------------------------------------
class PPMatting(nn.Module):
    """PaddleSeg's PPMatting(backbone=HRNet_W{width}). The defaults of the SCB/HRDB widths are PaddleSeg's; tests
    and the parity fixture shrink them. ``max_short`` is not architecture: the short side :func:`predict` limits
    frames to, as the checkpoint's PaddleSeg config does (W48 1536; W18 human_512 / human_1024: 512 / 1024)."""

    def __init__(self, hrnet_width: int = 48, stage1_channels: int = 64, blocks: Sequence[int] = (4, 4, 4, 4),
                 modules: Sequence[int] = (1, 4, 3), psp_channels: int = 512,
                 scb_mid: Sequence[int] = (512, 256, 128, 128, 64, 64),
                 scb_out: Sequence[int] = (256, 128, 64, 64, 64, 3), hrdb_channels: Sequence[int] = (64, 32, 16, 8),
                 max_short: Optional[int] = 1536):
        super().__init__()
        self.max_short = max_short
        self.backbone = HRNet(hrnet_width, stage1_channels, blocks, modules)
        feats = self.backbone.feat_channels
        self.scb = SCB(feats[-1], psp_channels, scb_mid, scb_out)
        self.hrdb = HRDB(feats[0] + feats[1], self.scb.out_channels, hrdb_channels)
        # the last HRNet module's 1/8 and 1/16 outputs feed nothing (PaddleSeg computes and drops them)
        last = self.backbone.st4.get_submodule(self.backbone.stage_names[2][-1]).fuse_names
        self.unused_parameters = {f"backbone.st4.{self.backbone.stage_names[2][-1]}.fuse_func.{name}"
                                  for i in (1, 2) for row in last[i] for name in row}

    def forward(self, image: torch.Tensor) -> Dict[str, torch.Tensor]:
        check_input("image", image, 3)
        if image.shape[-2] % SIZE_MULTIPLE or image.shape[-1] % SIZE_MULTIPLE:
            raise ValueError(f"image height/width must be multiples of {SIZE_MULTIPLE}, got {tuple(image.shape[-2:])}"
                             " (ppmatting.predict resizes whole frames as PaddleSeg does)")
        size = image.shape[-2:]
        feats = self.backbone(image, outputs=(0, 3))
        scb_logits = self.scb(feats[-1])
        semantic = F.softmax(scb_logits[-1], dim=1)
        hrdb_input = torch.cat([_bilinear(feats[0], size), _bilinear(feats[1], size)], 1)
        detail = torch.sigmoid(self.hrdb(hrdb_input, scb_logits))
        return {"alpha": fuse(semantic, detail), "semantic": scb_logits[-1].flip(1), "detail": detail}


def fuse(semantic: torch.Tensor, detail: torch.Tensor) -> torch.Tensor:
    """PaddleSeg PPMatting.fusion: class = argmax of the semantic map (Paddle order: fg, transition, bg); alpha =
    detail · [class = transition] + [class = foreground]."""
    index = semantic.argmax(1, keepdim=True)
    return detail * (index == PADDLE_TRANSITION).to(detail.dtype) + (index == PADDLE_FOREGROUND).to(detail.dtype)


# -- whole-frame inference as PaddleSeg's (Matting/ppmatting/core/predict.py) ----------------------------------------
def inference_sizes(height: int, width: int, max_short: Optional[int]) -> List[Tuple[int, int]]:
    """The (h, w) sizes PaddleSeg's val transforms pass through: LimitShort(max_short) (the short side scaled down
    to max_short, rounded) then ResizeToIntMult(32) (each side down to a multiple of 32; at least 32 here, where
    PaddleSeg would give 0)."""
    if height < 1 or width < 1:
        raise ValueError(f"image must be at least 1×1, got {height}×{width}")
    sizes = [(height, width)]
    short = min(height, width)
    if max_short is not None and short > max_short:
        scale = max_short / short
        sizes.append((int(round(height * scale)), int(round(width * scale))))
    h, w = sizes[-1]
    sizes.append((max(h - h % SIZE_MULTIPLE, SIZE_MULTIPLE), max(w - w % SIZE_MULTIPLE, SIZE_MULTIPLE)))
    return sizes


def predict(model: PPMatting, srgb: np.ndarray, max_short: Optional[int] = None, device="cpu",
            autocast_dtype=None) -> np.ndarray:
    """Alpha (H×W float32) of an H×W×3 sRGB [0, 1] frame, whole frame: cv2 bilinear resizes to the inference size
    (:func:`inference_sizes`), normalise with mean = std = 0.5, forward, bilinear (align_corners False) back
    through the same sizes in reverse (PaddleSeg's reverse_transform)."""
    import cv2

    if srgb.ndim != 3 or srgb.shape[2] != 3:
        raise ValueError(f"image must be H×W×3, got shape {srgb.shape}")
    sizes = inference_sizes(srgb.shape[0], srgb.shape[1], max_short)
    image = np.ascontiguousarray(srgb, dtype=np.float32)
    for h, w in sizes[1:]:
        if (h, w) != image.shape[:2]:
            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    image = (image - np.float32(MEAN[0])) / np.float32(STD[0])
    tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None].to(device)
    with torch.no_grad(), torch.autocast(device_type=torch.device(device).type, dtype=autocast_dtype,
                                         enabled=autocast_dtype is not None):
        alpha = model(tensor)["alpha"].float()
        for size in sizes[-2::-1]:
            if tuple(alpha.shape[-2:]) != size:
                alpha = _bilinear(alpha, size)
    return alpha[0, 0].cpu().numpy()
