"""`mattebox matte` run as a user runs it, in a fresh interpreter: for the tests that check what a one-off matte
imports (no torch on the classical path, no numba with the ahead-of-time kernels, no server or pyzmq with
``--local``), which only a new process can tell."""
from __future__ import annotations

import json
import subprocess
import sys
from typing import Set, Tuple

from mattebox.testing.servers import tree_env


def matte_in_fresh_process(*args: str, **env: str) -> Tuple[str, Set[str]]:
    """Run ``mattebox matte ARGS --local --quiet`` on this tree (``env``: variables set on top); assert it exits 0
    and return what it printed and the names in its ``sys.modules`` when it was done."""
    code = ("import json, sys; from mattebox.cli import main\n"
            f"rc = main(['matte', *{list(args)!r}, '--local', '--quiet'])\n"
            "print(json.dumps(sorted(sys.modules))); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], env=tree_env(**env), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    printed, _, modules = proc.stdout.rstrip("\n").rpartition("\n")
    return printed, set(json.loads(modules))
