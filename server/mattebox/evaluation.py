"""Matting metrics exactly as the Deep Image Matting evaluation code (Xu et al. 2017, MATLAB
``compute_sad_loss``, ``compute_mse_loss``, ``compute_gradient_loss``, ``compute_connectivity_error``),
and `mattebox eval`.

All metrics count only pixels of ``region`` (the trimap's unknown pixels, trimap == 128); alphas in [0, 1].
Video metrics (dtSSD, MESSDdt; Erofeev et al. 2015) compare consecutive frames of a shot over whole frames.
SAD, Grad and Conn are reported divided by 1000, MSE as the mean over the region.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import cv2
import numpy as np

from mattebox_plugin.protocol import MATTE_PARAMS, param_choices


def sad(pred: np.ndarray, gt: np.ndarray, region: np.ndarray) -> float:
    """Sum of absolute differences over the region, / 1000."""
    return float(np.abs(pred.astype(np.float64) - gt)[region].sum() / 1000.0)


def mse(pred: np.ndarray, gt: np.ndarray, region: np.ndarray) -> float:
    """Mean squared error over the region."""
    count = int(region.sum())
    return float(((pred.astype(np.float64) - gt) ** 2)[region].sum() / max(count, 1))


def _mat2gray(x: np.ndarray) -> np.ndarray:
    """MATLAB mat2gray: rescale min..max to 0..1 (a constant matrix maps to itself clipped, as MATLAB does)."""
    lo, hi = float(x.min()), float(x.max())
    if hi == lo:
        return np.clip(x, 0, 1).astype(np.float64)
    return (x.astype(np.float64) - lo) / (hi - lo)


def gauss_gradient_kernel(sigma: float = 1.4) -> np.ndarray:
    """``gaussgradient.m``'s x-derivative kernel: gauss(row)·dgauss(col), unit Frobenius norm."""
    epsilon = 1e-2
    half = math.ceil(sigma * math.sqrt(-2 * math.log(math.sqrt(2 * math.pi) * sigma * epsilon)))
    u = np.arange(-half, half + 1, dtype=np.float64)
    gauss = np.exp(-u ** 2 / (2 * sigma ** 2)) / (sigma * math.sqrt(2 * math.pi))
    dgauss = -u * gauss / sigma ** 2
    hx = gauss[:, None] * dgauss[None, :]
    return hx / math.sqrt(float((hx * hx).sum()))


def _conv_replicate(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """MATLAB imfilter(IM, h, 'replicate', 'conv'): convolution (flipped kernel) with replicated borders."""
    return cv2.filter2D(image, cv2.CV_64F, cv2.flip(kernel, -1), borderType=cv2.BORDER_REPLICATE)


def grad(pred: np.ndarray, gt: np.ndarray, region: np.ndarray, sigma: float = 1.4) -> float:
    """Gradient error: Σ_region (|∇pred| − |∇gt|)² with Gaussian-derivative filters (σ = 1.4), / 1000."""
    hx = gauss_gradient_kernel(sigma)
    amplitudes = []
    for x in (_mat2gray(pred), _mat2gray(gt)):
        gx, gy = _conv_replicate(x, hx), _conv_replicate(x, hx.T)
        amplitudes.append(np.sqrt(gx ** 2 + gy ** 2))
    return float(((amplitudes[0] - amplitudes[1]) ** 2)[region].sum() / 1000.0)


def conn(pred: np.ndarray, gt: np.ndarray, region: np.ndarray, step: float = 0.1) -> float:
    """Connectivity error: per threshold, the largest 4-connected component of both mattes above it; each
    pixel's level l is the last threshold at which it was still connected; φ = 1 − d·[d ≥ 0.15] with d = α − l;
    Σ_region |φ_pred − φ_gt|, / 1000."""
    pred, gt = pred.astype(np.float64), gt.astype(np.float64)
    thresholds = np.arange(0, 1 + 1e-9, step)
    level = np.full(pred.shape, -1.0)
    for i in range(1, len(thresholds)):
        both = ((pred >= thresholds[i]) & (gt >= thresholds[i])).astype(np.uint8)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(both, connectivity=4)
        omega = np.zeros(pred.shape, bool)
        if count > 1:
            omega = labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        level[(level == -1) & ~omega] = thresholds[i - 1]
    level[level == -1] = 1.0
    d_pred, d_gt = pred - level, gt - level
    phi_pred = 1 - d_pred * (d_pred >= 0.15)
    phi_gt = 1 - d_gt * (d_gt >= 0.15)
    return float(np.abs(phi_pred - phi_gt)[region].sum() / 1000.0)


def foreground_mse(fg: np.ndarray, fg_gt: np.ndarray, alpha_gt: np.ndarray, region: np.ndarray) -> float:
    """MSE of premultiplied colour α·F against α·F_gt (ground-truth α for both), over the region."""
    a = alpha_gt[..., None].astype(np.float64)
    err = ((a * fg - a * fg_gt) ** 2).mean(axis=2)
    return float(err[region].sum() / max(int(region.sum()), 1))


def dtssd(pred: np.ndarray, pred_prev: np.ndarray, gt: np.ndarray, gt_prev: np.ndarray) -> float:
    """dtSSD of one frame pair (Erofeev, Gitman, Vatolin, Fedorov, Wang, "Perceptually Motivated Benchmark for
    Video Matting", BMVC 2015): the root mean square, over the frame, of the difference between the predicted and
    the true temporal derivative of alpha, ``(α_t − α_{t−1}) − (α*_t − α*_{t−1})``; reported ×100 as in
    the video-matting literature (RVM). Zero for a matte that changes exactly as the truth does."""
    derivative = (pred.astype(np.float64) - pred_prev) - (gt.astype(np.float64) - gt_prev)
    return float(np.sqrt(np.mean(derivative ** 2)) * 100.0)


def messddt(pred: np.ndarray, pred_prev: np.ndarray, gt: np.ndarray, gt_prev: np.ndarray,
            flow: Optional[np.ndarray] = None) -> float:
    """MESSDdt of one frame pair (Erofeev et al. 2015): how much the squared error moves with the picture,
    mean over the frame of ``|(α_t − α*_t)²(p) − (α_{t−1} − α*_{t−1})²(p + v(p))|`` with ``v`` the motion of the
    true alpha from frame t to t−1 (``flow``: H×W×2 on frame t, x then y, pixels; default: DIS optical flow of
    the true alphas); reported ×1000. An error that stays put on the subject scores 0; one that flickers or
    swims scores high."""
    from .matting.motion import DISFlow, warp

    if flow is None:
        flow = DISFlow().flow(gt.astype(np.float32), gt_prev.astype(np.float32))
    error_now = (pred.astype(np.float64) - gt) ** 2
    error_before = warp(((pred_prev.astype(np.float64) - gt_prev) ** 2).astype(np.float32), flow)
    return float(np.mean(np.abs(error_now - error_before)) * 1000.0)


def video_metrics(preds: List[np.ndarray], gts: List[np.ndarray], regions: List[np.ndarray]) -> Dict[str, float]:
    """Means over a shot: per-frame SAD and MSE over each frame's ``region`` (unknown pixels), and dtSSD and
    MESSDdt over whole frames between consecutive frames."""
    if not preds or len(preds) != len(gts) or len(gts) != len(regions):
        raise ValueError("video_metrics: expected equally long, non-empty lists of predictions, truths and regions")
    pairs = range(1, len(preds))
    return {"sad": float(np.mean([sad(p, g, r) for p, g, r in zip(preds, gts, regions)])),
            "mse": float(np.mean([mse(p, g, r) for p, g, r in zip(preds, gts, regions)])),
            "dtssd": float(np.mean([dtssd(preds[t], preds[t - 1], gts[t], gts[t - 1]) for t in pairs]))
            if len(preds) > 1 else 0.0,
            "messddt": float(np.mean([messddt(preds[t], preds[t - 1], gts[t], gts[t - 1]) for t in pairs]))
            if len(preds) > 1 else 0.0}


def all_metrics(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray) -> Dict[str, float]:
    """SAD, MSE, Grad, Conn over the trimap's unknown pixels (trimap in {0, 0.5, 1})."""
    region = trimap == 0.5
    return {"sad": sad(pred, gt, region), "mse": mse(pred, gt, region), "grad": grad(pred, gt, region),
            "conn": conn(pred, gt, region)}


# ------------------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="folder with image/, alpha/, trimap1/, trimap2/ (default: alphamatting-dev)")
    parser.add_argument("--trimap", default="both", choices=("trimap1", "trimap2", "both"))
    parser.add_argument("--engine", default="classical", help="engine to evaluate (in-process)")
    parser.add_argument("--quality", default=MATTE_PARAMS["quality"]["default"], choices=param_choices("quality"))
    parser.add_argument("--images", help="comma-separated image names, e.g. GT01,GT10 (a .png suffix is accepted; "
                                         "default: all)")
    parser.add_argument("--json", help="write the per-image results and means here")


def load_sample(data: Path, name: str, trimap_dir: str):
    """(sRGB uint8 image, ground-truth alpha, trimap {0, 0.5, 1}) of one benchmark image."""
    from .codec import quantise_trimap
    from .imageio import read_gray, read_image

    image, _ = read_image(str(data / "image" / f"{name}.png"))
    return image, read_gray(str(data / "alpha" / f"{name}.png")), quantise_trimap(
        read_gray(str(data / trimap_dir / f"{name}.png")))


def evaluate(engine_name: str, data: Path, trimaps: List[str], names: List[str], quality: str = "balanced"):
    """Run an engine in-process over the data set; returns (rows, means)."""
    from . import engines
    from .colour import srgb_to_linear
    from .contract import MatteRequest

    engine = engines.get(engine_name)
    rows = []
    for trimap_dir in trimaps:
        for name in names:
            image, gt, trimap = load_sample(data, name, trimap_dir)
            request = MatteRequest(image=srgb_to_linear(image[..., :3] / 255.0), trimap=trimap,
                                   params={"quality": quality, "foreground_method": "auto", "band_width": 0})
            started = time.perf_counter()
            result = engine.matte(request)
            seconds = time.perf_counter() - started
            rows.append({"image": name, "trimap": trimap_dir, "seconds": round(seconds, 3),
                         **all_metrics(result.alpha, gt, trimap)})
    keys = ("sad", "mse", "grad", "conn", "seconds")
    means = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    return rows, means


def format_table(rows, means) -> str:
    lines = ["| image | trimap | SAD | MSE | Grad | Conn | s |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['image']} | {r['trimap']} | {r['sad']:.2f} | {r['mse']:.5f} | {r['grad']:.2f} | "
                     f"{r['conn']:.2f} | {r['seconds']:.2f} |")
    lines.append(f"| **mean** | | {means['sad']:.2f} | {means['mse']:.5f} | {means['grad']:.2f} | "
                 f"{means['conn']:.2f} | {means['seconds']:.2f} |")
    return "\n".join(lines)


def image_names(listed: str, available: List[str]):
    """The names in ``--images`` (suffix ``.png`` dropped), or a message naming those ``available`` lacks."""
    names = [n.strip()[:-4] if n.strip().lower().endswith(".png") else n.strip() for n in listed.split(",")]
    missing = [n for n in names if n not in available]
    if missing or not names:
        return (f"no image named {', '.join(missing) or '(empty)'} in the data folder; expected names such as "
                f"{', '.join(available[:3])}{', ...' if len(available) > 3 else ''}")
    return names


def run(args: argparse.Namespace) -> int:
    from .paths import alphamatting_dir

    data = Path(args.data) if args.data else alphamatting_dir()
    if data is None or not (data / "image").is_dir():
        print("mattebox eval: no data folder (give --data DIR with image/, alpha/, trimap1/, trimap2/)",
              file=sys.stderr)
        return 2
    available = sorted(p.stem for p in (data / "image").glob("*.png"))
    names = image_names(args.images, available) if args.images else available
    if isinstance(names, str):
        print(f"mattebox eval: --images: {names}", file=sys.stderr)
        return 2
    trimaps = ["trimap1", "trimap2"] if args.trimap == "both" else [args.trimap]
    rows, means = evaluate(args.engine, data, trimaps, names, args.quality)
    print(format_table(rows, means))
    if args.json:
        Path(args.json).write_text(json.dumps({"engine": args.engine, "quality": args.quality, "rows": rows,
                                               "mean": means}, indent=2))
    return 0
