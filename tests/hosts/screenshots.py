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
