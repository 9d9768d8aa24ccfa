"""Evaluating a model during and after training: the held-out synthetic set and alphamatting-dev, scored with
:mod:`mattebox.evaluation` (DIM semantics: SAD/MSE/Grad/Conn over the trimap's unknown pixels).

Needs only numpy, OpenCV and torch (no pyzmq/msgpack), so it runs on a bare training machine.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from ..evaluation import all_metrics
from .data import DataConfig, heldout_samples, load_alphamatting

#: predict(image_srgb H×W×3, trimap H×W, sample dict) -> alpha H×W; the sample carries optional extra inputs
Predictor = Callable[[np.ndarray, np.ndarray, Dict[str, np.ndarray]], np.ndarray]
METRICS = ("sad", "mse", "grad", "conn")


def alphamatting_names(exclude: Sequence[str] = ()) -> List[str]:
    """alphamatting-dev image names, minus those used for training; [] when the data set is absent."""
    from ..paths import alphamatting_dir

    folder = alphamatting_dir()
    if folder is None:
        return []
    return sorted(p.stem for p in (folder / "image").glob("*.png") if p.stem not in set(exclude))


def _means(rows: List[Dict]) -> Dict[str, float]:
    return {k: float(np.mean([r[k] for r in rows])) if rows else math.nan for k in METRICS}


def evaluate_heldout(predict: Predictor, count: int, config: DataConfig) -> Dict:
    """Alpha metrics over the first ``count`` held-out synthetic samples (fixed seeds, never trained on)."""
    rows = []
    for index, sample in enumerate(heldout_samples(count, config)):
        alpha = np.clip(predict(sample["image"], sample["trimap"], sample), 0, 1)
        rows.append({"sample": index, **all_metrics(alpha, sample["alpha"], sample["trimap"])})
    return {"count": len(rows), "mean": _means(rows), "rows": rows}


def evaluate_alphamatting(predict: Predictor, names: Sequence[str], trimaps=("trimap1", "trimap2"),
                          max_side: Optional[int] = None) -> Dict:
    """Mean metrics over alphamatting-dev images × trimaps, at full resolution. ``max_side`` runs the model on a
    downscaled copy and upsamples its alpha (scores are still computed against the full-size ground truth)."""
    import cv2

    rows = []
    for trimap_dir in trimaps:
        for name in names:
            image, gt, trimap = load_alphamatting(name, trimap_dir)
            h, w = gt.shape
            scale = 1.0 if not max_side else min(1.0, max_side / max(h, w))
            if scale < 1.0:
                size = (max(1, round(w * scale)), max(1, round(h * scale)))
                small_image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
                small_trimap = cv2.resize(trimap, size, interpolation=cv2.INTER_NEAREST)
                alpha = cv2.resize(predict(small_image, small_trimap, {}), (w, h), interpolation=cv2.INTER_LINEAR)
                alpha = np.where(trimap == 0.5, alpha, trimap)  # known pixels are known at full resolution
            else:
                alpha = predict(image, trimap, {})
            rows.append({"image": name, "trimap": trimap_dir,
                         **all_metrics(np.clip(alpha, 0, 1).astype(np.float32), gt, trimap)})
    return {"count": len(rows), "mean": _means(rows), "rows": rows, "max_side": max_side}


def classical_predictor(quality: str = "balanced") -> Predictor:
    """The classical engine as a :data:`Predictor` (the reference every learned model is compared with)."""
    from .. import engines
    from ..colour import srgb_to_linear
    from ..contract import MatteRequest

    engine = engines.get("classical")

    def predict(image: np.ndarray, trimap: np.ndarray, sample: Dict[str, np.ndarray]) -> np.ndarray:
        request = MatteRequest(image=srgb_to_linear(image).astype(np.float32), trimap=trimap,
                               params={"quality": quality, "foreground_method": "auto", "band_width": 0})
        return engine.matte(request).alpha

    return predict


def model_predictor(model, device, amp_dtype=None) -> Predictor:
    """A torch model as a :data:`Predictor`: pads to ``model.size_multiple`` (default 32) by edge replication,
    builds the model's inputs with :func:`mattebox.models.inputs.module_inputs` (sample arrays such as aligned
    second frames are used when present; without them a two-frame model runs its single-frame case) and returns
    the alpha crop."""
    import torch

    from ..models.inputs import module_inputs, normalise_outputs

    multiple = int(getattr(model, "size_multiple", 32))

    @torch.no_grad()
    def predict(image: np.ndarray, trimap: np.ndarray, sample: Dict[str, np.ndarray]) -> np.ndarray:
        h, w = trimap.shape
        ph, pw = -h % multiple, -w % multiple

        def tensor(array):
            array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
            t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None].to(device)
            return torch.nn.functional.pad(t, (0, pw, 0, ph), mode="replicate") if ph or pw else t

        extra = {k: v for k, v in sample.items() if k not in ("alpha", "foreground", "background", "clean")}
        batch = {name: tensor(value) for name, value in {**extra, "image": image, "trimap": trimap}.items()}
        model.eval()
        device_type = torch.device(device).type
        with torch.autocast(device_type, dtype=amp_dtype, enabled=amp_dtype is not None):
            alpha = normalise_outputs(model(**module_inputs(model, batch)))["alpha"]
        return alpha[0, 0, :h, :w].float().clamp(0, 1).cpu().numpy()

    return predict
