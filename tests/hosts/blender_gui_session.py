"""Inside Blender's GUI (``blender --python THIS``, under Xvfb in the Blender chroot): what a person does, step by
step, from a timer once the window is up: Compositing workspace, the Mattebox sidebar tab, the sample and its mask
chosen, a screenshot of the panel, *Mattebox Matte* pressed (the operator invoked as the button does, modal), a
wait for it to finish, the view framed, and a screenshot of the result. Then Blender quits.

Environment: MATTEBOX_SHOT_DIR (screenshots and session.json go there), MATTEBOX_SAMPLE and MATTEBOX_MASK (image
files), MATTEBOX_FBDIR (Xvfb's -fbdir: its screen as an X window dump, kept current). A screenshot is a copy of
that dump (Blender's own screenshot operators read back black under Mesa's software GL) plus the node editor's
rectangle on screen. session.json records the steps, the rectangles, the panel's status line and any error.
"""
import importlib
import json
import os
import shutil
import time
import traceback

import bpy

OUT = os.environ["MATTEBOX_SHOT_DIR"]
EXTENSION = "bl_ext.user_default.mattebox_blender"
RUN_TIMEOUT = 300.0
STATE = {"steps": [], "error": None, "status": None, "areas": {}}


def log(message):
    STATE["steps"].append(message)
    print(f"[session] {message}", flush=True)


def node_editor(window):
    area = next(a for a in window.screen.areas if a.type == "NODE_EDITOR")
    regions = {region.type: region for region in area.regions}
    return area, regions


def screenshot(window, area, name):
    """Copy the screen as Xvfb has it now, and where ``area`` is on it (x, y from the top left, w, h; None: all)."""
    shutil.copy(os.path.join(os.environ["MATTEBOX_FBDIR"], "Xvfb_screen0"), os.path.join(OUT, name + ".xwd"))
    if area is None:
        STATE["areas"][name] = None
        return log(f"screenshot {name} (the screen)")
    top = window.y + window.height - (area.y + area.height)  # Blender's y grows upwards from the window's bottom
    STATE["areas"][name] = [window.x + area.x, top, area.width, area.height]
    log(f"screenshot {name} ({area.width}x{area.height})")


def steps():
    """A generator of delays: each ``yield`` gives Blender that many seconds to draw before the next step."""
    window = bpy.context.window_manager.windows[0]
    window.workspace = bpy.data.workspaces["Compositing"]
    yield 1.0
    ext = importlib.import_module(EXTENSION)
    area, regions = node_editor(window)
    space = area.spaces.active
    space.show_region_ui = True
    settings = bpy.context.scene.mattebox
    settings.source = "IMAGE"
    settings.image = bpy.data.images.load(os.environ["MATTEBOX_SAMPLE"])
    settings.mask = bpy.data.images.load(os.environ["MATTEBOX_MASK"])
    settings.engine = "classical"
    log(f"Blender {bpy.app.version_string}, Python extension {ext.__name__}, use_nodes "
        f"{getattr(bpy.context.scene, 'use_nodes', None)}")
    yield 0.5
    regions = node_editor(window)[1]
    try:
        regions["UI"].active_panel_category = "Mattebox"  # the sidebar's tab, as a click on it does
    except (AttributeError, TypeError) as exc:  # read-only in some releases: the panel may then be on another tab
        log(f"could not pick the sidebar tab: {exc}")
    area.tag_redraw()
    yield 1.0
    area.tag_redraw()
    yield 1.5
    screenshot(window, area, "panel")
    with bpy.context.temp_override(window=window, area=area, region=regions["UI"]):
        result = bpy.ops.mattebox.matte("INVOKE_DEFAULT")
    log(f"Mattebox Matte pressed: {sorted(result)}")
    operators = importlib.import_module(EXTENSION + ".operators")
    started = time.monotonic()
    while operators.active_run() is not None:
        if time.monotonic() - started > RUN_TIMEOUT:
            raise RuntimeError(f"the matte did not finish in {RUN_TIMEOUT:.0f} s")
        yield 0.5
    STATE["status"] = bpy.context.window_manager.mattebox_status.text
    log(f"finished: {STATE['status']}")
    yield 2.0  # the compositor runs the new tree; the backdrop shows the Viewer
    with bpy.context.temp_override(window=window, area=area, region=node_editor(window)[1]["WINDOW"]):
        bpy.ops.node.view_all()
    yield 2.0
    screenshot(window, area, "result")
    # Preferences > Add-ons > Mattebox: the Server command the installer recorded
    with bpy.context.temp_override(window=window):
        bpy.ops.screen.userpref_show(section="ADDONS")
    bpy.context.window_manager.addon_search = "Mattebox"
    bpy.ops.preferences.addon_expand(module=EXTENSION)
    yield 2.0
    for each in bpy.context.window_manager.windows:
        for each_area in each.screen.areas:
            each_area.tag_redraw()
    yield 1.0
    screenshot(window, None, "preferences")


def finish():
    with open(os.path.join(OUT, "session.json"), "w") as fh:
        json.dump(STATE, fh, indent=1)
    bpy.ops.wm.quit_blender()


def start():
    walk = steps()

    def tick():
        try:
            return next(walk)
        except StopIteration:
            finish()
        except Exception as exc:  # recorded for the caller, who shows it with Blender's log
            STATE["error"] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
            finish()
        return None

    bpy.app.timers.register(tick, first_interval=2.0)


start()
