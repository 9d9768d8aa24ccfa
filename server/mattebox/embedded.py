"""Find a server to talk to, or run one inside this process for the duration of a command."""
from __future__ import annotations

import contextlib
import os
import tempfile
from typing import TYPE_CHECKING, Callable, Iterator, Optional

from mattebox_plugin import config as client_config

if TYPE_CHECKING:
    from mattebox_plugin.client import Client


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


def configured(endpoint: Optional[str] = None) -> dict:
    """The client config (mattebox_plugin.config) with ``endpoint``, when given, in place of the configured one:
    the configured CURVE keys apply to either (a local server started for a command takes none)."""
    cfg = client_config.load()
    if endpoint:
        cfg["endpoint"] = endpoint
    return cfg


def client_kwargs(cfg: dict, timeout: float) -> dict:
    """Keyword arguments of :class:`mattebox_plugin.client.Client` for the server ``cfg`` names (its keys)."""
    return dict(client_config.client_kwargs(cfg), timeout=timeout)


def answering_server(endpoint: Optional[str] = None, local: bool = False) -> Optional[str]:
    """The endpoint of a running server (``endpoint`` or the configured one) if it answers, else None (``local``:
    None without asking). An explicitly given ``endpoint`` that does not answer is an error (the user asked for
    that server)."""
    if local:
        return None
    from mattebox_plugin.launcher import server_answers  # pyzmq: not imported by a --local command

    cfg = configured(endpoint)
    if server_answers(cfg, timeout=2.0):
        return cfg["endpoint"]
    if endpoint:
        raise SystemExit(f"mattebox: no server answers at {endpoint}")
    return None


@contextlib.contextmanager
def server_connection(endpoint: Optional[str] = None, local: bool = False,
                      timeout: float = 60.0) -> Iterator[Callable[[], "Client"]]:
    """A function that opens a :class:`~mattebox_plugin.client.Client` for a command's frames: to ``endpoint`` when
    one is given (asked first, for 2 s, on every open: a server that is down is ServerUnavailable at once, and a
    caller with a cache goes on offline), else to the configured server if it answers, else to a local server
    run for the duration."""
    from mattebox_plugin.client import Client
    from mattebox_plugin.errors import ServerUnavailable
    from mattebox_plugin.launcher import server_answers

    if not local:
        cfg = configured(endpoint)
        if endpoint:
            def connect() -> Client:
                if not server_answers(cfg, timeout=2.0):
                    raise ServerUnavailable(f"no server answers at {endpoint} (--endpoint)")
                return Client(**client_kwargs(cfg, timeout))

            yield connect
            return
        if server_answers(cfg, timeout=2.0):
            yield lambda: Client(**client_kwargs(cfg, timeout))
            return
    with local_server() as embedded:
        yield lambda: Client(embedded, timeout=timeout)
