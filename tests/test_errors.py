"""mattebox_plugin.errors: one description of every failure for Blender, GIMP and Nuke, and a local server that
did not start says why."""
from __future__ import annotations

import sys

import pytest

from mattebox.testing.servers import free_endpoint
from mattebox_plugin import config as client_config
from mattebox_plugin.client import JobFailed, ServerUnavailable
from mattebox_plugin.errors import Cancelled, ServerNotStarted, describe_error, error_line
from mattebox_plugin.launcher import ensure_server
from mattebox_plugin.protocol import ProtocolError


def test_server_errors_keep_code_field_and_hint():
    exc = JobFailed("shape_mismatch", "mask is 4x4", field="buffers.1.shape", hint="resize")
    assert describe_error(exc) == "mask is 4x4 [shape_mismatch] (field buffers.1.shape); resize"
    assert error_line(exc) == "Mattebox: mask is 4x4 [shape_mismatch] (field buffers.1.shape); resize"
    assert describe_error(ProtocolError("too_large", "image: 20000×10 is over the server limit")) == (
        "image: 20000×10 is over the server limit [too_large]")


def test_cancel_timeouts_inputs_and_the_unexpected():
    assert describe_error(JobFailed("cancelled", "the job was cancelled")) == "cancelled"
    assert describe_error(Cancelled()) == "cancelled"
    assert describe_error(TimeoutError("job 1 did not finish within 5 s")) == (
        "timed out: job 1 did not finish within 5 s")
    assert describe_error(ValueError("frame 3: mask is 2x2")) == "frame 3: mask is 2x2"
    assert describe_error(KeyError("alpha")) == "unexpected KeyError: 'alpha'"
    assert error_line(ValueError("Mattebox cannot matte indexed images")) == "Mattebox cannot matte indexed images"


def test_an_unreachable_server_says_how_to_start_one():
    down = error_line(ServerUnavailable("no answer from tcp://127.0.0.1:1"), "tcp://127.0.0.1:1")
    assert down.startswith("Mattebox: no answer") and "mattebox serve --endpoint tcp://127.0.0.1:1" in down
    assert describe_error(ServerUnavailable("x"), None) == "x"  # no endpoint: nothing to suggest


def test_a_local_server_that_dies_is_reported_with_its_exit_status_and_log(tmp_path):
    """The launcher keeps the started server's output; the host's note quotes its end (GIMP showed only the
    command before)."""
    endpoint = free_endpoint()
    script = "import sys; print('mattebox serve: cannot load the model store (fake failure)'); sys.exit(3)"
    cfg = dict(client_config.DEFAULTS, endpoint=endpoint, timeout=2.0, server_command=[sys.executable, "-c", script])
    log = tmp_path / "server.log"
    with pytest.raises(ServerNotStarted) as caught:
        ensure_server(cfg, wait=60, log_path=str(log))
    assert caught.value.returncode == 3
    text = describe_error(caught.value, endpoint)
    assert "exited with code 3" in text and "cannot load the model store (fake failure)" in text
    assert str(log) in text


def test_a_server_command_that_does_not_exist_is_named(tmp_path):
    endpoint = free_endpoint()
    cfg = dict(client_config.DEFAULTS, endpoint=endpoint, server_command=[str(tmp_path / "no-such-mattebox")])
    with pytest.raises(ServerNotStarted, match="could not start the local mattebox server .*no-such") as caught:
        ensure_server(cfg, wait=5, log_path=str(tmp_path / "server.log"))
    assert "No such file" in describe_error(caught.value) and "log" not in describe_error(caught.value)
