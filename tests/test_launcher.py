"""mattebox_plugin.launcher: a local server that does not start is explained from its own log."""
from __future__ import annotations

import socket
import sys

import pytest

from mattebox_plugin.client import ServerUnavailable
from mattebox_plugin.launcher import ensure_server, log_tail


def free_endpoint() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{sock.getsockname()[1]}"


def test_a_server_that_exits_is_explained_by_its_logs_last_lines(tmp_path):
    log = tmp_path / "server.log"
    log.write_text("an older run's line\n")
    crash = "import sys; print('starting'); sys.exit('ModuleNotFoundError: No module named torch')"
    cfg = {"endpoint": free_endpoint(), "server_command": [sys.executable, "-c", crash], "timeout": 1.0}
    with pytest.raises(ServerUnavailable) as caught:
        ensure_server(cfg, wait=30, log_path=str(log))
    message = str(caught.value)
    assert "exited with code 1" in message
    assert f"its log ({log}) ends: " in message and message.endswith("No module named torch")


def test_log_tail_keeps_the_last_non_empty_lines_and_is_empty_without_a_log(tmp_path):
    log = tmp_path / "server.log"
    log.write_text("one\n\ntwo\nthree\n   \nfour\nfive\n")
    assert log_tail(str(log)) == "two | three | four | five"
    assert log_tail(str(log), lines=1) == "five"
    assert log_tail(str(tmp_path / "missing.log")) == ""
    assert log_tail(None) == ""
