"""`mattebox demo`: start a local server on the embedded default engine, matte bundled sample images through the
real client, and write viewable results plus a contact sheet (image | trimap | alpha | foreground over a checker).

Samples: photos shipped inside the scikit-image wheel (chelsea, CC0: fur and whiskers; astronaut, public domain:
hair), and a synthetic composite made in code with exact alpha (see :mod:`mattebox.synth`), scored against its
ground truth.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_out", help="output folder (default: %(default)s)")
    parser.add_argument("--endpoint", help="use this running server instead of starting one")


def samples() -> List[Dict]:
    """The demo's inputs: name, sRGB uint8 image, optional trimap / ground-truth alpha, and where it came from."""
    out = []
    try:
        from skimage import data
    except ImportError:
        data = None
    if data is not None:
        out.append({"name": "chelsea", "image": data.chelsea(), "source": "scikit-image data.chelsea (CC0)"})
        out.append({"name": "astronaut", "image": data.astronaut(), "source": "scikit-image data.astronaut "
                    "(NASA, public domain)"})
    out.append(synthetic_sample())
    return out


def synthetic_sample(seed: int = 7, size=(360, 480)) -> Dict:
    """A composite with exact alpha: procedural hair-like foreground over a textured background."""
    from .colour import linear_to_srgb
    from .synth.backgrounds import textured_background
    from .synth.foregrounds import hair_foreground

    rng = np.random.default_rng(seed)
    fg_linear, alpha = hair_foreground(size, rng)
    bg_linear = textured_background(size, rng)
    composite = alpha[:, :, None] * fg_linear + (1 - alpha[:, :, None]) * bg_linear
    image = (linear_to_srgb(np.clip(composite, 0, 1)) * 255 + 0.5).astype(np.uint8)
    trimap = np.full(size, 0.5, np.float32)
    import cv2

    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (15, 15))
    trimap[cv2.erode((alpha > 0.99).astype(np.uint8), kernel) > 0] = 1.0
    trimap[cv2.dilate((alpha > 0.01).astype(np.uint8), kernel) == 0] = 0.0
    return {"name": "synthetic_hair", "image": image, "trimap": trimap, "alpha_gt": alpha,
            "source": f"made in code (mattebox.synth, seed {seed})"}


def checkerboard(shape, square: int = 16) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    board = ((yy // square + xx // square) % 2).astype(np.float32)
    return (0.35 + 0.3 * board)[:, :, None].repeat(3, axis=2)


def contact_row(image, trimap, alpha, foreground_srgb, height: int = 240) -> np.ndarray:
    """image | trimap | alpha | foreground over a checkerboard, scaled to ``height``: ``image`` H×W×3 sRGB in
    0–255 (uint8 or float), the others float in [0, 1] (``foreground_srgb`` sRGB-encoded)."""
    import cv2

    over = foreground_srgb * alpha[:, :, None] + checkerboard(alpha.shape) * (1 - alpha[:, :, None])
    tiles = [image.astype(np.float32) / 255.0, np.repeat(trimap[:, :, None], 3, 2),
             np.repeat(alpha[:, :, None], 3, 2), over]
    width = int(round(image.shape[1] * height / image.shape[0]))
    tiles = [cv2.resize(np.clip(t, 0, 1), (width, height), interpolation=cv2.INTER_AREA) for t in tiles]
    gap = np.ones((height, 6, 3), np.float32)
    row = []
    for tile in tiles:
        row += [tile, gap]
    return np.concatenate(row[:-1], axis=1)


def _start_server(folder: Path) -> (subprocess.Popen, str):
    ready = folder / "endpoint"
    proc = subprocess.Popen([sys.executable, "-m", "mattebox", "serve", "--endpoint", "tcp://127.0.0.1:0",
                             "--ready-file", str(ready), "--device", "cpu",
                             "--state-dir", "none"])  # a throw-away server: no job store in the user's state dir
    deadline = time.monotonic() + 60
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("mattebox demo: the local server did not start")
        time.sleep(0.05)
    return proc, ready.read_text().strip()


def run(args: argparse.Namespace) -> int:
    from mattebox_plugin.client import Client

    from .matting.segmentation import u2netp_weights
    from .evaluation import sad
    from .imageio import write_exr, write_png

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    proc: Optional[subprocess.Popen] = None
    endpoint = args.endpoint
    if endpoint is None:
        proc, endpoint = _start_server(Path(tempfile.mkdtemp(prefix="mattebox-demo-")))
        print(f"started a local mattebox server at {endpoint}")
    rows, lines = [], []
    try:
        with Client(endpoint, timeout=120) as client:
            info = client.hello()
            print(f"server {info['server_version']} on {info['device']}; engines: "
                  f"{', '.join(e['name'] for e in info['engines'] if e['available'])}")
            if args.endpoint is None and u2netp_weights() is None:
                print("automatic guidance: GrabCut (U^2-Net-p not installed; `mattebox models pull u2netp` gets it)")
            for sample in samples():
                started = time.perf_counter()
                job = client.submit(image=sample["image"], trimap=sample.get("trimap"), colorspace="srgb",
                                    params={"outputs": ["alpha", "foreground", "trimap"]})
                result = job.result()
                seconds = time.perf_counter() - started
                name = sample["name"]
                write_png(out / f"{name}_alpha.png", result.alpha, bits=16)
                write_exr(out / f"{name}_alpha.exr", result.alpha)
                write_png(out / f"{name}_foreground.png", result.foreground)
                write_png(out / f"{name}_trimap.png", result.trimap)
                rows.append(contact_row(sample["image"], result.trimap, result.alpha, result.foreground))
                line = (f"{name:16s} {sample['image'].shape[1]}x{sample['image'].shape[0]}  "
                        f"guidance {result.info.get('guidance', '?'):18s} {seconds:6.2f} s  ({sample['source']})")
                if "alpha_gt" in sample:
                    unknown = result.trimap == 0.5
                    line += f"  SAD vs exact alpha {sad(result.alpha, sample['alpha_gt'], unknown):.2f}"
                lines.append(line)
                print(line)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=20)
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 8), (0, width - r.shape[1]), (0, 0)), constant_values=1.0) for r in rows]
    write_png(out / "contact_sheet.png", np.concatenate(rows, axis=0))
    (out / "README.txt").write_text("mattebox demo — columns: image | trimap | alpha | foreground over checker\n\n"
                                    + "\n".join(lines) + "\n")
    print(f"wrote {out}/contact_sheet.png and per-sample alpha/foreground/trimap files")
    return 0
