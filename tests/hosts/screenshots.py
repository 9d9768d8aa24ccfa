"""``make screenshots``: the hosts as a person sees them, saved into docs/images/ for docs/hosts/*.md.

Runs every ``tests/hosts/screenshots_<host>.py`` it finds (a hook: a new host adds one module). Each module has
``unavailable_reason()`` (None, or why its host cannot be built or run here) and ``take(images_dir) -> [paths
written]``. A host whose reason is not None is skipped with the reason; a host that
fails makes the exit status 1. Each picture must stay under MAX_BYTES so the repository stays small.

    python -m tests.hosts.screenshots [HOST ...]     # all hosts by default
"""
from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
IMAGES = ROOT / "docs" / "images"
MAX_BYTES = 300_000
PREFIX = "screenshots_"


def read_xwd(path: Path):
    """An X window dump (what Xvfb's ``-fbdir`` keeps current) of a 24/32-bit TrueColor screen -> H×W×3 uint8:
    how every host's screenshots are taken (the hosts' own screenshot calls read back black under software GL)."""
    import struct

    import numpy as np

    data = path.read_bytes()
    fields = struct.unpack(">25I", data[:100])
    header_size, width, height = fields[0], fields[4], fields[5]
    byte_order, bits_per_pixel, bytes_per_line, colours = fields[7], fields[11], fields[12], fields[19]
    if bits_per_pixel != 32:
        raise ValueError(f"{path}: {bits_per_pixel} bits per pixel, expected 32 (Xvfb -screen WxHx24)")
    start = header_size + 12 * colours
    rows = np.frombuffer(data, np.uint8, count=bytes_per_line * height, offset=start).reshape(height, -1)
    pixels = rows[:, :4 * width].reshape(height, width, 4)
    return np.ascontiguousarray(pixels[..., [2, 1, 0]] if byte_order == 0 else pixels[..., [1, 2, 3]])


def host_modules() -> List[Tuple[str, str]]:
    """(host, importable module name) of every host's screenshot module, sorted by host."""
    return sorted((path.stem[len(PREFIX):], f"tests.hosts.{path.stem}") for path in HERE.glob(f"{PREFIX}*.py"))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("hosts", nargs="*", help="only these hosts (default: every host module found)")
    parser.add_argument("--out", type=Path, default=IMAGES, help="folder for the pictures (default: docs/images)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    failed = False
    for host, name in host_modules():
        if args.hosts and host not in args.hosts:
            continue
        module = importlib.import_module(name)
        reason = module.unavailable_reason()
        if reason:
            print(f"{host}: skipped: {reason}")
            continue
        print(f"{host}: taking screenshots ...", flush=True)
        try:
            written = module.take(args.out)
        except Exception:  # one host's failure must not hide the others' pictures
            traceback.print_exc()
            print(f"{host}: FAILED")
            failed = True
            continue
        for path in written:
            size = path.stat().st_size
            too_big = size > MAX_BYTES
            failed |= too_big
            print(f"{host}: wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} "
                  f"({size // 1000} KB{', over the ' + str(MAX_BYTES // 1000) + ' KB limit' if too_big else ''})")
    return 1 if failed else 0


if __name__ == "__main__":
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    sys.exit(main())
