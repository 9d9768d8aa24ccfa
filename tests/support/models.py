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
