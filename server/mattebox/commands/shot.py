"""`mattebox render --shot`: matte a frame range as one shot (mattebox.shots), in this process.

Key frames come from ``--key-mask FRAME=PATH`` / ``--key-trimap FRAME=PATH`` (repeatable) or from a ``--mask`` /
``--trimap`` pattern whose missing frames are simply not keys. ``--chunk K/N`` renders one slice; the neighbours a
frame's temporal prior needs are read from outside the slice, so chunks render exactly what a whole-shot render
would (no pop at chunk boundaries). A frame's sidecar records the sha256 of everything its result depends on (its
temporal window, the frames back to and including its bracketing keys, the settings), so a re-run skips it when
nothing changed.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Dict, List, Tuple

KEY_SPEC = re.compile(r"(-?\d+)=(.+)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("shots (--shot: the range is one shot, solved with temporal stability)")
    group.add_argument("--shot", action="store_true",
                       help="matte the range as one shot: key-frame guidance carried by optical flow and each "
                            "frame's solve steadied by its neighbours (classical engine, in this process)")
    group.add_argument("--key-mask", action="append", default=[], metavar="FRAME=PATH",
                       help="a mask on one frame (repeatable); implies --shot")
    group.add_argument("--key-trimap", action="append", default=[], metavar="FRAME=PATH",
                       help="a trimap on one frame (repeatable); implies --shot")
    group.add_argument("--temporal-radius", type=int, default=2,
                       help="neighbours on each side that steady a frame (default 2; 0 = frames solved alone)")


def wanted(args: argparse.Namespace) -> bool:
    return bool(args.shot or args.key_mask or args.key_trimap)


def parse_key(spec: str, option: str) -> Tuple[int, str]:
    match = KEY_SPEC.fullmatch(spec)
    if not match:
        raise ValueError(f"{option} {spec!r}: expected FRAME=PATH, e.g. 1001=roto.1001.png")
    return int(match.group(1)), match.group(2)


def key_files(args: argparse.Namespace, frames: List[int], frame_path) -> Dict[int, Tuple[str, str]]:
    """frame -> (kind, path) from --key-mask/--key-trimap and the frames of a --mask/--trimap pattern that exist."""
    keys: Dict[int, Tuple[str, str]] = {}
    pattern, kind = (args.mask, "mask") if args.mask else (args.trimap, "trimap")
    if pattern:
        for frame in frames:
            path = frame_path(pattern, frame)
            if os.path.isfile(path):
                keys[frame] = (kind, path)
    for option, kind, specs in (("--key-mask", "mask", args.key_mask), ("--key-trimap", "trimap", args.key_trimap)):
        for spec in specs:
            frame, path = parse_key(spec, option)
            if frame not in frames:
                raise ValueError(f"{option} {spec!r}: frame {frame} is not in --frames {frames[0]}-{frames[-1]}")
            if not os.path.isfile(path):
                raise ValueError(f"{option} {spec!r}: no such file {path}")
            keys[frame] = (kind, path)
    return keys


class _Digests:
    """sha256 of files (read in blocks), each file hashed once."""

    def __init__(self):
        from ..models.weights import sha256_file  # torch-free

        self.sha256_file = sha256_file
        self.known: Dict[str, str] = {}

    def __call__(self, path: str) -> str:
        if path not in self.known:
            self.known[path] = self.sha256_file(Path(path))
        return self.known[path]


def frame_digest(frame: int, frames: List[int], keys: Dict[int, Tuple[str, str]], radius: int, settings: dict,
                 image_path, digests: _Digests) -> str:
    """What frame's result depends on: settings, the keys, and every plate from the key before its temporal window
    to the key after it."""
    step = frames[1] - frames[0] if len(frames) > 1 else 1
    low, high = frame - radius * step, frame + radius * step
    before = [k for k in keys if k <= low]
    after = [k for k in keys if k >= high]
    first = max(before) if before else frames[0]
    last = min(after) if after else frames[-1]
    digest = hashlib.sha256(json.dumps({"settings": settings, "keys": sorted((k, v[0]) for k, v in keys.items())},
                                       sort_keys=True).encode())
    for key in sorted(keys):
        digest.update(digests(keys[key][1]).encode())
    for f in frames:
        if first <= f <= last:
            digest.update(digests(image_path(f)).encode())
    return digest.hexdigest()


def run(args: argparse.Namespace, frames: List[int], outputs: List[int]) -> int:
    """Render ``outputs`` (a slice of the shot ``frames``) with mattebox.shots, writing and skipping frames as
    `mattebox render` does (commands/frames.py)."""
    from ..colour import to_colorspace
    from ..imageio import ImageReadError, read_gray, read_linear_rgb
    from ..shots import Key, ShotSettings, matte_shot
    from .frames import frame_path, up_to_date, write_frame

    if args.engine not in ("auto", "classical"):
        print(f"mattebox render: --engine {args.engine}: shot mode uses the classical engine (auto or classical)",
              file=sys.stderr)
        return 2
    if args.second_offset:
        print("mattebox render: --second-offset cannot be combined with --shot", file=sys.stderr)
        return 2
    if args.temporal_radius < 0:
        print("mattebox render: --temporal-radius: expected 0 or more", file=sys.stderr)
        return 2
    try:
        files = key_files(args, frames, frame_path)
        keys = {frame: Key(kind, read_gray(path), band_width=args.band_width)
                for frame, (kind, path) in files.items()}
    except (ValueError, ImageReadError) as exc:
        print(f"mattebox render: {exc}", file=sys.stderr)
        return 2
    settings = ShotSettings(quality=args.quality, radius=args.temporal_radius, band_width=args.band_width,
                            foreground=bool(args.foreground))
    record = {"quality": args.quality, "radius": args.temporal_radius, "band_width": args.band_width, "shot": True}
    digests = _Digests()
    colorspaces: Dict[int, str] = {}

    def image_path(frame: int) -> str:
        return frame_path(args.image, frame)

    def read(frame: int):
        image, colorspaces[frame] = read_linear_rgb(image_path(frame))
        return image

    try:
        todo: List[Tuple[int, str]] = []
        for frame in outputs:
            digest = frame_digest(frame, frames, files, args.temporal_radius, record, image_path, digests)
            if not args.force and up_to_date(args, frame, digest):
                print(f"frame {frame}: up to date", flush=True)
            else:
                todo.append((frame, digest))
        digest_of = dict(todo)
        done = 0
        for result in matte_shot(read, frames, keys, [f for f, _ in todo], settings):
            colorspace = colorspaces.get(result.frame, "srgb")
            foreground = None if result.foreground is None else to_colorspace(result.foreground, colorspace)
            info = dict(result.info, engine="classical-shot")
            write_frame(args, result.frame, result.alpha, foreground, colorspace, info, digest_of[result.frame])
            done += 1
            print(f"frame {result.frame}: {result.info['guidance']}, {result.info['neighbours']} neighbours",
                  flush=True)
    except (ImageReadError, ValueError, OSError) as exc:
        print(f"mattebox render: {exc}", file=sys.stderr)
        return 2
    print(f"rendered {done}, up to date {len(outputs) - len(todo)}, of {len(outputs)} frames (shot)")
    return 0
