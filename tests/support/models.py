"""Test-only networks for the training loop: a few convolutions, every optional head of the model convention
(premultiplied foreground, semantic logits, detail, confidence) so each loss term is exercised in seconds."""
from __future__ import annotations

import torch
from torch import nn


class TinyHeadsNet(nn.Module):
    inputs = ("image", "trimap")
    size_multiple = 4

    def __init__(self, width: int = 8, heads: bool = True):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(4, width, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(width, width, 3, padding=2, dilation=2), nn.ReLU())
        self.heads = heads
        self.out = nn.Conv2d(width, 1 + (3 + 3 + 1 + 1 if heads else 0), 1)

    def forward(self, image: torch.Tensor, trimap: torch.Tensor):
        x = self.out(self.body(torch.cat([image, trimap], 1)))  # B×(1[+8])×H×W
        alpha = torch.sigmoid(x[:, :1])
        if not self.heads:
            return alpha
        return {"alpha": alpha, "foreground_premultiplied": alpha * torch.sigmoid(x[:, 1:4]),
                "semantic": x[:, 4:7], "detail": torch.sigmoid(x[:, 7:8]), "confidence": torch.sigmoid(x[:, 8:9])}


class TinyUNet(nn.Module):
    """A 4-level U-Net (image + trimap in, alpha out) of ~0.1 M parameters: big enough that the choice of loss
    shows in a few hundred CPU steps, small enough to train in a minute. Used by bench/training.py to compare
    objectives on equal footing when no registry model is given."""

    inputs = ("image", "trimap")
    size_multiple = 8

    def __init__(self, width: int = 16):
        super().__init__()

        def block(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                                 nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())

        w = width
        self.enc = nn.ModuleList([block(4, w), block(w, 2 * w), block(2 * w, 4 * w), block(4 * w, 4 * w)])
        self.dec = nn.ModuleList([block(8 * w, 2 * w), block(4 * w, w), block(2 * w, w)])
        self.head = nn.Conv2d(w + 4, 1, 3, padding=1)

    def forward(self, image: torch.Tensor, trimap: torch.Tensor) -> torch.Tensor:
        x = torch.cat([image, trimap], 1)  # B×4×H×W
        skips = []
        h = x
        for i, block in enumerate(self.enc):
            h = block(h if i == 0 else nn.functional.max_pool2d(h, 2))
            skips.append(h)  # B×(w,2w,4w,4w)×H/2^i×W/2^i
        h = skips.pop()
        for block in self.dec:
            skip = skips.pop()
            h = block(torch.cat([nn.functional.interpolate(h, size=skip.shape[-2:], mode="bilinear",
                                                           align_corners=False), skip], 1))
        return torch.sigmoid(self.head(torch.cat([h, x], 1)))  # B×1×H×W
