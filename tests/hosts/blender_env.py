"""A real Blender for tests: the ``bpy`` wheel in a Python 3.11 venv cached outside the clone.

``bpy==5.0.1`` is Blender 5.0.1 built as a Python module (cp311 only; bpy 5.1+ wheels are cp313). The venv lives
under ``mattebox.paths.cache_dir() / "blender-venv"`` (``$MATTEBOX_BLENDER_VENV`` overrides; ``$MATTEBOX_BPY=4.2.0``
selects another Blender, in ``blender-venv-4.2.0``) and is built once;
a stamp file records the requirements it was built with, so a changed pin rebuilds it and an unchanged one costs
nothing. Usage::

    python tests/hosts/blender_env.py            # build (or confirm) the venv, print its python
    from tests.hosts.blender_env import blender_python
    python = blender_python()                    # Path, or raises BlenderEnvUnavailable(reason)
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parents[2]
#: the Blender the tests run; ``$MATTEBOX_BPY`` picks another cp311 release (e.g. 4.2.0 to check Blender 4.x)
DEFAULT_BPY = "5.0.1"
BPY = os.environ.get("MATTEBOX_BPY") or DEFAULT_BPY
#: what the venv holds: Blender itself plus the client's dependencies (the extension vendors these as wheels;
#: in the test venv they are plain installs so tests exercise the extension code, not the wheel unpacking)
REQUIREMENTS = [f"bpy=={BPY}", "numpy", "pyzmq", "msgpack"]
PYTHON_VERSION = "3.11"  # bpy 4.2-5.0 wheels are cp311


class BlenderEnvUnavailable(RuntimeError):
    """The venv could not be built (no python3.11, no network to PyPI, ...); the message says why."""


def venv_dir() -> Path:
    env = os.environ.get("MATTEBOX_BLENDER_VENV")
    if env:
        return Path(env)
    sys.path.insert(0, str(ROOT / "server"))
    try:
        from mattebox.paths import cache_dir
    finally:
        sys.path.pop(0)
    return cache_dir() / ("blender-venv" if BPY == DEFAULT_BPY else f"blender-venv-{BPY}")


def _stamp(venv: Path) -> Path:
    return venv / ".mattebox-stamp.json"


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def find_base_python() -> Optional[str]:
    """A Python 3.11 interpreter to create the venv with (``$MATTEBOX_PYTHON311``, PATH, pyenv)."""
    candidates: List[str] = []
    if os.environ.get("MATTEBOX_PYTHON311"):
        candidates.append(os.environ["MATTEBOX_PYTHON311"])
    if sys.version_info[:2] == (3, 11):
        candidates.append(sys.executable)
    found = shutil.which("python3.11")
    if found:
        candidates.append(found)
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates += sorted(str(p) for p in pyenv_root.glob("versions/3.11*/bin/python3.11"))
    for candidate in candidates:
        try:
            out = subprocess.run([candidate, "-c", "import sys, venv; print(sys.version_info[:2])"],
                                 capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0 and out.stdout.strip() == "(3, 11)":
            return candidate
    return None


def is_ready(venv: Optional[Path] = None) -> bool:
    venv = venv or venv_dir()
    stamp = _stamp(venv)
    if not (stamp.is_file() and _venv_python(venv).exists()):
        return False
    try:
        return json.loads(stamp.read_text()).get("requirements") == REQUIREMENTS
    except ValueError:
        return False


def ensure(venv: Optional[Path] = None, quiet: bool = True) -> Path:
    """Build the venv if it is missing or stale; return its python. Raises BlenderEnvUnavailable with the reason."""
    venv = venv or venv_dir()
    python = _venv_python(venv)
    if is_ready(venv):
        return python
    base = find_base_python()
    if base is None:
        raise BlenderEnvUnavailable("no Python 3.11 found (bpy 5.0.1 is cp311 only); set MATTEBOX_PYTHON311 or "
                                    "install python3.11")
    if venv.exists():
        shutil.rmtree(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    steps = [[base, "-m", "venv", str(venv)],
             [str(python), "-m", "pip", "install", *(["-q"] if quiet else []), *REQUIREMENTS]]
    for step in steps:
        proc = subprocess.run(step, capture_output=quiet, text=True)
        if proc.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            detail = (proc.stderr or proc.stdout or "").strip()[-1500:] if quiet else ""
            raise BlenderEnvUnavailable(f"building the Blender test venv failed at `{' '.join(step)}`: {detail}")
    check = subprocess.run([str(python), "-c", "import bpy, sys; print(bpy.app.version_string)"],
                           capture_output=True, text=True)
    if check.returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)
        raise BlenderEnvUnavailable(f"bpy installed but does not import: {check.stderr.strip()[-1500:]}")
    _stamp(venv).write_text(json.dumps({"requirements": REQUIREMENTS, "blender": check.stdout.strip()}))
    return python


def blender_python() -> Path:
    """The venv's python (building it on first use)."""
    return ensure()


if __name__ == "__main__":
    try:
        print(ensure(quiet=False))
    except BlenderEnvUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
