"""A cached Debian trixie root with Debian's own ``blender`` package (4.3, running the system Python 3.13), for
seeing the extension in a real Blender GUI as a distribution's user gets it (tests/hosts/screenshots_blender.py).

Built and entered with the machinery of :mod:`tests.hosts.gimp_chroot` (debootstrap once, a stamp naming the
packages, commands in a private mount namespace), but a root of its own: the GIMP root is built by ``make test``
and stays small. About 1.5 GB; needs root, ``debootstrap`` and a Debian mirror, like the GIMP root.

    python tests/hosts/blender_chroot.py build      # build or reuse; prints the root (also status, remove)
    python tests/hosts/blender_chroot.py run -- blender --version
    python tests/hosts/blender_chroot.py run --bind /tmp/work -- blender ...   # /tmp/work visible inside too
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional, Sequence

if __package__ in (None, ""):
    sys.path[:0] = [str(Path(__file__).resolve().parents[2] / p) for p in ("", "server", "plugin")]

from tests.hosts import gimp_chroot  # noqa: E402

PACKAGES = ("blender",
            # a virtual display with Mesa's software OpenGL (llvmpipe) for Blender's window
            "xvfb", "xauth", "libgl1-mesa-dri", "libglx-mesa0")
#: Debian's blender binary inside the root
BLENDER = "/usr/bin/blender"
ChrootUnavailable = gimp_chroot.ChrootUnavailable


def default_root() -> Path:
    """``cache_dir()/blender-trixie`` (``$MATTEBOX_BLENDER_CHROOT`` overrides)."""
    env = os.environ.get("MATTEBOX_BLENDER_CHROOT")
    if env:
        return Path(env)
    from mattebox.paths import cache_dir

    return cache_dir() / "blender-trixie"


def unavailable_reason(root: Optional[Path] = None) -> Optional[str]:
    return gimp_chroot.unavailable_reason(root or default_root(), PACKAGES)


def ensure_chroot(root: Optional[Path] = None) -> Path:
    return gimp_chroot.ensure_chroot(root or default_root(), packages=PACKAGES)


def main(argv: Optional[Sequence[str]] = None) -> int:
    return gimp_chroot.main(argv, default_root(), PACKAGES, __doc__)

if __name__ == "__main__":
    sys.exit(main())
