"""Mattebox start-up for every Nuke mode (GUI, `nuke -x` renders, `nuke -t` Python): make the packages importable.

Nuke runs init.py of each plug-in path folder for command-line and interactive sessions alike, and menu.py only
when the GUI is up (Nuke Python dev guide, 'Start-up Scripts'); so everything a farm render needs lives here and
nothing here builds UI. The installer adds `nuke.pluginAddPath(<this folder>)` to ~/.nuke/init.py (or a NUKE_PATH
folder's), which puts this folder on sys.path and runs this file.
"""
import os
import sys

import nuke


def _mattebox_home():
    here = globals().get("__file__")
    if here:
        return os.path.dirname(os.path.abspath(here))
    for path in nuke.pluginPath():  # older Nukes run init.py without __file__
        if os.path.isfile(os.path.join(path, "mattebox_nuke", "__init__.py")):
            return path
    return None


def _mattebox_setup():
    home = _mattebox_home()
    if home is None:
        return
    candidates = [
        home,
        # pyzmq/msgpack wheels vendored by the installer for this Nuke's Python ABI (3.9: Nuke 13/14, 3.10: 15,
        # 3.11: 16)
        os.path.join(home, "site-packages", "cp%d%d" % sys.version_info[:2]),
        # a source checkout (nodes/nuke inside the repository): the client package lives in ../../plugin
        os.path.join(os.path.dirname(os.path.dirname(home)), "plugin"),
    ]
    for path in reversed(candidates):
        if os.path.isdir(path) and path not in sys.path:
            sys.path.insert(0, path)


_mattebox_setup()
