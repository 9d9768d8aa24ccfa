"""Runs INSIDE real Blender (the bpy 5.0.1 venv): enable the extension, run a test snippet, print its result.

    python tests/hosts/blender_session.py MODE SNIPPET.py
        MODE: ``dev`` (the source folder linked into the user extension repo, the repo's plugin/ on sys.path)
              or ``installed`` (enable what an installer put in the user repo: its bundled client and wheels).
The snippet runs with ``bpy``, ``np``, ``ext`` (the enabled extension module), ``helpers`` (this module) and
``ARGS`` (JSON from $MATTEBOX_TEST_ARGS) in scope and sets ``RESULT`` (JSON-able); this prints
``MATTEBOX_RESULT <json>`` as its last line. Set $BLENDER_USER_RESOURCES to a temporary folder first.
"""
from __future__ import annotations

import importlib
import json
import os
import sys
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXTENSION_ID = "mattebox_blender"
REPO = "user_default"
MODULE = f"bl_ext.{REPO}.{EXTENSION_ID}"


def enable_dev():
    import addon_utils
    import bpy

    sys.path.insert(0, os.path.join(ROOT, "plugin"))
    repo = bpy.utils.user_resource("EXTENSIONS", path=REPO, create=True)
    link = os.path.join(repo, EXTENSION_ID)
    if not os.path.lexists(link):
        os.symlink(os.path.join(ROOT, "nodes", "blender", EXTENSION_ID), link)
    bpy.ops.extensions.repo_refresh_all()
    module = addon_utils.enable(MODULE, default_set=True, handle_error=_raise)
    if module is None:
        raise RuntimeError(f"could not enable {MODULE}")
    return module


def enable_installed():
    """The extension as an installer left it in the user repository: nothing from the repo on sys.path."""
    import addon_utils
    import bpy

    bpy.ops.extensions.repo_refresh_all()
    module = addon_utils.enable(MODULE, default_set=True, handle_error=_raise)
    if module is None:
        raise RuntimeError(f"could not enable {MODULE}")
    return module


def _raise(exc):
    raise exc


def new_image(name: str, array, colorspace: str = "Linear Rec.709"):
    """A float Image datablock holding ``array`` (H×W, H×W×3 or H×W×4, rows top-down)."""
    import bpy

    core = importlib.import_module(MODULE + ".core")
    height, width = array.shape[:2]
    image = bpy.data.images.new(name, width, height, alpha=True, float_buffer=True)
    image.colorspace_settings.name = colorspace
    image.pixels.foreach_set(core.to_blender_pixels(array))
    return image


def image_array(image):
    """An Image's pixels as H×W×4 float32, rows top-down, exactly as stored."""
    import numpy as np

    core = importlib.import_module(MODULE + ".core")
    width, height = image.size
    flat = np.empty(width * height * image.channels, np.float32)
    image.pixels.foreach_get(flat)
    return core.from_blender_pixels(flat, width, height, image.channels)


def use_server(endpoint: str, auto_start: bool = False, server_command: str = "", timeout: float = 10.0):
    import bpy

    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.endpoint, prefs.auto_start = endpoint, auto_start
    prefs.server_command, prefs.timeout = server_command, timeout
    return prefs


def main() -> None:
    mode, snippet = sys.argv[1], sys.argv[2]
    import bpy
    import numpy as np

    ext = enable_dev() if mode == "dev" else enable_installed()
    scope = {"bpy": bpy, "np": np, "ext": ext, "helpers": sys.modules[__name__],
             "ARGS": json.loads(os.environ.get("MATTEBOX_TEST_ARGS", "{}")), "RESULT": None}
    try:
        with open(snippet, encoding="utf-8") as fh:
            exec(compile(fh.read(), snippet, "exec"), scope)
    except BaseException:
        traceback.print_exc()
        sys.stdout.flush()
        os._exit(3)
    print("MATTEBOX_RESULT " + json.dumps(scope["RESULT"]), flush=True)
    sys.stdout.flush()
    os._exit(0)  # skip bpy's atexit teardown (slow, and noisy in the bpy module)


if __name__ == "__main__":
    main()
