"""Mask2Alpha (mask2alpha.txt sec. 3.1-3.4): mask-guided ViT encoder with region-weighted attention, iterative
decoding with confidence maps and unidirectional coarse -> fine transitions, self-guided sparse detail recovery.

* Encoder (3.1): image and binary mask at H/2×W/2 through a ViT (ViT-S in the full config). In the final block
  the attention logits towards every key token are scaled by (1 + β·M + r): S = (βM + r) ⊙ QKᵀ added to QKᵀ,
  with region relevance M = 2 (foreground patch), 1 (edge: mixed patch), 0.5 (background); the [CLS] token is
  excluded from weighting. A simple feature pyramid (ViTDet-style deconvolutions, standing in for the
  ViT-Adapter) gives features at 1/16, 1/8 and 1/4 of the full resolution.
* Iterative decoding (3.2, Alg. 1-2): f_θ(F, m_t, x_t) predicts alpha and a confidence map at H/4. ``x`` is each
  pixel's state (0 = still the coarse mask, 1 = refined); transitions are unidirectional (0 -> 1 only). At
  inference each step moves the most confident still-coarse pixels to the refined state so that a fraction
  (T − t + 1)/T is refined after step t (a deterministic reading of "sample high-confidence points"), and
  m ← x·α̃ + (1 − x)·M_coarse. Training (Alg. 1) samples one step: x ~ Bernoulli(1 − t), m = x·α_gt + (1 − x)·M.
* Sparse detail recovery (3.3): the guidance map G = 1 − confidence (upsampled) selects active pixels
  M_SG = [G > τ]; a residual network over (image, upsampled low-res alpha, G) updates only active pixels:
  A_h = A_l↑ + M_SG ⊙ Δ. The convolutions run densely (no sparse-convolution library is a dependency); the
  output equals a sparse evaluation on the active set.

Without self-supervised ViT weights the encoder starts from random init and trains from scratch;
:func:`dino_checkpoint_filter` maps a DINO/timm ViT state dict onto this layout when such weights exist.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .vit import ViTEncoder, check_input, conv_bn_relu, tokens_to_map

REGION_FOREGROUND, REGION_EDGE, REGION_BACKGROUND = 2.0, 1.0, 0.5


class BasicBlock(nn.Module):
    """ResNet basic block (He et al. 2016): two 3×3 conv-BN with a ReLU between, plus the input (a 1×1 conv-BN
    projection when the width or stride changes), ReLU."""

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


def region_relevance(mask: torch.Tensor, patch_size: int) -> torch.Tensor:
    """B×1×h×w binary mask -> B×N per-token relevance M: 2 inside, 0.5 outside, 1 for patches the edge crosses."""
    cover = F.avg_pool2d(mask, patch_size).flatten(1)  # B×N fraction of foreground per patch
    relevance = torch.full_like(cover, REGION_EDGE)
    relevance = torch.where(cover >= 1.0, torch.full_like(cover, REGION_FOREGROUND), relevance)
    return torch.where(cover <= 0.0, torch.full_like(cover, REGION_BACKGROUND), relevance)


class IterativeDecoder(nn.Module):
    """f_θ(F, m_t, x_t) -> (alpha, confidence) at H/4 (sec. 3.2). Features: 1/16, 1/8, 1/4 pyramid levels."""

    def __init__(self, feature_channels: Sequence[int], channels: Sequence[int]):
        super().__init__()
        c16, c8, c4 = feature_channels
        d16, d8, d4 = channels
        self.stage16 = conv_bn_relu(c16 + 2, d16)
        self.stage8 = nn.Sequential(conv_bn_relu(d16 + c8 + 2, d8), conv_bn_relu(d8, d8))
        self.stage4 = nn.Sequential(conv_bn_relu(d8 + c4 + 2, d4), conv_bn_relu(d4, d4))
        self.alpha_head = nn.Conv2d(d4, 1, 3, 1, 1)
        self.confidence_head = nn.Conv2d(d4, 1, 3, 1, 1)

    def forward(self, feats, mask_t: torch.Tensor, state_t: torch.Tensor):
        f16, f8, f4 = feats
        cue = torch.cat([mask_t, state_t], 1)  # B×2×H/4×W/4

        def at(x):
            return F.interpolate(cue, size=x.shape[-2:], mode="bilinear", align_corners=False)

        x = self.stage16(torch.cat([f16, at(f16)], 1))
        x = F.interpolate(x, size=f8.shape[-2:], mode="bilinear", align_corners=False)
        x = self.stage8(torch.cat([x, f8, at(f8)], 1))
        x = F.interpolate(x, size=f4.shape[-2:], mode="bilinear", align_corners=False)
        x = self.stage4(torch.cat([x, f4, cue], 1))
        return torch.sigmoid(self.alpha_head(x)), torch.sigmoid(self.confidence_head(x))


class SparseDetailRecovery(nn.Module):
    """SGSDR (sec. 3.3): A_h = A_l↑ + M_SG ⊙ Δ(image, A_l↑, G), M_SG = [G > τ], G = 1 − confidence↑."""

    def __init__(self, channels: int, tau: float, blocks: int = 2):
        super().__init__()
        self.tau = tau
        self.stem = conv_bn_relu(5, channels)
        self.blocks = nn.Sequential(*[BasicBlock(channels, channels) for _ in range(blocks)])
        self.out = nn.Conv2d(channels, 1, 3, 1, 1)

    def forward(self, image, alpha_low, confidence_low):
        size = image.shape[-2:]
        alpha_up = F.interpolate(alpha_low, size=size, mode="bilinear", align_corners=False)
        guidance = 1.0 - F.interpolate(confidence_low, size=size, mode="bilinear", align_corners=False)
        active = (guidance > self.tau).to(image.dtype)  # M_SG
        delta = torch.tanh(self.out(self.blocks(self.stem(torch.cat([image, alpha_up, guidance], 1)))))
        return (alpha_up + active * delta).clamp(0.0, 1.0), active


class Mask2Alpha(nn.Module):
    def __init__(self, embed_dim: int = 384, depth: int = 12, num_heads: int = 6, patch_size: int = 16,
                 decoder_channels: Sequence[int] = (128, 64, 32), iterations: int = 3, tau: float = 0.5,
                 detail_channels: int = 32):
        super().__init__()
        self.iterations = iterations
        self.encoder = ViTEncoder(4, embed_dim, depth, num_heads, patch_size, use_cls=True)
        self.region_beta = nn.Parameter(torch.tensor(1.0))  # β
        self.region_bias = nn.Parameter(torch.tensor(0.0))  # r
        # simple feature pyramid from the 1/32 token map (input at half resolution, patch 16)
        c16, c8, c4 = decoder_channels
        self.to16 = nn.Sequential(nn.ConvTranspose2d(embed_dim, c16, 2, 2), nn.BatchNorm2d(c16), nn.ReLU(True))
        self.to8 = nn.Sequential(nn.ConvTranspose2d(c16, c8, 2, 2), nn.BatchNorm2d(c8), nn.ReLU(True))
        self.image4 = nn.Sequential(conv_bn_relu(3, c4, 2), conv_bn_relu(c4, c4, 2))  # low-level texture at 1/4
        self.decoder = IterativeDecoder((c16, c8, c4), decoder_channels)
        self.detail = SparseDetailRecovery(detail_channels, tau)

    def encode(self, image: torch.Tensor, mask: torch.Tensor):
        half = image.shape[-2] // 2, image.shape[-1] // 2
        image_half = F.interpolate(image, size=half, mode="bilinear", align_corners=False)
        mask_half = F.interpolate(mask, size=half, mode="nearest")
        relevance = region_relevance(mask_half, self.encoder.patch_size)  # B×N
        scale = 1.0 + self.region_beta * relevance + self.region_bias  # (S + QKᵀ) = (1 + βM + r) ⊙ QKᵀ
        tokens, grid = self.encoder(torch.cat([image_half, mask_half], 1), last_logit_scale=scale)
        f16 = self.to16(tokens_to_map(tokens, grid))
        return f16, self.to8(f16), self.image4(image)

    def forward(self, image: torch.Tensor, mask: torch.Tensor, fine_alpha: Optional[torch.Tensor] = None,
                t: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """image B×3×H×W normalised, mask B×1×H×W in {0, 1}; H, W multiples of 32.

        Inference (and training without ``fine_alpha``): Algorithm 2, ``iterations`` steps. Training with
        ``fine_alpha`` (B×1×H×W ground truth): Algorithm 1, one step at ``t`` (B, uniform in [0, 1] if None).
        Returns alpha B×1×H×W, alpha_low and confidence B×1×H/4×W/4, active (M_SG) B×1×H×W.
        """
        check_input("image", image, 3)
        check_input("mask", mask, 1, image)
        if image.shape[-2] % 32 or image.shape[-1] % 32:
            raise ValueError(f"image height/width must be multiples of 32, got {tuple(image.shape[-2:])}")
        feats = self.encode(image, mask)
        quarter = feats[2].shape[-2:]
        coarse = F.interpolate(mask, size=quarter, mode="bilinear", align_corners=False)
        if fine_alpha is not None:
            check_input("fine_alpha", fine_alpha, 1, image)
            if t is None:
                t = torch.rand(image.shape[0], device=image.device)
            fine = F.interpolate(fine_alpha, size=quarter, mode="bilinear", align_corners=False)
            state = (torch.rand_like(coarse) < (1.0 - t.view(-1, 1, 1, 1))).to(coarse.dtype)
            alpha_low, confidence = self.decoder(feats, state * fine + (1 - state) * coarse, state)
        else:
            alpha_low, confidence = self.iterate(feats, coarse)
        alpha, active = self.detail(image, alpha_low, confidence)
        return {"alpha": alpha, "confidence": confidence, "alpha_low": alpha_low, "active": active}

    def iterate(self, feats, coarse: torch.Tensor):
        """Algorithm 2 with unidirectional state transitions (coarse 0 -> refined 1)."""
        state = torch.zeros_like(coarse)
        mask_t = coarse
        pixels = coarse[0].numel()
        for step in range(1, self.iterations + 1):
            alpha, confidence = self.decoder(feats, mask_t, state)
            target = int(round(pixels * step / self.iterations))  # refined pixels after this step
            # rank still-coarse pixels by confidence; refined ones stay refined (score above any confidence)
            score = (confidence + 2.0 * state).flatten(1)
            kth = score.topk(max(target, 1), dim=1).values[:, -1:]
            new_state = torch.maximum(state, (score >= kth).to(state.dtype).view_as(state))
            mask_t = new_state * alpha + (1 - new_state) * coarse
            state = new_state
        return alpha, confidence


def dino_checkpoint_filter(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Map a DINO / timm ViT checkpoint (``patch_embed.proj``, ``blocks.N``, ``norm``, ``cls_token``,
    ``pos_embed``) onto Mask2Alpha's encoder: prefix ``encoder.``, add a zero-initialised mask channel to the
    patch embedding, drop the learned ``pos_embed`` (sin-cos positions here) and any classifier ``head``.
    Load the result with ``strict=False`` (the decoder stays randomly initialised)."""
    out = {}
    for key, value in state.items():
        if key.startswith("head") or key in ("pos_embed", "fc_norm.weight", "fc_norm.bias"):
            continue
        if key == "patch_embed.proj.weight" and value.shape[1] == 3:
            value = torch.cat([value, value.new_zeros(value.shape[0], 1, *value.shape[2:])], 1)
        out["encoder." + key] = value
    return out
