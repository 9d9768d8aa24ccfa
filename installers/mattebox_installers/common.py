"""What every host installer shares. Standard library only (runs before anything else is installed)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from . import payload

#: the client's runtime dependencies, vendored into hosts whose Python lacks them
CLIENT_REQUIREMENTS = ("pyzmq", "msgpack")

#: host platform names -> pip platform tags (most compatible first)
PLATFORM_TAGS = {
    "linux-x64": ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"],
    "linux-arm64": ["manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64"],
    "windows-x64": ["win_amd64"],
    "macos-arm64": ["macosx_11_0_arm64", "macosx_10_15_universal2"],
    "macos-x64": ["macosx_10_15_x86_64", "macosx_10_9_x86_64", "macosx_10_15_universal2"],
}


def action_prog(prog: Optional[str], action: str, host: str) -> Optional[str]:
    """The usage name of one installer action: ``mattebox install gimp`` when the mattebox CLI forwards to the
    installer (``prog`` "mattebox"; its doctor action is ``host-doctor``), else argparse's default."""
    if not prog:
        return None
    return f"{prog} {'host-doctor' if action == 'doctor' else action} {host}"


def current_platform() -> str:
    import platform

    machine = platform.machine().lower()
    arm = machine in ("arm64", "aarch64")
    if sys.platform.startswith("linux"):
        return "linux-arm64" if arm else "linux-x64"
    if sys.platform == "darwin":
        return "macos-arm64" if arm else "macos-x64"
    return "windows-x64"


def vendor_wheels(target_dir: Path, python_version: str = "3.11", platform: Optional[str] = None,
                  requirements: Sequence[str] = CLIENT_REQUIREMENTS) -> List[Path]:
    """Download binary wheels of ``requirements`` for another Python ABI/platform (pip download, PyPI).

    ``python_version`` is the host's Python ("3.9", "3.11", "3.13"), ``platform`` a key of PLATFORM_TAGS.
    Returns the wheel paths. Raises RuntimeError with pip's message when no matching wheel exists.
    """
    target_dir = Path(target_dir)
    target_dir.mkdir(parents=True, exist_ok=True)
    tags = PLATFORM_TAGS[platform or current_platform()]
    abi = "cp" + python_version.replace(".", "")
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
           "--python-version", python_version, "--implementation", "cp", "--abi", abi, "--abi", "abi3",
           "--abi", "none", "-d", str(target_dir)]
    for tag in tags + ["any"]:
        cmd += ["--platform", tag]
    proc = subprocess.run(cmd + list(requirements), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"could not fetch wheels {list(requirements)} for Python {python_version} "
                           f"({platform or current_platform()}): {proc.stderr.strip()[-800:]}")
    wanted = {r.lower().replace("-", "_") for r in requirements}
    wheels = [w for w in sorted(target_dir.glob("*.whl")) if w.name.split("-")[0].lower() in wanted]
    missing = wanted - {w.name.split("-")[0].lower() for w in wheels}
    if missing:
        raise RuntimeError(f"pip returned no wheel for {sorted(missing)} (Python {python_version})")
    return wheels


def unpack_wheels(wheels: Sequence[Path], site_dir: Path) -> Path:
    """Unzip wheels into a folder the host puts on sys.path (what pip does, minus scripts)."""
    site_dir = Path(site_dir)
    site_dir.mkdir(parents=True, exist_ok=True)
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(site_dir)
    return site_dir


def copy_plugin_package(dest_dir: Path) -> Path:
    """Copy the host-neutral client package (mattebox_plugin) into ``dest_dir``, a staging folder (installs reach
    the host through :func:`install_tree`); returns the package path."""
    dest = Path(dest_dir) / "mattebox_plugin"
    shutil.copytree(payload.plugin_package(), dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


def server_command() -> List[str]:
    """argv that starts a server from this installation (the Python running the installer)."""
    return [sys.executable, "-m", "mattebox", "serve"]


def write_client_config(endpoint: Optional[str] = None, command: Optional[List[str]] = None,
                        path: Optional[Path] = None) -> Path:
    """Record the endpoint and how to start a local server in the shared client config."""
    config = _client_config()
    values = {"server_command": command or server_command()}
    if endpoint:
        values["endpoint"] = endpoint
    return config.save(values, path)


def plugin_module(name: str):
    """A module of the client package, imported from the tree this installer runs from (:mod:`.payload`: a
    checkout's plugin/, or the installed package beside this one), which need not be on sys.path."""
    import importlib

    sys.path.insert(0, str(payload.plugin_package().parent))
    try:
        return importlib.import_module(f"mattebox_plugin.{name}")
    finally:
        sys.path.pop(0)


def _client_config():
    return plugin_module("config")


def configured_endpoint() -> str:
    """The endpoint hosts will use: the client config's, or $MATTEBOX_ENDPOINT."""
    return _client_config().load()["endpoint"]


class DoctorReport:
    """The checks of a host doctor: ``ok`` turns False at the first failed check; ``lines`` is the report."""

    def __init__(self):
        self.ok = True
        self.lines: List[str] = []

    def check(self, passed: bool, message: str) -> None:
        self.ok = self.ok and passed
        self.lines.append(("ok    " if passed else "FAIL  ") + message)

    def note(self, message: str) -> None:
        self.lines.append("note  " + message)


def doctor_handshake(endpoint: str, timeout: float = 3.0) -> Tuple[bool, str]:
    """(True, summary) when a server answers hello at ``endpoint``; (False, why) otherwise."""
    config, client_module = _client_config(), plugin_module("client")
    Client, ServerUnavailable = client_module.Client, client_module.ServerUnavailable
    cfg = config.load()  # the configured server's CURVE keys, when it is that server being checked
    keys = config.client_kwargs(cfg) if endpoint == cfg["endpoint"] else {}
    client = Client(**dict(keys, endpoint=endpoint, timeout=timeout))
    try:
        info = client.hello()
    except ServerUnavailable as exc:
        return False, str(exc)
    except Exception as exc:
        return False, f"{exc.__class__.__name__}: {exc}"
    finally:
        client.close()
    engines = [e["name"] for e in info["engines"] if e["available"]]
    return True, f"mattebox {info['server_version']} at {endpoint} on {info['device']}, engines {engines}"


# ------------------------------------------------------------------------------ installed-file manifests
class InstallRefused(ValueError):
    """An install or uninstall would touch something mattebox did not put there."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_install_manifest(dest: Path, name: str) -> Optional[Dict]:
    """The manifest ``dest/name`` an install wrote, or None when there is none (never through a link)."""
    path = Path(dest) / name
    if not path.is_file() or path.is_symlink():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def installed_files(manifest: Optional[Dict]) -> Optional[Dict[str, Optional[str]]]:
    """A manifest's files as {relative path: sha256}, or None when it has no file list. GIMP installs before the
    digests were recorded listed paths only: those map to None (removed without a content check)."""
    files = (manifest or {}).get("files")
    if isinstance(files, list):
        return dict.fromkeys(str(rel) for rel in files)
    return files if isinstance(files, dict) else None


def _installed_dirs(manifest: Dict) -> List[str]:
    """The folders an install made ("." for the install folder itself). Before they were recorded, an install
    (GIMP's) made its folder and every folder its files are in."""
    if "dirs" in manifest:
        return list(manifest["dirs"])
    files = installed_files(manifest) or {}
    return ["."] + sorted({parent.as_posix() for rel in files for parent in Path(rel).parents if str(parent) != "."})


def _relative(dest: Path, rel: str) -> Path:
    """``dest/rel`` for a manifest entry, refusing entries that leave ``dest``."""
    parts = Path(rel).parts
    if not parts or Path(rel).is_absolute() or ".." in parts:
        raise InstallRefused(f"manifest entry {rel!r} in {dest} points outside it; not touching it")
    return dest.joinpath(*parts)


def install_tree(staging: Path, dest: Path, manifest_name: str, info: Dict) -> Path:
    """Copy the staged install ``staging`` into ``dest`` and record what was written in ``dest/manifest_name``:
    ``info`` plus ``files`` (relative path -> sha256) and ``dirs`` (folders this install created).

    A previous install's files are removed first (:func:`remove_installed`: only those its manifest lists). An
    existing ``dest`` without a manifest, or any path to be written that is already there (a file of someone
    else's, or a link), is refused before anything is written. Never follows a link."""
    staging, dest = Path(staging), Path(dest)
    if dest.is_symlink():
        raise InstallRefused(f"{dest} is a symbolic link; not installing through it")
    previous = read_install_manifest(dest, manifest_name)
    if previous is not None:
        remove_installed(dest, manifest_name, keep_dest=True)
    elif dest.exists() and any(dest.iterdir()):
        raise InstallRefused(f"{dest} exists and was not made by `mattebox install` (no {manifest_name}); not "
                             f"writing into it: move it away, or install elsewhere")
    entries = sorted(staging.rglob("*"))
    clashes = [str(target) for target in (dest / p.relative_to(staging) for p in entries + [staging / manifest_name])
               if os.path.lexists(target) and not (target.is_dir() and not target.is_symlink())]
    if clashes:
        raise InstallRefused(f"{', '.join(clashes[:3])} already in {dest}, not written by `mattebox install`; not "
                             f"replacing {'it' if len(clashes) == 1 else 'them'}: move them away and install again")
    ours = set(_installed_dirs(previous)) if previous else set()  # an earlier install's folders stay this one's
    created: List[str] = []
    for rel, target in [(".", dest)] + [(p.relative_to(staging).as_posix(), dest / p.relative_to(staging))
                                        for p in entries if p.is_dir()]:
        if not target.exists():
            target.mkdir(parents=rel == ".")
            created.append(rel)
        elif rel in ours:
            created.append(rel)
    files: Dict[str, str] = {}
    for path in entries:
        rel = path.relative_to(staging).as_posix()
        target = dest / rel
        if path.is_dir():
            continue
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) |
                     getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(fd, "wb") as out, open(path, "rb") as source:
            shutil.copyfileobj(source, out)
        shutil.copymode(path, target)
        files[rel] = _sha256(target)
    manifest = dict(info, files=files, dirs=created)
    (dest / manifest_name).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return dest


def remove_installed(dest: Path, manifest_name: str, keep_dest: bool = False) -> Tuple[bool, List[str]]:
    """Undo :func:`install_tree`: delete the files its manifest lists (unchanged ones: same sha256; never a link),
    then the folders it created once empty, then the manifest. Returns (removed something, what was left and
    why). A ``dest`` without a manifest is refused (:class:`InstallRefused`); a missing ``dest`` is (False, [])."""
    dest = Path(dest)
    if not os.path.lexists(dest):
        return False, []
    if dest.is_symlink():
        raise InstallRefused(f"{dest} is a symbolic link; not removing through it")
    manifest = read_install_manifest(dest, manifest_name)
    files = installed_files(manifest)
    if files is None:
        raise InstallRefused(f"{dest} has no file list from `mattebox install` ({manifest_name}); not removing "
                             f"anything in it (delete it by hand if it is an old mattebox install)")
    left: List[str] = []
    for rel, digest in files.items():
        path = _relative(dest, rel)
        if path.is_symlink() or (path.exists() and not path.is_file()):
            left.append(f"{path} (not the file mattebox installed)")
        elif path.is_file():
            if digest is not None and _sha256(path) != digest:
                left.append(f"{path} (changed since it was installed)")
            else:
                path.unlink()
    (dest / manifest_name).unlink()
    for rel in sorted(_installed_dirs(manifest), key=lambda r: -len(Path(r).parts)):  # deepest first, "." last
        if rel == "." and keep_dest:
            continue
        folder = dest if rel == "." else _relative(dest, rel)
        try:
            folder.rmdir()  # only when empty; never a link
        except FileNotFoundError:
            pass
        except OSError:
            left.append(f"{folder} (holds files mattebox did not install)")
    return True, left


def uninstall_folder(dest: Path, manifest_name: str) -> bool:
    """:func:`remove_installed` for an uninstall command: says on stderr what was left in place and why."""
    removed, left = remove_installed(dest, manifest_name)
    for item in left:
        print(f"left in place: {item}", file=sys.stderr)
    return removed
