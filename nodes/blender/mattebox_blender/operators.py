"""Operators: Mattebox Matte (modal with a timer in the UI, blocking in background mode), Cancel, Check Server."""
from __future__ import annotations

from typing import Optional

import bpy

from . import core
from .connection import client_package, remember_engines
from .properties import preferences
from .scene_run import SceneRun, frame_run

#: the run in progress (one at a time per Blender session); the Cancel operator and the panel read it
_ACTIVE: Optional[SceneRun] = None


def active_run() -> Optional[SceneRun]:
    """The run in progress, or None (for the panel)."""
    return _ACTIVE


def start_run(context) -> SceneRun:
    """The run for the scene's settings and the extension's preferences."""
    return SceneRun.from_preferences(context.scene, preferences(context))


def finish_run(run: SceneRun, report) -> set:
    """Publish a finished run's results into the compositor and report how the run ended (also kept as the
    panel's status line)."""
    if run.state == frame_run.FINISHED:
        try:
            run.publish()
        except Exception as exc:  # e.g. a result file removed meanwhile: say so, never leave the UI stuck
            return _tell(report, {"ERROR"}, f"Mattebox: results are in {run.directory} but could not be loaded: {exc}")
        _tell(report, {"WARNING"} if run.offline else {"INFO"}, run.summary())  # offline: said, not a plain success
        return {"FINISHED"}
    if run.state == frame_run.CANCELLED:
        return _tell(report, {"WARNING"}, "Mattebox: cancelled")
    return _tell(report, {"ERROR"}, run.error_text())


def _tell(report, level: set, text: str) -> set:
    """Report ``text`` at ``level`` and keep it as the panel's status line; -> {"CANCELLED"}, what the operator
    returns after anything but a published result."""
    report(level, text)
    status = getattr(bpy.context.window_manager, "mattebox_status", None)
    if status is not None:
        status.text = text
    return {"CANCELLED"}


class MATTEBOX_OT_matte(bpy.types.Operator):
    """Matte the chosen image, render or clip frame(s) on the mattebox server; results feed a compositor group"""

    bl_idname = "mattebox.matte"
    bl_label = "Mattebox Matte"
    bl_options = {"REGISTER"}

    _timer = None
    _run = None

    @classmethod
    def poll(cls, context):
        return context.scene is not None and _ACTIVE is None

    def _start(self, context) -> bool:
        global _ACTIVE
        try:
            self._run = start_run(context)
        except ValueError as exc:  # bad settings (frames text, ...)
            self.report({"ERROR"}, f"Mattebox: {exc}")
            return False
        _ACTIVE = self._run
        return True

    def execute(self, context):
        """Background mode and scripts: run to the end on this thread."""
        global _ACTIVE
        if not self._start(context):
            return {"CANCELLED"}
        try:
            self._run.wait()
        finally:
            _ACTIVE = None
        return finish_run(self._run, self.report)

    def invoke(self, context, event):
        if bpy.app.background or context.window is None:
            return self.execute(context)
        if not self._start(context):
            return {"CANCELLED"}
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.modal_handler_add(self)
        wm.progress_begin(0, 1000)
        status = wm.mattebox_status
        status.running, status.progress, status.text = True, 0.0, self._run.status_text()
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        run = self._run
        if event.type == "ESC":
            run.cancel()
        if event.type != "TIMER" and event.type != "ESC":
            return {"PASS_THROUGH"}
        run.step()
        wm = context.window_manager
        status = wm.mattebox_status
        status.progress, status.text = run.fraction, run.status_text()
        wm.progress_update(int(run.fraction * 1000))
        if context.workspace is not None:
            context.workspace.status_text_set(status.text)
        for area in context.screen.areas if context.screen else ():
            if area.type == "NODE_EDITOR":
                area.tag_redraw()
        if not run.done:
            return {"RUNNING_MODAL"}
        return self._end(context)

    def _cleanup(self, context) -> None:
        global _ACTIVE
        wm = context.window_manager
        wm.event_timer_remove(self._timer)
        wm.progress_end()
        if context.workspace is not None:
            context.workspace.status_text_set(None)
        wm.mattebox_status.running = False
        _ACTIVE = None

    def _end(self, context):
        self._cleanup(context)
        return finish_run(self._run, self.report)

    def cancel(self, context):
        """Blender ends the operator (file load, window closed): tell the server, drop the run quietly."""
        if self._run is not None:
            self._run.cancel()
            self._cleanup(context)


class MATTEBOX_OT_cancel(bpy.types.Operator):
    """Stop the running matte (the server stops at its next stage boundary)"""

    bl_idname = "mattebox.cancel"
    bl_label = "Cancel Matte"

    @classmethod
    def poll(cls, context):
        return _ACTIVE is not None

    def execute(self, context):
        _ACTIVE.cancel()
        return {"FINISHED"}


class MATTEBOX_OT_check_server(bpy.types.Operator):
    """Handshake with the server at the configured endpoint and report its version, device and engines"""

    bl_idname = "mattebox.check_server"
    bl_label = "Check Server"

    def execute(self, context):
        prefs = preferences(context)
        endpoint = prefs.effective_endpoint()
        package = client_package()
        if not package.launcher.port_open(endpoint):
            self.report({"ERROR"}, f"Mattebox: nothing listens at {endpoint}")
            return {"CANCELLED"}
        cfg = package.config.load()  # the configured CURVE keys apply to the check too
        cfg.update(endpoint=endpoint, timeout=min(prefs.timeout, 5.0))
        client = package.client.Client(**package.config.client_kwargs(cfg))
        try:
            info = client.hello()
        except Exception as exc:
            self.report({"ERROR"}, package.errors.error_line(exc, endpoint))
            return {"CANCELLED"}
        finally:
            client.close()
        remember_engines(info)  # the Engine menu lists this server's engines from now on
        self.report({"INFO"}, f"Mattebox {info['server_version']} at {endpoint} on {info['device']}: "
                              + core.engines_summary(info["engines"], package.client.engine_note))
        return {"FINISHED"}


CLASSES = (MATTEBOX_OT_matte, MATTEBOX_OT_cancel, MATTEBOX_OT_check_server)
