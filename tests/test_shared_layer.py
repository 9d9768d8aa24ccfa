"""The host-neutral layer's data: parameter choices hosts build menus from, typed progress events, the endpoint
policy. (Frame ranges: test_frames.py; errors: test_errors.py; the frame run: test_frame_run.py.)"""
from __future__ import annotations

import subprocess
import sys

import pytest

from mattebox_plugin import config, protocol
from mattebox_plugin.protocol import ProgressEvent, ProtocolError, param_bounds, param_choices, validate_params

from .conftest import ROOT, tree_env


def test_choices_are_data_and_the_check_is_made_from_them():
    assert param_choices("quality") == ("fast", "balanced", "best")
    assert param_choices("quality", default_first=True) == ("balanced", "fast", "best")  # Nuke: first = default
    assert param_choices("segmenter") == ("auto", "grabcut")
    assert param_bounds("band_width") == (0, 2000)
    for name, spec in protocol.MATTE_PARAMS.items():
        for value in spec["choices"] or ():
            assert validate_params({name: value})[name] == value
    with pytest.raises(ProtocolError, match="expected one of 'fast', 'balanced', 'best'") as caught:
        validate_params({"quality": "ultra"})
    assert caught.value.field == "params.quality"
    with pytest.raises(ProtocolError, match="expected 0 to 2000"):
        validate_params({"band_width": 2001})
    with pytest.raises(KeyError, match="no fixed choices"):
        param_choices("engine")
    assert protocol.choice_label("blur_fusion") == "Blur fusion"


def test_host_menus_come_from_the_protocol(monkeypatch):
    """GIMP's quality choice and band-width range list exactly the protocol's values (Nuke's knob:
    test_nuke_node.py::test_build_makes_the_documented_node)."""
    monkeypatch.syspath_prepend(str(ROOT / "nodes" / "gimp" / "mattebox"))
    import mattebox_gimp as mg

    assert list(mg.QUALITIES) == list(param_choices("quality")) and mg.DEFAULT_QUALITY == "balanced"
    assert (mg.BAND_WIDTH_MIN, mg.BAND_WIDTH_MAX) == param_bounds("band_width")


def test_the_parameter_data_imports_without_msgpack():
    """Hosts register their menus before their vendored wheels are importable: protocol's data needs no msgpack,
    and encoding without it says what is missing."""
    code = ("import sys; sys.modules['msgpack'] = None\n"
            "from mattebox_plugin import protocol\n"
            "assert protocol.param_choices('quality')\n"
            "try:\n    protocol.encode({'op': 'hello'})\nexcept ImportError as exc:\n    print(exc)\n")
    proc = subprocess.run([sys.executable, "-c", code], env=tree_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "needs the msgpack package" in proc.stdout


def test_progress_events_are_typed():
    event = ProgressEvent.from_header({"op": "progress", "stage": "solve", "done": 3, "total": 4, "message": "tile 3",
                                       "state": protocol.RUNNING})
    assert event.fraction == 0.75 and event.text() == "solve 3/4 — tile 3" and event.state == "running"
    assert ProgressEvent.from_header({"stage": "solve", "done": 9, "total": 4}).fraction == 1.0
    start = ProgressEvent.from_header({"stage": None, "done": None, "total": 0})
    assert start.fraction is None and start.text() == "working"
    assert protocol.JOB_STATES == ("queued", "running", "done", "failed", "cancelled")


def test_one_default_endpoint_and_one_loopback_rule():
    from mattebox.server import ServerConfig
    from mattebox_plugin.client import Client

    assert config.DEFAULTS["endpoint"] == ServerConfig().endpoint == config.DEFAULT_ENDPOINT
    with Client() as client:
        assert client.endpoint == config.DEFAULT_ENDPOINT
    for endpoint in ("tcp://127.0.0.1:23517", "tcp://localhost:1", "ipc:///tmp/mattebox", "tcp://[::1]:5",
                     "tcp://127.4.0.1:9", "inproc://x"):
        assert config.is_loopback(endpoint), endpoint
    for endpoint in ("tcp://10.0.0.5:23517", "tcp://0.0.0.0:1", "tcp://*:1", "tcp://[::1:5"):
        assert not config.is_loopback(endpoint), endpoint
