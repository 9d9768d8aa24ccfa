"""GIMP 3 as a person sees it: the real GUI in the trixie chroot, the plug-in installed as the README says, a sample
made in code, Filters > Matting > Mattebox run from the menu, and screenshots of the dialog and the result.

:func:`run_session` is the one place that drives it (tests/hosts/gimp_gui_session.py does the X side inside the
chroot); ``make screenshots`` (tests/hosts/screenshots.py) calls :func:`take`, and tests/test_gimp_gui.py checks
the same session's log for Python errors.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from tests.hosts import gimp_chroot
from tests.hosts.screenshots import read_xwd
from mattebox.testing.servers import ServerProcess, tree_env

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
SAMPLE_LAYER = "portrait"
#: after Alt+R (Filte_rs): the last entry (Matting, ours; it has no mnemonic), its submenu, Mattebox...
MENU_KEYS = ["End", "Right", "Return"]
#: the screenshots docs/hosts/gimp.md shows
IMAGES = ("gimp-dialog.png", "gimp-result.png")


def unavailable_reason() -> Optional[str]:
    return gimp_chroot.unavailable_reason()


def sample(height: int = 360, width: int = 480, seed: int = 4):
    """A portrait over a sky (H×W×3 sRGB float32 in [0, 1]), a loose lasso around it (20-60 px off its edge, as a
    hurried hand draws it: polygon points), and the subject's true alpha (H×W float32).

    The subject is a head and shoulders with a soft 2 px edge in textured warm colours; the sky is a blue
    gradient with faint clouds, so a halo of sky left inside the matte shows as blue fringe on the result."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    cx = width / 2
    head = np.hypot((xx - cx) / 62.0, (yy - 140) / 78.0)
    shoulders = np.hypot((xx - cx) / 170.0, (yy - height - 40) / 170.0)
    neck = np.maximum(np.abs(xx - cx) - 28, np.abs(yy - 222) - 30)
    distance = np.minimum(np.minimum((head - 1) * 62.0, (shoulders - 1) * 170.0), neck)  # ~px outside the subject
    alpha = np.clip(0.5 - distance / 2.0, 0, 1).astype(np.float32)
    sky = np.stack([0.35 + 0.25 * yy / height, 0.55 + 0.2 * yy / height, np.full_like(yy, 0.92)], -1)
    clouds = np.kron(rng.random((height // 24 + 1, width // 24 + 1)), np.ones((24, 24)))[:height, :width]
    sky = sky + 0.06 * clouds[..., None]
    skin = np.array([0.85, 0.62, 0.48]) + 0.05 * rng.standard_normal((height, width, 1))
    cloth = np.array([0.55, 0.18, 0.15]) + 0.08 * rng.standard_normal((height, width, 1))
    subject = np.where((yy < 215)[..., None], skin, cloth)
    image = alpha[..., None] * subject + (1 - alpha[..., None]) * sky
    centre = np.array([cx, 215.0])  # the neck: every ray from it leaves the silhouette once
    lasso = []
    for angle in np.linspace(0, 2 * np.pi, 32, endpoint=False):
        step = np.array([np.cos(angle), np.sin(angle)])
        reach = 0.0
        while True:  # march out to the silhouette's edge (or the image's)
            x, y = centre + (reach + 1) * step
            if not (0 <= x < width and 0 <= y < height) or distance[int(y), int(x)] > 0:
                break
            reach += 1
        x, y = centre + (reach + 20 + 40 * rng.random()) * step  # how far the hand strayed: 20-60 px
        lasso.append([float(np.clip(x, 0, width)), float(np.clip(y, 0, height))])
    return np.clip(image, 0, 1).astype(np.float32), lasso, alpha


def run_session(work: Path, timeout: float = 600) -> Dict:
    """One GUI session in the chroot; returns {"session": steps/error/window geometry, "log": GIMP's output,
    "dialog"/"result": H×W×3 screenshots when taken, "returncode"}. ``work`` must lie inside the chroot."""
    root = gimp_chroot.ensure_chroot()

    def inside(path: Path) -> str:
        return "/" + path.relative_to(root).as_posix()

    profile, sample_dir, out = work / "profile", work / "sample", work / "out"
    for folder in (profile, sample_dir, out):
        folder.mkdir(parents=True)
    image, lasso, _ = sample()
    height, width = image.shape[:2]
    (sample_dir / "sample.raw").write_bytes(image.astype("<f4").tobytes())
    (sample_dir / "sample.json").write_text(json.dumps({"width": width, "height": height, "layer": SAMPLE_LAYER,
                                                        "lasso": lasso}))
    shutil.copy(HERE / "gimp_gui_sample.py", sample_dir / "open_sample.py")
    shutil.copy(HERE / "gimp_gui_session.py", work / "session.py")
    config = work / "client.json"
    server = ServerProcess.temporary()
    try:
        # installed as docs/hosts/gimp.md says; the chroot's python3 has pyzmq and msgpack from apt (no vendoring)
        subprocess.run([sys.executable, "-m", "mattebox", "install", "gimp", "--target", str(profile / "plug-ins"),
                        "--vendor", "never", "--endpoint", server.endpoint], check=True, capture_output=True,
                       env=tree_env(MATTEBOX_CONFIG=str(config)), cwd=ROOT)
        env = {"GIMP3_DIRECTORY": inside(profile), "MATTEBOX_CONFIG": inside(config),
               "MATTEBOX_SAMPLE_DIR": inside(sample_dir)}
        (work / "session-args.json").write_text(json.dumps({
            "sample_script": inside(sample_dir / "open_sample.py"), "title": "GNU Image Manipulation Program$",
            "menu_keys": MENU_KEYS}))
        proc = gimp_chroot.run_in_chroot(["python3", inside(work / "session.py"), inside(out),
                                          inside(work / "session-args.json")], root=root, env=env, timeout=timeout)
    finally:
        server.stop()
    found = {"returncode": proc.returncode, "stderr": proc.stderr,
             "session": json.loads((out / "session.json").read_text()) if (out / "session.json").is_file() else {},
             "log": (out / "gimp.log").read_text(errors="replace") if (out / "gimp.log").is_file() else ""}
    for name in ("dialog", "result", "failure"):
        if (out / f"{name}.xwd").is_file():
            found[name] = read_xwd(out / f"{name}.xwd")
    return found


def crop(screen: np.ndarray, box) -> np.ndarray:
    x, y, w, h = box
    return screen[max(y, 0):y + h, max(x, 0):x + w]


def union(*boxes):
    """The smallest (x, y, width, height) holding every box."""
    left, top = min(b[0] for b in boxes), min(b[1] for b in boxes)
    right, bottom = max(b[0] + b[2] for b in boxes), max(b[1] + b[3] for b in boxes)
    return left, top, right - left, bottom - top


def take(images: Path) -> list:
    """Run the session and write docs/images/gimp-dialog.png (the dialog alone) and gimp-result.png (the whole
    screen after the run). Raises RuntimeError with the session's log when a step failed."""
    from PIL import Image

    root = gimp_chroot.ensure_chroot()
    work = Path(tempfile.mkdtemp(prefix="mattebox-gimp-gui-", dir=root / "tmp"))
    try:
        found = run_session(work)
        if "dialog" not in found or "result" not in found:
            if "failure" in found:
                Image.fromarray(found["failure"]).save(images / "gimp-failure.png")
            raise RuntimeError(f"the GIMP GUI session failed: {found['session'].get('error')}\n"
                               + "\n".join(found["session"].get("steps", [])) + "\n" + found["log"][-3000:]
                               + found["stderr"][-2000:])
        boxes = found["session"]["windows"]
        dialog = crop(found["dialog"], boxes["dialog"])
        result = crop(found["result"], union(boxes["result"], boxes["message"]))
        written = []
        for name, pixels in zip(IMAGES, (dialog, result)):
            path = images / name
            Image.fromarray(pixels).save(path, optimize=True)
            written.append(path)
        return written
    finally:
        shutil.rmtree(work, ignore_errors=True)
