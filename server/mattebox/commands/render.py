"""`mattebox render`: matte a frame range headless, for farms (Flamenco, Deadline, OpenCue).

Input and output names are patterns with a frame number: ``####`` (zero-padded to the number of #) or printf
``%04d``. Every frame's outputs are recorded in a sidecar ``<alpha file>.json`` with the sha256 of its inputs
and settings, so a re-run skips frames whose outputs exist and match (resumable), and ``--chunk K/N`` renders
only the K-th of N equal slices of the range so a farm can split it across machines.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from typing import List, Optional, Sequence

from mattebox_plugin import frames as frames_grammar
from mattebox_plugin.frames import FrameSet
from mattebox_plugin.protocol import MATTE_PARAMS, param_choices

from . import shot
from .frames import frame_path, up_to_date, write_frame


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", help="plate pattern, e.g. plates/shot.####.exr or shot.%%04d.png")
    parser.add_argument("--frames", required=True,
                        help=f"frames, {frames_grammar.EXAMPLES} (at most {MAX_FRAMES:,} frames; --shot: one "
                             f"range with one step)")
    parser.add_argument("--chunk", help="K/N: render only the K-th (1-based) of N equal slices of the range")
    parser.add_argument("--second-offset", type=int,
                        help="use frame F+OFFSET of the plate sequence as the parallax partner")
    guide = parser.add_mutually_exclusive_group()
    guide.add_argument("--mask", help="mask pattern")
    guide.add_argument("--trimap", help="trimap pattern")
    parser.add_argument("--alpha", required=True, help="output alpha pattern (.exr float or .png)")
    parser.add_argument("--foreground", help="output foreground pattern (.exr linear straight, or .png)")
    parser.add_argument("--engine", default="auto")
    parser.add_argument("--quality", default=MATTE_PARAMS["quality"]["default"], choices=param_choices("quality"))
    parser.add_argument("--band-width", type=float, default=0)
    parser.add_argument("--endpoint", help="server (default: the configured one if it answers, else a local one)")
    parser.add_argument("--local", action="store_true", help="always use a local in-process server")
    parser.add_argument("--force", action="store_true", help="re-render frames whose outputs are up to date")
    parser.add_argument("--timeout", type=float, default=120.0)
    shot.add_arguments(parser)


#: most frames one `mattebox render` takes (over 11 hours at 24 fps): a typo such as 1-300000000 is refused
MAX_FRAMES = frames_grammar.MAX_FRAMES


def parse_frames(spec: str) -> FrameSet:
    """``--frames`` (mattebox_plugin.frames' grammar) -> the frames, held as ranges, at most :data:`MAX_FRAMES`."""
    try:
        return frames_grammar.parse_frames(spec, max_frames=MAX_FRAMES)
    except ValueError as exc:
        raise ValueError(f"--{exc}") from None


def chunk_of(frames: Sequence[int], chunk: Optional[str]) -> Sequence[int]:
    """The K-th of N contiguous, near-equal slices (K is 1-based)."""
    if not chunk:
        return frames
    match = re.fullmatch(r"(\d+)/(\d+)", chunk)
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise ValueError(f"--chunk {chunk!r}: expected K/N with 1 <= K <= N")
    k, n = int(match.group(1)), int(match.group(2))
    return frames[(k - 1) * len(frames) // n:k * len(frames) // n]


def input_hash(paths: List[Optional[str]], settings: dict) -> str:
    """sha256 of the settings and the input files' bytes (read in blocks)."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for path in paths:
        if path is None:
            digest.update(b"\0")
            continue
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def run(args: argparse.Namespace) -> int:
    from mattebox_plugin.client import Client, JobFailed, ServerUnavailable
    from mattebox_plugin.errors import describe_error

    from ..embedded import server_endpoint

    try:
        whole = parse_frames(args.frames)
        frames = chunk_of(whole, args.chunk)
    except ValueError as exc:
        print(f"mattebox render: {exc}", file=sys.stderr)
        return 2
    if shot.wanted(args):
        if whole.step is None:
            print(f"mattebox render: --frames {args.frames!r}: a shot is one range with one step (e.g. 1001-1100 "
                  f"or 1001-1100x2)", file=sys.stderr)
            return 2
        return shot.run(args, whole, frames)
    settings = {"engine": args.engine, "quality": args.quality, "band_width": args.band_width,
                "second_offset": args.second_offset}
    params = {"engine": args.engine, "quality": args.quality, "band_width": args.band_width,
              "outputs": ["alpha", "foreground"]}
    done = skipped = 0
    frame = None
    try:
        with server_endpoint(args.endpoint, args.local) as endpoint, Client(endpoint, timeout=args.timeout) as client:
            for frame in frames:
                if render_frame(client, frame, args, settings, params):
                    done += 1
                else:
                    skipped += 1
    except (JobFailed, ServerUnavailable) as exc:  # the hosts' wording (mattebox_plugin.errors)
        where = f"frame {frame}: " if frame is not None else ""
        print(f"mattebox render: {where}{describe_error(exc, args.endpoint)}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:  # a missing or unreadable input, a bad pattern, an output not written
        where = f"frame {frame}: " if frame is not None else ""
        print(f"mattebox render: {where}{exc}", file=sys.stderr)
        if frame is not None:
            print(f"mattebox render: stopped at frame {frame} ({done} rendered and {skipped} up to date before it); "
                  f"run the same command again to resume there", file=sys.stderr)
        return 2
    print(f"rendered {done}, up to date {skipped}, of {len(frames)} frames")
    return 0


def render_frame(client, frame: int, args: argparse.Namespace, settings: dict, params: dict) -> bool:
    """Matte one frame and write its outputs and record; False when its outputs are up to date (skipped).

    Raises ImageReadError naming a missing or unreadable input, OSError (imageio.OutputError for a symbolic link)
    naming an output it could not write."""
    from ..imageio import check_image_file, read_gray, read_image

    image_path = frame_path(args.image, frame)
    second_path = frame_path(args.image, frame + args.second_offset) if args.second_offset else None
    guide_path = frame_path(args.mask or args.trimap, frame) if (args.mask or args.trimap) else None
    for path in (image_path, second_path, guide_path):
        if path is not None:
            check_image_file(path)
    digest = input_hash([image_path, second_path, guide_path], settings)
    if not args.force and up_to_date(args, frame, digest):
        print(f"frame {frame}: up to date", flush=True)
        return False
    image, colorspace = read_image(image_path)
    inputs = {"image": image}
    if second_path:
        inputs["second"] = read_image(second_path)[0]
    if guide_path:
        inputs["mask" if args.mask else "trimap"] = read_gray(guide_path)
    result = client.submit(params=params, colorspace=colorspace, **inputs).result()
    write_frame(args, frame, result.alpha, result.foreground, colorspace, result.info, digest)
    print(f"frame {frame}: {result.info.get('engine')} {result.info.get('seconds', 0):.2f} s", flush=True)
    return True
