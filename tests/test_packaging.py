"""The built wheel is a whole mattebox: `mattebox install gimp|nuke|blender` and `host-doctor` work from it with no
source checkout, and put the checkout's nodes/ and plugin/ files into the hosts byte for byte.

The wheel is built offline from a copy of the tree (pip wheel --no-build-isolation: the venv's setuptools), then
installed with --no-deps into a fresh virtual environment without the system's or this venv's site-packages; it
gets only its declared dependencies (pyzmq, msgpack) and pip, linked in through a .pth file. Every command runs from
a folder outside the checkout with no PYTHONPATH, so nothing can fall back to the checkout's files.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Dict, List

import pytest

from mattebox_installers import nuke, payload
from mattebox.matting.compiled import EXTENSION
from mattebox.testing.servers import ServerProcess
from tests.conftest import ROOT


#: what the wheel is built from (pyproject.toml names README.md as its long description)
SOURCES = ("pyproject.toml", "README.md", "plugin", "server", "installers", "nodes")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
#: the wheel's dependencies (pyproject.toml [project] dependencies) and pip, which the Blender installer runs
LINKED_MODULES = ("zmq", "msgpack", "pip")
#: stand-ins for the pyzmq and msgpack wheels the Blender installer bundles (pip download, offline)
FAKE_WHEELS = (("pyzmq", "26.0.0", "zmq"), ("msgpack", "1.0.0", "msgpack"))
TIMEOUT = 120


def tree_files(folder: Path) -> Dict[str, bytes]:
    """{relative posix path: content} of every file under ``folder``, bytecode caches and the classical kernels'
    extension left out (built for this machine's CPU at install, never shipped: docs/classical.md "Speed")."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts and not p.name.startswith(f"{EXTENSION}.")}


def fake_wheel(folder: Path, name: str, version: str, module: str) -> Path:
    """A pure-Python wheel that pip accepts (name, version and tags agree with its metadata)."""
    path = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{module}/__init__.py", "FAKE = True\n")
        zf.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{info}/RECORD", "")
    return path


class Installed:
    """A fresh virtual environment holding only the built wheel (and its dependencies), and how to run it."""

    def __init__(self, base: Path):
        self.base = base
        self.venv = base / "venv"
        self.bin = self.venv / "bin"
        self.wheels = base / "offline-wheels"
        self.env = {"PATH": str(self.bin), "HOME": str(base / "home"), "PYTHONNOUSERSITE": "1",
                    "MATTEBOX_CONFIG": str(base / "client.json"), "BLENDER_USER_RESOURCES": str(base / "blender"),
                    "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(self.wheels), "PIP_CONFIG_FILE": os.devnull,
                    "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}

    def run(self, *argv: str) -> subprocess.CompletedProcess:
        """Run a program of the environment (``mattebox``, ``python``) from outside the checkout."""
        return subprocess.run([str(self.bin / argv[0]), *argv[1:]], cwd=self.base, env=self.env,
                              capture_output=True, text=True, timeout=TIMEOUT)

    def mattebox(self, *argv: str) -> subprocess.CompletedProcess:
        """``mattebox ARGV``; whatever its exit status, it never ends in a traceback."""
        proc = self.run("mattebox", *argv)
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc


def _check(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"{proc.args}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def build_wheel(base: Path) -> Path:
    source, dist = base / "source", base / "dist"
    source.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=IGNORED)
        else:
            shutil.copy2(path, source / name)
    _check(subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "--quiet", "--wheel-dir", str(dist), str(source)], cwd=base, capture_output=True,
                          text=True, timeout=TIMEOUT, env=dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")))
    (wheel,) = dist.glob("mattebox-*.whl")
    return wheel


def make_environment(base: Path, wheel: Path) -> Installed:
    installed = Installed(base)
    _check(subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(installed.venv)], capture_output=True,
                          text=True, timeout=TIMEOUT))
    linked = base / "linked"
    linked.mkdir()
    for module in LINKED_MODULES:
        package = Path(__import__(module).__file__).parent
        (linked / package.name).symlink_to(package)
        libs = package.parent / f"py{module}.libs"  # pyzmq's bundled libzmq (auditwheel)
        if libs.is_dir():
            (linked / libs.name).symlink_to(libs)
    (site,) = installed.venv.glob("lib/python*/site-packages")
    (site / "mattebox-test-deps.pth").write_text(f"{linked}\n")
    installed.wheels.mkdir()
    for name, version, module in FAKE_WHEELS:
        fake_wheel(installed.wheels, name, version, module)
    _check(installed.run("python", "-m", "pip", "install", "--no-deps", "--no-compile", "--quiet", str(wheel)))
    return installed


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    if os.name == "nt":
        pytest.skip("the environment is laid out the POSIX way (bin/, symlinks)")
    base = tmp_path_factory.mktemp("packaging")
    return make_environment(base, build_wheel(base))


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    """A server from this checkout: the installed hosts' doctors shake hands with it."""
    server = ServerProcess(tmp_path_factory.mktemp("server"), state_dir="none")
    yield server.endpoint
    server.stop()


@pytest.mark.slow
def test_the_installed_packages_are_the_wheels_not_the_checkouts(installed):
    code = ("import mattebox, mattebox_installers, mattebox_plugin, zmq\n"
            "from mattebox_installers import payload\n"
            "print(mattebox.__file__, mattebox_installers.__file__, mattebox_plugin.__file__,"
            " payload.host_dir('gimp'), payload.host_dir('nuke'), payload.host_dir('blender'),"
            " payload.plugin_package(), sep='\\n')")
    paths = [Path(p) for p in _check(installed.run("python", "-c", code)).stdout.splitlines()]
    assert len(paths) == 7 and all(p.resolve().is_relative_to(installed.venv.resolve()) for p in paths), paths


@pytest.mark.slow
def test_every_source_file_is_in_the_wheel(installed):
    """A package left out of pyproject.toml's list (or a host file without its package-data pattern) fails here."""
    (site,) = installed.venv.glob("lib/python*/site-packages")
    shipped = {"plugin/mattebox_plugin": "mattebox_plugin", "server/mattebox": "mattebox",
               "installers/mattebox_installers": "mattebox_installers", "nodes": "mattebox_installers/nodes"}
    for source, target in shipped.items():
        expected, got = tree_files(ROOT / source), tree_files(site / target)
        missing = sorted(rel for rel in expected if expected[rel] != got.get(rel))
        assert not missing, (f"{source}: not in the wheel as in the checkout: {missing} (list a new package in "
                             f"pyproject.toml's [tool.setuptools] packages, a new kind of file in its package-data)")


@pytest.mark.slow
def test_gimp_install_and_doctor_from_the_wheel(installed, endpoint):
    target = installed.base / "gimp-plug-ins"
    _check(installed.mattebox("install", "gimp", "--target", str(target), "--vendor", "never",
                              "--endpoint", endpoint))
    expected = tree_files(ROOT / "nodes" / "gimp")  # its one folder, mattebox/
    expected.update(plugin_files("mattebox/mattebox_plugin"))
    assert_installed(tree_files(target), expected, "mattebox/INSTALLED.json")
    doctor = _check(installed.mattebox("host-doctor", "gimp", "--target", str(target),
                                       "--gimp-python", str(installed.bin / "python")))
    assert "FAIL" not in doctor.stdout and f"at {endpoint}" in doctor.stdout, doctor.stdout


@pytest.mark.slow
def test_nuke_install_and_doctor_from_the_wheel(installed, endpoint):
    target = installed.base / "nuke-path"
    _check(installed.mattebox("install", "nuke", "--target", str(target), "--no-vendor", "--endpoint", endpoint))
    expected = {f"mattebox/{rel}": data for rel, data in tree_files(ROOT / "nodes" / "nuke").items()}
    expected.update(plugin_files("mattebox/mattebox_plugin"))
    installed_files = tree_files(target)
    assert installed_files.pop("init.py").decode().count("nuke.pluginAddPath") == 1
    assert_installed(installed_files, expected, "mattebox/install.json")
    doctor = _check(installed.mattebox("host-doctor", "nuke", "--target", str(target)))
    assert "FAIL" not in doctor.stdout and f"at {endpoint}" in doctor.stdout, doctor.stdout


@pytest.mark.slow
def test_blender_install_and_doctor_from_the_wheel(installed, endpoint):
    """No Blender executable: the extension zip is built (wheels from the offline stand-ins) and unpacked into the
    user extension repository."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    _check(installed.mattebox("install", "blender", "--blender-version", "4.2", "--endpoint", endpoint))
    folder = installed.base / "blender" / "extensions" / "user_default" / "mattebox_blender"
    got = tree_files(folder)
    expected = tree_files(ROOT / "nodes" / "blender" / "mattebox_blender")
    expected.update(plugin_files("mattebox_plugin"))
    wheels = sorted(f"{name}-{version}-py3-none-any.whl" for name, version, _ in FAKE_WHEELS)
    source_manifest = tomllib.loads(expected["blender_manifest.toml"].decode())
    built_manifest = tomllib.loads(got["blender_manifest.toml"].decode())
    assert built_manifest.pop("wheels") == [f"./wheels/{w}" for w in wheels]
    assert {k: v for k, v in built_manifest.items() if k != "platforms"} == \
        {k: v for k, v in source_manifest.items() if k not in ("platforms", "wheels")}
    expected["blender_manifest.toml"] = got["blender_manifest.toml"]  # the source's plus this build's wheels
    expected.update({f"wheels/{w}": (installed.wheels / w).read_bytes() for w in wheels})
    assert_installed(got, expected, "mattebox-install.json")
    doctor = _check(installed.mattebox("host-doctor", "blender", "--blender-version", "4.2"))
    assert "FAIL" not in doctor.stdout and f"at {endpoint}" in doctor.stdout, doctor.stdout


def plugin_files(prefix: str) -> Dict[str, bytes]:
    return {f"{prefix}/{rel}": data for rel, data in tree_files(ROOT / "plugin" / "mattebox_plugin").items()}


def assert_installed(got: Dict[str, bytes], expected: Dict[str, bytes], manifest: str) -> None:
    """``got`` is ``expected`` byte for byte plus the install's own manifest, which lists exactly those files."""
    listed: List[str] = sorted(json.loads(got.pop(manifest))["files"])
    prefix = manifest.rpartition("/")[0]
    assert listed == sorted(rel[len(prefix) + 1:] if prefix else rel for rel in got)
    assert sorted(got) == sorted(expected), sorted(set(got) ^ set(expected))
    different = [rel for rel in expected if got[rel] != expected[rel]]
    assert not different, f"installed files differ from the checkout's: {different}"


def test_a_checkout_finds_its_own_nodes_and_client_package():
    for host in payload.HOSTS:
        assert payload.host_dir(host) == ROOT / "nodes" / host
    assert payload.plugin_package() == ROOT / "plugin" / "mattebox_plugin"
    with pytest.raises(ValueError, match="host: expected one of blender, gimp, nuke, got 'krita'"):
        payload.host_dir("krita")


def test_an_install_without_the_host_files_says_what_is_missing(tmp_path, monkeypatch, capsys):
    """A broken install (files missing from both layouts): a one-line error naming the places looked in, exit 1."""
    monkeypatch.setattr(payload, "_PACKAGE", tmp_path / "site-packages" / "mattebox_installers")
    monkeypatch.setattr(payload, "_CHECKOUT", tmp_path)
    with pytest.raises(payload.PayloadMissing, match="cannot find the client package mattebox_plugin"):
        payload.plugin_package()
    assert nuke.main(["install", "--target", str(tmp_path / "nuke"), "--no-vendor", "--no-config"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: cannot find the nuke node files (looked in ") and "Traceback" not in error
    assert str(tmp_path / "site-packages" / "mattebox_installers" / "nodes" / "nuke") in error
