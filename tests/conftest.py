"""Shared fixtures: a real server on a random loopback port, and the tree's import paths for subprocesses."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def tree_env(**extra) -> dict:
    """Environment for subprocesses that must import this tree's packages."""
    env = dict(os.environ)
    paths = [str(ROOT / "plugin"), str(ROOT / "server"), str(ROOT / "installers"), str(ROOT)]
    env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.update(extra)
    return env


class ServerProcess:
    """`python -m mattebox serve` in a subprocess on a random loopback port."""

    def __init__(self, tmp_path: Path, *args: str):
        self.ready = tmp_path / f"endpoint-{time.monotonic_ns()}"
        self.log = open(tmp_path / "server.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "mattebox", "serve", "--endpoint",
                                      "tcp://127.0.0.1:0", "--ready-file", str(self.ready), "--device", "cpu", *args],
                                     env=tree_env(), stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 30
        while not self.ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server did not start; log: {(tmp_path / 'server.log').read_text()}")
            time.sleep(0.02)
        self.endpoint = self.ready.read_text().strip()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


@pytest.fixture(scope="session", autouse=True)
def _session_state_dir(tmp_path_factory):
    """Servers started by module- or session-wide fixtures keep their job store here, never in the user's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MATTEBOX_STATE", str(tmp_path_factory.mktemp("state")))
        yield


@pytest.fixture(autouse=True)
def _private_state_dir(tmp_path, monkeypatch):
    """Servers started by a test keep their job store in the test's own folder, never the user's state dir."""
    monkeypatch.setenv("MATTEBOX_STATE", str(tmp_path / "state"))


@pytest.fixture
def server_process(tmp_path):
    """Factory: start servers (extra CLI args allowed); all are stopped after the test."""
    started = []

    def start(*args: str) -> ServerProcess:
        server = ServerProcess(tmp_path, *args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def mattebox_server(server_process) -> str:
    """The endpoint of a real mattebox server (classical engine) on a random loopback port."""
    return server_process().endpoint


@pytest.fixture
def embedded_server():
    """A server running in this process (background thread) on a random loopback port; yields the Server."""
    from mattebox.server import Server, ServerConfig

    server = Server(ServerConfig(endpoint="tcp://127.0.0.1:0"))
    thread = server.start_background()
    yield server
    server.stop()
    thread.join(timeout=15)
