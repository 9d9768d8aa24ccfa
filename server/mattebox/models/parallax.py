"""Parallax Portrait Matting network (parallax-portrait-matting.txt, sec. 4.3-4.5 and 5.1).

Two streams with shared weights ("symmetric in architecture, asymmetric in function"):

* main stream: the base frame I₁, the background-aligned alternate frame I^B₀→₁ and the base trimap Tr₁,
  concatenated in pixel space (direct fusion of the reliable pair) -> predicts α₁ and (αF)₁;
* auxiliary stream: the foreground-aligned frame I^F₀→₁, its companion M^F₀→₁(M^B₁→₀(I₁)) and the warped trimap
  M^F₀→₁(Tr₀) -> predicts the foreground-aligned view's α and αF (supervised in training).

Each stream is encoded by one ViT-S encoder (weights shared); a ViT-S-width decoder of CroCo-style blocks lets
each stream cross-attend the other's tokens (soft correspondences in feature space compensate foreground motion
errors); a ViTMatte detail-capture head decodes each stream to full resolution.

Parameter budget of the full config (the paper says 38.6M): encoder ViT-S 22.0M, decoder 6 cross blocks 14.2M,
detail head 2.9M = 39.04M, +1.1% (tests/test_models_tiny.py checks the total on the meta device).

Input conventions: colour images sRGB in [0, 1] normalised with the registry entry's mean/std; trimaps in
{0, 0.5, 1}; H and W multiples of 16 (tiles are 448×448, sec. 4.5).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch
from torch import nn

from .vit import CrossBlock, DetailCaptureHead, ViTEncoder, _init_weights, check_input, tokens_to_map

#: channels of one stream's input: two RGB images and a trimap
STREAM_CHANNELS = 7


class ParallaxMattingNet(nn.Module):
    def __init__(self, embed_dim: int = 384, depth: int = 12, num_heads: int = 6, decoder_depth: int = 6,
                 decoder_heads: int = 6, patch_size: int = 16, mlp_ratio: float = 4.0,
                 detail_channels: Sequence[int] = (48, 96, 192), fusion_channels: Sequence[int] = (256, 128, 64, 32)):
        super().__init__()
        self.patch_size = patch_size
        self.encoder = ViTEncoder(STREAM_CHANNELS, embed_dim, depth, num_heads, patch_size, mlp_ratio)
        self.stream_embed = nn.Parameter(torch.zeros(2, 1, embed_dim))  # tells the shared decoder which stream
        self.decoder = nn.ModuleList(CrossBlock(embed_dim, decoder_heads, mlp_ratio) for _ in range(decoder_depth))
        self.decoder_norm = nn.LayerNorm(embed_dim)
        self.decoder.apply(_init_weights)
        nn.init.normal_(self.stream_embed, std=0.02)
        # 4 outputs per stream: alpha and the premultiplied foreground αF (sec. 4.4)
        self.head = DetailCaptureHead(STREAM_CHANNELS, embed_dim, detail_channels, fusion_channels, out_channels=4)

    def forward(self, image: torch.Tensor, bg_aligned: torch.Tensor, trimap: torch.Tensor,
                fg_aligned: Optional[torch.Tensor] = None, companion: Optional[torch.Tensor] = None,
                warped_trimap: Optional[torch.Tensor] = None, predict_aux: bool = True) -> Dict[str, torch.Tensor]:
        """image, bg_aligned, fg_aligned, companion: B×3×H×W (normalised); trimap, warped_trimap: B×1×H×W.

        Without a foreground-aligned cue (fg_aligned None) the auxiliary stream is fed the main stream's input,
        the paper's "same frame into both branches" degenerate case (Tab. 2), which falls back to single-frame
        behaviour.

        Returns ``alpha`` B×1×H×W and ``foreground`` B×3×H×W (premultiplied αF, both in [0, 1]); with
        ``predict_aux`` also ``aux_alpha`` and ``aux_foreground`` for the foreground-aligned view.
        """
        check_input("image", image, 3)
        check_input("bg_aligned", bg_aligned, 3, image)
        check_input("trimap", trimap, 1, image)
        main_in = torch.cat([image, bg_aligned, trimap], 1)  # B×7×H×W: direct fusion of the reliable pair
        if fg_aligned is None:
            aux_in = main_in
        else:
            if companion is None or warped_trimap is None:
                raise ValueError("fg_aligned needs companion and warped_trimap too (parallax sec. 4.3)")
            check_input("fg_aligned", fg_aligned, 3, image)
            check_input("companion", companion, 3, image)
            check_input("warped_trimap", warped_trimap, 1, image)
            aux_in = torch.cat([fg_aligned, companion, warped_trimap], 1)
        batch = image.shape[0]
        # one encoder pass over both streams (shared weights): 2B×N×D
        tokens, grid = self.encoder(torch.cat([main_in, aux_in], 0))
        main, aux = tokens[:batch] + self.stream_embed[0], tokens[batch:] + self.stream_embed[1]
        for block in self.decoder:  # each stream attends the other (soft correspondences, sec. 4.3)
            main, aux = block(main, aux), block(aux, main)
        out = self._decode(self.decoder_norm(main), grid, main_in, "")
        if predict_aux:
            out.update(self._decode(self.decoder_norm(aux), grid, aux_in, "aux_"))
        return out

    def _decode(self, tokens, grid, raw, prefix: str) -> Dict[str, torch.Tensor]:
        maps = self.head(tokens_to_map(tokens, grid), raw)  # B×4×H×W
        return {prefix + "alpha": maps[:, :1], prefix + "foreground": maps[:, 1:]}
