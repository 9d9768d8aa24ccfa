"""Find a server to talk to, or run one inside this process for the duration of a command."""
from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Iterator, Optional

from mattebox_plugin import config as client_config
from mattebox_plugin.launcher import server_answers


@contextlib.contextmanager
def local_server(device: str = "cpu") -> Iterator[str]:
    """Run a server in a background thread on a private ipc:// socket; yields its endpoint."""
    from .server import Server, ServerConfig

    folder = tempfile.mkdtemp(prefix="mattebox-")
    endpoint = f"ipc://{os.path.join(folder, 'server.sock')}"
    server = Server(ServerConfig(endpoint=endpoint, device=device))
    thread = server.start_background()
    try:
        yield server.bound_endpoint
    finally:
        server.stop()
        thread.join(timeout=15)
        with contextlib.suppress(OSError):
            os.rmdir(folder)


def answering_server(endpoint: Optional[str] = None, local: bool = False) -> Optional[str]:
    """The endpoint of a running server (``endpoint`` or the configured one) if it answers, else None (``local``:
    None without asking). An explicitly given ``endpoint`` that does not answer is an error (the user asked for
    that server)."""
    if local:
        return None
    cfg = client_config.load()
    if endpoint:
        cfg["endpoint"] = endpoint
    if server_answers(cfg, timeout=2.0):
        return cfg["endpoint"]
    if endpoint:
        raise SystemExit(f"mattebox: no server answers at {endpoint}")
    return None


@contextlib.contextmanager
def server_endpoint(endpoint: Optional[str] = None, local: bool = False) -> Iterator[str]:
    """The endpoint of a running server (:func:`answering_server`), else of a local one for the duration."""
    running = answering_server(endpoint, local)
    if running is not None:
        yield running
        return
    with local_server() as embedded:
        yield embedded
