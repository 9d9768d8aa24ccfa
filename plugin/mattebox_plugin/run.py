"""One frame run for every host: matte a list of frames without blocking the host's UI thread.

A host supplies three callbacks and gets progress, cancel, a content cache and error text that are the same in
Blender, Nuke and any new host:

- ``connect()`` (called on the run's worker thread) returns a ready ``mattebox_plugin.client.Client``;
- ``read_inputs(frame)`` returns the keyword arguments of ``Client.submit`` for that frame;
- ``write_results(work, result)`` stores a finished frame (``work`` is the :class:`Work` it was sent as).

Host APIs are rarely thread-safe (Blender's data and Nuke's knobs belong to the main thread) and a ZeroMQ socket
belongs to one thread, so the work is split: the worker thread owns the client (connect, submit, poll, cancel)
and the host's thread calls :meth:`FrameRun.step` (from a modal timer, a worker of its own, or :meth:`wait`),
which reads the next frame, skips it when the ``cache`` already holds its :func:`content_key`, and writes
finished results. One frame is read ahead while the server works on the previous one; a frame that cannot be
read fails the run (naming it) once the frames before it are written, so a re-run resumes at that frame.

The content key hashes the inputs' pixels with everything that changes a result: the validated params, the
colour convention, the server's version and the requested engine's row from ``hello`` (so a new server or a
newly installed engine never reuses an old result), :data:`CACHE_VERSION` and a host's ``key_extra`` (how it
stores results).

Offline: a cache also remembers the part of ``hello`` each result was made under (:func:`key_hello`). When
``connect()`` fails, a run does not fail at once: each frame's key is computed with its remembered hello and a
match is reused, so yesterday's results come back with no server; the run still says why the server was not
reachable (:attr:`FrameRun.offline`, :meth:`FrameRun.offline_note`), and the first frame that needs the server
(no match: its inputs or settings changed, or nothing is remembered) fails the run with that reason (the reason
alone, as without a cache, when no frame came from the cache before it).

With a :class:`Shot`, the frames are matted as one shot (``Client.matte_shot``, docs/shots.md): the server asks
for each frame when it needs it, the worker passes the ask to the stepping thread (which alone may read the
host's pixels) and waits for the answer, and results come back per frame, in order, through the same
``write_results``. A shot frame depends on its neighbours and keys, so it has no content key (``work.key`` is
None): the cache is not consulted, and is told (``record`` with no key) that the frame's result is no cached one.
"""
from __future__ import annotations

import hashlib
import json
import queue
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

from . import protocol
from .errors import Cancelled, describe_error
from .protocol import ProgressEvent

#: bump when the meaning of a cached result changes (key recipe, request layout)
CACHE_VERSION = 3
#: states of a run
CONNECTING, RUNNING, FINISHED, FAILED, CANCELLED = "connecting", "running", "finished", "failed", "cancelled"
#: the request's pixel inputs, in the order the content key hashes them
KEY_INPUTS = ("image", "second", "mask", "trimap", "background")


#: the fields of a hello's engine row that the content key reads
ENGINE_KEY_FIELDS = ("name", "kind", "available", "uses")


def key_hello(hello: Dict[str, Any]) -> Dict[str, Any]:
    """The part of a server's ``hello`` that :func:`content_key` reads (the server's version, each engine's
    :data:`ENGINE_KEY_FIELDS`): what a cache remembers with a result so that its key can be computed again with
    no server (``content_key(request, key_hello(hello)) == content_key(request, hello)``)."""
    return {"server_version": hello.get("server_version"),
            "engines": [{k: row.get(k) for k in ENGINE_KEY_FIELDS} for row in hello.get("engines", [])]}


def hello_id(hello: Dict[str, Any]) -> str:
    """A short stable name for a hello's key part, so that a cache stores each remembered hello once."""
    text = json.dumps(key_hello(hello), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class RememberedHellos:
    """Which hello (its :func:`key_hello` part) each of a cache's frames was made under, each hello kept once: what
    a cache answers ``made_under(frame)`` from. Saved as :meth:`to_json` gives it; anything else loads as empty
    (a damaged record only costs a recompute)."""

    def __init__(self, data: Any = None):
        self.hellos: Dict[str, Dict[str, Any]] = {}
        self.frames: Dict[str, str] = {}
        if isinstance(data, dict) and isinstance(data.get("hellos"), dict) and isinstance(data.get("frames"), dict):
            self.hellos = {i: h for i, h in data["hellos"].items() if isinstance(h, dict)}
            self.frames = {str(f): i for f, i in data["frames"].items() if i in self.hellos}

    def remember(self, frame: int, hello: Optional[Dict[str, Any]]) -> None:
        """Record the hello the frame's result was made under (None: not known, so forget the old one)."""
        if hello is None:
            self.frames.pop(str(frame), None)
            return
        ident = hello_id(hello)
        self.hellos[ident] = key_hello(hello)
        self.frames[str(frame)] = ident

    def get(self, frame: int) -> Optional[Dict[str, Any]]:
        ident = self.frames.get(str(frame))
        return None if ident is None else self.hellos[ident]

    def to_json(self) -> Dict[str, Any]:
        used = set(self.frames.values())
        return {"hellos": {i: h for i, h in self.hellos.items() if i in used}, "frames": dict(self.frames)}


def content_key(request: Dict[str, Any], hello: Dict[str, Any], extra: Any = None) -> str:
    """sha256 over a ``Client.submit`` request (inputs as numpy arrays or protocol.Buffer) and what in ``hello``
    changes its result (:func:`key_hello`): equal keys mean equal results."""
    params = protocol.validate_params(request.get("params") or {})
    recipe = {"v": CACHE_VERSION, "server": hello.get("server_version"), "engine": _engine_rows(hello, params),
              "params": params, "colorspace": request.get("colorspace", "linear"),
              "premultiplied": bool(request.get("premultiplied", False)), "extra": extra}
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode())
    for name in KEY_INPUTS:
        value = request.get(name)
        digest.update(name.encode())
        if value is None:
            digest.update(b"-")
            continue
        if not isinstance(value, protocol.Buffer):
            value = protocol.Buffer.from_array(name, value)
        digest.update(f"{list(value.shape)}{value.dtype}{value.colorspace}{value.premultiplied}".encode())
        digest.update(memoryview(value.data).cast("B"))
    return digest.hexdigest()


def _engine_rows(hello: Dict[str, Any], params: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The hello rows that decide which engine runs: the named one, or for 'auto' every engine (what is
    available decides the pick)."""
    wanted = params.get("engine", "auto")
    rows = key_hello(hello)["engines"]
    return rows if wanted == "auto" else [row for row in rows if row["name"] == wanted]


class Shot:
    """Matte the run's frames as one shot: ``keys`` are the frames whose mask or trimap guides it (guidance the
    host reads on other frames is not sent; with no keys every frame gets automatic guidance), ``params`` the
    request's parameters (engine 'auto' means the shot engine, classical), ``radius`` the neighbours on each side
    that steady a frame."""

    #: inputs a shot frame carries (docs/protocol.md, *Shots*)
    INPUTS = ("image", "mask", "trimap")

    def __init__(self, keys: Sequence[int] = (), params: Optional[Dict[str, Any]] = None, radius: int = 2):
        self.keys = sorted({int(k) for k in keys})
        self.params = dict(params or {})
        self.radius = int(radius)

    def frame_inputs(self, frame: int, request: Dict[str, Any]) -> Dict[str, Any]:
        """A host's request for one frame -> what the shot sends for it: the image, the guidance on keys only,
        the colour convention. ValueError names an input a shot cannot use (a second frame, a clean plate)."""
        extra = sorted(name for name, value in request.items()
                       if value is not None and name not in self.INPUTS + ("params", "colorspace", "premultiplied"))
        if extra:
            raise ValueError(f"a shot uses the image and the key frames' mask or trimap, not {', '.join(extra)}: "
                             f"turn {'them' if len(extra) > 1 else 'it'} off or matte frame by frame")
        out = {name: request[name] for name in ("image", "colorspace", "premultiplied") if name in request}
        if frame in self.keys:
            guidance = {name: request[name] for name in ("mask", "trimap") if request.get(name) is not None}
            if not guidance:
                raise ValueError(f"key frame {frame} has no mask or trimap to guide the shot")
            out.update(guidance)
        return out


class Work:
    """One frame read: its number, the submit request, the request's content key and, once it has ended (from
    the cache at once, else when its result is written), its ``outcome``."""

    __slots__ = ("frame", "request", "key", "started", "outcome")

    def __init__(self, frame: int, request: Dict[str, Any], key: Optional[str], started: float):
        self.frame, self.request, self.key, self.started = frame, request, key, started
        self.outcome: Optional["FrameOutcome"] = None


class FrameOutcome:
    """How one frame ended: ``cached`` (its result was already there) or computed, the result's ``info`` and the
    seconds from reading its inputs to writing its result."""

    __slots__ = ("frame", "cached", "info", "seconds")

    def __init__(self, frame: int, cached: bool, info: Dict[str, Any], seconds: float):
        self.frame, self.cached, self.info, self.seconds = frame, cached, info, seconds

    def __repr__(self) -> str:
        return f"FrameOutcome({self.frame}, cached={self.cached})"


class FrameRun:
    """Matte ``frames`` one after another (see the module docstring for the callbacks).

    ``cache`` (optional) has ``reuse(frame, key, outputs) -> bool`` (make the frame's stored result current and
    say so), ``record(frame, key, info, hello)`` (after ``write_results``; ``hello`` is :func:`key_hello` of the
    server's; both None for a shot frame, whose result replaced the frame's and has no key) and
    ``made_under(frame)`` (the hello recorded with the frame's stored result, or None), which lets a run with no
    server reuse what did not change (see the module docstring). ``on_connected(hello)`` runs on the stepping
    thread once the server answered (e.g. to refresh an engine menu). ``cancel_wait`` bounds how long a cancel
    waits for the server to confirm.
    """

    def __init__(self, frames: Sequence[int], connect: Callable[[], Any],
                 read_inputs: Callable[[int], Dict[str, Any]], write_results: Callable[[Work, Any], None],
                 cache: Any = None, outputs: Sequence[str] = protocol.DEFAULT_OUTPUTS, key_extra: Any = None,
                 on_connected: Optional[Callable[[Dict[str, Any]], None]] = None, cancel_wait: float = 10.0,
                 shot: Optional[Shot] = None):
        if not frames:
            raise ValueError("frames: nothing to matte")
        self.frames = list(frames)
        self.shot = shot
        if shot is not None:
            steps = {b - a for a, b in zip(self.frames, self.frames[1:])}
            if len(steps) > 1 or min(steps, default=1) < 1:
                raise ValueError("frames: a shot is one ascending range with one step, e.g. 1001-1100 or 1-99x2")
            outside = [k for k in shot.keys if k not in self.frames]
            if outside:
                raise ValueError(f"key frames: {outside[0]} is not one of the frames to matte "
                                 f"({self.frames[0]}-{self.frames[-1]})")
        self._connect = connect
        self._read_inputs = read_inputs
        self._write_results = write_results
        self.cache = cache
        self.outputs = list(outputs)
        self.key_extra = key_extra
        self._on_connected = on_connected
        self.cancel_wait = cancel_wait
        self.state = CONNECTING
        self.hello: Optional[Dict[str, Any]] = None
        self.error: Optional[str] = None  #: what failed, as describe_error says it (with the frame when known)
        #: why the server could not be reached, when the run goes on from the cache without it (else None)
        self.offline: Optional[str] = None
        self._unreachable: Optional[BaseException] = None  # the exception behind ``offline``
        self.exception: Optional[BaseException] = None  #: the exception behind ``error``
        self.outcomes: List[FrameOutcome] = []
        self.last_event: Optional[ProgressEvent] = None  #: the latest progress of the frame in flight
        self.started = time.monotonic()
        self._fraction = 0.0
        self._next = 0  # position in frames of the next frame to read
        self._in_flight: List[Work] = []  # read and not yet in outcomes, in frame order (outcomes stay in order)
        self._unreadable: Optional[tuple] = None  # (exception, frame) of a frame read ahead that could not be read
        self._inbox: "queue.Queue" = queue.Queue()
        self._outbox: "queue.Queue" = queue.Queue()
        self._pending: List[tuple] = []  # messages taken off the outbox by wait(), not yet handled
        self._shot_replies: "queue.Queue" = queue.Queue()  # a shot frame's inputs (or the error reading them)
        self._shot_reads: Dict[int, Work] = {}  # shot frames read, waiting for their result
        self._cancel = threading.Event()
        self._worker = threading.Thread(target=self._work, name="mattebox-client", daemon=True)
        self._worker.start()

    # -------------------------------------------------------------------------------- stepping thread
    @property
    def done(self) -> bool:
        return self.state in (FINISHED, FAILED, CANCELLED)

    @property
    def computed(self) -> List[int]:
        return [o.frame for o in self.outcomes if not o.cached]

    @property
    def reused(self) -> List[int]:
        return [o.frame for o in self.outcomes if o.cached]

    @property
    def infos(self) -> Dict[int, Dict[str, Any]]:
        """Computed frames' ``info`` maps, by frame."""
        return {o.frame: o.info for o in self.outcomes if not o.cached}

    @property
    def fraction(self) -> float:
        """Overall progress in [0, 1], never going back: finished frames plus the reported share of the one in
        flight."""
        within = 0.0
        if self._in_flight and self._in_flight[0].outcome is None and self.last_event is not None:
            within = self.last_event.fraction or 0.0
        share = min(1.0, (len(self.outcomes) + within) / len(self.frames))
        self._fraction = 1.0 if self.state == FINISHED else max(self._fraction, share)
        return self._fraction

    @property
    def position(self) -> int:
        """1-based position in ``frames`` of the frame being worked on (the last one once all are done)."""
        return min(len(self.outcomes) + 1, len(self.frames))

    @property
    def current_frame(self) -> int:
        return self.frames[self.position - 1]

    def status_text(self) -> str:
        """The run as one line for a status bar or a progress message, e.g. "running, frame 1002 (2/10): solve
        3/4"."""
        text = f"{self.state}, frame {self.current_frame} ({self.position}/{len(self.frames)})"
        if self.state == RUNNING and self.offline is not None:
            text += ": from the cache (server not reachable)"
        elif self.state == RUNNING and (self._in_flight or self.shot is not None) and self.last_event is not None:
            text += f": {self.last_event.text()}"
        return text

    def offline_note(self) -> str:
        """What a host says after a run that went on without a server (:attr:`offline` is set), e.g. "3 frame(s)
        from cache; server not reachable: no mattebox server at tcp://127.0.0.1:5555"."""
        return f"{len(self.reused)} frame(s) from cache; server not reachable: {self.offline}"

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
        """Do what is ready without blocking (beyond ``budget`` s of reading and cache checks); True once the run
        is over."""
        if not self.done:
            self._drain()
        if self.done or self._cancel.is_set() or self.state == CONNECTING:
            return self.done
        if self.shot is not None:  # the worker asks for frames ("need"); the run ends with the last result
            if len(self.outcomes) == len(self.frames):
                self._finish(FINISHED)
            return self.done
        deadline = time.monotonic() + budget
        while len(self._in_flight) < 2 and self._next < len(self.frames) and self._unreadable is None:
            frame = self.frames[self._next]  # one read ahead of the server
            self._next += 1
            try:
                work = self._read(frame)
                cached = work.key is not None and self.cache is not None and self.cache.reuse(frame, work.key,
                                                                                             self.outputs)
            except Exception as exc:  # bad inputs (sizes, missing frames) end the run, naming the frame ...
                self._unreadable = (exc, frame)
                break
            self._in_flight.append(work)
            if cached:
                self._ended(work, FrameOutcome(frame, True, {"cache": work.key}, time.monotonic() - work.started))
            elif self.offline is not None:  # with nothing from the cache yet, the reason alone, as with no cache
                if self.reused:
                    self._fail(self._unreachable, frame, "not in the cache, and the server is not reachable: ")
                else:
                    self.offline = None
                    self._fail(self._unreachable)
                return True
            else:
                self._inbox.put(work)
            if time.monotonic() > deadline:
                break
        if self._unreadable is not None and not self._in_flight:  # ... once the frames before it are written
            self._fail(*self._unreadable)
        elif self._next >= len(self.frames) and not self._in_flight:
            self._finish(FINISHED)
        return self.done

    def _read(self, frame: int) -> Work:
        """Read a frame's inputs and key them: with the server's hello, or offline with the hello the cache
        remembers for the frame (no key when it remembers none)."""
        started = time.monotonic()
        request = self._read_inputs(frame)
        request["params"] = dict(request.get("params") or {}, outputs=list(self.outputs))
        hello = (self.hello or {}) if self.offline is None else self.cache.made_under(frame)
        key = content_key(request, hello, self.key_extra) if hello is not None else None
        return Work(frame, request, key, started)

    def wait(self, poll: float = 0.05, timeout: Optional[float] = None,
             on_step: Optional[Callable[["FrameRun"], None]] = None) -> str:
        """Run to the end on this thread; ``on_step(run)`` after every step (progress, cancel checks). A
        ``timeout`` cancels the run when it passes. Returns the final state."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            finished = self.step()
            if on_step is not None:
                on_step(self)
            if finished:
                return self.state
            if deadline is not None and time.monotonic() > deadline:
                self.cancel()
                deadline = None
            self._await_message(poll)

    def join(self, timeout: Optional[float] = None) -> bool:
        """After the run is over: wait (up to ``timeout`` s) for the worker thread to close its connection; True
        once it has."""
        self._worker.join(timeout)
        return not self._worker.is_alive()

    def _await_message(self, timeout: float) -> None:
        """Sleep until the worker reports something (or ``timeout``), keeping the message for _drain."""
        try:
            self._pending.append(self._outbox.get(timeout=timeout))
        except queue.Empty:
            pass

    def _drain(self) -> None:
        """Handle the worker's messages (connected, progress, need, result, error, cancelled) in order."""
        while not self.done:
            try:
                message = self._pending.pop(0) if self._pending else self._outbox.get_nowait()
            except queue.Empty:
                return
            kind = message[0]
            if kind == "unreachable":
                self._go_offline(message[1])
            elif kind == "connected":
                self.hello = message[1]
                if self.state == CONNECTING:
                    self.state = RUNNING
                    if self._on_connected is not None:
                        self._on_connected(self.hello)
            elif kind == "progress":
                self.last_event = message[1]
            elif kind == "need":
                self._read_shot_frame(message[1])
            elif kind == "result":
                self._finish_frame(*message[1:])
            elif kind == "error":
                self._fail(message[1], message[2])
            elif kind == "cancelled":
                self._finish(CANCELLED)

    def _go_offline(self, exc: BaseException) -> None:
        """No server could be reached (``exc`` says why): go on with the cache's remembered hellos, or fail at once
        without a cache that remembers them, or for a shot (its frames are never cached)."""
        if self.shot is not None or not callable(getattr(self.cache, "made_under", None)):
            self._fail(exc)
            return
        self._unreachable, self.offline = exc, describe_error(exc)
        self.state = RUNNING

    def _read_shot_frame(self, frame: int) -> None:
        """Answer the worker's ask for a shot frame with its inputs, or with the error reading them."""
        try:
            started = time.monotonic()
            request = self.shot.frame_inputs(frame, self._read_inputs(frame))
            self._shot_reads[frame] = Work(frame, request, None, started)
            self._shot_replies.put(request)
        except Exception as exc:
            self._shot_replies.put(exc)

    def _finish_frame(self, work: Work, result: Any) -> None:
        if self.shot is not None:
            work = self._shot_reads.pop(work.frame, work)
            self._in_flight.append(work)  # a shot's results arrive in frame order: it ends at once
        self.last_event = None
        if self._cancel.is_set():
            return
        try:
            self._write_results(work, result)
        except Exception as exc:
            self._fail(exc, work.frame, "writing the result failed: ")
            return
        info = dict(result.info)
        if self.cache is not None:  # a shot frame is recorded with no key: its files no longer match any
            self.cache.record(work.frame, work.key, info, key_hello(self.hello or {}) if work.key else None)
        self._ended(work, FrameOutcome(work.frame, False, info, time.monotonic() - work.started))

    def _ended(self, work: Work, outcome: FrameOutcome) -> None:
        """Record a frame's outcome; outcomes are published in frame order (a cached frame read ahead waits for
        the computed one before it)."""
        work.outcome = outcome
        while self._in_flight and self._in_flight[0].outcome is not None:
            self.outcomes.append(self._in_flight.pop(0).outcome)

    def _fail(self, exc: BaseException, frame: Optional[int] = None, what: str = "") -> None:
        self.exception = exc
        where = f"frame {frame}: " if frame is not None and (len(self.frames) > 1 or what) else ""
        self.error = f"{where}{what}{describe_error(exc)}"
        self._finish(FAILED)

    def _finish(self, state: str) -> None:
        self.state = state
        if state == CANCELLED and self.exception is None:
            self.exception, self.error = Cancelled(), "cancelled"
        self._cancel.set()  # stops the worker if it is still waiting
        self._inbox.put(None)

    # ------------------------------------------------------------------------------------ worker thread
    def _open(self) -> Any:
        """Connect and handshake; None when that failed (the stepping thread is told why: "unreachable")."""
        client = None
        try:
            client = self._connect()
            hello = client.server_info if client.server_info is not None else client.hello()
        except Exception as exc:
            if client is not None:
                client.close()
            self._outbox.put(("unreachable", exc))
            return None
        self._outbox.put(("connected", hello))
        return client

    def _work(self) -> None:
        client = self._open()
        if client is None:
            return
        work = None
        try:
            if self.shot is not None:
                self._work_shot(client)
                return
            while True:
                work = self._next_work()
                if work is None:
                    if self._cancel.is_set() and self.state not in (FAILED, FINISHED):
                        self._outbox.put(("cancelled",))
                    return
                result = self._follow(client.submit(**work.request))
                if result is None:
                    self._outbox.put(("cancelled",))
                    return
                self._outbox.put(("result", work, result))
        except Exception as exc:
            if self._cancel.is_set() and (getattr(exc, "code", None) == "cancelled" or isinstance(exc, Cancelled)):
                self._outbox.put(("cancelled",))
            elif isinstance(exc, _FrameError):
                self._outbox.put(("error", exc.error, exc.frame))
            else:
                self._outbox.put(("error", exc, work.frame if work is not None else None))
        finally:
            client.close()

    def _work_shot(self, client: Any) -> None:
        """Worker thread: the whole run as one ``Client.matte_shot``; results go out frame by frame."""
        if self._cancel.is_set():
            return
        params = dict(self.shot.params, outputs=list(self.outputs))
        engine = params.pop("engine", "auto")
        engine = "classical" if engine == "auto" else engine
        results = client.matte_shot(self.frames, self._ask_for_frame, keys=self.shot.keys, engine=engine,
                                    params=params, outputs=self.outputs, radius=self.shot.radius,
                                    on_progress=lambda event: self._outbox.put(("progress",
                                                                               ProgressEvent.from_header(event))),
                                    should_cancel=self._cancel.is_set)
        for frame, result in results:
            self._outbox.put(("result", Work(frame, {}, None, time.monotonic()), result))

    def _ask_for_frame(self, frame: int) -> Dict[str, Any]:
        """matte_shot's read_frame, on the worker thread: the stepping thread reads the frame (host APIs belong
        to it); a read error is raised here, so the shot is cancelled on the server and the run fails."""
        self._outbox.put(("need", frame))
        while not self._cancel.is_set():
            try:
                reply = self._shot_replies.get(timeout=0.05)
            except queue.Empty:
                continue
            if isinstance(reply, BaseException):
                raise _FrameError(frame, reply)
            return reply
        raise Cancelled()

    def _next_work(self) -> Optional[Work]:
        """Worker thread: the next frame to submit, or None once the run is over or cancelled."""
        while not self._cancel.is_set():
            try:
                return self._inbox.get(timeout=0.05)
            except queue.Empty:
                continue
        return None

    def _follow(self, job: Any) -> Any:
        """Poll a job to its end, forwarding its progress; on cancel, tell the server and wait (bounded) for it
        to confirm. Returns the result, or None when cancelled."""
        cancel_deadline = None
        while not job.done:
            if self._cancel.is_set() and cancel_deadline is None:
                job.cancel()
                cancel_deadline = time.monotonic() + self.cancel_wait
            if cancel_deadline is not None and time.monotonic() > cancel_deadline:
                return None  # the server did not confirm in time: give up on the job, not on the UI
            for event in job.poll(0.05):
                self._outbox.put(("progress", ProgressEvent.from_header(event)))
        try:
            return job.result(timeout=0)
        except Exception as exc:
            if getattr(exc, "code", None) == "cancelled":
                return None
            raise


class _FrameError(Exception):
    """A shot frame the host could not read, carried through matte_shot to the worker's report."""

    def __init__(self, frame: int, error: BaseException):
        super().__init__(str(error))
        self.frame, self.error = frame, error
