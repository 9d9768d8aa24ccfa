"""The shared plain-ViT pieces: patch embedding, 2-D sin-cos positions, (cross-)attention blocks, ViTMatte's
detail-capture head. Used by the Parallax net (two ViT-S, paper sec. 5.1) and Mask2Alpha (sec. 3.1).

Tensors: images are B×C×H×W; token sequences are B×N×D with N = (H/p)·(W/p) in row-major order.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn


def sincos_pos_embed(grid_h: int, grid_w: int, dim: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Fixed 2-D sin-cos position embedding (MAE/CroCo), 1×N×D; any grid size, so tiles of any size work."""
    if dim % 4:
        raise ValueError(f"embed_dim must be a multiple of 4 for 2-D sin-cos positions, got {dim}")
    quarter = dim // 4
    omega = 1.0 / (10000 ** (torch.arange(quarter, device=device, dtype=torch.float32) / quarter))
    ys, xs = torch.meshgrid(torch.arange(grid_h, device=device, dtype=torch.float32),
                            torch.arange(grid_w, device=device, dtype=torch.float32), indexing="ij")
    out_y = ys.reshape(-1, 1) * omega  # N×D/4
    out_x = xs.reshape(-1, 1) * omega
    emb = torch.cat([out_y.sin(), out_y.cos(), out_x.sin(), out_x.cos()], dim=1)
    return emb.unsqueeze(0).to(dtype)


class PatchEmbed(nn.Module):
    """p×p non-overlapping patches -> tokens (ViT, Dosovitskiy et al.)."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int = 16):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        p = self.patch_size
        if x.shape[-2] % p or x.shape[-1] % p:
            raise ValueError(f"input height/width must be multiples of the patch size {p}, got {tuple(x.shape[-2:])}")
        x = self.proj(x)  # B×D×h×w
        grid = (x.shape[-2], x.shape[-1])
        return x.flatten(2).transpose(1, 2), grid  # B×N×D


class Attention(nn.Module):
    """Multi-head attention with a fused qkv projection (timm layout: ``qkv``, ``proj``).

    ``key_weight`` (B×N_k, optional) rescales the attention logits of every query towards key j by
    ``1 + β·M_j + r`` — Mask2Alpha's region-weighted attention softmax((S + QKᵀ)/√C) with S = (βM + r) ⊙ QKᵀ
    (mask2alpha.txt sec. 3.1); β and r are learned scalars owned by the caller.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, logit_scale: Optional[torch.Tensor] = None) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # B×heads×N×d_h
        if logit_scale is None:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            logits = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)  # B×heads×N×N
            logits = logits * logit_scale[:, None, None, :].to(logits.dtype)  # per-key weight
            out = logits.softmax(-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class CrossAttention(nn.Module):
    """Queries from one stream, keys/values from the other (CroCo decoder; parallax sec. 4.3)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        h = self.num_heads
        q = self.q(x).reshape(b, n, h, d // h).transpose(1, 2)
        kv = self.kv(context).reshape(b, context.shape[1], 2, h, d // h).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, kv[0], kv[1])
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Sequential):
    def __init__(self, dim: int, ratio: float = 4.0):
        hidden = int(dim * ratio)
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)); x + mlp(norm(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_ratio)

    def forward(self, x: torch.Tensor, logit_scale: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), logit_scale)
        return x + self.mlp(self.norm2(x))


class CrossBlock(nn.Module):
    """CroCo decoder block: self-attention, cross-attention to the other view, MLP (all pre-norm)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm_q = nn.LayerNorm(dim)
        self.norm_ctx = nn.LayerNorm(dim)
        self.cross = CrossAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_ratio)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        x = x + self.cross(self.norm_q(x), self.norm_ctx(context))
        return x + self.mlp(self.norm2(x))


class ViTEncoder(nn.Module):
    """Plain ViT (ViT-S: dim 384, depth 12, 6 heads) over a C-channel input; returns B×N×D tokens and the grid.

    ``use_cls`` prepends a [CLS] token (Mask2Alpha excludes it from region weighting; it is dropped from the
    returned tokens). ``last_logit_scale`` (B×N) applies region-weighted attention in the final block only.
    """

    def __init__(self, in_chans: int, embed_dim: int = 384, depth: int = 12, num_heads: int = 6,
                 patch_size: int = 16, mlp_ratio: float = 4.0, use_cls: bool = False):
        super().__init__()
        self.embed_dim = embed_dim
        self.patch_embed = PatchEmbed(in_chans, embed_dim, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if use_cls else None
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim)
        self.apply(_init_weights)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=0.02)

    @property
    def patch_size(self) -> int:
        return self.patch_embed.patch_size

    def forward(self, x: torch.Tensor, last_logit_scale: Optional[torch.Tensor] = None):
        tokens, grid = self.patch_embed(x)  # B×N×D
        tokens = tokens + sincos_pos_embed(*grid, self.embed_dim, tokens.device, tokens.dtype)
        if self.cls_token is not None:
            tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], 1)
            if last_logit_scale is not None:  # the [CLS] key keeps weight 1 (its integrity is preserved)
                last_logit_scale = torch.cat([last_logit_scale.new_ones(tokens.shape[0], 1), last_logit_scale], 1)
        for i, block in enumerate(self.blocks):
            scale = last_logit_scale if i == len(self.blocks) - 1 else None
            tokens = block(tokens, scale)
        tokens = self.norm(tokens)
        if self.cls_token is not None:
            tokens = tokens[:, 1:]
        return tokens, grid


def tokens_to_map(tokens: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
    """B×N×D tokens -> B×D×h×w feature map."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *grid)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DetailCaptureHead(nn.Module):
    """ViTMatte's detail-capture module (Yao et al., sec. 3.3): a ConvStream of stride-2 conv-BN-ReLU stages over
    the raw input (detail features at 1/2, 1/4, 1/8) and fusion blocks that upsample the 1/16 ViT map ×2 and fuse
    with the matching detail feature, down to full resolution; a small matting head outputs ``out_channels``
    sigmoid maps.

    forward(features B×D×H/16×W/16, raw B×C×H×W) -> B×out_channels×H×W in [0, 1]
    """

    def __init__(self, in_chans: int, embed_dim: int, detail_channels: Sequence[int] = (48, 96, 192),
                 fusion_channels: Sequence[int] = (256, 128, 64, 32), out_channels: int = 1):
        super().__init__()
        stream, cin = [], in_chans
        for cout in detail_channels:
            stream.append(conv_bn_relu(cin, cout, stride=2))
            cin = cout
        self.convstream = nn.ModuleList(stream)
        # skip features from finest to coarsest: raw (1/1), 1/2, 1/4, 1/8; fusion runs coarse -> fine
        skips = [in_chans, *detail_channels][::-1]
        fusion, cin = [], embed_dim
        for skip, cout in zip(skips, fusion_channels):
            fusion.append(nn.Sequential(conv_bn_relu(cin + skip, cout), conv_bn_relu(cout, cout)))
            cin = cout
        self.fusion = nn.ModuleList(fusion)
        self.head = nn.Sequential(conv_bn_relu(cin, max(cin // 2, 4)), nn.Conv2d(max(cin // 2, 4), out_channels, 1))

    def forward(self, features: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        details = [raw]
        for stage in self.convstream:
            details.append(stage(details[-1]))
        x = features
        for block, skip in zip(self.fusion, details[::-1]):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], 1))
        return torch.sigmoid(self.head(x))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def check_input(name: str, tensor: torch.Tensor, channels: int, like: Optional[torch.Tensor] = None) -> None:
    """Clear errors for bad model inputs: name the tensor and the expected shape."""
    if tensor.dim() != 4 or tensor.shape[1] != channels:
        raise ValueError(f"{name} must be B×{channels}×H×W, got shape {tuple(tensor.shape)}")
    if like is not None and (tensor.shape[0] != like.shape[0] or tensor.shape[-2:] != like.shape[-2:]):
        raise ValueError(f"{name} must match the image's batch and size {tuple(like.shape[-2:])}, got "
                         f"{tuple(tensor.shape)}")


