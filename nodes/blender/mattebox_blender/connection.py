"""Reach a mattebox server from Blender: the client package, the endpoint policy and starting a local server."""
from __future__ import annotations

import re
from typing import Any, Callable, Dict, List, Optional

from . import core

#: the engines (hello's list) of the server last reached in this Blender session; the Engine menu offers them
_KNOWN_ENGINES: List[Dict[str, Any]] = []


def client_package():
    """The host-neutral client (``mattebox_plugin``): the copy bundled in the built extension, else the one on
    sys.path (a development checkout). Its own dependencies, pyzmq and msgpack, come from the extension's wheels."""
    try:
        from . import mattebox_plugin as package  # bundled by installers/mattebox_installers/blender.py
    except ImportError as bundled_error:
        try:
            import mattebox_plugin as package
        except ImportError as exc:
            raise RuntimeError(f"mattebox client not importable ({bundled_error}; {exc}); reinstall the extension "
                               f"with `mattebox install blender`") from exc
    from importlib import import_module

    for name in ("client", "config", "launcher"):
        import_module(f"{package.__name__}.{name}")
    return package


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
        local = core.is_local_endpoint(endpoint)
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


def param_choices(name: str) -> List[str]:
    """The values the protocol allows for matte parameter ``name`` (e.g. 'quality'), for the panel's menus.

    ``protocol.MATTE_PARAMS`` declares them as data (``choices``) where it can; until every field does, they are
    the quoted values of the field's doc that its check accepts."""
    spec = client_package().protocol.MATTE_PARAMS[name]
    if spec.get("choices"):
        return list(spec["choices"])
    return [value for value in re.findall(r"'([^']+)'", spec["doc"]) if spec["check"] is None or spec["check"](value)]
