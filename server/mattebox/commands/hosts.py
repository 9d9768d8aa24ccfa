"""`mattebox install|uninstall|host-doctor HOST [options]`: put a node into Blender, GIMP 3 or Nuke.

Each host's installer lives in ``mattebox_installers.HOST`` with a ``main(argv)`` whose first argument is the
action; this command forwards the remaining options (``mattebox install gimp --help`` lists them).
"""
from __future__ import annotations

import argparse
import importlib

HOSTS = ("blender", "gimp", "nuke")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("host", choices=HOSTS, help="host application")
    parser.add_argument("options", nargs=argparse.REMAINDER, help="host installer options (see HOST --help)")


def _forward(action: str, args: argparse.Namespace) -> int:
    module = importlib.import_module(f"mattebox_installers.{args.host}")
    return int(module.main([action, *args.options], prog="mattebox") or 0)


def run_install(args: argparse.Namespace) -> int:
    return _forward("install", args)


def run_uninstall(args: argparse.Namespace) -> int:
    return _forward("uninstall", args)


def run_doctor(args: argparse.Namespace) -> int:
    return _forward("doctor", args)
