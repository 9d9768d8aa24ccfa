"""Install the GIMP 3 plug-in (Filters > Matting > Mattebox) into a user's GIMP plug-ins folder.

GIMP 3 finds a Python plug-in at ``<profile>/plug-ins/<name>/<name>.py`` (executable). The installed folder is::

    plug-ins/mattebox/
        mattebox.py          the plug-in (nodes/gimp/mattebox)
        mattebox_gimp.py     its GIMP-free helpers
        mattebox_plugin/     the host-neutral client package
        vendor/              pyzmq + msgpack wheels unpacked for GIMP's Python, only when it lacks them
        INSTALLED.json       what was installed, for doctor and uninstall

GIMP 3 on Linux runs plug-ins with the system ``python3`` (Debian/Ubuntu: python3-gi, gir1.2-gimp-3.0), so
vendoring happens only when that Python cannot import zmq and msgpack. GIMP on Windows and macOS bundles its own
Python 3.x, so there the wheels are always vendored for the version given with ``python_version``.

``INSTALLED.json`` lists every file written (with its sha256) and the folders made: a reinstall replaces and an
uninstall removes only those (a changed or foreign file is left, and said so), and a folder without it is never
written into or removed. The client config (~/.config/mattebox/client.json) is shared with the
other hosts and stays.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

from . import common, payload

PLUGIN_NAME = "mattebox"
PLUGIN_FILES = ("mattebox.py", "mattebox_gimp.py")
GIMP_SERIES = "3.0"
MANIFEST = "INSTALLED.json"
VENDOR_DIR = "vendor"
VENDOR_MODES = ("auto", "always", "never")


def profile_dir(platform: Optional[str] = None, series: str = GIMP_SERIES) -> Path:
    """GIMP's per-user profile folder (``$GIMP3_DIRECTORY`` overrides, as in GIMP itself)."""
    env = os.environ.get("GIMP3_DIRECTORY")
    if env:
        return Path(env)
    platform = platform or common.current_platform()
    home = Path.home()
    if platform.startswith("windows"):
        return Path(os.environ.get("APPDATA") or home / "AppData" / "Roaming") / "GIMP" / series
    if platform.startswith("macos"):
        return home / "Library" / "Application Support" / "GIMP" / series
    return Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config") / "GIMP" / series


def plugins_dir(platform: Optional[str] = None, series: str = GIMP_SERIES) -> Path:
    """The user's GIMP 3 plug-ins folder (one sub-folder per plug-in)."""
    return profile_dir(platform, series) / "plug-ins"


def python_can_import(python: str, modules: Sequence[str] = ("zmq", "msgpack")) -> Tuple[bool, str]:
    """Whether the interpreter ``python`` imports ``modules``; (ok, its version or the import error)."""
    code = "import sys\n"
    code += "".join(f"import {m}\n" for m in modules)
    code += "print('%d.%d' % sys.version_info[:2])"
    return _run_python(python, code)


def _run_python(python: str, code: str) -> Tuple[bool, str]:
    """Run ``code`` with another interpreter: (True, its output) or (False, the last error line)."""
    try:
        proc = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"cannot run {python}: {exc}"
    if proc.returncode != 0:
        return False, (proc.stderr.strip().splitlines() or ["failed"])[-1]
    return True, proc.stdout.strip()


def python_version_of(python: str) -> Optional[str]:
    try:
        proc = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def needs_vendoring(vendor: str, platform: str, gimp_python: str) -> bool:
    """Decide whether to vendor pyzmq/msgpack: 'always'/'never' as given; 'auto' vendors unless GIMP runs the
    system Python (Linux) and that Python already imports both."""
    if vendor not in VENDOR_MODES:
        raise ValueError(f"vendor must be one of {', '.join(VENDOR_MODES)}, got {vendor!r}")
    if vendor != "auto":
        return vendor == "always"
    if not platform.startswith("linux"):
        return True
    return not python_can_import(gimp_python)[0]


def _copy_plugin_files(dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    source = payload.host_dir("gimp") / PLUGIN_NAME
    for name in PLUGIN_FILES:
        target = dest / name
        shutil.copy2(source / name, target)
        if name == f"{PLUGIN_NAME}.py":  # GIMP runs the plug-in file itself: it must be executable
            target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    common.copy_plugin_package(dest)


def install(target: Optional[Path] = None, platform: Optional[str] = None, python_version: Optional[str] = None,
            gimp_python: str = "python3", vendor: str = "auto", endpoint: Optional[str] = None,
            server_command: Optional[List[str]] = None, config_path: Optional[Path] = None,
            write_config: bool = True,
            fetch_wheels: Callable[..., List[Path]] = common.vendor_wheels) -> Path:
    """Install the plug-in; returns its folder (``<target>/mattebox``).

    ``target``: the plug-ins folder (default: the user's, see :func:`plugins_dir`). ``python_version``: GIMP's
    Python ("3.12"); required when wheels are vendored for Windows/macOS, found by running ``gimp_python`` on
    Linux. ``vendor``: 'auto', 'always' or 'never'. The client config gets ``endpoint`` and ``server_command``
    (default: this installation's ``mattebox serve``) unless ``write_config`` is False.
    """
    platform = platform or common.current_platform()
    target = Path(target) if target else plugins_dir(platform)
    dest = target / PLUGIN_NAME
    vendored: List[str] = []
    with tempfile.TemporaryDirectory(prefix="mattebox-gimp-") as tmp:
        staging = Path(tmp) / PLUGIN_NAME
        _copy_plugin_files(staging)
        if needs_vendoring(vendor, platform, gimp_python):
            version = python_version or (python_version_of(gimp_python) if platform.startswith("linux") else None)
            if not version:
                raise ValueError(f"GIMP's Python version is needed to vendor pyzmq and msgpack for {platform}: "
                                 f"pass python_version (e.g. '3.12'; see Help > About > Components in GIMP)")
            wheels = fetch_wheels(Path(tmp) / "wheels", python_version=version, platform=platform)
            common.unpack_wheels(wheels, staging / VENDOR_DIR)
            vendored = sorted(w.name for w in wheels)
        info = {"plugin": PLUGIN_NAME, "version": _client_version(), "platform": platform,
                "python_version": python_version, "vendored": vendored}
        common.install_tree(staging, dest, MANIFEST, info)
    if write_config:
        common.write_client_config(endpoint, server_command, config_path)
    return dest


def uninstall(target: Optional[Path] = None, platform: Optional[str] = None) -> bool:
    """Remove the files the install wrote (its manifest lists them) and the folders it made once empty; True
    when something was removed. A folder without the manifest is refused; the shared client config stays."""
    target = Path(target) if target else plugins_dir(platform)
    return common.uninstall_folder(target / PLUGIN_NAME, MANIFEST)


def doctor(target: Optional[Path] = None, platform: Optional[str] = None, gimp_python: Optional[str] = "python3",
           endpoint: Optional[str] = None, timeout: float = 3.0) -> Tuple[bool, List[str]]:
    """Check the install: files, executable bit, client imports for GIMP's Python, and a server handshake.

    Returns (all good, report lines). ``gimp_python`` None skips the import check (GIMP's bundled Python on
    Windows/macOS is not runnable from outside).
    """
    platform = platform or common.current_platform()
    target = Path(target) if target else plugins_dir(platform)
    dest = target / PLUGIN_NAME
    report = common.DoctorReport()
    check = report.check
    script = dest / f"{PLUGIN_NAME}.py"
    check(script.is_file(), f"plug-in file {script}")
    if not script.is_file():
        return False, report.lines
    if not platform.startswith("windows"):
        check(os.access(script, os.X_OK), f"{script.name} is executable")
    manifest = {}
    try:
        manifest = json.loads((dest / MANIFEST).read_text())
        check(True, f"installed version {manifest.get('version')}, vendored: {manifest.get('vendored') or 'none'}")
    except (OSError, ValueError) as exc:
        check(False, f"{MANIFEST} unreadable: {exc}")
    check((dest / "mattebox_plugin" / "client.py").is_file(), "client package mattebox_plugin present")
    if gimp_python:
        passed, detail = _import_like_plugin(gimp_python, dest, dest / VENDOR_DIR)
        check(passed, f"{gimp_python} imports the client (pyzmq, msgpack): {detail}")
    passed, message = common.doctor_handshake(endpoint or common.configured_endpoint(), timeout)
    check(passed, f"server: {message}")
    return report.ok, report.lines


def _import_like_plugin(python: str, dest: Path, vendor_dir: Path) -> Tuple[bool, str]:
    """Import the client the way mattebox.py does (its folder and vendor/ first on sys.path)."""
    code = ("import sys\n"
            f"sys.path[:0] = [{str(dest)!r}, {str(vendor_dir)!r}]\n"
            "import zmq, msgpack, mattebox_plugin.client\n"
            "print('Python %d.%d, pyzmq %s from %s' % (sys.version_info[0], sys.version_info[1], zmq.__version__,"
            " zmq.__file__))")
    return _run_python(python, code)


def main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
    """``prog``: how the caller names the command (``mattebox``: usage then reads ``mattebox install gimp ...``)."""
    parser = argparse.ArgumentParser(prog=prog or "python -m mattebox_installers.gimp",
                                     description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    for action in ("install", "uninstall", "doctor"):
        p = sub.add_parser(action, prog=common.action_prog(prog, action, "gimp"))
        p.add_argument("--target", type=Path, help="GIMP plug-ins folder (default: the user's GIMP 3 folder)")
        p.add_argument("--platform", choices=sorted(common.PLATFORM_TAGS), help="default: this machine")
        if action == "install":
            p.add_argument("--python-version", help="GIMP's Python, e.g. 3.12 (Windows/macOS bundles)")
            p.add_argument("--gimp-python", default="python3", help="the Python GIMP runs plug-ins with (Linux)")
            p.add_argument("--vendor", choices=VENDOR_MODES, default="auto")
            p.add_argument("--endpoint", help="server endpoint to write into the client config")
            p.add_argument("--no-config", action="store_true", help="leave the client config alone")
        if action == "doctor":
            p.add_argument("--gimp-python", default="python3")
            p.add_argument("--endpoint")
    args = parser.parse_args(argv)
    try:
        if args.action == "install":
            dest = install(args.target, args.platform, args.python_version, args.gimp_python, args.vendor,
                           args.endpoint, write_config=not args.no_config)
            print(f"installed {dest}; restart GIMP and use Filters > Matting > Mattebox")
        elif args.action == "uninstall":
            print("removed" if uninstall(args.target, args.platform) else "nothing to remove")
        else:
            ok, lines = doctor(args.target, args.platform, args.gimp_python, args.endpoint)
            print("\n".join(lines))
            return 0 if ok else 1
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _client_version() -> str:
    init = (payload.plugin_package() / "__init__.py").read_text()
    for line in init.splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip("\"'")
    return "unknown"


if __name__ == "__main__":
    sys.exit(main())
