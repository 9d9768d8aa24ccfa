"""Start a local mattebox server for a host when none answers (the host's "just works" path)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from typing import Any, Dict, Optional
from urllib.parse import urlparse

from .client import Client, ServerUnavailable
from .config import client_kwargs


def port_open(endpoint: str, timeout: float = 0.2) -> bool:
    """Cheap reachability probe without ZeroMQ: a TCP connect for tcp://, the socket file for ipc://."""
    if endpoint.startswith("ipc://"):
        return os.path.exists(endpoint[len("ipc://"):])
    parsed = urlparse(endpoint)
    if parsed.scheme != "tcp" or parsed.port is None:
        return True  # unknown transport: let the handshake decide
    try:
        with socket.create_connection((parsed.hostname, parsed.port), timeout=timeout):
            return True
    except OSError:
        return False


def server_answers(cfg: Dict[str, Any], timeout: float = 2.0) -> bool:
    if not port_open(cfg["endpoint"]):
        return False
    kwargs = dict(client_kwargs(cfg), timeout=timeout)
    client = Client(**kwargs)
    try:
        client.hello()
        return True
    except (ServerUnavailable, Exception):
        return False
    finally:
        client.close()


def ensure_server(cfg: Dict[str, Any], wait: float = 15.0, log_path: Optional[str] = None) -> str:
    """Return the endpoint of a server that answers hello, starting ``cfg['server_command']`` if needed.

    The started server is detached (its own session) so it outlives the host's operator and serves later calls.
    Raises ServerUnavailable naming the endpoint and the command when nothing answers within ``wait`` s, and
    without starting anything when the port is open but nothing answers hello there, neither to a quick probe nor
    within the config's ``timeout`` (a busy server or a loaded machine can miss the quick one).
    """
    endpoint = cfg["endpoint"]
    if server_answers(cfg):
        return endpoint
    if endpoint.startswith("tcp://") and port_open(endpoint):
        if server_answers(cfg, timeout=float(cfg["timeout"])):  # the quick probe missed a busy or loaded server
            return endpoint
        raise ServerUnavailable(f"something listens at {endpoint} but does not answer as a mattebox server (another "
                                f"program holds the port, or a server that wants CURVE keys this host lacks), so "
                                f"no local server can start there: free the port, or set another \"endpoint\" in "
                                f"the client config")
    command = cfg.get("server_command")
    if not command:
        raise ServerUnavailable(f"no mattebox server at {endpoint} and no server_command configured; start one "
                                f"with `mattebox serve --endpoint {endpoint}` or run `mattebox install HOST`")
    argv = list(command) + ["--endpoint", endpoint]
    log = open(log_path or os.devnull, "ab")
    kwargs: Dict[str, Any] = {"stdout": log, "stderr": log, "stdin": subprocess.DEVNULL}
    if sys.platform == "win32":
        kwargs["creationflags"] = getattr(subprocess, "DETACHED_PROCESS", 0) | getattr(
            subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
    else:
        kwargs["start_new_session"] = True
    proc = subprocess.Popen(argv, **kwargs)
    log.close()
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerUnavailable(f"the local mattebox server exited with code {proc.returncode}: {argv}; "
                                    + (f"its log: {log_path}" if log_path else "run it in a terminal to see why"))
        if server_answers(cfg, timeout=1.0):
            return endpoint
        time.sleep(0.2)
    raise ServerUnavailable(f"started {argv} but nothing answered at {endpoint} within {wait} s")
