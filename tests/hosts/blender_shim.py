"""A `blender` executable for tests, made of the bpy module: answers ``--version``, runs ``--python-expr`` and
``--command extension ARGS`` through Blender's own extension CLI handler (bl_pkg), so installers are tested
against Blender's real install/remove code. Run it with the bpy venv's python."""
from __future__ import annotations

import os
import sys


def main(argv):
    args = [a for a in argv if a != "--factory-startup"]
    import bpy

    if args[:1] == ["--version"]:
        print(f"Blender {bpy.app.version_string}")
        return 0
    if "--python-expr" in args:  # the installer's probe for Blender's version and Python
        exec(args[args.index("--python-expr") + 1], {"__name__": "__main__"})
        return 0
    if args[:2] == ["--command", "extension"]:
        from bl_pkg.bl_extension_cli import cli_extension_handler

        return cli_extension_handler(args[2:])
    print(f"blender shim: unsupported arguments {args}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
