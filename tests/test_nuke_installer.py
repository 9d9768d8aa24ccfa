"""Nuke installer: install/uninstall idempotency in a temp HOME, start-up through the installed files, doctor."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from mattebox_installers import common
from mattebox_installers import nuke as nuke_installer
from tests.support.fake_nuke import FAKE_NUKE_T, NODE_DIR

sys.path.insert(0, str(NODE_DIR)) if str(NODE_DIR) not in sys.path else None

USER_INIT = "import nuke\nnuke.pluginAddPath('./gizmos')  # the artist's own line\n"


def _fake_wheel(folder: Path, name: str) -> Path:
    """A tiny wheel whose package records that it is the vendored copy."""
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{name}-0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(f"{name}/__init__.py", "VENDORED = True\n")
    return wheel


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A temp HOME with the artist's own ~/.nuke/init.py; wheel downloads replaced by tiny local wheels."""
    home = tmp_path / "home"
    (home / ".nuke").mkdir(parents=True)
    (home / ".nuke" / "init.py").write_text(USER_INIT)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("MATTEBOX_CONFIG", str(tmp_path / "client.json"))
    def vendor_wheels(target_dir, python_version="3.11", platform=None):
        wheel_calls.append((python_version, platform))
        return [_fake_wheel(Path(target_dir), "zmq"), _fake_wheel(Path(target_dir), "msgpack")]

    monkeypatch.setattr(common, "vendor_wheels", vendor_wheels)
    wheel_calls.clear()
    return home


#: (python_version, platform) of each vendor_wheels call made under the ``home`` fixture
wheel_calls: list = []


def _start_nuke(tmp_path, home: Path, nuke_path: str = "", code: str = "") -> subprocess.CompletedProcess:
    """Terminal-mode Nuke start-up with the fake nuke (no PYTHONPATH: only the installed init.py may help)."""
    script = tmp_path / "probe.py"
    script.write_text(code)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HOME=str(home), NUKE_PATH=nuke_path)
    return subprocess.run([sys.executable, str(FAKE_NUKE_T), str(script)], env=env, capture_output=True, text=True,
                          timeout=60)


PROBE = """
import mattebox_nuke, mattebox_plugin, zmq, msgpack
print(mattebox_nuke.__file__)
print(mattebox_plugin.__file__)
print(getattr(zmq, "VENDORED", False), getattr(msgpack, "VENDORED", False))
"""


def test_install_is_idempotent_and_loads_in_every_mode(home, tmp_path):
    dest = nuke_installer.install(endpoint="tcp://127.0.0.1:23599")
    nuke_installer.install(endpoint="tcp://127.0.0.1:23599")  # twice == once
    init_text = (home / ".nuke" / "init.py").read_text()
    assert init_text.startswith(USER_INIT)  # the artist's lines are kept, ours appended
    assert init_text.count(nuke_installer.BEGIN) == 1 and init_text.count(nuke_installer.END) == 1
    assert f"nuke.pluginAddPath({dest.as_posix()!r})" in init_text
    for abi in ("cp39", "cp310", "cp311"):
        assert (dest / "site-packages" / abi / "zmq" / "__init__.py").is_file()
    assert sorted(v for v, _ in wheel_calls) == ["3.10", "3.10", "3.11", "3.11", "3.9", "3.9"]
    manifest = nuke_installer.read_manifest(dest)
    assert manifest["python_versions"] == ["3.9", "3.10", "3.11"] and manifest["created_init_py"] is False
    assert '"endpoint": "tcp://127.0.0.1:23599"' in (tmp_path / "client.json").read_text()
    # terminal-mode start-up (nuke -t / -x): the installed copies are imported, with this Python's vendored wheels
    proc = _start_nuke(tmp_path, home, code=PROBE)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split("\n")
    assert lines[0].startswith(str(dest / "mattebox_nuke")) and lines[1].startswith(str(dest / "mattebox_plugin"))
    assert lines[2] == "True True"


def test_gui_startup_adds_the_toolbar_entry(home, tmp_path):
    nuke_installer.install(vendor=False, write_config=False)
    code = "import nuke\nprint(nuke.toolbar('Nodes').findItem('Mattebox/Mattebox') is not None)\n"
    script = tmp_path / "gui.py"
    script.write_text(code)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HOME=str(home), NUKE_PATH="", FAKE_NUKE_GUI="1")
    proc = subprocess.run([sys.executable, str(FAKE_NUKE_T), str(script)], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True"


def test_uninstall_restores_init_py(home):
    dest = nuke_installer.install(vendor=False, write_config=False)
    assert nuke_installer.uninstall() is True
    assert (home / ".nuke" / "init.py").read_text() == USER_INIT
    assert not dest.exists()
    assert nuke_installer.uninstall() is False  # twice == once


def test_nuke_path_folder_install_and_clean_removal(home, tmp_path):
    studio = tmp_path / "studio_nuke"
    dest = nuke_installer.install(studio, python_versions=("3.11",), write_config=False)
    assert (studio / "init.py").is_file() and nuke_installer.read_manifest(dest)["created_init_py"] is True
    proc = _start_nuke(tmp_path, home, nuke_path=str(studio), code=PROBE)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[0].startswith(str(dest))
    nuke_installer.uninstall(studio)
    assert not (studio / "init.py").exists() and not dest.exists()  # we created init.py, so it goes too
    assert (home / ".nuke" / "init.py").read_text() == USER_INIT


def test_mattebox_cli_install_and_uninstall(home, tmp_path):
    """`mattebox install nuke ...` forwards to this installer (server/mattebox/commands/hosts.py)."""
    from tests.conftest import tree_env

    env = tree_env(HOME=str(home), MATTEBOX_CONFIG=str(tmp_path / "client.json"))
    studio = tmp_path / "studio"
    run = [sys.executable, "-m", "mattebox"]
    proc = subprocess.run(run + ["install", "nuke", "--target", str(studio), "--no-vendor", "--no-config"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "installed the Mattebox node in" in proc.stdout and (studio / "mattebox" / "init.py").is_file()
    (studio / "init.py").write_text(nuke_installer.BEGIN + "\n")  # damaged by hand: a clear error, exit 1
    proc = subprocess.run(run + ["install", "nuke", "--target", str(studio), "--no-vendor", "--no-config"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "error: unterminated mattebox block" in proc.stderr
    (studio / "init.py").write_text("")
    proc = subprocess.run(run + ["uninstall", "nuke", "--target", str(studio)], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and not (studio / "mattebox").exists()


def test_unterminated_block_is_refused(home):
    init_py = home / ".nuke" / "init.py"
    init_py.write_text(USER_INIT + nuke_installer.BEGIN + "\nimport nuke\n")
    with pytest.raises(ValueError, match="unterminated mattebox block"):
        nuke_installer.install(vendor=False, write_config=False)
    assert not (home / ".nuke" / "mattebox").exists()  # nothing half-installed


def test_doctor(home, mattebox_server, tmp_path):
    ok, lines = nuke_installer.doctor(endpoint=mattebox_server)
    assert not ok and any(line.startswith("FAIL  not installed") for line in lines)
    nuke_installer.install(write_config=False)
    ok, lines = nuke_installer.doctor(endpoint=mattebox_server)
    assert ok, lines
    assert any("Python 3.10 (Nuke 15): pyzmq+msgpack vendored" in line for line in lines)
    assert any(line.startswith("ok    server: mattebox") for line in lines)
    shutil.rmtree(home / ".nuke" / "mattebox" / "site-packages" / "cp39" / "zmq")
    ok, lines = nuke_installer.doctor(endpoint=mattebox_server)
    assert not ok and any("FAIL  Python 3.9 (Nuke 13/14)" in line for line in lines)


def _python39():
    """A working Python 3.9 (pyenv's shims may exist without the version being selected)."""
    import glob

    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    for candidate in sorted(glob.glob(os.path.join(root, "versions", "3.9*", "bin", "python3.9"))) + [
            shutil.which("python3.9")]:
        if candidate and subprocess.run([candidate, "-c", "pass"], capture_output=True).returncode == 0:
            return candidate
    return None


PYTHON39 = _python39()


NO_NUMPY_FRAME = """
import sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
from mattebox_nuke import job
from mattebox_plugin import exr
from mattebox_plugin.client import Client
from mattebox_plugin.run import FrameRun
assert not exr.have_numpy(), "this check wants a Python without numpy, like some Nuke builds"
settings = job.Settings("Mattebox1", sys.argv[4], engine="passthrough", guide="mask")
store = job.ResultStore(settings)
run = FrameRun([7], lambda: Client(sys.argv[3], timeout=20),
               lambda frame: job.read_request(settings, frame, {"plate": True, "guide": True}), store.write,
               cache=store, outputs=settings.outputs, key_extra=settings.key_extra())
assert run.wait() == "finished", run.error
print(run.hello["protocol"])
print(settings.result_path(7))
"""


@pytest.mark.slow
@pytest.mark.skipif(PYTHON39 is None, reason="needs a Python 3.9 interpreter (Nuke 13/14's)")
def test_real_wheels_and_a_frame_under_nuke_14_python_without_numpy(tmp_path, monkeypatch, mattebox_server):
    """Real pyzmq/msgpack cp39 wheels from the package index, used by a real Python 3.9 that has no numpy (as
    some Nuke builds): the installed client shakes hands with a real server and the installed node mattes one
    frame from rendered input EXRs; the result is checked bit for bit here, with numpy."""
    import numpy as np

    from mattebox_plugin import exr

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MATTEBOX_CONFIG", str(tmp_path / "client.json"))
    dest = nuke_installer.install(python_versions=("3.9",), write_config=False)
    cache = tmp_path / "cache"
    rng = np.random.default_rng(9)
    plate = {c: rng.random((20, 30), dtype=np.float32) for c in "RGBA"}
    mask = {"A": (rng.random((20, 30)) > 0.5).astype(np.float32)}
    (cache / "Mattebox1" / "in").mkdir(parents=True)
    exr.write(str(cache / "Mattebox1" / "in" / "plate.0007.exr"), 30, 20, plate, "none")
    exr.write(str(cache / "Mattebox1" / "in" / "guide.0007.exr"), 30, 20, mask, "zips")
    proc = subprocess.run([PYTHON39, "-c", NO_NUMPY_FRAME, str(dest / "site-packages" / "cp39"), str(dest),
                           mattebox_server, str(cache)], capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert proc.returncode == 0, proc.stderr
    protocol, path = proc.stdout.split()
    assert protocol == "1" and path.endswith("Mattebox1/result.0007.exr")
    result = exr.read(path)
    assert np.array_equal(result.planes["A"], mask["A"])
    for c in "RGB":
        assert np.array_equal(result.planes[c], plate[c])
