"""`mattebox matte`: matte one image (or a pair) and write alpha/foreground files.

With a server answering (the configured one, or ``--endpoint``) the job goes there; otherwise the server's own
checks and pipeline (:func:`mattebox.jobs.run_engine`) run in this process, with no server thread or sockets."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mattebox_plugin import protocol
from mattebox_plugin.protocol import MATTE_PARAMS, param_choices


#: the files `mattebox matte` can write, each as <stem>_<name>: alpha (float EXR, 16-bit PNG), the straight linear
#: foreground (EXR), the premultiplied sRGB foreground (16-bit PNG) and the trimap the engine solved with (PNG)
OUTPUT_FILES = ("alpha.exr", "alpha.png", "fg.exr", "fg_premult.png", "trimap.png")


def _files_to_write(text: str) -> tuple:
    """--write's value: known names, comma-separated, at least one; argparse prints the error's words."""
    names = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    unknown = [name for name in names if name not in OUTPUT_FILES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(OUTPUT_FILES)}; "
                                         f"got {text!r}")
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", help="plate to matte (PNG/JPEG/TIFF = sRGB, EXR = linear)")
    parser.add_argument("--second", help="a second frame with slight camera motion (parallax partner)")
    guide = parser.add_mutually_exclusive_group()
    guide.add_argument("--mask", help="coarse foreground mask (grey image)")
    guide.add_argument("--trimap", help="trimap (0 background, 128 unknown, 255 foreground)")
    parser.add_argument("--background", help="clean plate")
    parser.add_argument("--out", default="mattebox_out", help="output folder (default: %(default)s)")
    parser.add_argument("--engine", default="auto", help="engine or model (default: auto)")
    parser.add_argument("--band-width", type=float, default=0, help="mask->trimap band in px (0 = by size)")
    parser.add_argument("--quality", default=MATTE_PARAMS["quality"]["default"], choices=param_choices("quality"))
    parser.add_argument("--foreground-method", default=MATTE_PARAMS["foreground_method"]["default"],
                        choices=param_choices("foreground_method"))
    parser.add_argument("--endpoint", help="server to use (default: the configured one if it answers, else the "
                                           "engine runs inside this process)")
    parser.add_argument("--local", action="store_true", help="use no server: run the engine inside this process")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds of server silence tolerated")
    parser.add_argument("--write", type=_files_to_write, default=OUTPUT_FILES, metavar="FILES",
                        help="comma-separated files to write as <image stem>_<file> in --out, from "
                             f"{','.join(OUTPUT_FILES)} (default: all)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from concurrent.futures import ThreadPoolExecutor

    from mattebox_plugin.errors import JobFailed, ServerUnavailable

    from .. import heap
    from ..embedded import answering_server
    from ..imageio import ImageReadError, read_gray, read_image

    started = time.perf_counter()
    # every file at once, on threads (OpenCV's decoders release the GIL: a 1080p roto's mask decodes beside the plate)
    files = {"image": (read_image, args.image), "second": (read_image, args.second),
             "background": (read_image, args.background), "mask": (read_gray, args.mask),
             "trimap": (read_gray, args.trimap)}
    with ThreadPoolExecutor(max_workers=4) as pool:
        reads = {name: pool.submit(read, path) for name, (read, path) in files.items() if path}
    try:
        arrays = {name: done.result() for name, done in reads.items()}  # (the first file that fails is reported)
        image, colorspace = arrays["image"]
        inputs = {"image": image}
        for name in ("second", "background"):
            if name in arrays:
                array, space = arrays[name]
                inputs[name] = array if space == colorspace else _convert(array, space, colorspace)
        for name in ("mask", "trimap"):
            if name in arrays:
                inputs[name] = arrays[name]
    except ImageReadError as exc:
        print(f"mattebox: {exc}", file=sys.stderr)
        return 2
    if image.shape[0] * image.shape[1] >= heap.HOLD_PIXELS:
        heap.hold_freed_memory()  # one big frame, then exit: its temporaries reuse freed pages (mattebox.heap)
    params = {"engine": args.engine, "band_width": args.band_width, "quality": args.quality,
              "foreground_method": args.foreground_method,
              "outputs": ["alpha", "foreground"] + (["trimap"] if "trimap.png" in args.write else [])}
    try:
        endpoint = answering_server(args.endpoint, args.local)
        if endpoint is None:  # no server: run the engine right here (no sockets, no wire encoding)
            alpha, fg_linear, trimap, info = _matte_in_process(inputs, colorspace, params, args)
        else:
            alpha, fg_linear, trimap, info = _matte_on_server(endpoint, inputs, colorspace, params, args)
    except (JobFailed, protocol.ProtocolError) as exc:
        print(f"\nmattebox: the job was refused: {exc}", file=sys.stderr)
        return 1
    except ServerUnavailable as exc:
        print(f"\nmattebox: {exc}", file=sys.stderr)
        return 1
    if not args.quiet:
        sys.stderr.write("\r" + " " * 70 + "\r")
    out = Path(args.out)
    stem = Path(args.image).stem
    try:
        out.mkdir(parents=True, exist_ok=True)
        _write_outputs(out, stem, args.write, alpha, fg_linear, trimap)
    except OSError as exc:  # imageio.OutputError for a symbolic link at an output path, a full disk, permissions
        print(f"mattebox: could not write the outputs: {exc}", file=sys.stderr)
        return 1
    stages = ", ".join(f"{stage} {seconds:.2f} s" for stage, seconds in info.get("timings", {}).items())
    print(f"{args.image}: engine {info.get('engine')}, guidance {info.get('guidance', '?')}, "
          f"solve {info.get('seconds', 0):.2f} s{f' ({stages})' if stages else ''}, "
          f"total {time.perf_counter() - started:.2f} s -> {out}/{stem}_*")
    if args.second:
        if info.get("pair_usable"):
            print(f"  second frame used: known background behind {info['known_background_coverage']:.1%} of the "
                  f"unknown band, layers {info['median_parallax_px']:.2f} px apart")
        else:
            print(f"  second frame not used: {info.get('pair_why', 'the engine does not use it')}")
    return 0


def _write_outputs(out: Path, stem: str, names: tuple, alpha, fg_linear, trimap) -> None:
    """The files of :data:`OUTPUT_FILES` named in ``names``, on two threads: OpenCV's encoders and numpy release the
    GIL, so the foreground EXR, the largest, overlaps the other four (3840×2160: 1.8 s of CPU against 1.2 s for the
    rest)."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from ..colour import linear_to_srgb
    from ..imageio import write_exr, write_png

    def premultiplied():
        write_png(out / f"{stem}_fg_premult.png", linear_to_srgb(np.clip(fg_linear, 0, 1) * alpha[:, :, None]))

    writers = {"fg.exr": lambda: write_exr(out / f"{stem}_fg.exr", fg_linear), "fg_premult.png": premultiplied,
               "alpha.exr": lambda: write_exr(out / f"{stem}_alpha.exr", alpha),
               "alpha.png": lambda: write_png(out / f"{stem}_alpha.png", alpha, bits=16),
               "trimap.png": lambda: write_png(out / f"{stem}_trimap.png", trimap)}
    writes = [writer for name, writer in writers.items() if name in names]  # the largest first
    with ThreadPoolExecutor(max_workers=min(2, len(writes))) as pool:
        for done in [pool.submit(write) for write in writes]:
            done.result()  # the first failure is raised (the others have finished: no half-written state left)


def _matte_in_process(inputs: dict, colorspace: str, params: dict, args: argparse.Namespace):
    """(alpha, linear foreground, trimap, info) from the server's own checks and pipeline run in this process:
    no server thread, no sockets, no encoding of the result to the wire's colourspace and back."""
    from ..jobs import resolve_engine, run_engine

    params = protocol.validate_params(params)
    buffers = protocol.input_buffers(inputs, colorspace)
    header = {"buffers": [b.describe() for b in buffers]}
    described = protocol.validate_buffers(header, [b.data for b in buffers], protocol.DEFAULT_LIMITS)
    params["engine"] = resolve_engine(params["engine"], described).name

    def progress(stage: str, done: int = 0, total: int = 0, message: str = "") -> None:
        if not args.quiet:
            _progress_bar({"stage": stage, "done": done, "total": total})

    try:
        result, info = run_engine(described, params, progress, device="cpu")
    except (ValueError, MemoryError) as exc:  # the server would answer engine_failed; same words, no traceback
        raise protocol.ProtocolError("engine_failed", f"{exc.__class__.__name__}: {exc}") from None
    return result.alpha, result.foreground, result.trimap, info


def _matte_on_server(endpoint: str, inputs: dict, colorspace: str, params: dict, args: argparse.Namespace):
    """(alpha, linear foreground, trimap, info) from a running server."""
    from mattebox_plugin.client import Client

    from ..colour import srgb_to_linear
    from ..embedded import client_kwargs, configured

    with Client(**client_kwargs(configured(endpoint), args.timeout)) as client:
        job = client.submit(params=params, colorspace=colorspace, **inputs)
        for event in job.progress():
            if not args.quiet:
                _progress_bar(event)
        result = job.result()
    foreground = srgb_to_linear(result.foreground) if colorspace == "srgb" else result.foreground
    return result.alpha, foreground, result.trimap, result.info


def _convert(array, source: str, target: str):
    """Bring a secondary input into the image's colourspace (both go in one request)."""
    import numpy as np

    from ..colour import from_colorspace, to_colorspace

    values = array.astype(np.float32) / (255.0 if array.dtype == np.uint8 else 65535.0) \
        if array.dtype.kind == "u" else array
    return to_colorspace(from_colorspace(values, source), target)


def _progress_bar(event) -> None:
    done, total = event.get("done") or 0, event.get("total") or 0
    fraction = done / total if total else 0.0
    bar = "#" * int(30 * fraction) + "-" * (30 - int(30 * fraction))
    sys.stderr.write(f"\r{event.get('stage', ''):>12s} [{bar}] {100 * fraction:5.1f}%")
    sys.stderr.flush()

