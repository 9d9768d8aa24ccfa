"""A matte run over a scene's Mattebox settings: the one place the UI operator and the headless path build runs."""
from __future__ import annotations

from typing import List, Optional

import bpy

from . import blender_io, connection, core, runner
from .connection import make_connect


class OfflineClient:
    """Stands in for the client when no server could be reached: frames whose results are current in the output
    folder's index need no server and still publish; the first frame that does need one fails with the reason
    the connection failed."""

    def __init__(self, error: BaseException):
        self.error = error

    def submit(self, **request):
        raise self.error

    def close(self) -> None:
        pass


class SceneRun(runner.MatteRun):
    """:class:`runner.MatteRun` reading the scene's chosen source, writing EXRs to the settings' output folder
    (with its content-key index) and, once finished, publishing them into the scene's compositor."""

    def __init__(self, scene, frames: List[int], endpoint: str, timeout: float, server_command: Optional[List[str]],
                 auto_start: bool, engine: Optional[str] = None):
        settings = scene.mattebox
        self.scene = scene
        self.name = settings.name
        self.directory = blender_io.output_directory(settings)
        params = settings.params()
        if engine:
            params["engine"] = engine
        #: why the server could not be reached (None when it was): said in the summary of a run from the cache
        self.offline: Optional[str] = None
        connect = make_connect(endpoint, timeout, server_command, auto_start, bpy.app.online_access)

        def connect_or_offline():  # on the worker thread
            try:
                return connect()
            except Exception as exc:
                self.offline = core.describe_error(exc)
                return OfflineClient(exc)

        super().__init__(
            frames, connect_or_offline,
            lambda frame: blender_io.read_request(settings, scene, frame, params),
            lambda frame, result: blender_io.write_results(self.directory, frame, result),
            index=core.FrameIndex(self.directory))

    @classmethod
    def from_preferences(cls, scene, prefs, frames: Optional[List[int]] = None, **overrides) -> "SceneRun":
        """Connection settings from the extension's preferences; keyword arguments override them."""
        values = dict(endpoint=prefs.effective_endpoint(), timeout=prefs.timeout,
                      server_command=core.split_command(prefs.server_command), auto_start=prefs.auto_start)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(scene, frames or scene.mattebox.frame_list(scene), **values)

    def publish(self) -> None:
        """Results on disk -> Image datablocks -> group -> the scene's compositor (after a finished run)."""
        blender_io.publish(self.name, self.directory, sorted(self.frames), self.scene)

    def summary(self) -> str:
        """How a finished run went, for the report and the panel: frames matted and cached (or, with the server
        unreachable, from cache and why), the group, where the files are (and why there, for an unsaved .blend)."""
        client = connection.client_package().client
        notes = client.result_notes(self.infos.values())
        if self.offline:
            head = f"Mattebox: {len(self.reused)} frame(s) from cache; server not reachable: {self.offline}"
        else:
            head = f"Mattebox: {len(self.computed)} frame(s) matted, {len(self.reused)} unchanged (cached)"
        where = f"files in {self.directory}"
        if blender_io.unsaved_output(self.scene.mattebox):
            where += " (the .blend is not saved yet: save it and re-run to keep them next to it)"
        return f"{head} -> group '{blender_io.group_name(self.name)}', {where}" + "".join(f"; {n}" for n in notes)
