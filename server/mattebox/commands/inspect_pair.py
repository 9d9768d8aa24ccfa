"""`mattebox inspect-pair`: write a frame pair's motion and aligned views (docs/twoframe.md) as images."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", help="base frame (the one to matte)")
    parser.add_argument("second", help="second frame of the same shot with slight camera motion")
    guide = parser.add_mutually_exclusive_group()
    guide.add_argument("--trimap", help="trimap of the base frame (0 background, 128 unknown, 255 foreground)")
    guide.add_argument("--mask", help="coarse foreground mask of the base frame (grey image)")
    parser.add_argument("--out", default="mattebox_pair", help="output folder (default: %(default)s)")


def flow_to_colour(flow):
    """H×W×2 flow -> H×W×3 sRGB float (hue = direction, saturation = magnitude / max magnitude)."""
    import cv2
    import numpy as np

    magnitude, angle = cv2.cartToPolar(flow[..., 0].astype(np.float32), flow[..., 1].astype(np.float32))
    hsv = np.zeros((*flow.shape[:2], 3), np.float32)
    hsv[..., 0] = angle * 180 / np.pi  # degrees for float HSV
    hsv[..., 1] = magnitude / max(float(magnitude.max()), 1e-6)
    hsv[..., 2] = 1.0
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def run(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    from ..colour import linear_to_srgb, srgb_to_linear
    from ..contract import MatteRequest
    from ..engines.classical import ClassicalEngine
    from ..imageio import ImageReadError, read_gray, read_image, write_png
    from ..matting.align import align_pair

    def load(path: str):
        """H×W×3 sRGB float in [0, 1] (integer files are sRGB, float files linear)."""
        array, colorspace = read_image(path)
        array = array[..., :3] if array.ndim == 3 else np.repeat(array[..., None], 3, 2)
        if array.dtype.kind != "f":
            return array.astype(np.float32) / float(np.iinfo(array.dtype).max)
        return linear_to_srgb(np.clip(array, 0, 1)).astype(np.float32)

    try:
        image, second = load(args.image), load(args.second)
        trimap = read_gray(args.trimap) if args.trimap else None
        mask = read_gray(args.mask) if args.mask else None
    except ImageReadError as exc:
        print(f"mattebox inspect-pair: {exc}")
        return 2
    if image.shape != second.shape:
        print(f"mattebox inspect-pair: second: expected {image.shape[1]}x{image.shape[0]}, "
              f"got {second.shape[1]}x{second.shape[0]}")
        return 2
    if trimap is not None:
        from ..codec import quantise_trimap
        trimap = quantise_trimap(trimap)
    request = MatteRequest(image=srgb_to_linear(image), mask=mask, trimap=trimap)
    trimap, guidance = ClassicalEngine.guidance(request)
    pair = align_pair(image, second, trimap)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    motion = pair.motion
    images = {
        "base": image, "second": second, "trimap": trimap,
        "background_aligned": pair.background_aligned, "foreground_aligned": pair.foreground_aligned,
        "companion": pair.companion, "warped_trimap": pair.warped_trimap, "second_trimap": pair.second_trimap,
        "flow_raw": flow_to_colour(motion.raw), "flow_foreground": flow_to_colour(motion.foreground),
        "flow_background": flow_to_colour(motion.background),
        "occluded": motion.occluded.astype(np.float32), "disoccluded": motion.disoccluded.astype(np.float32),
        "difference_background_aligned": np.clip(np.abs(pair.background_aligned - image) * 4, 0, 1),
    }
    for name, array in images.items():
        write_png(str(out / f"{name}.png"), array)
    band = trimap == 0.5
    summary = {"guidance": guidance, "size": [image.shape[1], image.shape[0]],
               "occluded_fraction": float(motion.occluded.mean()),
               "median_parallax_px_in_band": float(np.median(np.linalg.norm(
                   motion.background - motion.foreground, axis=-1)[band])) if band.any() else 0.0,
               "files": sorted(f"{name}.png" for name in images)}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"wrote {len(images)} images and summary.json to {out}")
    return 0
