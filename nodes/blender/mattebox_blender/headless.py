"""Farm / command-line use: matte a frame range of a saved .blend without the UI.

    blender -b shot.blend --python-exit-code 1 \\
        --python-expr "from bl_ext.user_default.mattebox_blender import headless; headless.run_cli()" \\
        -- --frames 1-10 [--endpoint tcp://HOST:PORT] [--engine NAME] [--shot] [--keys 1,7] [--no-start]
           [--render] [--save]

It uses the scene's Mattebox settings (source, mask, second frame, clean plate, output folder), writes
``<output>/<name>/{alpha,foreground,trimap}_####.exr`` (unchanged frames are skipped by content hash, so re-queued
farm tasks cost nothing), wires the result group into the compositor and, with ``--render``, renders those
frames through it; ``--save`` saves the .blend with the group; ``--shot`` mattes the frames as one shot guided by the
mask on the key frames. Exit code 0 on success, 1 on failure.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import List, Optional

import bpy

from .connection import plugin_module
from .scene_run import SceneRun, frame_run


def parse_args(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mattebox (Blender headless)",
                                     description="Matte a frame range with the scene's Mattebox settings")
    parser.add_argument("--frames", help="e.g. 1-10, 1,5,9 or 1-100x10 (default: the scene's frame range)")
    parser.add_argument("--scene", help="scene name (default: the active scene)")
    parser.add_argument("--endpoint", help="server endpoint (default: the extension's preferences / client config)")
    parser.add_argument("--engine", help="engine name (default: the scene's setting)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds of server silence tolerated")
    parser.add_argument("--shot", action="store_true", help="matte the frames as one shot (the scene's key frames "
                        "unless --keys is given)")
    parser.add_argument("--keys", help="key frames of the shot, e.g. 1,13 (implies --shot)")
    parser.add_argument("--no-start", action="store_true", help="never start a local server; fail if none answers")
    parser.add_argument("--render", action="store_true", help="render the matted frames through the compositor")
    parser.add_argument("--save", action="store_true", help="save the .blend with the result group wired in")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(sys.argv[sys.argv.index("--") + 1:] if argv is None and "--" in sys.argv else (argv or []))
    scene = bpy.data.scenes[args.scene] if args.scene else bpy.context.scene
    try:
        frames = (plugin_module("frames").parse_frames(args.frames) if args.frames
                  else range(scene.frame_start, scene.frame_end + 1))
    except ValueError as exc:
        print(f"mattebox: {exc}", file=sys.stderr)
        return 1
    addon = bpy.context.preferences.addons.get(__package__)
    if addon is None:
        print(f"mattebox: the extension {__package__} is not enabled", file=sys.stderr)
        return 1
    if args.shot or args.keys is not None:
        scene.mattebox.use_shot = True
        if args.keys is not None:
            scene.mattebox.key_frames = args.keys
    try:
        run = SceneRun.from_preferences(scene, addon.preferences, frames, endpoint=args.endpoint,
                                        timeout=args.timeout, auto_start=False if args.no_start else None,
                                        engine=args.engine)
    except ValueError as exc:  # key frames outside the range, a range with two steps for a shot
        print(f"mattebox: {exc}", file=sys.stderr)
        return 1
    last = None
    while not run.step():
        text = run.status_text()
        if text != last:
            print(text, flush=True)
            last = text
        time.sleep(0.05)
    if run.state != frame_run.FINISHED:
        print(run.error_text(), file=sys.stderr)
        return 1
    run.publish()
    print(run.summary(), flush=True)
    if args.save:
        bpy.ops.wm.save_mainfile()
    if args.render:  # through the compositor, to the scene's output path and format
        for frame in frames:
            scene.frame_set(frame)
            bpy.ops.render.render(scene=scene.name)
            path = scene.render.frame_path(frame=frame)
            bpy.data.images["Render Result"].save_render(path, scene=scene)
            print(f"mattebox: rendered {path}", flush=True)
    return 0


def run_cli() -> None:
    """Entry point for ``--python-expr``: exits Blender with main's code on failure."""
    code = main()
    if code:
        sys.exit(code)
