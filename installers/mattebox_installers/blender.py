"""Blender 4.2+/5.x: build the mattebox extension zip, install it, remove it, check it.

The zip holds nodes/blender/mattebox_blender, a copy of the client package (mattebox_plugin, imported relatively by
the extension) and pyzmq/msgpack wheels for the target Blender's own Python, asked of the Blender executable (a
distribution's Blender runs the system Python, e.g. 3.13 for Debian's Blender 4.3, and may lack numpy, whose wheel
is then bundled too); without an executable the official builds' Python is assumed (cp311 for Blender 4.2–5.0, cp313
for 5.1 and later). ``blender_manifest.toml`` gets the ``platforms`` and ``wheels`` lists of the build. Installing
goes through Blender's own command line (``blender --command extension install-file``) when a Blender executable is
known, else the extension is unpacked into the user extension repository and enabled from Preferences (Blender
installs the wheels when it enables the extension); that copy records its files in ``mattebox-install.json``, and
uninstall removes only those (Blender's own ``extension remove`` removes what Blender installed). Standard library
only.

    python -m mattebox_installers.blender build --out dist/ [--blender-version 5.0] [--python 3.11] [--platform ...]
    python -m mattebox_installers.blender install [--blender /path/to/blender] [--blender-version 5.0] [--python 3.11]
    python -m mattebox_installers.blender uninstall [--blender ...]
    python -m mattebox_installers.blender doctor [--blender ...]
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import List, NamedTuple, Optional, Sequence, Tuple

from . import common, payload

EXTENSION_ID = "mattebox_blender"
DEFAULT_REPO = "user_default"
DEFAULT_BLENDER_VERSION = "5.0"
#: what a plain-copy install (no Blender executable) wrote, for uninstall (common.install_tree)
MANIFEST = "mattebox-install.json"
EXCLUDE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.zip")
#: what :func:`probe_blender` runs inside Blender; the marker finds its line among Blender's own output
PROBE_MARKER = "mattebox-probe:"
PROBE_CODE = ("import sys, bpy, importlib.util; print('%s blender=%%s python=%%d.%%d numpy=%%d' %% "
              "('.'.join(map(str, bpy.app.version)), sys.version_info[0], sys.version_info[1], "
              "importlib.util.find_spec('numpy') is not None))" % PROBE_MARKER)
#: seconds a Blender gets to start, answer the probe and quit
PROBE_TIMEOUT = 120.0


# ------------------------------------------------------------------------------------------ versions
def python_for_blender(blender_version: str) -> str:
    """The Python an official Blender release bundles: 3.11 for 4.2–5.0, 3.13 for 5.1 and later. Only a fallback
    when no Blender executable can be asked (:func:`probe_blender`): distribution builds use the system Python."""
    major, minor = _major_minor(blender_version)
    if (major, minor) < (4, 2):
        raise ValueError(f"blender version {blender_version}: extensions need Blender 4.2 or later")
    return "3.11" if (major, minor) <= (5, 0) else "3.13"


def _major_minor(version: str) -> Tuple[int, int]:
    match = re.match(r"^\s*(\d+)\.(\d+)", version)
    if not match:
        raise ValueError(f"blender version: expected e.g. '4.2' or '5.0.1', got {version!r}")
    return int(match.group(1)), int(match.group(2))


def wheel_fits(wheel_name: str, python_version: str) -> bool:
    """Whether a wheel's python/ABI tags load in CPython ``python_version`` (exact cpXY, abi3 from an older
    cpXY, or pure py3)."""
    parts = wheel_name[:-len(".whl")].split("-")
    if len(parts) < 5:
        return False
    python_tag, abi_tag = parts[-3], parts[-2]
    major, minor = (int(x) for x in python_version.split(".")[:2])
    for tag in python_tag.split("."):
        if tag in ("py3", f"py{major}{minor}") and abi_tag == "none":
            return True
        match = re.match(r"^cp(\d)(\d+)$", tag)
        if not match or int(match.group(1)) != major:
            continue
        tag_minor = int(match.group(2))
        if tag_minor == minor and abi_tag in (f"cp{major}{minor}", "abi3", "none"):
            return True
        if tag_minor < minor and abi_tag == "abi3":
            return True
    return False


def find_blender(explicit: Optional[str] = None) -> Optional[str]:
    """The Blender executable: the argument, ``$BLENDER``, or ``blender`` on PATH."""
    for candidate in (explicit, os.environ.get("BLENDER"), shutil.which("blender")):
        if candidate and (shutil.which(candidate) or Path(candidate).is_file()):
            return candidate
    return None


class Target(NamedTuple):
    """The Blender an extension is built for."""

    blender: Optional[str]  #: its executable, None when none was found
    version: str  #: e.g. '4.3.2'
    python: str  #: the Python it runs, e.g. '3.13'
    bundle_numpy: bool  #: it has no numpy (Debian's Blender does not depend on python3-numpy): bundle a wheel


def probe_blender(blender: str, timeout: float = PROBE_TIMEOUT) -> Tuple[str, str, bool]:
    """(Blender version, Python version, whether numpy imports), e.g. ('4.3.2', '3.13', False), asked of the
    executable itself: it runs :data:`PROBE_CODE` in the background with factory settings (no user add-ons or
    startup file). Raises RuntimeError saying what went wrong (not runnable, no answer in ``timeout`` s, no probe
    line in its output)."""
    argv = [blender, "--background", "--factory-startup", "--python-exit-code", "1", "--python-expr", PROBE_CODE]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{blender} did not answer within {timeout:.0f} s when asked for its version and "
                           f"Python; give --blender-version and --python instead") from None
    except OSError as exc:
        raise RuntimeError(f"cannot run {blender}: {exc}") from None
    match = re.search(rf"^{PROBE_MARKER} blender=(\d+\.\d+(?:\.\d+)?) python=(\d+\.\d+) numpy=([01])\s*$",
                      proc.stdout, re.M)
    if not match:
        output = (proc.stdout[-400:] + " " + proc.stderr[-400:]).strip()
        raise RuntimeError(f"{blender} did not report its version and Python (exit status {proc.returncode}); "
                           f"is it Blender 4.2 or later? Its output: {output or '(none)'}")
    return match.group(1), match.group(2), match.group(3) == "1"


def resolve_target(blender: Optional[str], blender_version: Optional[str] = None,
                   python_version: Optional[str] = None) -> Target:
    """The Blender to build for: given values win, the rest is asked of the executable (``--blender``,
    ``$BLENDER`` or ``blender`` on PATH), else the official builds' defaults (which bundle numpy)."""
    blender = find_blender(blender)
    bundle_numpy = False
    if blender:
        probed_version, probed_python, has_numpy = probe_blender(blender)
        blender_version = blender_version or probed_version
        python_version = python_version or probed_python
        bundle_numpy = not has_numpy
    blender_version = blender_version or DEFAULT_BLENDER_VERSION
    python_version = python_version or python_for_blender(blender_version)
    if not re.match(r"^3\.\d+$", python_version):
        raise ValueError(f"python: expected a version such as 3.11, got {python_version!r}")
    return Target(blender, blender_version, python_version, bundle_numpy)


def user_extensions_dir(blender_version: str, repo: str = DEFAULT_REPO) -> Path:
    """Blender's user extension repository folder (``$BLENDER_USER_RESOURCES`` respected)."""
    major, minor = _major_minor(blender_version)
    series = f"{major}.{minor}"
    if os.environ.get("BLENDER_USER_RESOURCES"):
        base = Path(os.environ["BLENDER_USER_RESOURCES"])
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support" / "Blender" / series
    elif sys.platform == "win32":
        base = Path(os.environ.get("APPDATA", Path.home())) / "Blender Foundation" / "Blender" / series
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "blender" / series
    return base / "extensions" / repo


# --------------------------------------------------------------------------------------------- build
def source_dir() -> Path:
    """The extension's source folder, mattebox_blender (:func:`payload.host_dir`)."""
    return payload.host_dir("blender") / EXTENSION_ID


def manifest_for_build(text: str, platform: str, wheels: Sequence[str]) -> str:
    """The source manifest with this build's ``platforms`` and ``wheels`` (top-level keys, before any table)."""
    lines: List[str] = []
    skipping = False  # inside a multi-line array of a key being replaced
    for line in text.splitlines():
        if re.match(r"^\s*(platforms|wheels)\s*=", line):
            skipping = "]" not in line
            continue
        if skipping:
            skipping = "]" not in line
            continue
        lines.append(line)
    insert = next((i for i, line in enumerate(lines) if line.startswith("[")), len(lines))
    added = [f'platforms = ["{platform}"]', "wheels = ["] + [f'  "./wheels/{name}",' for name in wheels] + ["]", ""]
    return "\n".join(lines[:insert] + added + lines[insert:]) + "\n"


def manifest_version(text: str) -> str:
    match = re.search(r'^version\s*=\s*"([^"]+)"', text, re.M)
    if not match:
        raise ValueError("blender_manifest.toml: no version")
    return match.group(1)


def build(out_dir: Path, blender_version: str = DEFAULT_BLENDER_VERSION, platforms: Optional[Sequence[str]] = None,
          wheel_dir: Optional[Path] = None, python_version: Optional[str] = None,
          bundle_numpy: bool = False) -> List[Path]:
    """One extension zip per platform in ``out_dir``, with wheels for ``python_version`` (default: what an
    official ``blender_version`` bundles), numpy's too with ``bundle_numpy``; returns their paths.

    ``wheel_dir`` reuses already downloaded wheels (a folder per Python and platform is made inside it)."""
    python_version = python_version or python_for_blender(blender_version)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = (source_dir() / "blender_manifest.toml").read_text(encoding="utf-8")
    version = manifest_version(manifest)
    zips = []
    for platform in platforms or [common.current_platform()]:
        if platform not in common.PLATFORM_TAGS:
            raise ValueError(f"platform: expected one of {sorted(common.PLATFORM_TAGS)}, got {platform!r}")
        with tempfile.TemporaryDirectory(prefix="mattebox-blender-") as tmp:
            stage = Path(tmp) / EXTENSION_ID
            shutil.copytree(source_dir(), stage, ignore=EXCLUDE)
            common.copy_plugin_package(stage)
            cache = Path(wheel_dir or Path(tmp) / "wheel-cache") / f"cp{python_version.replace('.', '')}-{platform}"
            requirements = common.CLIENT_REQUIREMENTS + (("numpy",) if bundle_numpy else ())
            wheels = common.vendor_wheels(cache, python_version=python_version, platform=platform,
                                          requirements=requirements)
            (stage / "wheels").mkdir()
            for wheel in wheels:
                shutil.copy2(wheel, stage / "wheels" / wheel.name)
            (stage / "blender_manifest.toml").write_text(
                manifest_for_build(manifest, platform, [w.name for w in wheels]), encoding="utf-8")
            target = out_dir / f"{EXTENSION_ID}-{version}-{platform.replace('-', '_')}.zip"
            with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
                for path in sorted(stage.rglob("*")):
                    if path.is_file():
                        zf.write(path, path.relative_to(stage).as_posix())
            zips.append(target)
    return zips


# ---------------------------------------------------------------------------------- install / remove
def _run_blender(blender: str, args: Sequence[str]) -> Tuple[int, str]:
    # no --factory-startup here: --enable saves the user's preferences, which must be the user's own
    proc = subprocess.run([blender, "--command", "extension", *args], capture_output=True, text=True, timeout=600)
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def install(blender: Optional[str] = None, blender_version: Optional[str] = None, zip_path: Optional[Path] = None,
            repo: str = DEFAULT_REPO, endpoint: Optional[str] = None, write_config: bool = True,
            wheel_dir: Optional[Path] = None, python_version: Optional[str] = None) -> str:
    """Install (replacing an older copy) and return a sentence saying how and where."""
    blender, version, python_version, bundle_numpy = resolve_target(blender, blender_version, python_version)
    with tempfile.TemporaryDirectory(prefix="mattebox-blender-zip-") as tmp:
        if zip_path is None:
            zip_path = build(Path(tmp), version, wheel_dir=wheel_dir, python_version=python_version,
                             bundle_numpy=bundle_numpy)[0]
        if blender:
            code, output = _run_blender(blender, ["install-file", "--repo", repo, "--enable", str(zip_path)])
            if code != 0:
                raise RuntimeError(f"`{blender} --command extension install-file` failed ({code}): {output[-1500:]}")
            how = (f"installed into Blender {version} (Python {python_version}) with its extension command line "
                   f"(repo {repo}, enabled)")
        else:
            dest = user_extensions_dir(version, repo) / EXTENSION_ID
            staging = Path(tmp) / "staging"
            with zipfile.ZipFile(zip_path) as zf:
                zf.extractall(staging)
            common.install_tree(staging, dest, MANIFEST, {"extension": EXTENSION_ID, "blender_version": version,
                                                          "zip": Path(zip_path).name})
            how = (f"copied into {dest} (no Blender executable found: enable 'Mattebox' in Preferences > Add-ons; "
                   f"Blender installs its wheels then)")
    if write_config:
        common.write_client_config(endpoint)
    return how


def uninstall(blender: Optional[str] = None, blender_version: Optional[str] = None, repo: str = DEFAULT_REPO) -> bool:
    """Remove the extension; True when something was removed. One Blender installed (``install-file``) is
    removed by Blender's own ``extension remove``; a plain copy (no Blender found at install) by the files its
    manifest lists (:func:`common.remove_installed`). A folder that is neither is refused."""
    blender = find_blender(blender)
    version = blender_version or (probe_blender(blender)[0] if blender else DEFAULT_BLENDER_VERSION)
    dest = user_extensions_dir(version, repo) / EXTENSION_ID
    if not os.path.lexists(dest):
        return False
    if common.read_install_manifest(dest, MANIFEST) is not None:
        return common.uninstall_folder(dest, MANIFEST)
    if not blender:
        raise common.InstallRefused(f"{dest} was not copied by `mattebox install blender` (no {MANIFEST}); not "
                                    f"removing anything in it: remove it in Blender (Preferences > Get "
                                    f"Extensions), or give --blender so its extension command removes it")
    code, output = _run_blender(blender, ["remove", f"{repo}.{EXTENSION_ID}"])
    if code != 0:
        raise RuntimeError(f"`{blender} --command extension remove` failed ({code}): {output[-1500:]}")
    return True


def installed_manifest(blender_version: str, repo: str = DEFAULT_REPO) -> Optional[str]:
    path = user_extensions_dir(blender_version, repo) / EXTENSION_ID / "blender_manifest.toml"
    return path.read_text(encoding="utf-8") if path.is_file() else None


def doctor(blender: Optional[str] = None, blender_version: Optional[str] = None, repo: str = DEFAULT_REPO,
           endpoint: Optional[str] = None, python_version: Optional[str] = None) -> List[Tuple[bool, str]]:
    """Checks, each (ok, message): Blender found, extension installed, wheels match Blender's Python, server."""
    checks: List[Tuple[bool, str]] = []
    found = find_blender(blender)
    try:
        _, version, python_version, _ = resolve_target(found, blender_version, python_version)
        if found:
            checks.append((True, f"Blender {version} at {found}, running Python {python_version}"))
        else:
            checks.append((True, f"no Blender executable found (set $BLENDER); assuming Blender {version} "
                                 f"with Python {python_version}"))
    except (RuntimeError, ValueError) as exc:
        checks.append((False, f"Blender at {found} does not run: {exc}"))
        version = blender_version or DEFAULT_BLENDER_VERSION
        python_version = python_version or python_for_blender(version)
    manifest = installed_manifest(version, repo)
    where = user_extensions_dir(version, repo) / EXTENSION_ID
    if manifest is None:
        checks.append((False, f"extension not installed in {where}; run `mattebox install blender`"))
    else:
        checks.append((True, f"extension {manifest_version(manifest)} installed in {where}"))
        abi = "cp" + python_version.replace(".", "")
        code = "\n".join(line for line in manifest.splitlines() if not line.lstrip().startswith("#"))
        wheels = re.findall(r'"\./wheels/([^"]+)"', code)
        wrong = [w for w in wheels if not wheel_fits(w, python_version)]
        if not wheels:
            checks.append((False, "the installed extension bundles no wheels (pyzmq, msgpack)"))
        elif wrong:
            checks.append((False, f"wheels {wrong} do not match Blender {version}'s Python {python_version} "
                                  f"({abi}); reinstall with `mattebox install blender`"))
        else:
            checks.append((True, f"wheels match Blender {version}'s Python {python_version} ({abi}): "
                                 f"{', '.join(wheels)}"))
    config = common.plugin_module("config")
    cfg = config.load()
    endpoint = endpoint or cfg["endpoint"]
    if not cfg.get("server_command"):
        checks.append((False, f"no server_command in {config.config_path()}: the extension cannot start a server"))
    checks.append(common.doctor_handshake(endpoint))
    return checks


# ----------------------------------------------------------------------------------------------- CLI
def main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
    """``prog``: how the caller names the command (``mattebox``: usage then reads ``mattebox install blender ...``)."""
    parser = argparse.ArgumentParser(prog=prog or "python -m mattebox_installers.blender",
                                     description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    for name in ("build", "install", "uninstall", "doctor"):
        p = sub.add_parser(name, prog=common.action_prog(prog, name, "blender"))
        p.add_argument("--blender", help="Blender executable (default: $BLENDER or blender on PATH)")
        p.add_argument("--blender-version", help="target Blender, e.g. 4.2 or 5.1 (default: asked from Blender)")
        if name != "uninstall":
            p.add_argument("--python", dest="python_version",
                           help="the Python that Blender runs, e.g. 3.13 (default: asked from Blender; without a "
                                "Blender executable, the official builds': 3.11 for 4.2-5.0, 3.13 from 5.1)")
        p.add_argument("--repo", default=DEFAULT_REPO, help="extension repository id (default user_default)")
        if name == "build":
            p.add_argument("--out", type=Path, default=Path("dist"), help="folder for the zips")
            p.add_argument("--platform", action="append", choices=sorted(common.PLATFORM_TAGS),
                           help="target platform (repeat for several; default: this machine's)")
        if name in ("install", "doctor"):
            p.add_argument("--endpoint", help="server endpoint to record / check")
        if name == "install":
            p.add_argument("--zip", type=Path, help="install this built zip instead of building one")
    args = parser.parse_args(argv)
    try:
        if args.action == "build":
            target = resolve_target(args.blender, args.blender_version, args.python_version)
            for path in build(args.out, target.version, args.platform, python_version=target.python,
                              bundle_numpy=target.bundle_numpy):
                print(path)
        elif args.action == "install":
            print(install(args.blender, args.blender_version, args.zip, args.repo, args.endpoint,
                          python_version=args.python_version))
        elif args.action == "uninstall":
            removed = uninstall(args.blender, args.blender_version, args.repo)
            print("removed" if removed else "nothing to remove")
        else:
            checks = doctor(args.blender, args.blender_version, args.repo, args.endpoint, args.python_version)
            for ok, message in checks:
                print(("ok   " if ok else "FAIL ") + message)
            return 0 if all(ok for ok, _ in checks) else 1
    except (RuntimeError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
