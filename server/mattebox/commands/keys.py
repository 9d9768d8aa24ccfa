"""`mattebox keys --out DIR`: CURVE key pairs for a remote server and its clients (pyzmq's zmq.auth format).

Writes ``DIR/server.key`` (public) + ``DIR/server.key_secret`` (the pair, for ``mattebox serve
--curve-secret-key``), one pair per client ``DIR/NAME.key`` + ``DIR/NAME.key_secret``, and copies each client's
public key into ``DIR/clients/`` (the folder of allowed clients, for ``--curve-clients``). Adding a client later
is ``mattebox keys --out DIR --client NAME --no-server``. With ``--client-config PATH`` the client's pair and the
server's public key go straight into a client config (JSON, see mattebox_plugin.config).
"""
from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path
from typing import Dict, List


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the key files (created)")
    parser.add_argument("--client", action="append", metavar="NAME",
                        help="client key pair name (repeatable; default: one pair named 'client')")
    parser.add_argument("--no-server", action="store_true",
                        help="keep the existing server pair (add clients only)")
    parser.add_argument("--client-config", metavar="PATH",
                        help="also write the first client's pair and the server public key into this client config")


def make_keys(out: Path, clients: List[str], server: bool = True) -> Dict[str, str]:
    """Create the key files; returns Z85 texts: server_public_key, and NAME_public_key/NAME_secret_key per client."""
    import zmq.auth

    out.mkdir(parents=True, exist_ok=True)
    allowed = out / "clients"
    allowed.mkdir(exist_ok=True)
    if server:
        zmq.auth.create_certificates(str(out), "server")
    elif not (out / "server.key").is_file():
        raise FileNotFoundError(f"{out / 'server.key'} is missing; run without --no-server first")
    os.chmod(out / "server.key_secret", 0o600)
    texts = {"server_public_key": zmq.auth.load_certificate(str(out / "server.key"))[0].decode()}
    for name in clients:
        if not name.replace("-", "").replace("_", "").isalnum() or name == "server":
            raise ValueError(f"client name {name!r}: use letters, digits, '-' or '_' (and not 'server')")
        public_file, secret_file = zmq.auth.create_certificates(str(out), name)
        os.chmod(secret_file, 0o600)
        shutil.copy(public_file, allowed / Path(public_file).name)
        public, secret = zmq.auth.load_certificate(secret_file)
        texts[f"{name}_public_key"], texts[f"{name}_secret_key"] = public.decode(), secret.decode()
    return texts


def run(args: argparse.Namespace) -> int:
    import zmq

    if not zmq.has("curve"):
        print("this libzmq was built without CURVE support; install a pyzmq wheel (they bundle libsodium)")
        return 1
    out = Path(args.out)
    clients = args.client or ["client"]
    try:
        texts = make_keys(out, clients, server=not args.no_server)
    except (ValueError, FileNotFoundError) as exc:
        print(f"mattebox keys: {exc}")
        return 2
    print(f"server pair     {out / 'server.key_secret'}  (keep secret; on the server only)")
    print(f"allowed clients {out / 'clients'}")
    for name in clients:
        print(f"client pair     {out / (name + '.key_secret')}")
    print("\nstart the server:\n"
          f"  mattebox serve --endpoint tcp://0.0.0.0:23517 --curve-secret-key {out / 'server.key_secret'} "
          f"--curve-clients {out / 'clients'}")
    first = clients[0]
    entries = {"server_public_key": texts["server_public_key"],
               "client_public_key": texts[f"{first}_public_key"], "client_secret_key": texts[f"{first}_secret_key"]}
    if args.client_config:
        from mattebox_plugin import config

        path = config.save(entries, Path(args.client_config))
        os.chmod(path, 0o600)
        print(f"\nwrote the keys for client '{first}' into {path}")
    else:
        print(f"\nclient config (~/.config/mattebox/client.json) entries for client '{first}':")
        for key, value in entries.items():
            print(f'  "{key}": "{value}",')
    return 0
