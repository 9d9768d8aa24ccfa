"""A matte run over a list of frames, driven without ever blocking Blender's main thread.

Blender's data may only be touched from the main thread, and a ZeroMQ socket from one thread at a time, so the
work is split: a worker thread owns the client (start a local server if needed, handshake, submit, poll, cancel)
and the main thread, from a modal operator's timer or a headless loop, calls :meth:`MatteRun.step` which reads
the next frame's pixels, skips frames whose content key is already in the output folder's index, and writes
finished results. One frame is prefetched while the server works on the previous one. No bpy import here: the
reader and writer are passed in, so this is tested outside Blender too.
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable, Dict, List, Optional

from . import core
from .connection import plugin_module

#: states of a run
CONNECTING, RUNNING, FINISHED, FAILED, CANCELLED = "connecting", "running", "finished", "failed", "cancelled"


class MatteRun:
    """Matte ``frames`` one after another.

    ``connect()`` (called on the worker thread) returns a ready client (``mattebox_plugin.client.Client``);
    ``read_inputs(frame)`` returns the keyword arguments of ``Client.submit`` (see :func:`core.build_request`);
    ``write_results(frame, result)`` stores a finished result; ``index`` (a :class:`core.FrameIndex` or None)
    makes unchanged frames free. ``cancel_wait`` bounds how long a cancel waits for the server to confirm.
    """

    def __init__(self, frames: List[int], connect: Callable[[], Any], read_inputs: Callable[[int], Dict[str, Any]],
                 write_results: Callable[[int, Any], None], index: Optional[core.FrameIndex] = None,
                 outputs: tuple = ("alpha", "foreground", "trimap"), cancel_wait: float = 10.0):
        if not frames:
            raise ValueError("frames: nothing to matte")
        self.frames = list(frames)
        self._connect = connect
        self._read_inputs = read_inputs
        self._write_results = write_results
        self.index = index
        self.outputs = outputs
        self.cancel_wait = cancel_wait
        self.state = CONNECTING
        self.error: Optional[str] = None
        self.computed: List[int] = []
        self.reused: List[int] = []
        self.last_event: Optional[Dict[str, Any]] = None
        self.infos: Dict[int, Dict[str, Any]] = {}
        self._next = 0  # position in frames of the next frame to read
        self._in_flight = 0  # frames handed to the worker and not yet back
        self._inbox: "queue.Queue" = queue.Queue()
        self._outbox: "queue.Queue" = queue.Queue()
        self._pending: List[tuple] = []  # messages taken off the outbox by wait(), not yet handled
        self._cancel = threading.Event()
        self._worker = threading.Thread(target=self._work, name="mattebox-client", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------------------------------- main thread
    @property
    def done(self) -> bool:
        return self.state in (FINISHED, FAILED, CANCELLED)

    @property
    def fraction(self) -> float:
        finished = len(self.computed) + len(self.reused)
        return core.progress_fraction(finished, len(self.frames), self.last_event if self._in_flight else None)

    def status_text(self) -> str:
        finished = len(self.computed) + len(self.reused)
        text = f"Mattebox: {self.state}, frame {min(finished + 1, len(self.frames))}/{len(self.frames)}"
        event = self.last_event
        if event and self.state == RUNNING and event.get("stage"):
            text += f" ({event['stage']}"
            if event.get("total"):
                text += f" {event.get('done') or 0}/{event['total']}"
            text += ")"
        return text

    def cancel(self) -> None:
        """Stop after telling the server; the run ends in state 'cancelled' once the worker confirms (at once
        while still connecting: the worker then drops its connection when the handshake returns)."""
        if self.done:
            return
        if self.state == CONNECTING:
            self._finish(CANCELLED)
        else:
            self._cancel.set()

    def step(self, budget: float = 0.05) -> bool:
        """Do what is ready without blocking (beyond ``budget`` s of cache checks); True once the run is over."""
        if self.done:
            return True
        self._drain()
        if self.done:
            return True
        if self._cancel.is_set():
            return self.done
        deadline = time.monotonic() + budget
        # keep one frame queued behind the one the server is working on
        while self.state != CONNECTING and self._in_flight < 2 and self._next < len(self.frames):
            frame = self.frames[self._next]
            try:
                request = self._read_inputs(frame)
            except Exception as exc:  # bad inputs (sizes, missing frames) end the run with their message
                self._fail(f"frame {frame}: {exc}")
                return True
            self._next += 1
            key = core.content_key(request)
            if self.index is not None and self.index.is_current(frame, key, self.outputs):
                self.reused.append(frame)
            else:
                request["params"] = dict(request["params"], outputs=list(self.outputs))
                self._in_flight += 1
                self._inbox.put((frame, key, request))
            if time.monotonic() > deadline:
                break
        if self._next >= len(self.frames) and self._in_flight == 0 and self.state != CONNECTING:
            self._finish(FINISHED)
        return self.done

    def wait(self, poll: float = 0.05, timeout: Optional[float] = None) -> str:
        """Run to the end on this thread (headless use); returns the final state."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.step():
            if deadline is not None and time.monotonic() > deadline:
                self.cancel()
                deadline = None
            self._await_message(poll)
        return self.state

    def _await_message(self, timeout: float) -> None:
        """Sleep until the worker reports something (or ``timeout``), keeping the message for _drain."""
        try:
            self._pending.append(self._outbox.get(timeout=timeout))
        except queue.Empty:
            pass

    def _drain(self) -> None:
        while True:
            try:
                message = self._pending.pop(0) if self._pending else self._outbox.get_nowait()
            except queue.Empty:
                return
            kind = message[0]
            if kind == "connected":
                if self.state == CONNECTING:
                    self.state = RUNNING
            elif kind == "result":
                _, frame, key, result = message
                self._in_flight -= 1
                if self._cancel.is_set():
                    continue
                try:
                    self._write_results(frame, result)
                except Exception as exc:
                    self._fail(f"frame {frame}: writing the result failed: {exc}")
                    return
                self.infos[frame] = dict(result.info)
                self.computed.append(frame)
                if self.index is not None:
                    self.index.record(frame, key, result.info)
            elif kind == "error":
                self._fail(message[1])
                return
            elif kind == "cancelled":
                self._finish(CANCELLED)
                return

    def _fail(self, message: str) -> None:
        self.error = message
        self._finish(FAILED)

    def _finish(self, state: str) -> None:
        self.state = state
        self._cancel.set()  # stops the worker if it is still waiting
        self._inbox.put(None)

    # ----------------------------------------------------------------------------------- worker thread
    def _work(self) -> None:
        client = None
        try:
            client = self._connect()
            self._outbox.put(("connected",))
            while True:
                item = self._poll_inbox()
                if item is None:
                    if self._cancel.is_set() and self.state not in (FAILED, FINISHED):
                        self._outbox.put(("cancelled",))
                    return
                frame, key, request = item
                job = client.submit(**request)
                result = self._follow(job)
                if result is None:
                    self._outbox.put(("cancelled",))
                    return
                self._outbox.put(("result", frame, key, result))
        except Exception as exc:
            if self._cancel.is_set() and getattr(exc, "code", None) == "cancelled":
                self._outbox.put(("cancelled",))
            else:
                self._outbox.put(("error", plugin_module("errors").error_line(exc)))
        finally:
            if client is not None:
                client.close()

    def _poll_inbox(self):
        while True:
            if self._cancel.is_set():
                return None
            try:
                return self._inbox.get(timeout=0.05)
            except queue.Empty:
                continue

    def _follow(self, job):
        """Poll a job to its end; on cancel, tell the server and wait (bounded) for it to confirm."""
        cancel_deadline = None
        while not job.done:
            if self._cancel.is_set() and cancel_deadline is None:
                job.cancel()
                cancel_deadline = time.monotonic() + self.cancel_wait
            if cancel_deadline is not None and time.monotonic() > cancel_deadline:
                return None  # the server did not confirm in time: give up on the job, not on the UI
            for event in job.poll(0.05):
                self.last_event = event
        try:
            return job.result(timeout=0)
        except Exception as exc:
            if getattr(exc, "code", None) == "cancelled":
                return None
            raise
