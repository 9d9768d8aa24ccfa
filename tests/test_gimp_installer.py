"""The GIMP installer: folder layout, vendoring decisions, client config, uninstall and doctor."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from mattebox_installers import common
from mattebox_installers import gimp as installer
from tests.conftest import ROOT


def fake_wheels(folder: Path, python_version: str, platform: str):
    """Stand-in for common.vendor_wheels: two tiny wheels that record what they were asked for."""
    folder.mkdir(parents=True, exist_ok=True)
    wheels = []
    for name in ("pyzmq", "msgpack"):
        module = "zmq" if name == "pyzmq" else name
        wheel = folder / f"{name}-1.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.writestr(f"{module}/__init__.py", f"ASKED = {(python_version, platform)!r}\n")
        wheels.append(wheel)
    return wheels


def test_install_lays_out_one_folder_with_an_executable_plugin(tmp_path):
    config_file = tmp_path / "client.json"
    dest = installer.install(target=tmp_path / "plug-ins", platform="linux-x64", vendor="never",
                             endpoint="tcp://127.0.0.1:5999", config_path=config_file)
    assert dest == tmp_path / "plug-ins" / "mattebox"
    assert os.access(dest / "mattebox.py", os.X_OK)
    assert (dest / "mattebox_gimp.py").is_file() and (dest / "mattebox_plugin" / "client.py").is_file()
    assert not list(dest.rglob("__pycache__")) and not (dest / "vendor").exists()
    manifest = json.loads((dest / "INSTALLED.json").read_text())
    assert manifest["vendored"] == [] and "mattebox_plugin/protocol.py" in manifest["files"]
    cfg = json.loads(config_file.read_text())
    assert cfg["endpoint"] == "tcp://127.0.0.1:5999" and cfg["server_command"][-2:] == ["mattebox", "serve"]


def test_reinstall_replaces_what_the_old_install_wrote_and_nothing_else(tmp_path):
    dest = installer.install(target=tmp_path, platform="linux-x64", vendor="never", write_config=False)
    manifest = json.loads((dest / "INSTALLED.json").read_text())
    (dest / "stale.py").write_text("old")  # a file an older version installed and this one no longer ships
    manifest["files"]["stale.py"] = common._sha256(dest / "stale.py")
    (dest / "INSTALLED.json").write_text(json.dumps(manifest))
    (dest / "notes.txt").write_text("the artist's own")
    installer.install(target=tmp_path, platform="linux-x64", vendor="never", write_config=False)
    assert not (dest / "stale.py").exists() and (dest / "notes.txt").read_text() == "the artist's own"
    assert installer.uninstall(tmp_path, "linux-x64")
    assert [p.name for p in dest.iterdir()] == ["notes.txt"]  # the folder stays for the file it holds


@pytest.mark.parametrize("platform", ["windows-x64", "macos-arm64"])
def test_bundled_python_hosts_get_wheels_for_the_given_version(tmp_path, platform):
    dest = installer.install(target=tmp_path, platform=platform, python_version="3.12", write_config=False,
                             fetch_wheels=fake_wheels)
    assert (dest / "vendor" / "zmq" / "__init__.py").read_text() == f"ASKED = {('3.12', platform)!r}\n"
    assert json.loads((dest / "INSTALLED.json").read_text())["vendored"] == [
        "msgpack-1.0-py3-none-any.whl", "pyzmq-1.0-py3-none-any.whl"]


def test_bundled_python_without_a_version_is_refused(tmp_path):
    with pytest.raises(ValueError, match="pass python_version"):
        installer.install(target=tmp_path, platform="windows-x64", write_config=False, fetch_wheels=fake_wheels)
    assert not (tmp_path / "mattebox").exists()


def test_linux_vendors_only_when_gimps_python_lacks_the_client_deps(tmp_path):
    assert not installer.needs_vendoring("auto", "linux-x64", sys.executable)  # this venv has pyzmq + msgpack
    assert installer.needs_vendoring("auto", "linux-x64", str(tmp_path / "no-such-python"))
    assert installer.needs_vendoring("auto", "macos-x64", sys.executable)
    assert installer.needs_vendoring("always", "linux-x64", sys.executable)
    assert not installer.needs_vendoring("never", "windows-x64", sys.executable)
    with pytest.raises(ValueError, match="vendor must be one of auto, always, never"):
        installer.needs_vendoring("sometimes", "linux-x64", sys.executable)


def test_linux_vendoring_asks_gimps_python_for_its_version(tmp_path):
    dest = installer.install(target=tmp_path, platform="linux-x64", vendor="always", gimp_python=sys.executable,
                             write_config=False, fetch_wheels=fake_wheels)
    version = "%d.%d" % sys.version_info[:2]
    assert f"ASKED = {(version, 'linux-x64')!r}" in (dest / "vendor" / "zmq" / "__init__.py").read_text()


def test_uninstall_removes_the_folder_and_keeps_the_shared_config(tmp_path):
    config_file = tmp_path / "client.json"
    installer.install(target=tmp_path / "plug-ins", platform="linux-x64", vendor="never", config_path=config_file)
    assert installer.uninstall(tmp_path / "plug-ins", "linux-x64")
    assert not (tmp_path / "plug-ins" / "mattebox").exists() and config_file.is_file()
    assert not installer.uninstall(tmp_path / "plug-ins", "linux-x64")


def test_uninstall_refuses_a_folder_it_did_not_install(tmp_path):
    (tmp_path / "mattebox").mkdir()
    (tmp_path / "mattebox" / "precious.txt").write_text("not ours")
    with pytest.raises(ValueError, match="no file list from `mattebox install`.*not removing anything"):
        installer.uninstall(tmp_path, "linux-x64")
    with pytest.raises(ValueError, match="not made by `mattebox install`.*not writing into it"):
        installer.install(target=tmp_path, platform="linux-x64", vendor="never", write_config=False)
    assert [p.name for p in (tmp_path / "mattebox").iterdir()] == ["precious.txt"]


def test_plugins_dir_per_platform(monkeypatch, tmp_path):
    monkeypatch.delenv("GIMP3_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("APPDATA", str(tmp_path / "roaming"))
    assert installer.plugins_dir("linux-x64") == tmp_path / "xdg" / "GIMP" / "3.0" / "plug-ins"
    assert installer.plugins_dir("windows-x64") == tmp_path / "roaming" / "GIMP" / "3.0" / "plug-ins"
    assert installer.plugins_dir("macos-arm64").parts[-5:] == ("Library", "Application Support", "GIMP", "3.0",
                                                               "plug-ins")
    monkeypatch.setenv("GIMP3_DIRECTORY", str(tmp_path / "profile"))
    assert installer.plugins_dir("linux-x64") == tmp_path / "profile" / "plug-ins"


def test_doctor_passes_for_a_good_install_and_a_live_server(tmp_path, mattebox_server):
    installer.install(target=tmp_path, platform="linux-x64", vendor="never", write_config=False)
    ok, lines = installer.doctor(tmp_path, "linux-x64", gimp_python=sys.executable, endpoint=mattebox_server)
    assert ok, lines
    assert any("imports the client" in line and line.startswith("ok") for line in lines)
    assert any(mattebox_server in line for line in lines)


def test_doctor_reports_each_problem(tmp_path):
    ok, lines = installer.doctor(tmp_path, "linux-x64", gimp_python=sys.executable, endpoint="tcp://127.0.0.1:9")
    assert not ok and lines[0].startswith("FAIL") and "mattebox.py" in lines[0]

    dest = installer.install(target=tmp_path, platform="linux-x64", vendor="never", write_config=False)
    (dest / "mattebox.py").chmod(0o644)
    ok, lines = installer.doctor(tmp_path, "linux-x64", gimp_python=str(tmp_path / "no-python"),
                                 endpoint="tcp://127.0.0.1:9", timeout=0.5)
    failed = [line for line in lines if line.startswith("FAIL")]
    assert not ok and len(failed) == 3, lines
    assert "executable" in failed[0] and "no-python" in failed[1] and "tcp://127.0.0.1:9" in failed[2]


def test_command_line_install_and_uninstall(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(str(ROOT / p) for p in ("installers", "plugin")),
               MATTEBOX_CONFIG=str(tmp_path / "client.json"))
    run = [sys.executable, "-m", "mattebox_installers.gimp"]
    proc = subprocess.run(run + ["install", "--target", str(tmp_path), "--vendor", "never"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "Filters > Matting > Mattebox" in proc.stdout, proc.stderr
    assert (tmp_path / "client.json").is_file()
    proc = subprocess.run(run + ["uninstall", "--target", str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "removed"
