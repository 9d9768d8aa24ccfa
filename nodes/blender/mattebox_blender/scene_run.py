"""A matte run over a scene's Mattebox settings: the one place the UI operator and the headless path build runs.

The run itself (worker thread, content cache, progress, cancel, errors) is the host-neutral
:class:`mattebox_plugin.run.FrameRun`; this adds only what touches Blender: reading the scene's source, writing
EXRs into the output folder and publishing them into the compositor.
"""
from __future__ import annotations

from typing import List, Optional

import bpy

from . import blender_io, core
from .connection import make_connect, plugin_module

frame_run = plugin_module("run")
#: the outputs a Blender run asks for (all that blender_io writes)
OUTPUTS = tuple(core.RESULT_KINDS)


class SceneRun(frame_run.FrameRun):
    """A FrameRun reading the scene's chosen source, writing EXRs to the settings' output folder (with its
    content-key index) and, once finished, publishing them into the scene's compositor."""

    def __init__(self, scene, frames: List[int], endpoint: str, timeout: float, server_command: Optional[List[str]],
                 auto_start: bool, engine: Optional[str] = None):
        settings = scene.mattebox
        self.scene = scene
        self.name = settings.name
        self.directory = blender_io.output_directory(settings)
        params = settings.params()
        if engine:
            params["engine"] = engine
        super().__init__(
            frames, make_connect(endpoint, timeout, server_command, auto_start, bpy.app.online_access),
            lambda frame: blender_io.read_request(settings, scene, frame, params),
            lambda work, result: blender_io.write_results(self.directory, work.frame, result),
            cache=core.FrameIndex(self.directory), outputs=OUTPUTS, shot=settings.shot())

    @classmethod
    def from_preferences(cls, scene, prefs, frames: Optional[List[int]] = None, **overrides) -> "SceneRun":
        """Connection settings from the extension's preferences; keyword arguments override them."""
        values = dict(endpoint=prefs.effective_endpoint(), timeout=prefs.timeout,
                      server_command=core.split_command(prefs.server_command), auto_start=prefs.auto_start)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(scene, frames or scene.mattebox.frame_list(scene), **values)

    def status_text(self) -> str:
        return f"Mattebox: {super().status_text()}"

    def error_text(self) -> str:
        """The failure for Blender's report bar."""
        return f"Mattebox: {self.error or self.state}"

    def publish(self) -> None:
        """Results on disk -> Image datablocks -> group -> the scene's compositor (after a finished run)."""
        blender_io.publish(self.name, self.directory, sorted(self.frames), self.scene)

    def summary(self) -> str:
        """How a finished run went, for the report and the panel: frames matted and cached (or, with no server,
        from cache and why it was not reachable), the group, where the files are (and why there, for an unsaved
        .blend)."""
        notes = plugin_module("client").result_notes(self.infos.values())
        if self.offline is not None:
            head = self.offline_note()
        else:
            head = f"{len(self.computed)} frame(s) matted, {len(self.reused)} unchanged (cached)"
        where = f"files in {self.directory}"
        if blender_io.unsaved_output(self.scene.mattebox):
            where += " (the .blend is not saved yet: save it and re-run to keep them next to it)"
        return (f"Mattebox: {head} -> group '{blender_io.group_name(self.name)}', {where}"
                + "".join(f"; {n}" for n in notes))
