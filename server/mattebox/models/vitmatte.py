"""ViTMatte (Yao et al. 2024) through Hugging Face transformers' ``VitMatteForImageMatting`` (optional extra
``mattebox[vitmatte]``).

Weights: ``mattebox models pull vitmatte-small-composition-1k`` (or ``import``) installs the published checkpoint
as ``<models dir>/vitmatte-small-composition-1k.safetensors`` (Hugging Face keys), built with the published
config reproduced in :data:`PUBLISHED`; or a ``save_pretrained`` folder (``config.json`` + ``model.safetensors``)
under ``<models dir>/vitmatte``, loaded with ``local_files_only=True`` (never a hub download; a
``model.safetensors.sha256`` sidecar, when present, is verified first).

Inputs as VitMatteImageProcessor makes them (its defaults: rescale 1/255, normalise with mean = std = 0.5, image and
trimap concatenated, zero-padded at the bottom/right to a multiple of 32, the output cropped back), so the
engine's untiled output equals transformers' pipeline on the same weights (tests/test_models_vitmatte.py).

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


#: The published configs, as in hustvl/vitmatte-{small,base}-{composition-1k,distinctions-646}/config.json on the
#: Hugging Face Hub (values not listed there are VitDetConfig/VitMatteConfig defaults: patch 16, 12 layers,
#: pretrain_image_size 224, mlp_ratio 4). small: 25,814,753 parameters (+1,672 BatchNorm buffers: a 103 MB fp32
#: file); base: 96,686,561.
_PUBLISHED_BACKBONE = dict(image_size=512, num_channels=4, out_features=["stage12"], out_indices=[12],
                           residual_block_indices=[2, 5, 8, 11], use_relative_position_embeddings=True,
                           window_block_indices=[0, 1, 3, 4, 6, 7, 9, 10], window_size=14)
PUBLISHED = {
    "small": dict(backbone=dict(_PUBLISHED_BACKBONE, hidden_size=384, num_attention_heads=6), hidden_size=384),
    "base": dict(backbone=dict(_PUBLISHED_BACKBONE), hidden_size=768),  # VitDetConfig defaults: 768 wide, 12 heads
}
PUBLISHED_PARAMS = {"small": 25_814_753, "base": 96_686_561}


def vitmatte_config(variant: str = "small"):
    """VitMatteConfig of a published ViTMatte ("small" = ViTMatte-S, "base" = ViTMatte-B; ViTDet backbone with
    windowed and residual blocks) or a tiny randomly initialisable one ("tiny") for tests."""
    from transformers import VitDetConfig, VitMatteConfig

    if variant in PUBLISHED:
        published = PUBLISHED[variant]
        return VitMatteConfig(backbone_config=VitDetConfig(**published["backbone"]),
                              hidden_size=published["hidden_size"], convstream_hidden_sizes=[48, 96, 192],
                              fusion_hidden_sizes=[256, 128, 64, 32])
    if variant == "tiny":  # windowed, global and residual blocks as in the published ones, at width 32
        backbone = VitDetConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, num_channels=4,
                                image_size=64, pretrain_image_size=64, patch_size=16, window_block_indices=[0, 1],
                                residual_block_indices=[2], window_size=2, use_relative_position_embeddings=True,
                                out_features=["stage3"])
        return VitMatteConfig(backbone_config=backbone, hidden_size=32, convstream_hidden_sizes=[4, 8, 8],
                              fusion_hidden_sizes=[16, 8, 8, 8])
    raise ValueError(f"vitmatte variant must be 'small', 'base' or 'tiny', got {variant!r}")


def wrapper_keys(state: Dict) -> Dict:
    """Checkpoint filter: a VitMatteForImageMatting state dict (Hugging Face keys, as installed by ``mattebox
    models pull``) -> this wrapper's keys (``hf.`` prefix). BatchNorm's ``num_batches_tracked`` counters, which
    some exports leave out, are filled with zeros (inference never reads them)."""
    out = {key if key.startswith("hf.") else "hf." + key: value for key, value in state.items()}
    for key in [k for k in out if k.endswith(".running_mean")]:
        out.setdefault(key[:-len("running_mean")] + "num_batches_tracked", torch.zeros((), dtype=torch.long))
    return out


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
    """A randomly initialised ViTMatte of ``variant`` (the registry's constructor; published weights are loaded
    into it through :func:`wrapper_keys`) or, with ``folder``, the ``save_pretrained`` weights there."""
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
