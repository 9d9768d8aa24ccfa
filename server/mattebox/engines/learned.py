"""Engines serving the registered learned models (docs/models.md) through the same contract as the classical one.

One :class:`LearnedEngine` subclass per registry entry. Availability is decided without torch (weights file
present, torch installed). Inference: the shared tiler (mattebox.tiling) with Gaussian merging, batched tiles,
autocast fp16/bf16 on CUDA, tile/batch sized from free GPU memory, progress per tile batch and cancellation
between tiles (the progress callback raises JobCancelled). Loaded models live in an LRU with a memory cap
(``MATTEBOX_MODEL_CACHE_MB``, default 4096).
"""
from __future__ import annotations

import importlib.util
import os
import threading
import time
from collections import OrderedDict
from typing import Dict, Optional, Tuple

import numpy as np

from ..colour import srgb_to_linear
from ..contract import Engine, InputError, MatteRequest, MatteResult, Progress, no_progress
from ..models import registry
from ..models.inputs import model_inputs, normalisation
from ..models.sources import sources_for
from ..models.weights import WeightsError, load_spec_weights, resolve_weights, weights_status
from ..matting import align
from ..matting.foreground import blur_fusion
from ..matting.guidance import grabcut_mask, trimap_from_mask

#: activation memory per input pixel at inference, by tiled model (bytes, fp16 autocast) — sizes GPU tiles/batches.
#: Deliberately above what the CPU shows: the fp32 CPU peak for a batch of 4 tiles, as ru_maxrss growth, is
#: parallax 1414, mask2alpha 765, vitmatte 1306 B/px, and CUDA adds workspaces and allocator slack. Re-measure on a
#: CUDA device with ``python bench/models.py`` (bench/results/models.md, column "activation B/px measured", this
#: table's value in brackets) and set these from it. Too low is survivable anyway: the tiler halves the batch when
#: memory runs out. PP-Matting runs whole frames (PPMattingEngine.infer) and sizes nothing from it.
BYTES_PER_PIXEL = {"parallax": 6000.0, "mask2alpha": 4000.0, "vitmatte": 3000.0}

#: the ``tile`` request param that runs the whole frame in one forward (tiling.whole_frame_apply)
UNTILED = -1


class ModelCache:
    """LRU of loaded models keyed by (name, device), evicting least recently used ones above ``cap_bytes``
    (parameter + buffer bytes). The most recent model is always kept even if alone above the cap."""

    def __init__(self, cap_bytes: int):
        self.cap_bytes = cap_bytes
        self._models: "OrderedDict[Tuple[str, str], Tuple[object, int]]" = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def model_bytes(model) -> int:
        tensors = list(model.parameters()) + list(model.buffers())
        return int(sum(t.numel() * t.element_size() for t in tensors))

    def get(self, key, load):
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key][0]
        model = load()
        with self._lock:
            self._models[key] = (model, self.model_bytes(model))
            self._models.move_to_end(key)
            while len(self._models) > 1 and self.total_bytes > self.cap_bytes:
                self._models.popitem(last=False)
        return model

    @property
    def total_bytes(self) -> int:
        return sum(size for _, size in self._models.values())

    def keys(self):
        return list(self._models)

    def clear(self) -> None:
        with self._lock:
            self._models.clear()


MODEL_CACHE = ModelCache(int(float(os.environ.get("MATTEBOX_MODEL_CACHE_MB", "4096")) * 2 ** 20))


def pick_device(requested: Optional[str] = None):
    """(torch.device, autocast dtype or None): CUDA with bf16 where supported (fp16 otherwise), else CPU fp32."""
    import torch

    if requested:
        device = torch.device(requested)
    else:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda":
        return device, None
    return device, (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)


class LearnedEngine(Engine):
    """Base of the learned engines. Subclasses set ``model_name`` and implement :meth:`prepare` /
    :meth:`alpha_and_premultiplied` (request -> sRGB arrays H×W×C; merged outputs -> alpha, foreground). The
    model's inputs are made from those arrays by :mod:`mattebox.models.inputs`, as in training."""

    kind = "learned"
    model_name = ""
    #: build the model from the tiny config (tests; never used by the server)
    tiny = False
    #: forward outputs merged across tiles, and extra forward keyword arguments at inference
    merge_outputs: Tuple[str, ...] = ("alpha",)
    forward_options: Dict[str, object] = {}
    #: the model's own predict normalises its colour input (PP-Matting: after resizing, as PaddleSeg does)
    normalises_itself = False

    @property
    def spec(self):
        return registry.get_spec(self.model_name)

    def availability(self) -> Tuple[bool, str]:
        if importlib.util.find_spec("torch") is None:
            return False, "torch is not installed (pip install 'mattebox[server]')"
        present, why, _path = weights_status(self.spec)
        return present, why

    def describe(self):
        """The contract's description plus ``get``: the command installing published weights when none are."""
        row = super().describe()
        sources = sources_for(self.model_name)
        if not row["available"] and sources and row["why"].startswith("weights not installed"):
            row["get"] = sources[0].pull_command()
        return row

    # -- model loading ------------------------------------------------------------------------------------------
    def resolved_weights(self, request: Optional[MatteRequest] = None):
        """The installed weights this request uses (the ``weights`` param names a source; default: sources.py's
        order). Raises WeightsError naming the command that gets them when none are installed."""
        if self.tiny:
            return None
        prefer = str(request.param("weights", "") or "") if request is not None else ""
        resolved = resolve_weights(self.spec, prefer or None)
        if resolved is None:
            raise WeightsError(weights_status(self.spec)[1])
        return resolved

    def load_model(self, device, resolved=None):
        """Build the model (with the weights' config overrides) and load the weights (subclasses with other
        weight formats override)."""
        model = registry.build(self.model_name, tiny=self.tiny, **(resolved.config if resolved else {}))
        if resolved is not None:
            load_spec_weights(model, self.spec, resolved)
        return model.to(device).eval()

    def model(self, device, resolved=None):
        label = ":tiny" if self.tiny else f":{resolved.label}" if resolved is not None else ""
        return MODEL_CACHE.get((self.model_name + label, str(device)), lambda: self.load_model(device, resolved))

    # -- inputs -------------------------------------------------------------------------------------------------
    def model_inputs(self, arrays: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """The model's inputs (H×W×C) from the request's sRGB arrays, as training makes them from a batch."""
        stats = None if self.normalises_itself else normalisation(self.spec)
        return model_inputs(self.spec.inputs, arrays, stats, channel_axis=-1)

    @staticmethod
    def guidance_trimap(request: MatteRequest) -> np.ndarray:
        """The request's trimap, else one from its mask, else from a GrabCut mask (the classical guidance)."""
        if request.trimap is not None:
            return request.trimap.astype(np.float32)
        mask = request.mask if request.mask is not None else grabcut_mask(request.image_srgb)
        return trimap_from_mask(mask, float(request.param("band_width", 0) or 0))

    def prepare(self, request: MatteRequest) -> Tuple[Dict[str, np.ndarray], np.ndarray, Optional[np.ndarray]]:
        """-> (sRGB arrays name -> H×W×C float32, from which :meth:`model_inputs` makes the model's inputs;
        trimap used; needed-pixels mask or None)."""
        raise NotImplementedError

    def alpha_and_premultiplied(self, merged: Dict[str, np.ndarray]) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """Merged outputs -> (alpha H×W, premultiplied sRGB foreground H×W×3 or None)."""
        return merged["alpha"][..., 0], None

    # -- the job ------------------------------------------------------------------------------------------------
    def matte(self, request: MatteRequest, progress: Progress = no_progress) -> MatteResult:
        timings = {}
        started = time.perf_counter()
        progress("guidance")
        arrays, trimap, needed = self.prepare(request)
        inputs = self.model_inputs(arrays)
        timings["guidance"] = time.perf_counter() - started
        progress("load model")
        device, amp = pick_device(request.param("device"))
        resolved = self.resolved_weights(request)
        model = self.model(device, resolved)  # WeightsError names the file and expected hash
        timings["load"] = time.perf_counter() - started - timings["guidance"]
        merged, run_info = self.infer(model, inputs, trimap, needed, device, amp, request, progress)
        timings["inference"] = time.perf_counter() - started - sum(timings.values())
        progress("foreground")
        alpha, premultiplied = self.alpha_and_premultiplied(merged)
        if needed is not None:  # known trimap regions stay exact
            alpha = np.where(trimap == 0.5, alpha, trimap)
        alpha = np.clip(alpha, 0.0, 1.0).astype(np.float32)
        if premultiplied is not None:
            straight_srgb = np.where(alpha[..., None] > 1e-3, premultiplied / np.maximum(alpha[..., None], 1e-3),
                                     request.image_srgb)
            foreground = srgb_to_linear(np.clip(straight_srgb, 0.0, 1.0)).astype(np.float32)
        else:
            foreground = blur_fusion(request.image, alpha)
        timings["foreground"] = time.perf_counter() - started - sum(timings.values())
        return MatteResult(alpha, foreground, trimap.astype(np.float32),
                           {"engine": self.name, "model": self.model_name, "device": str(device),
                            "weights": resolved.label if resolved is not None else "tiny (random)",
                            "autocast": str(amp) if amp is not None else "off", **run_info,
                            "timings": timings}).check(request.shape)

    def infer(self, model, inputs, trimap, needed, device, amp, request: MatteRequest,
              progress: Progress) -> Tuple[Dict[str, np.ndarray], Dict[str, object]]:
        """Model outputs over the frame (name -> H×W×C) and what the result reports about the run: overlapping
        tiles merged with a Gaussian window (mattebox.tiling), tile and batch from free GPU memory."""
        from ..tiling import choose_tile_and_batch, cuda_free_bytes, tiled_apply, torch_tile_fn, whole_frame_apply

        tile, batch = choose_tile_and_batch(cuda_free_bytes(device), BYTES_PER_PIXEL.get(self.model_name, 8000.0),
                                            self.spec.tile)
        tile = int(request.param("tile") or tile)  # 0 (the protocol's default): chosen from free memory
        batch = int(request.param("tile_batch") or batch)  # 0 (the protocol's default): chosen from free memory
        overlap = request.param("tile_overlap", -1)
        if overlap != -1 and tile != UNTILED and not 0 <= overlap < tile:
            raise InputError(f"tile_overlap {overlap} must be -1 (half the tile) or 0..{tile - 1} for {tile} px tiles",
                             field="params.tile_overlap")
        fill = {"alpha": trimap[..., None]} if needed is not None else None
        options = dict(self.forward_options)
        run = torch_tile_fn(lambda **tensors: model(**tensors, **options), device, amp, outputs=self.merge_outputs)
        if tile == UNTILED:  # the whole frame in one forward, as the model's reference implementation runs it
            merged = whole_frame_apply(inputs, run, self.spec.stride)
            progress("tiles", 1, 1)
        else:
            merged = tiled_apply(inputs, run, tile=tile, overlap=tile // 2 if overlap == -1 else overlap,
                                 batch_size=batch, needed=needed,
                                 progress=lambda done, total: progress("tiles", done, total), fill=fill)
        return merged, {"tile": tile, "tile_batch": run.batch_limit or batch}


class ParallaxEngine(LearnedEngine):
    """Two-frame Parallax Portrait Matting. With a second frame the two-frame module aligns it
    (mattebox.matting.align.align_pair); without one the net runs its single-frame degenerate case (paper Tab. 2)."""

    name = "parallax"
    model_name = "parallax"
    description = "Parallax Portrait Matting (two frames; learned, needs weights)"
    uses = ("second", "trimap", "mask")
    merge_outputs = ("alpha", "foreground")
    forward_options = {"predict_aux": False}

    def prepare(self, request):
        trimap = self.guidance_trimap(request)
        arrays = {"image": request.image_srgb, "trimap": trimap[..., None]}
        if request.second is not None:  # without it the model inputs fall back to the single-frame case
            pair = align.align_pair(request.image_srgb, request.srgb("second"), trimap)
            arrays.update(bg_aligned=pair.background_aligned, fg_aligned=pair.foreground_aligned,
                          companion=pair.companion,
                          warped_trimap=np.asarray(pair.warped_trimap, np.float32)[..., None])
        return arrays, trimap, trimap == 0.5

    def alpha_and_premultiplied(self, merged):
        # no foreground when no tile ran (a trimap without unknown pixels): Blur-Fusion of the trimap alpha
        return merged["alpha"][..., 0], merged.get("foreground")


class PPMattingEngine(LearnedEngine):
    """PP-Matting on the whole frame, as PaddleSeg's inference runs it (models/ppmatting.py:predict): its semantic
    branch classifies the subject from global context, which tiles would cut apart."""

    name = "ppmatting"
    model_name = "ppmatting"
    description = "PP-Matting (trimap-free, whole frame; learned, needs weights)"
    uses = ()
    normalises_itself = True

    def prepare(self, request):
        max_short = request.param("max_short", 32)  # checked before the model loads
        if max_short is not None and (isinstance(max_short, bool) or not isinstance(max_short, int)
                                      or max_short < 32):
            raise ValueError(f"param 'max_short' must be an integer >= 32 (the short side PP-Matting works at) or "
                             f"null for the full size, got {max_short!r}")
        return {"image": request.image_srgb}, np.full(request.shape, 0.5, np.float32), None

    def infer(self, model, inputs, trimap, needed, device, amp, request, progress):
        from ..models.ppmatting import inference_sizes, predict

        max_short = request.param("max_short", model.max_short)  # default: the checkpoint's PaddleSeg config
        sizes = inference_sizes(*inputs["image"].shape[:2], max_short)
        progress("tiles", 0, 1)
        alpha = predict(model, inputs["image"], max_short, device, amp)
        progress("tiles", 1, 1)
        return {"alpha": alpha[..., None]}, {"whole_frame": list(sizes[-1]), "max_short": max_short}


class Mask2AlphaEngine(LearnedEngine):
    name = "mask2alpha"
    model_name = "mask2alpha"
    description = "Mask2Alpha (mask-guided iterative refinement; learned, needs weights)"
    uses = ("mask", "trimap")

    def prepare(self, request):
        if request.mask is not None:
            mask = request.mask
        elif request.trimap is not None:
            mask = (request.trimap >= 0.5).astype(np.float32)
        else:
            mask = grabcut_mask(request.image_srgb)
        mask = (mask >= 0.5).astype(np.float32)  # M ∈ {0, 1} (mask2alpha sec. 3)
        return {"image": request.image_srgb, "mask": mask[..., None]}, trimap_from_mask(mask), None


class ViTMatteEngine(LearnedEngine):
    name = "vitmatte"
    model_name = "vitmatte"
    description = ("ViTMatte (trimap-based; hustvl's published weights through transformers, 'mattebox[vitmatte]'; "
                   "`mattebox models pull vitmatte-small-composition-1k`)")
    uses = ("trimap", "mask")

    def availability(self):
        if importlib.util.find_spec("transformers") is None:
            return False, "transformers is not installed (pip install 'mattebox[vitmatte]')"
        return super().availability()

    def load_model(self, device, resolved=None):
        if resolved is not None and resolved.folder:  # a save_pretrained folder: transformers' own loader
            from ..models.vitmatte import load_vitmatte
            return load_vitmatte(folder=resolved.path).to(device).eval()
        return super().load_model(device, resolved)

    def prepare(self, request):
        trimap = self.guidance_trimap(request)
        return {"image": request.image_srgb, "trimap": trimap[..., None]}, trimap, trimap == 0.5


ENGINES = {cls.name: cls for cls in (ParallaxEngine, PPMattingEngine, Mask2AlphaEngine, ViTMatteEngine)}
