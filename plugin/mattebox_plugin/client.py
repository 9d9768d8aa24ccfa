"""The mattebox client: handshake, submit, progress, cancel, timeouts and reconnect, over a ZeroMQ DEALER.

Single-threaded and poll-driven, so a host can drive it from a UI timer (``job.poll(0)``) or block on it
(``job.result()``). Every wait is bounded: ``timeout`` is the longest silence accepted from the server. While a
job runs the client pings it (``attach``) every ``heartbeat`` seconds; after ``timeout`` seconds of silence it
reconnects once on a fresh socket and re-attaches. A server with a job store (the default for ``mattebox serve``)
still knows the job after a restart and answers the attach with its stored result, or reruns it; only when the
server answers ``unknown_job`` (a memory-only server restarted) does the client resubmit the request it kept, so a
restart loses no work either way. Only after a second silent ``timeout`` does it raise :class:`ServerUnavailable`.

Jobs belong to their submitter (docs/protocol.md, *Ownership*): the client sends a random ``owner_key`` with every
job request, and only a client holding the same key (or, over CURVE, the same client key pair) can attach,
cancel or release the job. Pass ``owner_key`` to a new Client to pick up jobs of an earlier process.
"""
from __future__ import annotations

import os
import secrets
import socket
import time
import uuid
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import zmq

from . import __version__, protocol, shm
from .config import DEFAULT_ENDPOINT
from .errors import JobFailed, ServerUnavailable  # noqa: F401  (re-exported: hosts catch client.JobFailed)
from .protocol import Buffer, ProtocolError

#: channels of each float32 output, to reserve shared memory for a result
_OUTPUT_CHANNELS = {"alpha": 1, "foreground": 3, "trimap": 1, "premultiplied": 4}


def _new_id() -> str:
    return uuid.uuid4().hex


class Result:
    """A finished job: output buffers by name, plus the server's ``info`` map."""

    def __init__(self, job_id: str, buffers: Dict[str, Buffer], info: Dict[str, Any]):
        self.id = job_id
        self.buffers = buffers
        self.info = info

    def get(self, name: str):
        """An output as a numpy array (a Buffer when numpy is missing), or None if it was not requested."""
        buf = self.buffers.get(name)
        if buf is None:
            return None
        try:
            return buf.to_array()
        except ImportError:
            return buf

    alpha = property(lambda self: self.get("alpha"))
    foreground = property(lambda self: self.get("foreground"))
    trimap = property(lambda self: self.get("trimap"))
    premultiplied = property(lambda self: self.get("premultiplied"))


def engine_note(engine: Dict[str, Any]) -> str:
    """What a host's engine menu says after an engine's name from hello: "" when it can run; for one whose
    weights are missing, the command that installs them (hello's ``get``); otherwise why it cannot run."""
    if engine.get("available", False):
        return ""
    if engine.get("get"):
        return f"not installed: run `{engine['get']}` (`mattebox models` lists the choices)"
    return f"unavailable: {engine.get('why') or 'unknown reason'}"


def pair_note(infos: Iterable[Dict[str, Any]]) -> Optional[str]:
    """One line for a host's status about the second frame, from the results' ``info`` maps: None when no frame
    had one; else how many frames used it, the engine's reason (``pair_why``) when some did not, or that the
    engine ignores second frames (``ignored_inputs``)."""
    infos = list(infos)
    ignored = [info for info in infos if "second" in info.get("ignored_inputs", ())]
    if ignored:
        return (f"second frame ignored on {len(ignored)} frame(s): engine {ignored[0].get('engine', '?')} does not "
                "use one (engine auto picks the two-frame engine)")
    pairs = [info for info in infos if "pair_usable" in info]
    if not pairs:
        return None
    unused = [info for info in pairs if not info["pair_usable"]]
    if not unused:
        return f"second frame used on {len(pairs)} frame(s)"
    why = unused[0].get("pair_why", "the engine did not use it")
    return f"second frame not used on {len(unused)} of {len(pairs)} frame(s): {why}"


def plate_note(infos: Iterable[Dict[str, Any]]) -> Optional[str]:
    """One line for a host's status about the clean plate (``background``), from the results' ``info`` maps: that
    the engine ignored it (``ignored_inputs``), or on how many frames it was used (``foreground_method`` ending
    ``+plate`` or a ``plate:`` guidance, docs/classical.md section 4) and how many its difference matte guided;
    None when no info mentions a plate."""
    infos = list(infos)
    ignored = [info for info in infos if "background" in info.get("ignored_inputs", ())]
    if ignored:
        return (f"clean plate ignored on {len(ignored)} frame(s): engine {ignored[0].get('engine', '?')} does not "
                "use one")
    guided = sum(str(info.get("guidance", "")).startswith("plate:") for info in infos)
    used = sum(str(info.get("guidance", "")).startswith("plate:")
               or str(info.get("foreground_method", "")).endswith("+plate") for info in infos)
    if not used:
        return None
    note = f"clean plate used on {used} frame(s)"
    if guided:
        note += f", its difference matte guided {guided} (no mask or trimap)"
    return note


def guidance_note(infos: Iterable[Dict[str, Any]]) -> Optional[str]:
    """One line for a host's status when the guidance left nothing definite on some frames (``warnings`` in the
    results' ``info``: no definite foreground or background, so the matte cannot be trusted); None otherwise."""
    warned = [(info.get("frame"), warning) for info in infos for warning in info.get("warnings", ())]
    if not warned:
        return None
    return f"warning on {len(warned)} frame(s): {warned[0][1]}"


def result_notes(infos: Iterable[Dict[str, Any]]) -> List[str]:
    """Every note a host shows after a run, from the results' ``info`` maps: the second frame, the clean plate and
    the guidance (:func:`pair_note`, :func:`plate_note`, :func:`guidance_note`), those that apply."""
    infos = list(infos)
    return [note for note in (pair_note(infos), plate_note(infos), guidance_note(infos)) if note]


class Job:
    """A submitted matte job. Poll it, iterate its progress, wait for its result, or cancel it."""

    def __init__(self, client: "Client", job_id: str, header: Optional[Dict[str, Any]], frames: List[Any],
                 auto_release: bool = True):
        self.client = client
        self.id = job_id
        #: kept until the result arrives, to resubmit after a memory-only server restarted (None: attached by id)
        self._request = (header, frames) if header is not None else None
        self._events: List[Dict[str, Any]] = []
        self._result: Optional[Result] = None
        self._error: Optional[JobFailed] = None
        self.last_progress: Optional[Dict[str, Any]] = None
        self._last_heard = time.monotonic()
        self._last_ping = time.monotonic()
        self._reconnected = False
        self.accepted = False
        self._segment: Optional[shm.Segment] = None  #: same-host shared memory holding inputs and outputs
        self._inline_request = self._request  #: the request with pixels as frames (resubmitted to a new server)
        self._resubmitted = False
        self._auto_release = auto_release

    @property
    def done(self) -> bool:
        return self._result is not None or self._error is not None

    def poll(self, timeout: float = 0.0) -> List[Dict[str, Any]]:
        """Receive what has arrived (waiting up to ``timeout`` s) and return new progress events.

        Raises ServerUnavailable after the client's timeout of silence (one reconnect is tried first).
        """
        if not self.done:
            self.client._pump(timeout)
            self._keepalive()
        events, self._events = self._events, []
        return events

    def progress(self) -> Iterator[Dict[str, Any]]:
        """Block, yielding progress events until the job is done."""
        while not self.done:
            for event in self.poll(min(self.client.heartbeat, 0.5)):
                yield event
        for event in self.poll(0.0):
            yield event

    def result(self, timeout: Optional[float] = None) -> Result:
        """Wait for the result (``timeout`` bounds the whole wait; None waits while the server answers)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {self.id} did not finish within {timeout} s")
            self.poll(min(self.client.heartbeat, 0.5))
        if self._error is not None:
            raise self._error
        return self._result

    def cancel(self) -> None:
        """Ask the server to stop the job at its next stage boundary; result() will raise code 'cancelled'."""
        if not self.done:
            self.client._send(self.client._owned({"op": protocol.CANCEL, "id": self.id}))

    def release(self) -> None:
        """Tell the server it may free the stored result (done automatically once a result is received)."""
        self.client._send(self.client._owned({"op": protocol.RELEASE, "id": self.id}))

    # ------------------------------------------------------------------------------------ internals
    def _heard(self) -> None:
        self._last_heard = time.monotonic()
        self._reconnected = False

    def _keepalive(self) -> None:
        if self.done:
            return
        now = time.monotonic()
        silent = now - self._last_heard
        if silent > self.client.timeout:
            if self._reconnected:
                raise ServerUnavailable(f"no answer from the mattebox server at {self.client.endpoint} for "
                                        f"{silent:.0f} s (job {self.id}); is it running?")
            self.client._reconnect()  # (the next submit says hello again: maybe a restarted server)
            self._reconnected = True
            self._last_heard = now
            self._attach()
        elif now - self._last_ping > self.client.heartbeat:
            self._attach()

    def _attach(self) -> None:
        self._last_ping = time.monotonic()
        self.client._send(self.client._owned({"op": protocol.ATTACH, "id": self.id}))

    def _free_segment(self) -> None:
        if self.done:
            self._inline_request = None
        if self._segment is not None and self.client._shm_pool is not None:
            self.client._shm_pool.release(self._segment)  # reused once no result array views it
        self._segment = None

    def _deliver(self, header: Dict[str, Any], frames: List[Any]) -> None:
        self._heard()
        op = header["op"]
        if op == protocol.PROGRESS:
            event = {k: header.get(k) for k in ("stage", "done", "total", "message", "state")}
            self.last_progress = event
            self._events.append(event)
        elif op == protocol.RESULT:
            buffers = protocol.validate_result_buffers(header, frames, shm=self.client._shm_resolver)
            self._result = Result(self.id, buffers, header.get("info", {}))
            self._request = None
            self._free_segment()
            if self._auto_release:
                self.release()
        elif op == protocol.ERROR:
            if header.get("code") == "unknown_job" and self._request is not None and self.client.resubmit:
                header_, frames_ = self._request  # the server lost the job (restart): submit it again
                if self._segment is not None:  # a new server has not seen this client's shm probe: go inline
                    header_, frames_ = self._request = self._inline_request
                    self._free_segment()
                    self.client.server_info = None  # the next submit says hello again (and re-proves shm)
                self.client._send(header_, frames_)
                self._resubmitted = True
                return
            if header.get("code") == "duplicate_job" and self._resubmitted:
                return  # two pings both heard unknown_job and both resubmitted: the server has the first copy
            self._error = JobFailed.from_header(header)
            self._request = None
            self._free_segment()
        # ACCEPTED and CANCEL acknowledgements only refresh liveness


class ShotJob(Job):
    """A shot job (:meth:`Client.matte_shot`): the server asks for frames (``need``) and streams one ``result``
    per output frame (``final`` on the last). Not resubmitted after a server restart: the server does not keep
    shot jobs, so an ``unknown_job`` ends it with ``job_lost``."""

    def __init__(self, client: "Client", job_id: str, frames: List[int]):
        super().__init__(client, job_id, None, [])
        self.frames = frames
        self.needs: List[int] = []  #: frames the server asked for, not yet sent
        self.results: List[Tuple[int, Result]] = []  #: received, not yet yielded
        self._received = 0  #: results received so far (the server sends them in frame order)

    @property
    def next_frame(self) -> Optional[int]:
        """The frame the next result is expected for (None once all have arrived)."""
        return self.frames[self._received] if self._received < len(self.frames) else None

    def _deliver(self, header: Dict[str, Any], frames: List[Any]) -> None:
        op = header["op"]
        if op == protocol.NEED:
            self._heard()
            frame = header.get("frame")
            if frame not in self.needs:
                self.needs.append(frame)
        elif op == protocol.RESULT:
            self._heard()
            frame = header.get("frame")
            if self.next_frame is None or (isinstance(frame, int) and frame < self.next_frame):
                return  # a re-delivery (an attach after the end) of a frame already received
            if frame != self.next_frame:
                self._error = JobFailed("bad_message", f"shot job {self.id}: expected the result of frame "
                                        f"{self.next_frame}, got {frame!r} (results were lost on the way)",
                                        field="frame", hint="render the shot again")
                return
            buffers = protocol.validate_result_buffers(header, frames)
            info = dict(header.get("info", {}), frame=frame)
            self.results.append((frame, Result(self.id, buffers, info)))
            self._received += 1
            if header.get("final", True):
                self._result = self.results[-1][1]
                if self._auto_release:
                    self.release()
        elif op == protocol.PROGRESS:
            super()._deliver(header, frames)
            event = self._events[-1]
            if event.get("stage") == "shot" and isinstance(event.get("done"), int):
                event["frame"] = self.frames[min(event["done"], len(self.frames) - 1)]
        elif op == protocol.ERROR and header.get("code") == "unknown_job":
            self._error = JobFailed("job_lost", f"the server no longer knows shot job {self.id} (it restarted; "
                                    f"shot jobs are not kept across restarts): render the shot again", field="id")
        else:
            super()._deliver(header, frames)


class Client:
    """Connection to one mattebox server.

    ``timeout``: the longest silence accepted from the server, in seconds. ``heartbeat``: how often a waiting job
    pings the server. ``server_public_key``: the server's CURVE public key (Z85 text) for remote, encrypted
    servers; the client then makes an ephemeral key pair (kept for the client's life, so a reconnect still owns
    its jobs) unless ``client_secret_key``/``client_public_key`` are given (servers that authenticate clients need
    the registered pair). ``owner_key``: the secret that makes this client the owner of the jobs it submits
    (default: a fresh random one; reuse an earlier client's :attr:`owner_key` to attach to its jobs).
    """

    def __init__(self, endpoint: Optional[str] = None, timeout: float = 30.0, heartbeat: float = 2.0,
                 server_public_key: Optional[str] = None, client_public_key: Optional[str] = None,
                 client_secret_key: Optional[str] = None, resubmit: bool = True, context: Optional[zmq.Context] = None,
                 shared_memory: Optional[bool] = None, owner_key: Optional[str] = None):
        self.endpoint = endpoint or DEFAULT_ENDPOINT
        self.timeout = float(timeout)
        self.heartbeat = float(heartbeat)
        self.resubmit = resubmit
        self.client_id = _new_id()
        self.owner_key = protocol.validate_owner_key({protocol.OWNER_KEY: owner_key or secrets.token_hex(32)})
        if server_public_key and not (client_public_key and client_secret_key):
            client_public_key, client_secret_key = zmq.curve_keypair()  # one pair for the client's life
        self._curve = (server_public_key, client_public_key, client_secret_key)
        self._own_context = context is None
        self._ctx = context or zmq.Context()
        self._sock: Optional[zmq.Socket] = None
        self._jobs: Dict[str, Job] = {}
        self._replies: Dict[str, Dict[str, Any]] = {}
        self.server_info: Optional[Dict[str, Any]] = None
        if shared_memory is None:
            shared_memory = os.environ.get("MATTEBOX_SHM", "1") != "0"
        self._want_shm = bool(shared_memory) and shm.supported()
        self._shm_pool: Optional[shm.ClientPool] = None
        self._connect()

    # ----------------------------------------------------------------------------------- public API
    def hello(self) -> Dict[str, Any]:
        """Handshake: check the protocol version and learn engines, limits and device. On Linux it also offers
        shared memory: the server reads a probe segment this client made (a sealed memfd, or a /dev/shm file where
        the server may not open this process's memfds); if it can, it shares this host, and pixels then travel
        through shared memory (:attr:`shared_memory` tells)."""
        request = {"op": protocol.HELLO, "client": self.client_id, "client_version": __version__,
                   "protocol": protocol.PROTOCOL_VERSION, "hostname": socket.gethostname()}
        memfd = shm.memfd_supported()
        reply = self._hello_with_probe(request, memfd)
        if memfd and reply.get(protocol.SHM) is False \
                and str(reply.get("shm_reason", "")).startswith(shm.PROBE_UNREADABLE) and shm.named_supported():
            memfd = False  # the server may not open this process's descriptors (another user, non-dumpable)
            reply = self._hello_with_probe(request, memfd)
        server_protocol = reply.get("protocol")
        if server_protocol != protocol.PROTOCOL_VERSION:
            raise ProtocolError("bad_version", f"server speaks protocol v{server_protocol} (mattebox "
                                f"{reply.get('server_version')}), this client speaks v{protocol.PROTOCOL_VERSION} "
                                f"(mattebox {__version__})", field="v", hint="upgrade the older side")
        self.server_info = reply
        if reply.get(protocol.SHM) is True and (self._shm_pool is None or self._shm_pool.memfd != memfd):
            if self._shm_pool is not None:
                self._shm_pool.close()
            self._shm_pool = shm.ClientPool(memfd=memfd)
        elif reply.get(protocol.SHM) is not True and self._shm_pool is not None:
            self._shm_pool.close()  # another server now answers here (not on this host)
            self._shm_pool = None
        return reply

    def _hello_with_probe(self, request: Dict[str, Any], memfd: bool) -> Dict[str, Any]:
        """Send ``hello``, offering a probe segment of the given kind when shared memory is wanted."""
        probe = None
        if self._want_shm:
            try:
                probe = shm.probe_create(memfd)
                request = dict(request, **{protocol.SHM: {"name": probe.name, "key": probe.key}})
            except OSError:
                probe = None  # no room for a segment: go inline
        try:
            return self._request(request)
        finally:
            if probe is not None:
                probe.unlink()
                probe.close()

    @property
    def shared_memory(self) -> bool:
        """True when pixels travel through shared memory (same host, agreed in hello)."""
        return self._shm_pool is not None

    def status(self) -> Dict[str, Any]:
        """Server health; ``running`` lists only this client's (this owner's) running jobs."""
        return self._request(self._owned({"op": protocol.STATUS}))

    def submit(self, image: Any, second: Any = None, mask: Any = None, trimap: Any = None, background: Any = None,
               params: Optional[Dict[str, Any]] = None, colorspace: str = "linear", premultiplied: bool = False,
               job_id: Optional[str] = None) -> Job:
        """Send a matte job and wait until the server accepted it (or raise JobFailed naming the bad field).

        Returns at ``accepted`` or at the job's first progress, whichever comes first. A server with a job store
        sends ``accepted`` once the job is on disk, so ``job.accepted`` turning True means a server restart will
        not lose it.

        Inputs are numpy arrays or :class:`protocol.Buffer`; ``colorspace``/``premultiplied`` describe the colour
        inputs given as arrays (``image``, ``second``, ``background``); masks and trimaps are data.
        """
        if self.server_info is None:
            self.hello()
        params = protocol.validate_params(params or {})
        buffers = protocol.input_buffers({"image": image, "second": second, "mask": mask, "trimap": trimap,
                                          "background": background}, colorspace, premultiplied)
        job_id = job_id or _new_id()
        header = self._owned({"op": protocol.MATTE, "id": job_id, "client": self.client_id, "params": params,
                              "buffers": [b.describe() for b in buffers]})
        frames = [b.data for b in buffers]
        self._check_buffers(header, frames)
        job = Job(self, job_id, header, frames)
        if self._shm_pool is not None:
            job._inline_request = (header, frames)
            header, frames, job._segment = self._to_shared_memory(header, buffers, params["outputs"])
            job._request = (header, frames)
        self._jobs[job_id] = job
        self._send(header, frames)
        self._await_accepted(job)
        return job

    def matte_shot(self, frames: Sequence[int], read_frame: Callable[[int], Dict[str, Any]], *,
                   keys: Iterable[int] = (), engine: str = "classical", params: Optional[Dict[str, Any]] = None,
                   outputs: Sequence[str] = protocol.DEFAULT_OUTPUTS, on_progress: Optional[Callable] = None,
                   should_cancel: Optional[Callable[[], bool]] = None,
                   radius: int = 2) -> Iterator[Tuple[int, Result]]:
        """Matte ``frames`` as one shot on the server (docs/shots.md, docs/protocol.md *Shots*); yields
        ``(frame, Result)`` in frame order as each frame is done.

        ``frames``: consecutive ascending frame numbers with one step. ``read_frame(frame)`` returns the keyword
        arguments of :meth:`submit` for that frame (``image=...``, plus ``mask=...`` or ``trimap=...`` on the frames
        listed in ``keys``, and optionally ``colorspace``/``premultiplied``); it is called only when the server asks
        for that frame, so neither side holds the shot. With no ``keys`` every frame gets automatic guidance.
        ``on_progress(event)`` gets the progress events of :meth:`Job.progress`, each with ``frame``: the frame
        being solved (``stage`` 'shot') or read (``stage`` 'read'). ``should_cancel()`` returning True cancels the
        shot on the server and raises :class:`JobFailed` with code 'cancelled'; so does closing the iterator early
        (without the raise). ``radius``: neighbours on each side that steady a frame (0: frames solved alone).
        Errors (a frame the server refuses, a server that lost the job) raise :class:`JobFailed` naming the field.
        """
        frames = [int(f) for f in frames]
        step = frames[1] - frames[0] if len(frames) > 1 else 1
        if not frames or step < 1 or frames != list(range(frames[0], frames[0] + step * len(frames), step)):
            raise JobFailed("bad_field", "frames: expected consecutive frame numbers with one step, ascending",
                            field="frames")
        if self.server_info is None:
            self.hello()
        params = protocol.validate_params(dict(params or {}, engine=engine, outputs=list(outputs)))
        job_id = _new_id()
        shot = {"first": frames[0], "last": frames[-1], "step": step, "keys": sorted({int(k) for k in keys}),
                "radius": int(radius)}
        header = self._owned({"op": protocol.MATTE, "id": job_id, "client": self.client_id, "params": params,
                              "buffers": [], protocol.SHOT: shot})
        try:
            protocol.validate_shot(header)  # same checks as the server, before sending
        except ProtocolError as exc:
            raise JobFailed(exc.code, exc.message, exc.field, exc.hint) from None
        job = ShotJob(self, job_id, frames)
        self._jobs[job_id] = job
        self._send(header)
        finished = False
        try:
            self._await_accepted(job)
            while True:
                if should_cancel is not None and should_cancel():
                    raise JobFailed("cancelled", f"shot {frames[0]}-{frames[-1]} cancelled before frame "
                                    f"{job.next_frame}")  # (the finally cancels it on the server)
                if job.results:
                    yield job.results.pop(0)
                    continue
                if job.done:
                    finished = True
                    if job._error is not None:
                        raise job._error
                    return
                if job.needs:
                    frame = job.needs.pop(0)
                    if on_progress is not None:
                        on_progress({"stage": "read", "done": 0, "total": 0, "message": f"frame {frame}",
                                     "state": "running", "frame": frame})
                    self._send_frame(job, frame, read_frame(frame))
                    continue
                for event in job.poll(min(self.heartbeat, 0.5)):
                    if on_progress is not None:
                        on_progress(event)
        finally:
            if not finished and self._sock is not None:
                job.cancel()  # stopped early (an error here, should_cancel, or the caller closed the iterator)
            self._jobs.pop(job_id, None)

    def _send_frame(self, job: "ShotJob", frame: int, inputs: Dict[str, Any]) -> None:
        """Send one frame's inputs (``read_frame``'s keyword arguments) for a shot job."""
        if not isinstance(inputs, dict):
            raise JobFailed("bad_field", f"read_frame({frame}) returned {type(inputs).__name__}, expected a dict of "
                            f"submit's keyword arguments (image=..., mask=... or trimap=... on keys)", field="frames")
        inputs = dict(inputs)
        colorspace = inputs.pop("colorspace", "linear")
        premultiplied = inputs.pop("premultiplied", False)
        unknown = sorted(set(inputs) - set(protocol.INPUTS))
        if unknown:
            raise JobFailed("bad_field", f"read_frame({frame}) returned {unknown[0]!r}; expected inputs among "
                            f"{', '.join(protocol.INPUTS)}", field=unknown[0])
        buffers = protocol.input_buffers(inputs, colorspace, premultiplied)
        header = self._owned({"op": protocol.FRAME, "id": job.id, "frame": frame,
                              "buffers": [b.describe() for b in buffers]})
        data = [b.data for b in buffers]
        self._check_buffers(header, data)
        self._send(header, data)

    def _check_buffers(self, header: Dict[str, Any], frames: List[Any]) -> None:
        """The server's buffer checks and size limit, before sending (raises JobFailed naming the field)."""
        limits = dict(protocol.DEFAULT_LIMITS, **self.server_info.get("limits", {}))
        try:
            protocol.validate_buffers(header, frames, limits)
        except ProtocolError as exc:
            raise JobFailed(exc.code, exc.message, exc.field, exc.hint) from None
        size = protocol.message_nbytes(frames)
        if size > limits["max_message_bytes"]:
            raise JobFailed("too_large", f"request is {size} bytes, over the server's max_message_bytes "
                            f"{limits['max_message_bytes']}", field="buffers")

    def _await_accepted(self, job: "Job") -> None:
        """Wait until the server accepted ``job`` (or already reports on it); raise its error if it refused."""
        deadline = time.monotonic() + self.timeout
        while not job.done and not job.accepted and job.last_progress is None:
            if time.monotonic() > deadline:
                raise ServerUnavailable(f"the mattebox server at {self.endpoint} did not accept job {job.id} "
                                        f"within {self.timeout} s")
            self._pump(0.1)
        if job._error is not None:
            raise job._error

    def attach(self, job_id: str, release: bool = True) -> Job:
        """Follow a job submitted earlier, by this or another process (e.g. before a crash) with this client's
        ``owner_key`` (or CURVE key): its progress and result come to this client. ``release=False`` leaves the
        result on the server to fetch again. Raises JobFailed (``unknown_job``) from ``result()`` when the server
        does not know the id or the job has another owner."""
        job_id = protocol.validate_job_id({"id": job_id})
        job = Job(self, job_id, None, [], auto_release=release)
        self._jobs[job_id] = job
        job._attach()
        return job

    def close(self) -> None:
        if self._shm_pool is not None:
            self._shm_pool.close()
            self._shm_pool = None
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None
        if self._own_context:
            self._ctx.term()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------------------ internals
    def _connect(self) -> None:
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        server_key, public, secret = self._curve
        if server_key:
            sock.curve_serverkey = server_key.encode() if isinstance(server_key, str) else server_key
            sock.curve_publickey = public.encode() if isinstance(public, str) else public
            sock.curve_secretkey = secret.encode() if isinstance(secret, str) else secret
        if self.endpoint.startswith("tcp://["):  # an IPv6 address: ZeroMQ sockets are IPv4-only unless told
            sock.setsockopt(zmq.IPV6, 1)
        sock.connect(self.endpoint)
        self._sock = sock

    def _to_shared_memory(self, header: Dict[str, Any], buffers: List[Buffer], outputs: List[str]):
        """Copy the inputs into a pooled segment, reserve room for the outputs; -> (header, frames, segment).
        Returns the inline request unchanged when the pool is over its limit."""
        height, width = buffers[0].shape[:2]
        out_bytes = sum(shm.align(height * width * 4 * _OUTPUT_CHANNELS[name]) for name in outputs)
        in_bytes = sum(shm.align(b.nbytes) for b in buffers)
        segment = self._shm_pool.acquire(in_bytes + out_bytes)
        if segment is None:
            return header, [b.data for b in buffers], None
        descs, at = [], shm.HEADER
        for buf in buffers:
            segment.view(at, buf.nbytes)[:] = memoryview(buf.data).cast("B")
            descs.append(dict(buf.describe(), shm=segment.ref(at)))
            at += shm.align(buf.nbytes)
        header = dict(header, buffers=descs, reply_shm=dict(segment.ref(at), size=out_bytes))
        return header, [], segment

    def _owned(self, header: Dict[str, Any]) -> Dict[str, Any]:
        """``header`` with this client's owner key (docs/protocol.md, *Ownership*)."""
        return dict(header, **{protocol.OWNER_KEY: self.owner_key})

    def _shm_resolver(self, value: Any, nbytes: int) -> Any:
        segment = None
        if self._shm_pool is not None and isinstance(value, dict):
            segment = self._shm_pool.get(value.get("name"))
        if segment is None or not isinstance(value.get("offset"), int):
            raise ValueError(f"result names shared memory {value!r} this client does not own")
        return segment.pinned(value["offset"], nbytes)

    def _curve_hint(self) -> str:
        if not self._curve[0]:
            return ""
        return (" — with CURVE, a wrong server_public_key or a client key the server has not registered (its "
                "--curve-clients folder) also looks like silence; the server log says 'client refused'")

    def _reconnect(self) -> None:
        self._sock.close(linger=0)
        self._connect()
        self.server_info = None  # a new connection has proved no shared memory: the next submit says hello again

    def _send(self, header: Dict[str, Any], frames: Sequence[Any] = ()) -> None:
        self._sock.send_multipart(protocol.encode(header, frames), copy=False)

    def _request(self, header: Dict[str, Any]) -> Dict[str, Any]:
        """Send a request that has one reply (hello, status), matched by id; reconnect once on silence."""
        request_id = _new_id()
        header = dict(header, id=request_id)
        for attempt in range(2):
            self._send(header)
            deadline = time.monotonic() + self.timeout
            while time.monotonic() < deadline:
                self._pump(min(0.1, max(0.0, deadline - time.monotonic())))
                if request_id in self._replies:
                    reply = self._replies.pop(request_id)
                    if reply["op"] == protocol.ERROR:
                        raise ProtocolError.from_header(reply)
                    return reply
            if attempt == 0:
                self._reconnect()
        raise ServerUnavailable(f"no answer from the mattebox server at {self.endpoint} within {self.timeout} s "
                                f"('{header['op']}'); is it running? (start one with `mattebox serve`)"
                                + self._curve_hint())

    def _pump(self, timeout: float) -> None:
        """Receive and dispatch every message available, waiting up to ``timeout`` s for the first."""
        wait_ms = int(max(0.0, timeout) * 1000)
        while self._sock.poll(wait_ms, zmq.POLLIN):
            wait_ms = 0
            frames = self._sock.recv_multipart(copy=False)
            try:
                header, buffers = protocol.decode([f.buffer for f in frames])
            except ProtocolError:
                continue  # not for us / corrupted: ignore, timeouts cover real trouble
            job = self._jobs.get(header.get("id"))
            if job is not None:
                if header["op"] == protocol.ACCEPTED:
                    job.accepted = True
                job._deliver(header, buffers)
                if job.done:
                    self._jobs.pop(job.id, None)
            elif header.get("id") is not None and header["op"] in (protocol.HELLO, protocol.STATUS, protocol.ERROR):
                self._replies[header["id"]] = header  # a reply to _request; late job messages are dropped

