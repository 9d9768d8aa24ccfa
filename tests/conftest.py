"""Shared fixtures: real servers on random loopback ports (server/mattebox/testing/servers.py starts them), each
test's own job-store folder, the checkout's ``ROOT`` and the tree's import paths for subprocesses (``tree_env``,
re-exported from mattebox.testing.servers)."""
from __future__ import annotations

from pathlib import Path

import pytest

from mattebox.testing.servers import ServerProcess, refused_endpoint, tree_env  # noqa: F401  (imported by tests)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _session_state_dir(tmp_path_factory):
    """Servers started by module- or session-wide fixtures keep their job store here, never in the user's; and
    the user's installed weights stay out of the tests (an installed U^2-Net-p changes the automatic guidance):
    the models folder is an empty one unless a test points MATTEBOX_MODELS elsewhere; the launcher's server logs
    go to a temporary folder."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MATTEBOX_STATE", str(tmp_path_factory.mktemp("state")))
        patch.setenv("MATTEBOX_MODELS", str(tmp_path_factory.mktemp("models")))
        patch.setenv("MATTEBOX_LOGS", str(tmp_path_factory.mktemp("logs")))  # logs of servers the hosts start
        yield


@pytest.fixture(autouse=True)
def _private_state_dir(tmp_path, monkeypatch):
    """Servers started by a test keep their job store in the test's own folder, never the user's state dir."""
    monkeypatch.setenv("MATTEBOX_STATE", str(tmp_path / "state"))


@pytest.fixture
def server_process(tmp_path):
    """Factory: start servers in the test's folder (extra CLI args and ServerProcess options allowed); all are
    stopped after the test."""
    started = []

    def start(*args: str, **options) -> ServerProcess:
        server = ServerProcess(tmp_path, *args, **options)
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
def down_endpoint():
    """A loopback endpoint where no server listens (and none can start) for the test: see refused_endpoint."""
    with refused_endpoint() as endpoint:
        yield endpoint


@pytest.fixture
def embedded_server():
    """A server running in this process (background thread) on a random loopback port; yields the Server."""
    from mattebox.server import Server, ServerConfig

    server = Server(ServerConfig(endpoint="tcp://127.0.0.1:0"))
    thread = server.start_background()
    yield server
    server.stop()
    thread.join(timeout=15)


@pytest.fixture
def one_torch_thread():
    """One torch intra-op thread for the test (restored after): on an oversubscribed shared machine small models
    run far faster (~10x for the tiny ones) than with a thread per core."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
