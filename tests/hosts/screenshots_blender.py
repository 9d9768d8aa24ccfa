"""Blender as a person sees it: Debian's own ``blender`` package (4.3, system Python 3.13) in a trixie root
(tests/hosts/blender_chroot.py), its GUI under Xvfb with Mesa's software OpenGL, the extension installed as
docs/hosts/blender.md says (``mattebox install blender --blender ...``), a sample made in code, Mattebox Matte
pressed in the compositor's sidebar (tests/hosts/blender_gui_session.py), and screenshots of the panel and of the
result into docs/images/blender-*.png.

:func:`run_session` is the one place that drives it; tests/test_screenshots_blender.py checks the same session's
log for Python errors. Run on its own (root, a Debian mirror and PyPI needed the first time)::

    python tests/hosts/screenshots_blender.py [--images docs/images]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

if __package__ in (None, ""):
    sys.path[:0] = [str(Path(__file__).resolve().parents[2] / p) for p in ("", "server", "plugin", "installers")]

from tests.hosts import blender_chroot  # noqa: E402
from tests.hosts.screenshots import read_xwd  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
#: screenshots written to docs/images (what docs/hosts/blender.md shows), from the session's panel/result shots
IMAGES = {"panel": "blender-panel.png", "result": "blender-result.png", "preferences": "blender-preferences.png"}
#: the virtual screen (and Blender's window on it)
SCREEN = (1600, 900)
#: each PNG in docs/images stays below this (downscaled and quantised to a palette)
MAX_BYTES = 300_000
#: lines of Blender's output that mean a Python error
ERROR_LINE = re.compile(r"Traceback \(most recent call last\)|^Error:|^\S*Error: ", re.M)


def unavailable_reason() -> Optional[str]:
    return blender_chroot.unavailable_reason()


def write_sample(folder: Path) -> Dict[str, Path]:
    """The demo's synthetic hair composite (mattebox.demo, exact alpha known) as an 8-bit sRGB PNG, and a coarse
    mask of it (the subject grown by 12 px, as a quick hand-drawn mask is) as a grey PNG."""
    import cv2
    from PIL import Image

    from mattebox.demo import synthetic_sample

    sample = synthetic_sample()
    mask = cv2.dilate((sample["alpha_gt"] > 0.5).astype("uint8") * 255,
                      cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (25, 25)))
    paths = {"sample": folder / "sample.png", "mask": folder / "mask.png"}
    Image.fromarray(sample["image"]).save(paths["sample"])
    Image.fromarray(mask).save(paths["mask"])
    return paths


def _blender_wrapper(work: Path, env: Dict[str, str]) -> Path:
    """An executable ``blender`` on the host that runs the root's Blender with ``work`` visible at the same path
    (what `mattebox install blender --blender` calls: it probes it, then hands it the built zip)."""
    wrapper = work / "bin" / "blender"
    wrapper.parent.mkdir(parents=True)
    assignments = " ".join(f"{k}={v}" for k, v in env.items())
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} {HERE / 'blender_chroot.py'} run --bind {work} -- "
                       f"env {assignments} {blender_chroot.BLENDER} \"$@\"\n")
    wrapper.chmod(0o755)
    return wrapper


def _tree_env(**extra: str) -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(str(ROOT / p) for p in ("server", "plugin", "installers", "nodes"))
    env.update(extra)
    return env


def run_session(work: Path, timeout: float = 600) -> Dict:
    """Install the extension into the root's Blender and run the GUI session; returns {"install", "doctor":
    the installer's output, "session": session.json, "log": Blender's stdout+stderr, "shots": {name: path},
    "returncode"}."""
    from mattebox.testing.servers import ServerProcess

    root = blender_chroot.ensure_chroot()
    out, user = work / "out", work / "user"
    for folder in (out, user, work / "tmp"):
        folder.mkdir(parents=True)
    inside = {"BLENDER_USER_RESOURCES": str(user), "MATTEBOX_CONFIG": str(work / "client.json")}
    blender = _blender_wrapper(work, inside)
    sample = write_sample(work)
    server = ServerProcess.temporary()
    try:
        env = _tree_env(TMPDIR=str(work / "tmp"), **inside)
        install = subprocess.run([sys.executable, "-m", "mattebox", "install", "blender", "--blender", str(blender),
                                  "--endpoint", server.endpoint], capture_output=True, text=True, env=env,
                                 cwd=ROOT, timeout=timeout)
        if install.returncode != 0:
            raise RuntimeError(f"mattebox install blender failed:\n{install.stdout}\n{install.stderr}")
        doctor = subprocess.run([sys.executable, "-m", "mattebox", "host-doctor", "blender", "--blender",
                                 str(blender)], capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout)
        width, height = SCREEN
        fbdir = work / "fb"
        fbdir.mkdir()
        session_env = dict(inside, MATTEBOX_SHOT_DIR=str(out), MATTEBOX_SAMPLE=str(sample["sample"]),
                           MATTEBOX_MASK=str(sample["mask"]), MATTEBOX_FBDIR=str(fbdir), LIBGL_ALWAYS_SOFTWARE="1")
        shutil.rmtree(root / "tmp" / "mattebox", ignore_errors=True)  # an unsaved .blend's results: fresh
        proc = blender_chroot.gimp_chroot.run_in_chroot(
            ["xvfb-run", "-a", "-s", f"-screen 0 {width}x{height}x24 -fbdir {fbdir}", blender_chroot.BLENDER,
             "--window-geometry", "0", "0", str(width), str(height), "--python", str(HERE / "blender_gui_session.py")],
            root=root, env=session_env, timeout=timeout, binds=[str(work), str(HERE)])
    finally:
        server.stop()
    session_file = out / "session.json"
    return {"install": install.stdout + install.stderr, "doctor": doctor.stdout + doctor.stderr,
            "doctor_ok": doctor.returncode == 0, "returncode": proc.returncode, "log": proc.stdout + proc.stderr,
            "session": json.loads(session_file.read_text()) if session_file.is_file() else {},
            "shots": {name: out / f"{name}.xwd" for name in IMAGES if (out / f"{name}.xwd").is_file()}}


def python_errors(log: str) -> List[str]:
    """The lines of a Blender log that report a Python error (a traceback or an ``Error:`` report)."""
    return [line for line in log.splitlines() if ERROR_LINE.search(line)]


def small_png(pixels, target: Path, max_width: int = 1200) -> Path:
    """H×W×3 uint8 ``pixels`` downscaled to ``max_width`` and quantised to a palette, below :data:`MAX_BYTES`."""
    from PIL import Image

    image = Image.fromarray(pixels)
    if image.width > max_width:
        image = image.resize((max_width, round(image.height * max_width / image.width)), Image.LANCZOS)
    for colours in (256, 128, 64):
        image.quantize(colours, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)
        if target.stat().st_size < MAX_BYTES:
            break
    return target


def take(images: Path) -> List[Path]:
    """Run the session and write docs/images/blender-panel.png and blender-result.png. Raises RuntimeError with
    the session's log when a step failed or Blender logged a Python error."""
    work = Path(tempfile.mkdtemp(prefix="mattebox-blender-gui-"))
    try:
        found = run_session(work)
        errors = python_errors(found["log"])
        if found["session"].get("error") or errors or len(found["shots"]) < len(IMAGES):
            raise RuntimeError(f"the Blender GUI session failed: {found['session'].get('error')} {errors}\n"
                               + "\n".join(found["session"].get("steps", [])) + "\n" + found["log"][-4000:])
        images.mkdir(parents=True, exist_ok=True)
        written = []
        for name, target in IMAGES.items():
            screen = read_xwd(found["shots"][name])
            box = found["session"]["areas"][name]  # the node editor (panel, nodes, backdrop), or None: all
            if box is not None:
                x, y, w, h = box
                screen = screen[max(y, 0):y + h, max(x, 0):x + w]
            written.append(small_png(screen, images / target))
        return written
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, default=ROOT / "docs" / "images", help="where the PNGs go")
    args = parser.parse_args(argv)
    reason = unavailable_reason()
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        return 1
    for path in take(args.images):
        print(f"{path} ({path.stat().st_size // 1000} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
