"""PP-Matting (pp-matting.txt sec. 3.1-3.2): trimap-free matting with an HRNet shared encoder, a semantic
context branch (SCB, 3 classes: background / transition / foreground), a high-resolution detail branch (HRDB)
guided by SCB features through gated convolutional layers (guidance flow, eqs. 2-3), and a fusion that replaces
the semantic map's transition region with the detail map (Tab. 4 "Rep FM").

The full config uses HRNet-W48 (Wang et al.): stem to 1/4, stage 1 (bottlenecks, 256 ch), stages 2-4 with 2/3/4
parallel branches of widths W·(1, 2, 4, 8) and repeated multi-resolution fusion (1, 4, 3 modules).

forward(image B×3×H×W normalised, H, W multiples of 32) -> {"alpha": B×1×H×W, "semantic": B×3×H×W logits,
"detail": B×1×H×W}.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .vit import check_input, conv_bn_relu

BACKGROUND, TRANSITION, FOREGROUND = 0, 1, 2


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None if (cin == cout and stride == 1) else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.down is None else self.down(x)))


class Bottleneck(nn.Module):
    def __init__(self, cin: int, planes: int):
        super().__init__()
        cout = planes * 4
        self.body = nn.Sequential(
            nn.Conv2d(cin, planes, 1, bias=False), nn.BatchNorm2d(planes), nn.ReLU(inplace=True),
            nn.Conv2d(planes, planes, 3, 1, 1, bias=False), nn.BatchNorm2d(planes), nn.ReLU(inplace=True),
            nn.Conv2d(planes, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.down = None if cin == cout else nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return F.relu(self.body(x) + (x if self.down is None else self.down(x)))


class HRModule(nn.Module):
    """One HRNet module: ``blocks`` basic blocks per branch, then every branch fuses every other (upsample by
    1×1 conv + bilinear, downsample by strided 3×3 convs)."""

    def __init__(self, widths: Sequence[int], blocks: int):
        super().__init__()
        self.branches = nn.ModuleList(nn.Sequential(*[BasicBlock(w, w) for _ in range(blocks)]) for w in widths)
        self.fuse = nn.ModuleList()
        for i, wi in enumerate(widths):
            row = nn.ModuleList()
            for j, wj in enumerate(widths):
                if j > i:
                    row.append(nn.Sequential(nn.Conv2d(wj, wi, 1, bias=False), nn.BatchNorm2d(wi)))
                elif j == i:
                    row.append(nn.Identity())
                else:
                    steps = []
                    for k in range(i - j):
                        last = k == i - j - 1
                        cout = wi if last else wj
                        steps += [nn.Conv2d(wj, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout)]
                        if not last:
                            steps.append(nn.ReLU(inplace=True))
                    row.append(nn.Sequential(*steps))
            self.fuse.append(row)

    def forward(self, xs: List[torch.Tensor]) -> List[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        out = []
        for i, row in enumerate(self.fuse):
            total = xs[i]
            for j, layer in enumerate(row):
                if j == i:
                    continue
                y = layer(xs[j])
                if j > i:
                    y = F.interpolate(y, size=xs[i].shape[-2:], mode="bilinear", align_corners=False)
                total = total + y
            out.append(F.relu(total))
        return out


class HRNet(nn.Module):
    """HRNet-W{width} (Wang et al. 2020); returns the 4 branch outputs at 1/4, 1/8, 1/16, 1/32."""

    def __init__(self, width: int = 48, stem_channels: int = 64, stage_blocks: int = 4, stage2_modules: int = 1,
                 stage3_modules: int = 4, stage4_modules: int = 3):
        super().__init__()
        self.stem = nn.Sequential(conv_bn_relu(3, stem_channels, 2), conv_bn_relu(stem_channels, stem_channels, 2))
        c1 = stem_channels * 4  # stage 1: bottlenecks with planes = stem width (256 channels for W48)
        self.layer1 = nn.Sequential(Bottleneck(stem_channels, stem_channels),
                                    *[Bottleneck(c1, stem_channels) for _ in range(stage_blocks - 1)])
        self.widths = [width * 2 ** i for i in range(4)]
        self.transitions = nn.ModuleList()
        self.stages = nn.ModuleList()
        prev = [c1]
        for n, modules in zip((2, 3, 4), (stage2_modules, stage3_modules, stage4_modules)):
            widths = self.widths[:n]
            trans = nn.ModuleList()
            for i, w in enumerate(widths):
                if i < len(prev):
                    trans.append(nn.Identity() if prev[i] == w else conv_bn_relu(prev[i], w))
                else:
                    trans.append(conv_bn_relu(prev[-1], w, 2))
            self.transitions.append(trans)
            self.stages.append(nn.Sequential(*[_HRModuleSeq(widths, stage_blocks) for _ in range(modules)]))
            prev = widths
        self.out_channels = self.widths

    def forward(self, x):
        xs = [self.layer1(self.stem(x))]
        for trans, stage in zip(self.transitions, self.stages):
            xs = [t(xs[i] if i < len(xs) else xs[-1]) for i, t in enumerate(trans)]
            xs = stage(xs)
        return xs


class _HRModuleSeq(HRModule):
    """HRModule usable inside nn.Sequential (list in, list out)."""


class PyramidPooling(nn.Module):
    """PSPNet pyramid pooling (bins 1, 2, 3, 6) before the SCB (sec. 3.1)."""

    def __init__(self, cin: int, channels: int, bins: Sequence[int] = (1, 2, 3, 6)):
        super().__init__()
        self.stages = nn.ModuleList(nn.Sequential(nn.AdaptiveAvgPool2d(b), nn.Conv2d(cin, channels, 1),
                                                  nn.ReLU(inplace=True)) for b in bins)  # no BN: 1×1 bins
        self.project = conv_bn_relu(cin + channels * len(bins), channels)

    def forward(self, x):
        pooled = [F.interpolate(s(x), size=x.shape[-2:], mode="bilinear", align_corners=False) for s in self.stages]
        return self.project(torch.cat([x, *pooled], 1))


class GatedConv(nn.Module):
    """Guidance flow GCL (eqs. 2-3): g = σ(C₁ₓ₁(s ‖ d)) with a normalised 1×1 conv; d̂ = (d ⊙ g + d)ᵀ w."""

    def __init__(self, semantic_channels: int, detail_channels: int):
        super().__init__()
        # no bias before the normalisation: BatchNorm subtracts the batch mean, so a bias there never learns
        self.gate = nn.Sequential(nn.BatchNorm2d(semantic_channels + detail_channels),
                                  nn.Conv2d(semantic_channels + detail_channels, 1, 1, bias=False), nn.BatchNorm2d(1))
        self.weight = nn.Conv2d(detail_channels, detail_channels, 1, bias=False)  # channel-wise weighting kernel w

    def forward(self, detail, semantic):
        semantic = F.interpolate(semantic, size=detail.shape[-2:], mode="bilinear", align_corners=False)
        g = torch.sigmoid(self.gate(torch.cat([semantic, detail], 1)))  # B×1×H×W
        return self.weight(detail * g + detail)


class PPMatting(nn.Module):
    def __init__(self, hrnet_width: int = 48, stem_channels: int = 64, stage_blocks: int = 4,
                 stage3_modules: int = 4, stage4_modules: int = 3, ppm_channels: int = 512,
                 scb_channels: Sequence[int] = (128, 128, 64, 64, 32), hrdb_channels: int = 64):
        super().__init__()
        self.encoder = HRNet(hrnet_width, stem_channels, stage_blocks, 1, stage3_modules, stage4_modules)
        widths = self.encoder.out_channels
        self.ppm = PyramidPooling(widths[3], ppm_channels)
        # SCB: five blocks of three ConvBNReLU + ×2 bilinear upsample, from 1/32 to full resolution (sec. 3.1)
        blocks, cin = [], ppm_channels
        for cout in scb_channels:
            blocks.append(nn.Sequential(conv_bn_relu(cin, cout), conv_bn_relu(cout, cout), conv_bn_relu(cout, cout)))
            cin = cout
        self.scb = nn.ModuleList(blocks)
        self.semantic_head = nn.Conv2d(cin, 3, 3, 1, 1)
        # HRDB: input = the 1/4 feature (low-level texture), the upsampled 1/8 and 1/16 features (high-level
        # abstraction) and the image at 1/4; three residual blocks with GCLs from SCB blocks 1, 3 and 5 between
        # them, then a conv to the detail map
        self.hrdb_in = conv_bn_relu(widths[0] + widths[1] + widths[2] + 3, hrdb_channels)
        self.hrdb_blocks = nn.ModuleList(BasicBlock(hrdb_channels, hrdb_channels) for _ in range(3))
        self.guidance = nn.ModuleList(GatedConv(scb_channels[i], hrdb_channels) for i in (0, 2, 4))
        self.detail_head = nn.Conv2d(hrdb_channels, 1, 3, 1, 1)

    def forward(self, image: torch.Tensor) -> Dict[str, torch.Tensor]:
        check_input("image", image, 3)
        if image.shape[-2] % 32 or image.shape[-1] % 32:
            raise ValueError(f"image height/width must be multiples of 32, got {tuple(image.shape[-2:])}")
        feats = self.encoder(image)  # 1/4, 1/8, 1/16, 1/32
        s = self.ppm(feats[3])
        semantic_feats = []
        for block in self.scb:
            s = F.interpolate(block(s), scale_factor=2, mode="bilinear", align_corners=False)
            semantic_feats.append(s)
        semantic = F.interpolate(self.semantic_head(s), size=image.shape[-2:], mode="bilinear", align_corners=False)
        quarter = feats[0].shape[-2:]
        upsampled = [F.interpolate(f, size=quarter, mode="bilinear", align_corners=False) for f in feats[1:3]]
        image_quarter = F.interpolate(image, size=quarter, mode="bilinear", align_corners=False)
        d = self.hrdb_in(torch.cat([feats[0], *upsampled, image_quarter], 1))
        for block, gate, guide in zip(self.hrdb_blocks, self.guidance, (0, 2, 4)):
            d = gate(block(d), semantic_feats[guide])
        detail = torch.sigmoid(F.interpolate(self.detail_head(d), size=image.shape[-2:], mode="bilinear",
                                             align_corners=False))
        return {"alpha": fuse(semantic, detail), "semantic": semantic, "detail": detail}


def fuse(semantic_logits: torch.Tensor, detail: torch.Tensor) -> torch.Tensor:
    """Rep FM (Tab. 4): the semantic map (fg=1, bg=0) with its transition region replaced by the detail map.
    Differentiable in the detail; the semantic choice is a hard argmax as in the paper's fusion."""
    label = semantic_logits.argmax(1, keepdim=True)
    semantic_alpha = (label == FOREGROUND).to(detail.dtype)
    transition = (label == TRANSITION).to(detail.dtype)
    return transition * detail + (1 - transition) * semantic_alpha
