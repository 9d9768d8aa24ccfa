"""Run plug-in-mattebox in the GIMP chroot: a fresh profile with the plug-in installed, and one batch run of
tests/hosts/gimp_batch.py on a spec (shared by tests/test_gimp_host.py and bench/gimp_plugin.py)."""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from mattebox_installers import gimp as gimp_installer
from tests.hosts import gimp_chroot

BATCH_SCRIPT = Path(__file__).parent / "gimp_batch.py"
INTERACTIVE_SCRIPT = Path(__file__).parent / "gimp_interactive.sh"


def new_profile(root: Path) -> Path:
    """A fresh GIMP profile inside the chroot with the plug-in installed by the real installer."""
    profile = Path(tempfile.mkdtemp(prefix="mattebox-gimp-profile-", dir=root / "tmp"))
    installed = gimp_installer.install(target=profile / "plug-ins", platform="linux-x64", vendor="never",
                                       write_config=False)
    assert (installed / "mattebox.py").stat().st_mode & 0o111
    return profile


def inside(root: Path, path: Path) -> str:
    return "/" + path.relative_to(root).as_posix()


def run_gimp(root: Path, profile: Path, endpoint: str, spec: dict, timeout: float = 180, respond: str = None,
             server_command: list = None, client_timeout: float = 30.0,
             **inputs) -> tuple:
    """Run the batch script on ``spec`` with raw float32 ``inputs`` (image=, second=, clean_plate=, layer_mask=,
    channel=). ``client_timeout``: the plug-in's client time-out (its config's ``timeout``).

    ``respond`` runs GIMP with a virtual display and scripted key presses (tests/hosts/gimp_interactive.sh's
    MATTEBOX_RESPOND), for runs in INTERACTIVE mode.

    Returns (out.json as dict plus "gimp_stderr", {"matte": H×W alpha from the matte layer's mask,
    "foreground": H×W×4 or H×W×2}).
    """
    folder = Path(tempfile.mkdtemp(prefix="mattebox-gimp-run-", dir=root / "tmp"))
    try:
        for name, array in inputs.items():
            (folder / f"{name}.raw").write_bytes(np.ascontiguousarray(array, dtype="<f4").tobytes())
        (folder / "spec.json").write_text(json.dumps(spec))
        config_file = folder / "client.json"
        config_file.write_text(json.dumps({"endpoint": endpoint, "timeout": client_timeout,
                                           "server_command": server_command}))
        shutil.copy(BATCH_SCRIPT, folder / "batch.py")
        env = {"GIMP3_DIRECTORY": inside(root, profile), "MATTEBOX_CONFIG": inside(root, config_file),
               "MATTEBOX_BATCH_DIR": inside(root, folder)}
        code = f"exec(open({inside(root, folder / 'batch.py')!r}).read())"
        argv = [gimp_chroot.GIMP_CONSOLE, "-i", "--quit", "--batch-interpreter=python-fu-eval", "-b", code]
        if respond is not None:
            shutil.copy(INTERACTIVE_SCRIPT, folder / "interactive.sh")
            argv = ["sh", inside(root, folder / "interactive.sh"), *argv]
            env["MATTEBOX_RESPOND"] = respond
        proc = gimp_chroot.run_in_chroot(argv, root=root, env=env, timeout=timeout)
        out_file = folder / "out.json"
        assert out_file.is_file(), f"GIMP wrote no result (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        out = json.loads(out_file.read_text())
        assert "exception" not in out, out["exception"] + proc.stderr
        out["gimp_stderr"] = proc.stderr  # where gimp-console prints Gimp.message output
        pixels = {}
        if out.get("status") == "success":
            w, h = (spec.get("layer_rect") or [0, 0, spec["width"], spec["height"]])[2:]
            pixels["matte"] = np.frombuffer((folder / "matte.raw").read_bytes(), "<f4").reshape(h, w)
            channels = 2 if spec["result_format"].startswith("Y") else 4
            pixels["foreground"] = np.frombuffer((folder / "foreground.raw").read_bytes(), "<f4").reshape(h, w,
                                                                                                           channels)
        return out, pixels
    finally:
        shutil.rmtree(folder, ignore_errors=True)
