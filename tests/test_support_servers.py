"""server/mattebox/testing/servers.py, the one way tests and benches start `mattebox serve`: a failed start says why, a
temporary server keeps its job store in its own folder and removes it on stop, and the busy-replica wait."""
from __future__ import annotations

import pytest

from mattebox_plugin.client import Client

from mattebox.testing.servers import ServerProcess, wait_for_busy_replica


def test_a_server_that_exits_at_start_raises_with_its_log_tail(tmp_path):
    with pytest.raises(RuntimeError) as failure:
        ServerProcess(tmp_path, "--no-such-option")
    message = str(failure.value)
    assert "exited with code 2 before it was ready" in message
    assert "unrecognized arguments: --no-such-option" in message


def test_temporary_server_keeps_its_store_in_its_folder_and_removes_it(monkeypatch):
    monkeypatch.delenv("MATTEBOX_STATE")  # the folder must come from state_dir, not the test's state dir
    server = ServerProcess.temporary("--log-level", "warning", device=None)
    try:
        assert server.endpoint.startswith("tcp://127.0.0.1:") and not server.endpoint.endswith(":0")
        with Client(server.endpoint, timeout=10) as client:
            assert client.hello()["protocol"] == 1
        assert server.alive() and server.rss_mb() > 1
        assert (server.folder / "state" / "jobs.sqlite3").exists()
    finally:
        code = server.stop()
    assert code == 0 and not server.alive() and not server.folder.exists()
    assert server.stop() == 0  # a second stop is harmless


class _FakeClusterClient:
    """Answers status() with the given replica tables in turn (the last one repeats)."""

    def __init__(self, *tables):
        self.tables = list(tables)

    def status(self):
        table = self.tables.pop(0) if len(self.tables) > 1 else self.tables[0]
        return {"cluster": {"replicas": table}}


def test_wait_for_busy_replica_returns_the_first_live_busy_one_or_none():
    idle = {"r0": {"job": None, "alive": True, "pid": 1}, "r1": {"job": "j1", "alive": False, "pid": 2}}
    busy = dict(idle, r2={"job": "j2", "alive": True, "pid": 3})
    assert wait_for_busy_replica(_FakeClusterClient(idle, idle, busy), timeout=5, poll=0.001)["pid"] == 3
    assert wait_for_busy_replica(_FakeClusterClient(idle), timeout=0.05, poll=0.01) is None
