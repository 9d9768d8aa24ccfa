"""Reach a mattebox server from Blender: the client package, the endpoint policy and starting a local server."""
from __future__ import annotations

import sys
from importlib import import_module
from typing import Any, Callable, Dict, List, Optional


#: the engines (hello's list) of the server last reached in this Blender session; the Engine menu offers them
_KNOWN_ENGINES: List[Dict[str, Any]] = []


def plugin_module(name: str):
    """A module of the host-neutral layer (``mattebox_plugin.<name>``): the copy bundled in the built extension,
    else the one on sys.path (a development checkout). ``frames``, ``errors``, ``protocol`` and ``run`` need no
    third-party package; ``client`` needs pyzmq and msgpack, which come from the extension's wheels."""
    try:
        from . import mattebox_plugin as package  # bundled by installers/mattebox_installers/blender.py
    except ImportError as bundled_error:
        try:
            import mattebox_plugin as package
        except ImportError as exc:
            raise RuntimeError(f"mattebox client not importable ({bundled_error}; {exc}); reinstall the extension "
                               f"with `mattebox install blender`") from exc
    return import_module(f"{package.__name__}.{name}")


def client_package():
    """The host-neutral client package with its ``client``, ``config`` and ``launcher`` modules imported."""
    for name in ("errors", "client", "config", "launcher"):
        module = plugin_module(name)
    return sys.modules[module.__package__]


def make_connect(endpoint: str, timeout: float, server_command: Optional[List[str]], auto_start: bool,
                 online_access: bool, start_wait: float = 20.0) -> Callable[[], Any]:
    """A function (run on a worker thread) that returns a client whose handshake succeeded.

    Local endpoints (loopback, ipc) are always allowed and, with ``auto_start``, a server is started there when
    none answers. Other endpoints count as online access and need Blender's "Allow Online Access".
    """
    def connect():
        package = client_package()
        cfg = package.config.load()
        cfg.update(endpoint=endpoint, timeout=float(timeout))
        if server_command:
            cfg["server_command"] = server_command
        local = package.config.is_loopback(endpoint)
        if not local and not online_access:
            raise RuntimeError(f"mattebox: {endpoint} is not on this machine and Blender's online access is off "
                               f"(Preferences > System > Network > Allow Online Access)")
        if local and auto_start:
            package.launcher.ensure_server(cfg, wait=start_wait)
        elif local and not package.launcher.port_open(endpoint):
            raise package.client.ServerUnavailable(
                f"no mattebox server at {endpoint}; start one with `mattebox serve --endpoint {endpoint}` "
                f"or enable 'Start a local server' in the extension's preferences")
        client = package.client.Client(**package.config.client_kwargs(cfg))
        try:
            remember_engines(client.hello())
        except BaseException:
            client.close()
            raise
        return client

    return connect


def remember_engines(hello: Dict[str, Any]) -> None:
    """Keep a handshake's engine list for the Engine menu (any thread: one list assignment)."""
    global _KNOWN_ENGINES
    _KNOWN_ENGINES = list(hello.get("engines") or [])


def known_engines() -> List[Dict[str, Any]]:
    return _KNOWN_ENGINES
