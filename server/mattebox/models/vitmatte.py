"""ViTMatte (Yao et al. 2024) through Hugging Face transformers' ``VitMatteForImageMatting`` (optional extra
``mattebox[vitmatte]``), for users who have its weights.

Weights are a local folder (``config.json`` + ``model.safetensors``, as written by ``save_pretrained``) under
``<models dir>/vitmatte``; it is loaded with ``local_files_only=True`` (never a hub download). A
``model.safetensors.sha256`` sidecar, when present, is verified first.

forward(image B×3×H×W normalised with mean = std = 0.5, trimap B×1×H×W in {0, 0.5, 1}; H, W multiples of 32)
-> {"alpha": B×1×H×W}.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

import torch
from torch import nn

from .vit import check_input
from .weights import WeightsError, sidecar_path, verify_file


def vitmatte_config(variant: str = "small"):
    """VitMatteConfig for ViTMatte-S ("small", ViTDet-S backbone with windowed + residual blocks) or a tiny
    randomly initialisable one ("tiny") for tests."""
    from transformers import VitDetConfig, VitMatteConfig

    if variant == "small":
        backbone = VitDetConfig(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, num_channels=4,
                                image_size=512, pretrain_image_size=224, patch_size=16,
                                window_block_indices=[0, 1, 3, 4, 6, 7, 9, 10], residual_block_indices=[2, 5, 8, 11],
                                window_size=14, use_relative_position_embeddings=True, out_features=["stage12"])
        return VitMatteConfig(backbone_config=backbone, hidden_size=384, convstream_hidden_sizes=[48, 96, 192],
                              fusion_hidden_sizes=[256, 128, 64, 32])
    if variant == "tiny":
        backbone = VitDetConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_channels=4,
                                image_size=64, pretrain_image_size=64, patch_size=16, out_features=["stage2"])
        return VitMatteConfig(backbone_config=backbone, hidden_size=32, convstream_hidden_sizes=[4, 8, 8],
                              fusion_hidden_sizes=[16, 8, 8, 8])
    raise ValueError(f"vitmatte variant must be 'small' or 'tiny', got {variant!r}")


class ViTMatte(nn.Module):
    """Adapter giving VitMatteForImageMatting this project's (image, trimap) -> {"alpha"} signature."""

    def __init__(self, hf_model):
        super().__init__()
        self.hf = hf_model

    def forward(self, image: torch.Tensor, trimap: torch.Tensor) -> Dict[str, torch.Tensor]:
        check_input("image", image, 3)
        check_input("trimap", trimap, 1, image)
        if image.shape[-2] % 32 or image.shape[-1] % 32:
            raise ValueError(f"image height/width must be multiples of 32, got {tuple(image.shape[-2:])}")
        return {"alpha": self.hf(pixel_values=torch.cat([image, trimap], 1)).alphas}


def load_vitmatte(variant: str = "small", folder: Optional[Path] = None) -> ViTMatte:
    """A randomly initialised ViTMatte of ``variant`` or, with ``folder``, the weights saved there."""
    from transformers import VitMatteForImageMatting

    if folder is None:
        return ViTMatte(VitMatteForImageMatting(vitmatte_config(variant)))
    folder = Path(folder)
    weights = folder / "model.safetensors"
    if not (folder / "config.json").is_file() or not weights.is_file():
        raise WeightsError(f"ViTMatte folder {folder} needs config.json and model.safetensors (save_pretrained "
                           f"layout)")
    side = sidecar_path(weights)
    if side.is_file():
        verify_file(weights, side.read_text().split()[0])
    return ViTMatte(VitMatteForImageMatting.from_pretrained(str(folder), local_files_only=True))
