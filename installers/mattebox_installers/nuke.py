"""Install the Mattebox node into Nuke (~/.nuke or a NUKE_PATH folder), take it out again, and check it.

Layout after ``install(target)``::

    <target>/init.py                   gains a marked block: nuke.pluginAddPath('<target>/mattebox')
    <target>/mattebox/init.py          puts site-packages/cpXY for the running Nuke's Python on sys.path
    <target>/mattebox/menu.py          Nodes toolbar > Mattebox (GUI only)
    <target>/mattebox/mattebox_nuke/   the node
    <target>/mattebox/mattebox_plugin/ the host-neutral client
    <target>/mattebox/site-packages/cp39, cp310, cp311/   pyzmq + msgpack wheels unpacked per Nuke Python ABI
    <target>/mattebox/install.json     what was installed (version, Pythons, platform, whether init.py was ours)
                                       and every file written (sha256) and folder made: uninstall removes
                                       only those, and refuses a mattebox folder without this list

Nuke runs init.py of every plug-in path folder in every mode (GUI, ``nuke -x``, ``nuke -t``), and
``nuke.pluginAddPath`` called from an init.py runs the added folder's init.py (and, in the GUI, its menu.py) —
Nuke Python dev guide, 'Start-up Scripts' and nuke.pluginAddPath. ~/.nuke is always on the plug-in path; a
NUKE_PATH folder is for studios (User Guide, 'Defining the Nuke Plug-in Path'). Nuke's Python is 3.9 in Nuke
13/14, 3.10 in 15 and 3.11 in 16, so wheels for all three are vendored by default and the running Nuke picks its
own. The block in init.py is replaced, never duplicated, so installing twice is the same as once.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from . import common, payload

FOLDER = "mattebox"
BEGIN = "# >>> mattebox >>>"
END = "# <<< mattebox <<<"
#: Nuke major version -> its Python
NUKE_PYTHONS = {"13": "3.9", "14": "3.9", "15": "3.10", "16": "3.11"}
DEFAULT_PYTHONS = ("3.9", "3.10", "3.11")
NODE_FILES = ("init.py", "menu.py", "mattebox_nuke")
MANIFEST = "install.json"


def default_target() -> Path:
    """~/.nuke (Nuke uses HOME, or USERPROFILE on Windows when HOME is unset)."""
    home = os.environ.get("HOME") or os.environ.get("USERPROFILE") or os.path.expanduser("~")
    return Path(home) / ".nuke"


def abi_tag(python_version: str) -> str:
    major, minor = python_version.split(".")[:2]
    return f"cp{major}{minor}"


def _block(dest: Path) -> str:
    path = dest.as_posix()
    return (f"{BEGIN} added by `mattebox install nuke`; `mattebox uninstall nuke` removes it\n"
            f"import nuke\nnuke.pluginAddPath({path!r})\n{END}\n")


def strip_block(text: str) -> Tuple[str, bool]:
    """``text`` without the mattebox block; True when there was one."""
    lines = text.splitlines(keepends=True)
    out: List[str] = []
    inside = found = False
    for line in lines:
        if line.startswith(BEGIN):
            inside = found = True
            continue
        if inside:
            if line.startswith(END):
                inside = False
            continue
        out.append(line)
    if inside:
        raise ValueError(f"unterminated mattebox block (no {END!r} line); fix the init.py by hand")
    return "".join(out), found


def add_block(init_py: Path, dest: Path) -> bool:
    """Put the plug-in path block at the end of ``init_py`` (replacing an old one); True if the file was new."""
    created = not init_py.exists()
    text = "" if created else init_py.read_text(encoding="utf-8")
    text, _ = strip_block(text)
    if text and not text.endswith("\n"):
        text += "\n"
    init_py.parent.mkdir(parents=True, exist_ok=True)
    init_py.write_text(text + _block(dest), encoding="utf-8")
    return created


def _copy_node(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in NODE_FILES:
        source = payload.host_dir("nuke") / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=ignore)
        else:
            shutil.copy2(source, dest / name)
    common.copy_plugin_package(dest)


def install(target: Optional[Path] = None, python_versions: Sequence[str] = DEFAULT_PYTHONS,
            platform: Optional[str] = None, vendor: bool = True, endpoint: Optional[str] = None,
            write_config: bool = True, wheel_cache: Optional[Path] = None) -> Path:
    """Install into ``target`` (default ~/.nuke); returns the mattebox folder. The files are staged in a
    temporary folder and copied with :func:`common.install_tree`, which records them in ``install.json`` and
    refuses a ``<target>/mattebox`` that an install did not make."""
    target = Path(target) if target else default_target()
    dest = target / FOLDER
    init_py = target / "init.py"
    if init_py.is_file():
        strip_block(init_py.read_text(encoding="utf-8"))  # refuse a damaged init.py before changing anything
    previous = read_manifest(dest) or {}
    platform = platform or common.current_platform()
    vendored: List[str] = []
    with tempfile.TemporaryDirectory(prefix="mattebox-nuke-") as tmp:
        staging = Path(tmp) / FOLDER
        staging.mkdir()
        _copy_node(staging)
        if vendor:
            for version in python_versions:
                cache = Path(wheel_cache) if wheel_cache else Path(tmp) / "wheels"
                wheels = common.vendor_wheels(cache / abi_tag(version), version, platform)
                common.unpack_wheels(wheels, staging / "site-packages" / abi_tag(version))
                vendored.append(version)
        info = {"version": _version(), "python_versions": vendored or previous.get("python_versions", []),
                "platform": platform, "target": target.as_posix(),
                "created_init_py": not init_py.exists() or bool(previous.get("created_init_py"))}
        common.install_tree(staging, dest, MANIFEST, info)
    add_block(init_py, dest)
    if write_config:
        common.write_client_config(endpoint)
    return dest


def read_manifest(dest: Path) -> Optional[Dict]:
    return common.read_install_manifest(dest, MANIFEST)


def uninstall(target: Optional[Path] = None) -> bool:
    """Remove the files the install wrote (``install.json`` lists them), the folders it made once empty, and the
    init.py block (and init.py itself if install created it and nothing else is left). A ``<target>/mattebox``
    without that list is refused before anything changes. The shared client config stays: other hosts use it.
    True when something was removed."""
    target = Path(target) if target else default_target()
    dest = target / FOLDER
    manifest = read_manifest(dest) or {}
    if os.path.lexists(dest) and common.installed_files(manifest) is None:
        common.remove_installed(dest, MANIFEST)  # raises InstallRefused, naming the folder
    removed = False
    init_py = target / "init.py"
    if init_py.is_file():
        text, found = strip_block(init_py.read_text(encoding="utf-8"))
        if found:
            removed = True
            if not text.strip() and manifest.get("created_init_py"):
                init_py.unlink()
            else:
                init_py.write_text(text, encoding="utf-8")
    return common.uninstall_folder(dest, MANIFEST) or removed


def doctor(target: Optional[Path] = None, endpoint: Optional[str] = None,
           timeout: float = 3.0) -> Tuple[bool, List[str]]:
    """Check the installation and the server; returns (all good, report lines)."""
    target = Path(target) if target else default_target()
    dest = target / FOLDER
    report = common.DoctorReport()
    check = report.check

    manifest = read_manifest(dest)
    check(manifest is not None, f"installed in {dest}" if manifest else f"not installed in {dest}")
    init_py = target / "init.py"
    text = init_py.read_text(encoding="utf-8") if init_py.is_file() else ""
    check(_block(dest) in text, f"{init_py} adds {dest} to Nuke's plug-in path")
    for name in ("init.py", "menu.py", "mattebox_nuke/node.py", "mattebox_plugin/client.py"):
        check((dest / name).is_file(), f"{name} present")
    for version in (manifest or {}).get("python_versions", []):
        site = dest / "site-packages" / abi_tag(version)
        have = [m for m in ("zmq", "msgpack") if (site / m).is_dir()]
        check(len(have) == 2, f"Python {version} (Nuke {_nukes_for(version)}): pyzmq+msgpack vendored "
                              f"({', '.join(have) or 'none'} found)")
    if not (manifest or {}).get("python_versions"):
        report.note("no wheels vendored: Nuke's Python must already have pyzmq and msgpack")
    passed, message = common.doctor_handshake(endpoint or common.configured_endpoint(), timeout)
    check(passed, f"server: {message}")
    return report.ok, report.lines


def _nukes_for(version: str) -> str:
    return "/".join(k for k, v in NUKE_PYTHONS.items() if v == version) or "?"


def _version() -> str:
    sys.path.insert(0, str(payload.host_dir("nuke")))
    try:
        import mattebox_nuke

        return mattebox_nuke.__version__
    finally:
        sys.path.pop(0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of every action (install, uninstall, doctor)."""
    parser.add_argument("--target", type=Path, help="~/.nuke (default) or a NUKE_PATH folder")
    parser.add_argument("--python", action="append", dest="pythons",
                        help=f"Nuke Python to vendor wheels for (repeatable; default {', '.join(DEFAULT_PYTHONS)}: "
                             "Nuke 13/14 -> 3.9, 15 -> 3.10, 16 -> 3.11)")
    parser.add_argument("--platform", choices=sorted(common.PLATFORM_TAGS), help="default: this machine")
    parser.add_argument("--no-vendor", action="store_true", help="Nuke's Python already has pyzmq and msgpack")
    parser.add_argument("--endpoint", help="server endpoint to record in the client config / to check")
    parser.add_argument("--no-config", action="store_true", help="leave the client config alone")


def run(args: argparse.Namespace) -> int:
    try:
        if args.action == "install":
            dest = install(args.target, tuple(args.pythons or DEFAULT_PYTHONS), args.platform, not args.no_vendor,
                           args.endpoint, write_config=not args.no_config)
            print(f"installed the Mattebox node in {dest}; restart Nuke (Nodes toolbar > Mattebox)")
            return 0
        if args.action == "uninstall":
            print("removed" if uninstall(args.target) else "nothing to remove")
            return 0
        ok, lines = doctor(args.target, args.endpoint)
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0 if ok else 1


def main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
    """``prog``: how the caller names the command (``mattebox``: usage then reads ``mattebox install nuke ...``)."""
    parser = argparse.ArgumentParser(prog=prog or "python -m mattebox_installers.nuke",
                                     description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    for action in ("install", "uninstall", "doctor"):
        add_arguments(sub.add_parser(action, prog=common.action_prog(prog, action, "nuke")))
    return run(parser.parse_args(argv))

if __name__ == "__main__":
    sys.exit(main())
