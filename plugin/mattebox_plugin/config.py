"""Client configuration shared by every host plug-in: where the server is and how to start one.

The file is JSON (Python 3.9 hosts have no tomllib): ``$MATTEBOX_CONFIG`` or ``~/.config/mattebox/client.json``.
Keys: ``endpoint``, ``timeout`` (seconds of server silence tolerated), ``server_public_key`` (CURVE, Z85 text, for
remote servers), ``client_public_key``/``client_secret_key`` (a registered client pair, when the server
authenticates clients), ``server_command`` (argv list that starts a local server; the installers write it).
``$MATTEBOX_ENDPOINT`` overrides the endpoint.
"""
from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path
from typing import Any, Dict, Optional
from urllib.parse import urlparse

#: where clients look for a server and `mattebox serve` listens unless told otherwise
DEFAULT_ENDPOINT = "tcp://127.0.0.1:23517"

DEFAULTS: Dict[str, Any] = {
    "endpoint": DEFAULT_ENDPOINT,
    "timeout": 30.0,
    "server_public_key": None,
    "client_public_key": None,
    "client_secret_key": None,
    "server_command": None,
}


def config_path() -> Path:
    env = os.environ.get("MATTEBOX_CONFIG")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "mattebox" / "client.json"


def load(path: Optional[Path] = None) -> Dict[str, Any]:
    """The effective configuration: defaults, then the file (if any), then $MATTEBOX_ENDPOINT."""
    cfg = dict(DEFAULTS)
    path = Path(path) if path else config_path()
    if path.is_file():
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object")
        unknown = set(data) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"{path}: unknown keys {sorted(unknown)}; known: {sorted(DEFAULTS)}")
        cfg.update(data)
    if os.environ.get("MATTEBOX_ENDPOINT"):
        cfg["endpoint"] = os.environ["MATTEBOX_ENDPOINT"]
    return cfg


def save(values: Dict[str, Any], path: Optional[Path] = None) -> Path:
    """Write (merge) values into the config file; returns its path. A config holding a secret (a CURVE
    ``client_secret_key``) is created mode 600 from its first byte, never readable by others in between."""
    path = Path(path) if path else config_path()
    current: Dict[str, Any] = {}
    if path.is_file():
        with open(path, encoding="utf-8") as fh:
            current = json.load(fh)
    current.update(values)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    if os.path.lexists(tmp):
        os.unlink(tmp)  # left by an interrupted save; never written through
    mode = 0o600 if current.get("client_secret_key") else 0o666  # 666: the umask decides, as before
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(current, fh, indent=2)
    os.replace(tmp, path)
    return path


def client_kwargs(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """Keyword arguments for :class:`mattebox_plugin.client.Client` from a config."""
    return {"endpoint": cfg["endpoint"], "timeout": float(cfg["timeout"]),
            "server_public_key": cfg.get("server_public_key"), "client_public_key": cfg.get("client_public_key"),
            "client_secret_key": cfg.get("client_secret_key")}


def is_loopback(endpoint: str) -> bool:
    """True for ipc://, inproc:// and tcp:// endpoints on a loopback address: this machine only. The server binds
    without CURVE only there; Blender counts any other endpoint as online access."""
    scheme = endpoint.split("://", 1)[0]
    if scheme in ("ipc", "inproc"):
        return True
    try:
        host = urlparse(endpoint).hostname or ""
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # an interface name or '*': not loopback
