"""``nuke -t SCRIPT ARGS...`` with the fake nuke: simulate Nuke's terminal-mode start-up, then run SCRIPT.

Start-up as Nuke does it (dev guide 'Start-up Scripts'): the plug-in path is ~/.nuke followed by the NUKE_PATH
folders; each folder's init.py runs (menu.py does not: there is no GUI). Then SCRIPT runs as __main__ with
sys.argv = [SCRIPT, ARGS...], as `nuke -t` passes them.
"""
import os
import runpy
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import nuke  # noqa: E402  (the fake, from this folder)


def main() -> None:
    script, args = sys.argv[1], sys.argv[2:]
    dirs = [os.path.join(os.path.expanduser("~"), ".nuke")]
    dirs += [p for p in os.environ.get("NUKE_PATH", "").split(os.pathsep) if p]
    nuke.fake.startup(dirs)
    sys.argv = [script] + args
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
