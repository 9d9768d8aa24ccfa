"""The `mattebox` command line. Each subcommand lives in its own module with ``add_arguments(parser)`` and
``run(args) -> int``; modules are imported only for the command being run (and for --help listings, which
import no heavy packages), so `mattebox matte` never pays for torch.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

from . import __version__

#: subcommand -> ("module" or "module:run_function", one-line help); the module has add_arguments(parser)
COMMANDS = {
    "serve": ("mattebox.commands.serve", "run the matting server"),
    "matte": ("mattebox.commands.matte", "matte an image (on a running server, else inside this process)"),
    "doctor": ("mattebox.commands.doctor", "print versions, device and endpoint reachability"),
    "render": ("mattebox.commands.render", "matte a frame range headless (farms): patterns, chunks, resumable"),
    "keys": ("mattebox.commands.keys", "make CURVE key pairs for a remote server and its clients"),
    "demo": ("mattebox.demo", "matte the bundled sample images and write a contact sheet"),
    "inspect-pair": ("mattebox.commands.inspect_pair", "write a frame pair's flows, masks and aligned views as images"),
    "eval": ("mattebox.evaluation", "SAD/MSE/Grad/Conn of an engine on a matting data set"),
    "models": ("mattebox.models.cli", "list learned models and published weights; pull or import weights"),
    "install": ("mattebox.commands.hosts:run_install", "install the node into a host (blender, gimp, nuke)"),
    "uninstall": ("mattebox.commands.hosts:run_uninstall", "remove the node from a host"),
    "host-doctor": ("mattebox.commands.hosts:run_doctor", "check a host's node install and its server"),
    "train": ("mattebox.training.cli", "train a learned model from a JSON config (needs torch)"),
}


def build_parser(command: Optional[str] = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mattebox", description="Production image matting for Blender, GIMP 3 "
                                     "and Nuke, served over ZeroMQ.")
    parser.add_argument("--version", action="version", version=f"mattebox {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if command in (None, name):  # build full argument lists only where needed
            importlib.import_module(module_name.split(":")[0]).add_arguments(sub_parser)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if a in COMMANDS), None)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    module_name, _, function = COMMANDS[args.command][0].partition(":")
    return int(getattr(importlib.import_module(module_name), function or "run")(args) or 0)
