"""A stand-in ``blender`` executable for installer tests: a given Blender version running a given Python, as an
official build (Python 3.11 in 4.2-5.0) or a Linux distribution's (Debian's 4.3 runs the system Python 3.13).

It prints Blender-like chatter around what it is asked, runs ``--python-expr`` code for real (with a ``bpy``
whose ``app.version`` and a ``sys.version_info`` set to the fake's), and for ``--command extension install-file
... ZIP`` unpacks the zip into ``$BLENDER_USER_RESOURCES/extensions/REPO/ID`` as Blender does. Configured by
environment: FAKE_BLENDER_VERSION ("4.3.2"), FAKE_BLENDER_PYTHON ("3.13"), FAKE_BLENDER_NUMPY ("0": numpy does
not import, as in Debian's Blender without python3-numpy), FAKE_BLENDER_HANG (seconds to hang before answering).
Made executable by :func:`write_fake_blender`.
"""
from __future__ import annotations

import os
import sys
import time
import types
import zipfile
from pathlib import Path


def write_fake_blender(folder: Path, version: str, python: str, numpy: bool = True, hang: float = 0.0) -> str:
    """An executable ``folder/blender`` that is this fake with that version and Python; returns its path."""
    script = Path(folder) / "blender"
    script.write_text(f"#!/bin/sh\nFAKE_BLENDER_VERSION={version} FAKE_BLENDER_PYTHON={python} "
                      f"FAKE_BLENDER_NUMPY={int(numpy)} FAKE_BLENDER_HANG={hang} "
                      f"exec {sys.executable} {Path(__file__).resolve()} \"$@\"\n")
    script.chmod(0o755)
    return str(script)


def _install_file(args) -> int:
    repo = args[args.index("--repo") + 1] if "--repo" in args else "user_default"
    with zipfile.ZipFile(args[-1]) as zf:
        manifest = zf.read("blender_manifest.toml").decode()
        ext_id = next(line.split('"')[1] for line in manifest.splitlines() if line.startswith("id ="))
        zf.extractall(Path(os.environ["BLENDER_USER_RESOURCES"]) / "extensions" / repo / ext_id)
    print(f"Installed \"{ext_id}\"")
    return 0


def main(args) -> int:
    version = tuple(int(x) for x in os.environ["FAKE_BLENDER_VERSION"].split("."))
    python = tuple(int(x) for x in os.environ["FAKE_BLENDER_PYTHON"].split("."))
    time.sleep(float(os.environ.get("FAKE_BLENDER_HANG") or 0))  # a Blender that never answers
    print(f"Blender {'.'.join(map(str, version))} (hash 0123456789ab built 2026-01-01 00:00:00)")
    if "--python-expr" in args:
        print("Read prefs: \"/nonexistent/userpref.blend\"")
        bpy = types.ModuleType("bpy")
        bpy.app = types.SimpleNamespace(version=version)
        sys.modules["bpy"] = bpy
        sys.version_info = python + (0, "final", 0)
        if os.environ.get("FAKE_BLENDER_NUMPY") == "0":
            sys.modules["numpy"] = None  # find_spec says None, import fails: not installed
        exec(args[args.index("--python-expr") + 1], {"__name__": "__main__"})
    elif args[:3] == ["--command", "extension", "install-file"]:
        return _install_file(args)
    else:
        print(f"fake blender: unsupported arguments {args}", file=sys.stderr)
        return 2
    print("\nBlender quit")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
