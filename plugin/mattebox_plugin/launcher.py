"""Start a local mattebox server for a host when none answers (the host's "just works" path)."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from typing import Any, Dict, Optional
from urllib.parse import urlparse

from .client import Client
from .config import client_kwargs
from .errors import ServerNotStarted, ServerUnavailable


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


def default_log_path(endpoint: str) -> str:
    """Where a server this launcher starts writes its output: ``server-<endpoint>.log`` in ``$MATTEBOX_LOGS``, else
    ``logs`` in mattebox's cache folder (``$MATTEBOX_CACHE``, else ``$XDG_CACHE_HOME/mattebox``, else
    ``~/.cache/mattebox``, as the server's); one file per endpoint, rewritten at each start so its end is this
    start's."""
    folder = os.environ.get("MATTEBOX_LOGS") or os.path.join(
        os.environ.get("MATTEBOX_CACHE") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "mattebox"), "logs")
    name = re.sub(r"[^A-Za-z0-9.-]+", "_", endpoint.split("://", 1)[-1]).strip("_") or "server"
    return os.path.join(folder, f"server-{name}.log")


def log_tail(path: str, chars: int = 4000) -> str:
    """The last ``chars`` characters of a log file ("" when it cannot be read)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - chars))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def ensure_server(cfg: Dict[str, Any], wait: float = 15.0, log_path: Optional[str] = None) -> str:
    """Return the endpoint of a server that answers hello, starting ``cfg['server_command']`` if needed.

    The started server is detached (its own session) so it outlives the host's operator and serves later calls;
    its output goes to ``log_path`` (default :func:`default_log_path`). Raises ServerUnavailable naming the
    endpoint and what to do when none is configured, and without starting anything when the port is open but
    nothing answers hello there, neither to a quick probe nor within the config's ``timeout`` (a busy server or a
    loaded machine can miss the quick one); ServerNotStarted (with the exit status and the end of the log) when
    the started one exits or does not answer within ``wait`` s.
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
    log_path = log_path or default_log_path(endpoint)
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    kwargs: Dict[str, Any] = {"stdin": subprocess.DEVNULL, "stderr": subprocess.STDOUT}
    if sys.platform == "win32":
        kwargs["creationflags"] = getattr(subprocess, "DETACHED_PROCESS", 0) | getattr(
            subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
    else:
        kwargs["start_new_session"] = True
    with open(log_path, "wb") as log:
        try:
            proc = subprocess.Popen(argv, stdout=log, **kwargs)
        except OSError as exc:  # the command itself is missing or not executable
            raise ServerNotStarted(f"could not start the local mattebox server {argv}: {exc}; check "
                                   f"server_command in the client config (`mattebox install HOST` records it)",
                                   command=argv) from None  # nothing ran: no log to quote
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerNotStarted(f"the local mattebox server exited with code {proc.returncode}: {argv}",
                                   command=argv, returncode=proc.returncode, log_path=log_path,
                                   log_tail=log_tail(log_path))
        if server_answers(cfg, timeout=1.0):
            return endpoint
        time.sleep(0.2)
    raise ServerNotStarted(f"started {argv} but nothing answered at {endpoint} within {wait} s", command=argv,
                           log_path=log_path, log_tail=log_tail(log_path))
