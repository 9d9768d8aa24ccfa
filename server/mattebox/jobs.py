"""Jobs, the priority queue, and the worker threads that run engines (one worker per device).

The request loop (server.py) owns the sockets; workers never touch them directly. A worker reports through a
``notify(job, header, frames)`` callable that the loop provides (it pushes onto an inproc socket), so the loop
never blocks on work and every message leaves through one thread.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from mattebox_plugin import protocol
from mattebox_plugin.protocol import CANCELLED, DONE, FAILED, QUEUED, RUNNING, Buffer, ProtocolError  # noqa: F401

from . import engines
from .codec import decode_request, encode_result
from .contract import Engine, InputError, JobCancelled, MatteResult

log = logging.getLogger("mattebox.jobs")

FINISHED = (DONE, FAILED, CANCELLED)


@dataclass
class Job:
    id: str
    client: str  #: the owner identity (server.Server._owner): who may attach, cancel, release and see it
    route: bytes  #: ROUTER identity messages go to; changed by ``attach`` after a reconnect
    params: Dict[str, Any]
    buffers: Optional[Dict[str, Buffer]]  #: inputs; dropped as soon as the job stops, to free memory
    priority: int = 0
    state: str = QUEUED
    created: float = field(default_factory=time.monotonic)
    started: Optional[float] = None
    finished: Optional[float] = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    last_progress: Dict[str, Any] = field(default_factory=dict)
    reply: Optional[tuple] = None  #: (header, frames) of the final result (frames inline) or error, for re-delivery
    reply_region: Any = None  #: shm_server.ReplyRegion: same-host client's shared memory for the outputs, or None
    shm_route: Optional[bytes] = None  #: the route that gave reply_region: only it gets results placed there
    load_inputs: Optional[Callable[[], Dict[str, Buffer]]] = None  #: reads the spooled inputs of a restored job
    stored: bool = False  #: the job store has a record of it (jobstore.py)
    start_recorded: bool = False  #: the store was told it started running
    result_on_disk: bool = False  #: the result is in the job store; ``reply`` may then be None (read on attach)
    released: bool = False  #: the client has the result (or it expired): nothing more to store
    interrupted: bool = False  #: stopped by a clean server shutdown: rerun after the restart, not reported
    expires: Optional[float] = None  #: monotonic time a finished job is forgotten
    nbytes: int = 0  #: input bytes held for it while unfinished (counted against the owner's and server's budgets)
    shot: Any = None  #: shots.session.ShotSession of a shot job (frames come from the client as the shot needs them)

    def summary(self) -> Dict[str, Any]:
        now = time.monotonic()
        return {"id": self.id, "state": self.state, "engine": self.params.get("engine"),
                "age_s": round(now - self.created, 3), "progress": self.last_progress}


class JobQueue:
    """Highest priority first, then first come first served. Thread-safe."""

    def __init__(self):
        self._heap: List[tuple] = []
        self._counter = itertools.count()
        self._cv = threading.Condition()
        self._closed = False

    def put(self, job: Job) -> None:
        with self._cv:
            heapq.heappush(self._heap, (-job.priority, next(self._counter), job))
            self._cv.notify()

    def get(self, timeout: float = 0.5) -> Optional[Job]:
        with self._cv:
            if not self._heap and not self._closed:
                self._cv.wait(timeout)
            while self._heap:
                job = heapq.heappop(self._heap)[2]
                if job.state == QUEUED:  # cancelled jobs stay in the heap until popped
                    return job
            return None

    def ahead_of(self, priority: int) -> int:
        """How many queued jobs would run before a job of ``priority`` put now (its queue position)."""
        with self._cv:
            return sum(1 for entry in self._heap if entry[2].state == QUEUED and entry[2].priority >= priority)

    def __len__(self) -> int:
        with self._cv:
            return sum(1 for entry in self._heap if entry[2].state == QUEUED)

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()

    def done(self, job: Job) -> None:
        """A worker finished (or gave up) ``job``, which :meth:`get` handed it."""


class ShotQueue(JobQueue):
    """The queue of shot jobs, served by their own workers (``max_running_shots``), fair between owners: the next
    shot is one of the owner with the fewest running shots, then of the owner whose last shot started longest ago,
    then by priority and arrival. A shot holds its worker while it waits for its client's frames, so without this
    one owner's queue of shots would keep every other owner's shots waiting behind it (docs/protocol.md, *Shots*)."""

    def __init__(self):
        super().__init__()
        self._running: Dict[str, int] = {}  #: owner -> shots running now
        self._started: Dict[str, int] = {}  #: owner -> order in which its last shot started

    def get(self, timeout: float = 0.5) -> Optional[Job]:
        with self._cv:
            if not any(entry[2].state == QUEUED for entry in self._heap) and not self._closed:
                self._cv.wait(timeout)
            self._heap = [entry for entry in self._heap if entry[2].state == QUEUED]  # cancelled ones go now
            self._forget_idle()
            if not self._heap:
                return None
            entry = min(self._heap, key=lambda entry: (self._running.get(entry[2].client, 0),
                                                       self._started.get(entry[2].client, -1), entry))
            self._heap.remove(entry)
            heapq.heapify(self._heap)  # put() pushes onto it
            job = entry[2]
            self._running[job.client] = self._running.get(job.client, 0) + 1
            self._started[job.client] = next(self._counter)
            return job

    def done(self, job: Job) -> None:
        with self._cv:
            left = self._running.get(job.client, 0) - 1
            if left > 0:
                self._running[job.client] = left
            else:
                self._running.pop(job.client, None)
            self._forget_idle()

    def _forget_idle(self) -> None:
        """Drop the start order of owners with nothing running or queued (under the lock): it stays as small as
        the queue, however many owners come and go."""
        active = set(self._running) | {entry[2].client for entry in self._heap}
        self._started = {owner: order for owner, order in self._started.items() if owner in active}


Notify = Callable[[Job, Dict[str, Any], List[Any]], None]


class Worker(threading.Thread):
    """Takes jobs from the queue and runs them on one device, reporting progress and the result via ``notify``."""

    def __init__(self, queue: JobQueue, notify: Notify, device: str, progress_interval: float = 0.05):
        super().__init__(name=f"mattebox-worker-{device}", daemon=True)
        self.queue = queue
        self.notify = notify
        self.device = device
        self.progress_interval = progress_interval
        self.stopping = threading.Event()
        self.current: Optional[Job] = None

    def run(self) -> None:
        while not self.stopping.is_set():
            job = self.queue.get()
            if job is None:
                continue
            self.current = job
            try:
                self.run_job(job)
            finally:
                self.current = None
                self.queue.done(job)

    def compute(self, job: Job, progress: Any) -> tuple:
        """Run the job's pipeline -> (descriptions, frames, info); cluster.ClusterWorker sends it to a replica. A
        shot job streams every output frame but the last itself (``result`` with ``final: false``)."""
        if job.shot is not None:
            return job.shot.run(progress, lambda header, frames: self.notify(job, header, frames, final=False))

        def drop_inputs():
            job.buffers = None

        return compute_locally(job.buffers, job.params, progress, self.device, drop_inputs)

    def run_job(self, job: Job) -> None:
        job.state, job.started = RUNNING, time.monotonic()
        last_sent = [0.0, None]

        def progress(stage: str, done: int = 0, total: int = 0, message: str = "") -> None:
            if job.cancel_event.is_set():
                raise JobCancelled()
            job.last_progress = {"stage": stage, "done": int(done), "total": int(total), "message": message}
            now = time.monotonic()
            # stage changes always go out; repeats within a stage are throttled
            if stage != last_sent[1] or now - last_sent[0] >= self.progress_interval or done == total:
                last_sent[0], last_sent[1] = now, stage
                self.notify(job, dict(job.last_progress, op=protocol.PROGRESS, id=job.id, state=RUNNING), [])

        sent = None
        try:
            if job.buffers is None and job.load_inputs is not None:
                job.buffers = job.load_inputs()  # recovered after a restart: inputs come from the spool
            descs, frames, info = self.compute(job, progress)
            header = {"op": protocol.RESULT, "id": job.id, "buffers": descs, "info": _plain(info)}
            if job.shot is not None:  # the shot's last frame
                header.update(frame=info["frame"], final=True)
            if job.reply_region is not None:  # first delivery through the client's shared memory
                placed, placed_frames = job.reply_region.place(descs, frames)
                sent = (dict(header, buffers=placed), placed_frames)
            job.state = DONE
        except JobCancelled:
            job.state = CANCELLED
            header, frames = ProtocolError("cancelled", f"job {job.id} was cancelled").to_header(job.id), []
        except ProtocolError as exc:
            job.state = FAILED
            header, frames = exc.to_header(job.id), []
        except Exception as exc:  # an engine bug must never take the server down
            job.state = FAILED
            log.error("job %s failed: %s", job.id, traceback.format_exc())
            header = ProtocolError("engine_failed", f"{exc.__class__.__name__}: {exc}",
                                   hint="see the server log for the traceback").to_header(job.id)
            frames = []
        job.buffers = None
        if job.reply_region is not None:
            job.reply_region.close()
            job.reply_region = None
        job.finished = time.monotonic()
        job.reply = (header, frames)  # inline frames: re-delivery must not depend on the client's shared memory
        self.notify(job, *(sent or job.reply))


def resolve_engine(name: str, inputs: Iterable[str]) -> Engine:
    """The engine a request names (``auto``: the best available for its inputs), or a ProtocolError naming
    ``params.engine`` (unknown_engine / engine_unavailable). The server checks this before queueing a job."""
    try:
        engine = engines.resolve(name, list(inputs))
    except KeyError:
        raise ProtocolError("unknown_engine", f"no engine '{name}'", field="params.engine",
                            hint=f"engines: {', '.join(engines.ENGINE_SPECS)}") from None
    ok, why = engine.availability()
    if not ok:
        raise ProtocolError("engine_unavailable", f"engine '{name}' cannot run here: {why}", field="params.engine")
    return engine


def run_engine(buffers: Dict[str, Buffer], params: Dict[str, Any], progress: Any, device: str,
               on_decoded: Callable[[], None] = lambda: None) -> Tuple[MatteResult, Dict[str, Any]]:
    """Decode validated buffers, run the engine and check its contract -> (result, info). The server's pipeline
    (:func:`compute_locally`) and `mattebox matte` without a server (no wire, no encode) both run this."""
    progress("decode")
    request = decode_request(buffers, params)
    on_decoded()  # the decoded copy is all we need now: the caller may drop the wire buffers
    engine = engines.resolve(params["engine"])
    progress("start", message=engine.name)
    started = time.perf_counter()
    request.params["device"] = device  # the worker's device (`serve --device`); not a wire param
    roi = params.get("roi")
    try:
        if roi:  # solve inside the region only; outside it the guidance stands
            region = request.crop(roi)
            result = engine.matte(region, progress).check(region.shape).placed(request, roi)
        else:
            result = engine.matte(request, progress)
        result = result.check(request.shape, checked=(request.image, request.mask))
    except InputError as exc:  # the engine refused this request: the client's error, named like the protocol's
        raise ProtocolError("bad_field", str(exc), field=exc.field, hint=exc.hint) from None
    info = dict(result.info, engine=engine.name, seconds=round(time.perf_counter() - started, 4), device=device)
    ignored = sorted(name for name in buffers if name != "image" and name not in engine.uses)
    if ignored:  # accepted but unused (Engine.uses): say so, a host can tell the artist
        info["ignored_inputs"] = ignored
    return result, info


def compute_locally(buffers: Dict[str, Buffer], params: Dict[str, Any], progress: Any, device: str,
                    on_decoded: Callable[[], None] = lambda: None) -> tuple:
    """Decode, run the engine, check the contract, encode: -> (descriptions, frames, info). Used by the in-process
    worker and by cluster replicas (cluster.py), so both run exactly the same pipeline."""
    colorspace = buffers["image"].colorspace
    result, info = run_engine(buffers, params, progress, device, on_decoded)
    progress("encode")
    descs, frames = encode_result(result, params["outputs"], colorspace)
    return descs, frames, info


def _plain(value: Any) -> Any:
    """Make an info map msgpack-safe (numpy scalars -> Python numbers)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value
