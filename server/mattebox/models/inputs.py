"""A model's inputs and outputs, one definition for training (mattebox.training) and inference
(mattebox.engines.learned), so the two cannot drift apart.

A model names its inputs (``ModelSpec.inputs``); :func:`model_inputs` builds them from what there is: a training
batch (B×C×H×W torch tensors, ``channel_axis=1``) or a request's arrays (H×W×C numpy, ``channel_axis=-1``).
Colour inputs are sRGB in [0, 1], normalised here with the statistics the weights were trained with
(:func:`normalisation`). Torch is not imported: tensors are used through their own methods.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from .registry import IMAGENET_MEAN, IMAGENET_STD, ModelSpec

#: colour inputs, normalised with the model's mean/std
COLOUR_INPUTS = ("image", "bg_aligned", "fg_aligned", "companion")
#: inputs a model may do without: the two-frame net then runs its single-frame case (parallax Tab. 2);
#: Mask2Alpha's fine_alpha (Algorithm 1) exists in training only
OPTIONAL_INPUTS = ("fg_aligned", "companion", "warped_trimap", "fine_alpha")
#: what a model without an ``inputs`` attribute takes
DEFAULT_INPUTS = ("image", "trimap")
#: (mean, std) per channel
Normalisation = Tuple[Tuple[float, ...], Tuple[float, ...]]


def normalisation(spec: ModelSpec) -> Normalisation:
    """The (mean, std) a registered model's colour inputs are normalised with: its weights entry's, else the
    spec's ``extras`` ``mean``/``std`` (ViTMatte's image processor: 0.5, 0.5), else ImageNet's."""
    if spec.weights is not None:
        return tuple(spec.weights.mean), tuple(spec.weights.std)
    return tuple(spec.extras.get("mean", IMAGENET_MEAN)), tuple(spec.extras.get("std", IMAGENET_STD))


def normalise(colour, mean: Sequence[float], std: Sequence[float], channel_axis: int):
    """(colour − mean) / std per channel, for a numpy array (as float32) or a torch tensor (in its dtype)."""
    shape = [1] * colour.ndim
    shape[channel_axis] = len(mean)
    if isinstance(colour, np.ndarray):
        return ((colour.astype(np.float32) - np.asarray(mean, np.float32).reshape(shape))
                / np.asarray(std, np.float32).reshape(shape))
    return (colour - colour.new_tensor(mean).view(shape)) / colour.new_tensor(std).view(shape)


def _binary(values):
    above = values >= 0.5
    return above.astype(values.dtype) if isinstance(above, np.ndarray) else above.to(values.dtype)


def model_inputs(names: Sequence[str], available: Dict[str, object], stats: Optional[Normalisation],
                 channel_axis: int, training: bool = False) -> Dict[str, object]:
    """The keyword arguments of a model taking ``names`` from the ``available`` arrays or tensors.

    Colour inputs are normalised with ``stats`` (None: passed as they are, for a model that normalises itself).
    Derived when missing: ``bg_aligned`` = the image (no second frame, no parallax); ``mask`` = the trimap's
    foreground-or-unknown (≥ 0.5) binarised; ``fine_alpha`` = the ground truth, in training only. Optional inputs
    (:data:`OPTIONAL_INPUTS`) are left out; a required input that cannot be made is a KeyError naming it."""
    out = {}
    for name in names:
        if name in available:
            value = available[name]
        elif name == "bg_aligned" and "image" in available:
            value = available["image"]
        elif name == "mask" and "trimap" in available:
            value = _binary(available["trimap"])
        elif name == "fine_alpha" and training and "alpha" in available:
            value = available["alpha"]
        elif name in OPTIONAL_INPUTS:
            continue
        else:
            raise KeyError(f"model input {name!r} is missing (there are {sorted(available)})")
        out[name] = normalise(value, *stats, channel_axis) if stats and name in COLOUR_INPUTS else value
    return out


def input_names(model) -> Tuple[str, ...]:
    """The inputs a torch module takes: its ``inputs`` attribute (:func:`mattebox.training.trainer.build_model`
    sets it from the spec), else an image and a trimap."""
    return tuple(getattr(model, "inputs", DEFAULT_INPUTS))


def module_inputs(model, batch: Dict[str, object], training: bool = False) -> Dict[str, object]:
    """:func:`model_inputs` for a torch module and a B×C×H×W batch, with the convention the module carries as
    attributes (``inputs``, ``input_mean``, ``input_std``; a ``module:factory`` model without a mean gets its
    colour as it is)."""
    mean = getattr(model, "input_mean", None)
    stats = (tuple(mean), tuple(model.input_std)) if mean is not None else None
    return model_inputs(input_names(model), batch, stats, channel_axis=1, training=training)


def normalise_outputs(raw) -> Dict[str, object]:
    """A model's output -> a dict with at least ``alpha``: a bare tensor is the alpha; the registry nets'
    premultiplied ``foreground`` is renamed ``foreground_premultiplied`` (the name the training losses use)."""
    if isinstance(raw, dict) and "alpha" in raw:
        out = dict(raw)
        if "foreground" in out and "foreground_premultiplied" not in out:
            out["foreground_premultiplied"] = out.pop("foreground")
        return out
    if hasattr(raw, "dim"):  # a torch.Tensor, without importing torch
        return {"alpha": raw}
    raise TypeError(f"a model must return an alpha tensor or a dict with 'alpha', got {type(raw).__name__}")
