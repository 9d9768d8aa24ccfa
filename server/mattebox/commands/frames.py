"""Frame files shared by `mattebox render` and its shot mode (commands/shot.py): frame-number patterns, and each
frame's outputs with their sidecar record ``<alpha file>.json``, whose ``inputs_sha256`` is the key of what made
them (frame by frame: FrameRun's content key, pixels + settings + server and engine versions; a shot: its files
and settings, commands/shot.py), which makes a re-run skip frames that are up to date."""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

_HASHES = re.compile(r"#+")
_PRINTF = re.compile(r"%0?(\d*)d")


def frame_path(pattern: str, frame: int) -> str:
    """Expand ``####`` or ``%04d`` in a pattern for one frame."""
    if _PRINTF.search(pattern):
        return pattern % frame
    match = _HASHES.search(pattern)
    if not match:
        raise ValueError(f"pattern {pattern!r} has no frame number (use #### or %04d)")
    return pattern[:match.start()] + str(frame).zfill(len(match.group())) + pattern[match.end():]


def record_path(args: argparse.Namespace, frame: int) -> Path:
    """The frame's sidecar record: ``<alpha file>.json``."""
    alpha_path = Path(frame_path(args.alpha, frame))
    return alpha_path.with_name(alpha_path.name + ".json")


def up_to_date(args: argparse.Namespace, frame: int, digest: str) -> bool:
    """True when the frame's outputs exist and its sidecar record holds ``digest`` as its inputs' sha256."""
    try:
        recorded = json.loads(record_path(args, frame).read_text()).get("inputs_sha256")
    except (OSError, ValueError, AttributeError):
        return False
    outputs = [args.alpha] + ([args.foreground] if args.foreground else [])
    return recorded == digest and all(Path(frame_path(pattern, frame)).exists() for pattern in outputs)


def write_frame(args: argparse.Namespace, frame: int, alpha, foreground, colorspace: str, info: dict,
                digest: str) -> None:
    """One frame's outputs (:func:`write_outputs`), then its sidecar record (:func:`write_record`)."""
    write_outputs(args, frame, alpha, foreground, colorspace)
    write_record(args, frame, info, digest)


def write_outputs(args: argparse.Namespace, frame: int, alpha, foreground, colorspace: str) -> None:
    """One frame's alpha and foreground (when ``--foreground`` is given; in ``colorspace``, the plate's), each
    written without following a link at its path."""
    from ..colour import srgb_to_linear

    alpha_path = Path(frame_path(args.alpha, frame))
    alpha_path.parent.mkdir(parents=True, exist_ok=True)
    _write(alpha_path, alpha, linear=False)
    if args.foreground and foreground is not None:
        fg_path = Path(frame_path(args.foreground, frame))
        fg_path.parent.mkdir(parents=True, exist_ok=True)
        if fg_path.suffix.lower() == ".exr" and colorspace == "srgb":
            foreground = srgb_to_linear(foreground)  # EXR files are scene-linear
        _write(fg_path, foreground, linear=colorspace == "linear")


def write_record(args: argparse.Namespace, frame: int, info: dict, digest: str, **extra) -> None:
    """The frame's sidecar record: ``digest`` as ``inputs_sha256``, the engine's ``info`` and ``extra`` fields
    (written last, so a record never describes outputs that were not written)."""
    from ..imageio import write_file

    write_file(record_path(args, frame), json.dumps({"frame": frame, "inputs_sha256": digest, "info": info,
                                                      **extra}, indent=1, default=str).encode())


def _write(path: Path, array, linear: bool) -> None:
    from ..colour import linear_to_srgb
    from ..imageio import write_exr, write_png

    if path.suffix.lower() == ".exr":
        write_exr(path, array)
    else:
        write_png(path, linear_to_srgb(array) if linear and array.ndim == 3 else array, bits=16)
