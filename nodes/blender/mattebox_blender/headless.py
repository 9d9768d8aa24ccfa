"""Farm / command-line use: matte a frame range of a saved .blend without the UI.

    blender -b shot.blend --python-exit-code 1 \\
        --python-expr "from bl_ext.user_default.mattebox_blender import headless; headless.run_cli()" \\
        -- --frames 1-10 [--endpoint tcp://HOST:PORT] [--engine NAME] [--no-start] [--render] [--save]

It uses the scene's Mattebox settings (source, mask, second frame, output folder), writes
``<output>/<name>/{alpha,foreground,trimap}_####.exr`` (unchanged frames are skipped by content hash, so re-queued
farm tasks cost nothing), wires the result group into the compositor and, with ``--render``, renders those
frames through it; ``--save`` saves the .blend with the group. Exit code 0 on success, 1 on failure.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import List, Optional

import bpy

from . import blender_io, core, runner
from .connection import make_connect


def parse_args(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mattebox (Blender headless)",
                                     description="Matte a frame range with the scene's Mattebox settings")
    parser.add_argument("--frames", help="e.g. 1-10, 1,5,9 or 1-100x10 (default: the scene's frame range)")
    parser.add_argument("--scene", help="scene name (default: the active scene)")
    parser.add_argument("--endpoint", help="server endpoint (default: the extension's preferences / client config)")
    parser.add_argument("--engine", help="engine name (default: the scene's setting)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds of server silence tolerated")
    parser.add_argument("--no-start", action="store_true", help="never start a local server; fail if none answers")
    parser.add_argument("--render", action="store_true", help="render the matted frames through the compositor")
    parser.add_argument("--save", action="store_true", help="save the .blend with the result group wired in")
    return parser.parse_args(argv)


def _preferences():
    addon = bpy.context.preferences.addons.get(__package__)
    return addon.preferences if addon else None


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(sys.argv[sys.argv.index("--") + 1:] if argv is None and "--" in sys.argv else (argv or []))
    scene = bpy.data.scenes[args.scene] if args.scene else bpy.context.scene
    settings = scene.mattebox
    try:
        frames = core.parse_frames(args.frames) if args.frames else list(range(scene.frame_start,
                                                                               scene.frame_end + 1))
    except ValueError as exc:
        print(f"mattebox: {exc}", file=sys.stderr)
        return 1
    prefs = _preferences()
    endpoint = args.endpoint or (prefs.effective_endpoint() if prefs else None)
    if endpoint is None:
        from .connection import client_package

        endpoint = client_package().config.load()["endpoint"]
    timeout = args.timeout or (prefs.timeout if prefs else 30.0)
    command = core.split_command(prefs.server_command) if prefs else None
    auto_start = not args.no_start and (prefs.auto_start if prefs else True)
    params = settings.params()
    if args.engine:
        params["engine"] = args.engine
    directory = blender_io.output_directory(settings)

    run = runner.MatteRun(frames, make_connect(endpoint, timeout, command, auto_start, bpy.app.online_access),
                          lambda frame: blender_io.read_request(settings, scene, frame, params),
                          lambda frame, result: blender_io.write_results(directory, frame, result),
                          index=core.FrameIndex(directory))
    last = None
    while not run.step():
        text = run.status_text()
        if text != last:
            print(text, flush=True)
            last = text
        time.sleep(0.05)
    if run.state != runner.FINISHED:
        print(run.error or f"mattebox: {run.state}", file=sys.stderr)
        return 1
    blender_io.publish(settings.name, directory, frames, scene)
    print(f"mattebox: {len(run.computed)} frame(s) matted, {len(run.reused)} unchanged, results in {directory}")
    if args.save:
        bpy.ops.wm.save_mainfile()
    if args.render:
        for frame in frames:
            scene.frame_set(frame)
            scene.render.filepath, original = scene.render.frame_path(frame=frame), scene.render.filepath
            bpy.ops.render.render(write_still=True, scene=scene.name)
            scene.render.filepath = original
    return 0


def run_cli() -> None:
    """Entry point for ``--python-expr``: exits Blender with main's code on failure."""
    code = main()
    if code:
        sys.exit(code)
