"""installers/mattebox_installers/blender.py: versions, manifest, zip contents (validated by Blender's own
extension validator) and install -> use -> doctor -> uninstall through Blender's extension command line."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from mattebox_installers import blender as installer
from tests.fakes.blender import write_fake_blender
from tests.hosts.blender_harness import blender_python_or_skip, run_blender

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]


def test_python_for_blender_versions():
    assert installer.python_for_blender("4.2") == "3.11"
    assert installer.python_for_blender("4.5.3") == "3.11"
    assert installer.python_for_blender("5.0.1") == "3.11"
    assert installer.python_for_blender("5.1") == "3.13"
    assert installer.python_for_blender("6.0") == "3.13"
    with pytest.raises(ValueError, match="4.2 or later"):
        installer.python_for_blender("4.1")
    with pytest.raises(ValueError, match="blender version"):
        installer.python_for_blender("latest")


@pytest.mark.parametrize("version, python, numpy", [("4.3.2", "3.13", False), ("4.3.2", "3.11", True),
                                                    ("5.0.1", "3.11", True)])
def test_probe_asks_the_blender_binary_for_its_python(tmp_path, version, python, numpy):
    """A distribution's Blender 4.3 runs the system Python 3.13 (and Debian's has no numpy), the official 4.3 build
    its own 3.11 with numpy: the same version, different wheels, so the installer must ask the binary (issue 19)."""
    blender = write_fake_blender(tmp_path, version, python, numpy=numpy)
    assert installer.probe_blender(blender) == (version, python, numpy)
    assert installer.resolve_target(blender) == (blender, version, python, not numpy)
    # given values win over the probe; without an executable the official builds' table is the fallback
    assert installer.resolve_target(blender, "4.3", "3.12")[1:3] == ("4.3", "3.12")
    assert installer.resolve_target(str(tmp_path / "none"), "4.3")[1:] == ("4.3", "3.11", False)


def test_probe_failures_say_what_went_wrong(tmp_path):
    with pytest.raises(RuntimeError, match="cannot run"):
        installer.probe_blender(str(tmp_path / "missing-blender"))
    silent = tmp_path / "silent"
    silent.write_text("#!/bin/sh\necho 'not blender'\nexit 3\n")
    silent.chmod(0o755)
    with pytest.raises(RuntimeError, match=r"did not report its version and Python \(exit status 3\).*not blender"):
        installer.probe_blender(str(silent))
    hung = write_fake_blender(tmp_path, "4.3.2", "3.13", hang=60)
    with pytest.raises(RuntimeError, match="did not answer within 1 s"):
        installer.probe_blender(hung, timeout=1)
    with pytest.raises(ValueError, match="python: expected a version such as 3.11, got 'py3'"):
        installer.resolve_target(None, "4.3", "py3")


@pytest.mark.parametrize("python, numpy", [("3.13", False), ("3.11", True)])
def test_install_bundles_wheels_for_the_python_blender_reports(tmp_path, monkeypatch, wheel_cache, python, numpy):
    """`mattebox install blender` for Debian's 4.3 (3.13, no numpy) and the official 4.3 (3.11, numpy); doctor
    agrees with it and fails a copy built for the other Python."""
    monkeypatch.setenv("BLENDER_USER_RESOURCES", str(tmp_path / "user"))
    monkeypatch.setenv("MATTEBOX_CONFIG", str(tmp_path / "client.json"))
    blender = write_fake_blender(tmp_path, "4.3.2", python, numpy=numpy)
    try:
        how = installer.install(blender=blender, wheel_dir=wheel_cache, write_config=False)
    except RuntimeError as exc:
        if "could not fetch wheels" not in str(exc) or os.environ.get("CI"):
            raise
        pytest.skip(f"cannot fetch wheels: {exc}")
    assert f"Blender 4.3.2 (Python {python})" in how
    manifest = installer.installed_manifest("4.3.2")
    wheels = tomllib.loads(manifest)["wheels"]
    bundled = ["msgpack", "pyzmq"] if numpy else ["msgpack", "numpy", "pyzmq"]
    assert sorted(w.split("/")[-1].split("-")[0] for w in wheels) == bundled
    assert all(installer.wheel_fits(w.split("/")[-1], python) for w in wheels)
    checks = installer.doctor(blender=blender, endpoint="tcp://127.0.0.1:9")
    assert (True, f"Blender 4.3.2 at {blender}, running Python {python}") in checks
    abi = "cp" + python.replace(".", "")
    assert any(ok and f"Python {python} ({abi})" in message for ok, message in checks), checks
    other = write_fake_blender(tmp_path / "user", "4.3.2", "3.11" if python == "3.13" else "3.13")
    wrong = [message for ok, message in installer.doctor(blender=other, endpoint="tcp://127.0.0.1:9") if not ok]
    assert any("do not match Blender 4.3.2's Python" in message for message in wrong), wrong


def test_wheel_fits_python_abi():
    fits = installer.wheel_fits
    assert fits("msgpack-1.2.4-cp311-cp311-manylinux_2_17_x86_64.whl", "3.11")
    assert not fits("msgpack-1.2.4-cp311-cp311-manylinux_2_17_x86_64.whl", "3.13")
    assert fits("pyzmq-27.3.0-cp312-abi3-manylinux_2_28_x86_64.whl", "3.13")
    assert not fits("pyzmq-27.3.0-cp312-abi3-manylinux_2_28_x86_64.whl", "3.11")  # abi3 needs >= 3.12
    assert fits("hexdump-3.3-py3-none-any.whl", "3.11")
    assert not fits("not-a-wheel.whl", "3.11")


def test_build_manifest_is_valid_toml_with_platform_and_wheels():
    source = (installer.source_dir() / "blender_manifest.toml").read_text()
    text = installer.manifest_for_build(source, "linux-x64", ["pyzmq-27-cp311-cp311-x.whl", "msgpack-1-cp311.whl"])
    data = tomllib.loads(text)
    assert data["platforms"] == ["linux-x64"]
    assert data["wheels"] == ["./wheels/pyzmq-27-cp311-cp311-x.whl", "./wheels/msgpack-1-cp311.whl"]
    assert data["permissions"]["network"] and data["id"] == "mattebox_blender"
    assert data["blender_version_min"] == "4.2.0"
    # rebuilding from a built manifest replaces, never duplicates
    again = tomllib.loads(installer.manifest_for_build(text, "windows-x64", ["a.whl"]))
    assert again["platforms"] == ["windows-x64"] and again["wheels"] == ["./wheels/a.whl"]


def test_user_extensions_dir_respects_blender_user_resources(monkeypatch, tmp_path):
    monkeypatch.setenv("BLENDER_USER_RESOURCES", str(tmp_path))
    assert installer.user_extensions_dir("5.0") == tmp_path / "extensions" / "user_default"


@pytest.fixture(scope="module")
def wheel_cache():
    sys.path.insert(0, str(ROOT / "server"))
    from mattebox.paths import cache_dir

    return cache_dir() / "wheels"


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory, wheel_cache) -> Path:
    try:
        return installer.build(tmp_path_factory.mktemp("dist"), "5.0", ["linux-x64"], wheel_dir=wheel_cache)[0]
    except RuntimeError as exc:  # pip could not reach an index
        if os.environ.get("CI"):
            raise
        pytest.skip(f"cannot fetch pyzmq/msgpack wheels: {exc}")


@pytest.mark.host
def test_zip_contents_and_blenders_own_validator(built_zip):
    with zipfile.ZipFile(built_zip) as zf:
        names = set(zf.namelist())
        manifest = tomllib.loads(zf.read("blender_manifest.toml").decode())
    assert {"__init__.py", "core.py", "scene_run.py", "headless.py", "mattebox_plugin/client.py",
            "mattebox_plugin/run.py"} <= names
    assert not any("__pycache__" in n for n in names)
    wheels = [w for w in names if w.startswith("wheels/")]
    assert sorted(w.split("/")[1].split("-")[0] for w in wheels) == ["msgpack", "pyzmq"]
    assert all(installer.wheel_fits(w.split("/")[1], "3.11") for w in wheels)
    assert set(manifest["wheels"]) == {f"./{w}" for w in wheels}
    python = blender_python_or_skip()
    validator = next(Path(str(python)).parents[1].glob("lib/python3.11/site-packages/bpy/*/scripts/addons_core/"
                                                        "bl_pkg/cli/blender_ext.py"))
    proc = subprocess.run([str(python), str(validator), "validate", str(built_zip)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success parsing TOML" in proc.stdout, proc.stdout


def test_build_for_blender_51_bundles_cp313(tmp_path, wheel_cache):
    try:
        built = installer.build(tmp_path, "5.1", ["linux-x64"], wheel_dir=wheel_cache)[0]
    except RuntimeError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"cannot fetch wheels: {exc}")
    with zipfile.ZipFile(built) as zf:
        wheels = [n for n in zf.namelist() if n.startswith("wheels/")]
    assert wheels and all(installer.wheel_fits(w.split("/")[1], "3.13") for w in wheels)
    assert not any(installer.wheel_fits(w.split("/")[1], "3.11") for w in wheels if "msgpack" in w)


def _blender_shim(tmp_path: Path, python: Path) -> str:
    """An executable `blender` that is the bpy module running Blender's extension CLI (tests/hosts/blender_shim)."""
    shim = tmp_path / "blender"
    shim.write_text(f"#!/bin/sh\nexec {python} {ROOT / 'tests' / 'hosts' / 'blender_shim.py'} \"$@\"\n")
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    return str(shim)


@pytest.mark.host
def test_install_use_doctor_uninstall_through_blenders_cli(tmp_path, monkeypatch, built_zip, server_process):
    python = blender_python_or_skip()
    endpoint = server_process().endpoint
    resources = tmp_path / "blender-user"
    monkeypatch.setenv("BLENDER_USER_RESOURCES", str(resources))
    monkeypatch.setenv("MATTEBOX_CONFIG", str(tmp_path / "client.json"))
    blender = _blender_shim(tmp_path, python)

    how = installer.install(blender=blender, zip_path=built_zip, endpoint=endpoint)
    assert "extension command line" in how
    installed = resources / "extensions" / "user_default" / "mattebox_blender"
    assert (installed / "blender_manifest.toml").is_file() and (installed / "mattebox_plugin").is_dir()

    # the installed copy works on its own: bundled client, nothing from this repo on sys.path
    result = run_blender(python, tmp_path, '''
        import sys
        setup_scene(ARGS["endpoint"], engine="passthrough")
        error, _ = report_of(lambda: bpy.ops.mattebox.matte())
        plate, inside = make_plate()
        alpha = helpers.image_array(bpy.data.images["Matte Alpha"])[..., 0]
        fg = helpers.image_array(bpy.data.images["Matte Foreground"])[..., :3]
        site = os.path.join(os.environ["BLENDER_USER_RESOURCES"], "extensions", ".local")
        synced = sorted({p.split(os.sep)[-1] for p, _, _ in os.walk(site) if p.endswith(("zmq", "msgpack"))})
        RESULT = {"error": error, "alpha_diff": float(np.abs(alpha - inside).max()),
                  "fg_diff": float(np.abs(fg - plate[..., :3]).max()),
                  "client": ext.connection.client_package().__name__,
                  "repo_on_path": any(p.rstrip("/").endswith("/plugin") for p in sys.path), "synced": synced}
    ''', mode="installed", endpoint=endpoint)
    assert result["error"] is None
    assert result["alpha_diff"] == 0.0 and result["fg_diff"] == 0.0
    assert result["client"] == "bl_ext.user_default.mattebox_blender.mattebox_plugin"
    assert not result["repo_on_path"]
    assert result["synced"] == ["msgpack", "zmq"]  # Blender installed the bundled wheels

    checks = installer.doctor(blender=blender, endpoint=endpoint)
    assert all(ok for ok, _ in checks), checks
    assert any("cp311" in message for _, message in checks)

    assert installer.uninstall(blender=blender) is True
    assert not installed.exists()
    checks = dict((msg.split(" ")[0], ok) for ok, msg in installer.doctor(blender=blender, endpoint=endpoint))
    assert checks["extension"] is False


@pytest.mark.host
def test_plain_copy_install_without_a_blender_executable(tmp_path, monkeypatch, built_zip):
    python = blender_python_or_skip()
    monkeypatch.delenv("BLENDER", raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setenv("BLENDER_USER_RESOURCES", str(tmp_path / "blender-user"))
    monkeypatch.setenv("MATTEBOX_CONFIG", str(tmp_path / "client.json"))
    how = installer.install(zip_path=built_zip, blender_version="5.0")
    assert "copied into" in how
    result = run_blender(python, tmp_path, '''
        RESULT = {"ops": sorted(dir(bpy.ops.mattebox)), "client": ext.connection.client_package().__name__}
    ''', mode="installed")
    assert "matte" in result["ops"]
    assert result["client"].endswith("mattebox_blender.mattebox_plugin")
    assert installer.uninstall(blender_version="5.0") is True
