"""The mattebox server: a ZeroMQ ROUTER request loop in front of a job queue and per-device workers.

The loop does only cheap work: decode and validate headers and buffer sizes, queue jobs, answer hello/status/
cancel/attach/release, and forward what workers report. It never runs an engine, so a long matte never delays
another client's handshake. Messages to a client go to the route (ROUTER identity) the job currently has; a
client that reconnects sends ``attach`` to re-route its job and gets the stored result if it is finished.

With a state directory (``ServerConfig.state_dir``) jobs survive a restart: every accepted job is recorded and its
inputs spooled by the job store's writer thread (jobstore.py) before ``accepted`` goes out, results are stored
when they finish, and start-up restores what the previous process left (see jobstore.recover). Without one
(embedded servers, ``--state-dir none``) jobs live in memory and clients resubmit after a restart; their finished
results count against ``max_result_bytes`` and the oldest are evicted past it.

Every job has an owner (docs/protocol.md, *Ownership*), decided by the server per message: the client's CURVE
public key (the ZAP ``User-Id``) on a CURVE server, else the SHA-256 of the request's ``owner_key``, else the
connection. Only the owner may attach, cancel, release or see a job; to anyone else it does not exist. Queue and
memory limits count per owner. Whether a connection is local (shared memory is offered only then) is decided
from the transport (``Peer-Address``), never from a field the client sends.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import zmq

from mattebox_plugin import protocol
from mattebox_plugin.config import DEFAULT_ENDPOINT, is_loopback
from mattebox_plugin.protocol import ProtocolError

from . import __version__, engines, intake
from .jobs import CANCELLED, DONE, FAILED, FINISHED, QUEUED, RUNNING, Job, JobQueue, ShotQueue, Worker, resolve_engine
from .jobstore import JobStore, StoredFileError, StoredJob, load_inputs
from .sysinfo import memory_usage

log = logging.getLogger("mattebox.server")
NOTIFY_ENDPOINT = "inproc://mattebox-notify-{}"


class BindRefused(RuntimeError):
    """The server cannot listen where it was asked: a non-loopback bind without CURVE keys (or without a clients
    folder and ``allow_any_client``), an address in use, or an endpoint ZeroMQ cannot bind. The message says what
    to do."""


@dataclass
class ServerConfig:
    endpoint: str = DEFAULT_ENDPOINT
    device: str = "cpu"
    workers: int = 1
    limits: Dict[str, int] = field(default_factory=lambda: dict(protocol.DEFAULT_LIMITS))
    result_ttl: float = 86400.0  #: seconds a finished, unreleased result is kept for a client to fetch
    state_dir: Optional[str] = None  #: job store directory (jobstore.py); None keeps jobs in memory only
    curve_secret_key_file: Optional[str] = None  #: server key pair file from `mattebox keys` (zmq.auth format)
    curve_clients_dir: Optional[str] = None  #: folder of allowed client public keys; None allows any CURVE client
    #: serve any CURVE client on a non-loopback endpoint without ``curve_clients_dir`` (refused otherwise)
    allow_any_client: bool = False
    backend: Any = None  #: cluster.ClusterBackend (started): jobs run on its replicas instead of local workers


class Server:
    def __init__(self, config: ServerConfig, context: Optional[zmq.Context] = None):
        self.config = config
        for name, value in protocol.DEFAULT_LIMITS.items():  # a config may name only some limits
            config.limits.setdefault(name, value)
        self.ctx = context or zmq.Context()
        self._own_context = context is None
        self.jobs: Dict[str, Job] = {}
        self.queue = JobQueue()
        self.shot_queue = ShotQueue()  #: shot jobs, served by their own workers (``max_running_shots``)
        self.started = time.time()
        self.stop_event = threading.Event()
        self.router: Optional[zmq.Socket] = None
        self.bound_endpoint: Optional[str] = None
        self._notify_endpoint = NOTIFY_ENDPOINT.format(id(self))
        self._notify_local = threading.local()
        self._notify_sockets: List[zmq.Socket] = []
        self._notify_lock = threading.Lock()
        self.workers: List[Worker] = []
        self._authenticator = None
        self._auth_log: Optional[_AuthLog] = None
        self.shm = _shm_cache()
        self.counters = {"received": 0, "errors": 0, "jobs": 0, "results": 0, "recovered": 0, "evicted": 0}
        #: finished results held only in memory (no store, or not stored): job id -> bytes, oldest first
        self._held_results: "OrderedDict[str, int]" = OrderedDict()
        self.store: Optional[JobStore] = None
        self.store_problem: Optional[str] = None  #: why a configured state directory is not in use

    # -------------------------------------------------------------------------------------- set-up
    def bind(self) -> str:
        """Bind the ROUTER (refusing non-loopback without CURVE) and start workers; returns the bound endpoint."""
        endpoint = self.config.endpoint
        curve = self.config.curve_secret_key_file
        if not is_loopback(endpoint) and not curve:
            raise BindRefused(f"refusing to bind {endpoint}: it is not a loopback address and no CURVE keys are set. "
                              f"Make keys with `mattebox keys --out DIR` and start with `mattebox serve --endpoint "
                              f"{endpoint} --curve-secret-key DIR/server.key_secret --curve-clients DIR/clients`")
        if not is_loopback(endpoint) and not self.config.curve_clients_dir and not self.config.allow_any_client:
            raise BindRefused(f"refusing to bind {endpoint} without --curve-clients: every client that knows the "
                              f"server's public key would be served. Give --curve-clients DIR/clients (the folder "
                              f"`mattebox keys` writes), or --allow-any-client to serve any key on purpose")
        router = self.ctx.socket(zmq.ROUTER)
        try:
            router.setsockopt(zmq.LINGER, 0)
            router.setsockopt(zmq.MAXMSGSIZE, int(self.config.limits["max_message_bytes"]))
            # no ROUTER_HANDOVER: with it, a peer that sets another connection's routing id takes over its route
            # (and its replies); without it, libzmq refuses a peer whose routing id is already connected
            if curve:
                self._setup_curve(router, curve)
            _bind(router, endpoint)
        except BaseException:
            router.close(linger=0)
            if self._authenticator is not None:
                self._authenticator.stop()
                self._authenticator = None
            raise
        self.router = router
        self.bound_endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT)
        self._pull = self.ctx.socket(zmq.PULL)
        self._pull.setsockopt(zmq.LINGER, 0)
        self._pull.bind(self._notify_endpoint)
        self._open_store()
        if self.config.backend is not None:
            self.workers = self.config.backend.make_workers(self.queue, self._notify)
        else:
            self.workers = [Worker(self.queue, self._notify, self.config.device)
                            for _ in range(max(1, self.config.workers))]
            # a shot holds its worker while it waits for its client's frames: shots get workers of their own, so
            # a single frame never waits behind a shot (docs/protocol.md, *Shots*; they solve on the CPU)
            self.workers += [Worker(self.shot_queue, self._notify, "shot")
                             for _ in range(max(1, self.config.limits["max_running_shots"]))]
        for worker in self.workers:
            worker.start()
        log.info("listening", extra={"fields": {"endpoint": self.bound_endpoint, "device": self.config.device,
                                                "curve": bool(curve), "version": __version__}})
        return self.bound_endpoint

    def _open_store(self) -> None:
        """Open the job store and restore the jobs a previous server left; on any trouble, log and run memory-only
        (a server that cannot persist jobs still serves)."""
        if not self.config.state_dir:
            return
        store = None
        try:
            store = JobStore(Path(self.config.state_dir), self.config.result_ttl)
            recovered = store.recover()
        except Exception as exc:  # StoreUnavailable, or a database that breaks mid-recovery
            if store is not None:
                store.close()
            self.store_problem = str(exc)
            log.warning("job store unavailable: jobs are kept in memory only and do not survive a restart",
                        extra={"fields": {"state_dir": str(self.config.state_dir), "error": str(exc)}})
            return
        self.store = store
        for record in recovered:
            self._restore(record)
        store.start()

    def _restore(self, record: StoredJob) -> None:
        """Turn a recovered record into a Job: finished ones wait for attach, queued ones join the queue."""
        now_wall, now = time.time(), time.monotonic()

        def monotonic(wall: Optional[float]) -> Optional[float]:
            return None if wall is None else now - (now_wall - wall)

        job = Job(id=record.id, client=record.client, route=b"", params=record.params, buffers=None,
                  priority=record.priority, state=record.state, created=monotonic(record.created),
                  started=monotonic(record.started), finished=monotonic(record.finished), stored=True,
                  expires=monotonic(record.expires) if record.state in FINISHED else None)
        if record.state == QUEUED:
            job.load_inputs = lambda: _spooled_inputs(record.id, record.inputs)
            self.queue.put(job)
        elif record.state == DONE:
            job.result_on_disk = True
        else:
            job.reply = (record.error.to_header(record.id), [])
        self.jobs[job.id] = job
        self.counters["recovered"] += 1

    def _setup_curve(self, router: zmq.Socket, secret_file: str) -> None:
        import zmq.auth
        from zmq.auth.thread import ThreadAuthenticator

        try:
            public, secret = zmq.auth.load_certificate(secret_file)
        except (OSError, ValueError) as exc:
            raise BindRefused(f"cannot read the server key pair {secret_file} ({exc}); pass the server.key_secret "
                              f"file `mattebox keys` wrote") from None
        if secret is None:
            raise BindRefused(f"{secret_file} holds no secret key; pass the server's .key_secret file")
        self._auth_log = _AuthLog(logging.getLogger("mattebox.auth"))
        self._authenticator = ThreadAuthenticator(self.ctx, log=self._auth_log)
        self._authenticator.start()
        clients = self.config.curve_clients_dir
        if clients:
            self._authenticator.configure_curve(domain="*", location=str(Path(clients)))
        else:
            if not is_loopback(self.config.endpoint):
                log.warning("serving any CURVE client (--allow-any-client): traffic is encrypted, but every client "
                            "that knows the server's public key is served", extra={"fields": {
                                "endpoint": self.config.endpoint}})
            self._authenticator.configure_curve(domain="*", location=zmq.auth.CURVE_ALLOW_ANY)
        router.curve_secretkey = secret
        router.curve_publickey = public
        router.curve_server = True

    # ----------------------------------------------------------------------------------------- loop
    def serve_forever(self) -> None:
        """Run the request loop until :meth:`stop` (or a signal handler) sets the stop event."""
        if self.router is None:
            self.bind()
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self._pull, zmq.POLLIN)
        last_sweep = time.monotonic()
        try:
            while not self.stop_event.is_set():
                events = dict(poller.poll(200))
                if self._pull in events:
                    self._forward_notifications()
                if self.router in events:
                    self._receive_requests()
                if time.monotonic() - last_sweep > 1.0:
                    self._sweep()
                    last_sweep = time.monotonic()
        finally:
            self._shutdown()

    def start_background(self) -> threading.Thread:
        """Bind and run the loop in a daemon thread (embedded use: the CLI, tests, the demo)."""
        self.bind()
        thread = threading.Thread(target=self.serve_forever, name="mattebox-server", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self.stop_event.set()

    def _receive_requests(self) -> None:
        for _ in range(64):  # bounded so notifications are not starved
            request = intake.receive(self.router, self.config.limits)
            if request is None:
                return
            self.counters["received"] += 1
            route = request.route
            header: Dict[str, Any] = {}
            try:
                header, buffers = request.decode(self.config.limits)
                self._handle(route, header, buffers, request.frames, self._owner(route, request.frames, header))
            except ProtocolError as exc:
                header = request.header
                self.counters["errors"] += 1
                job_id = header.get("id") if isinstance(header.get("id"), str) else None
                log.info("request refused", extra={"fields": {"code": exc.code, "field": exc.field,
                                                              "op": header.get("op"), "message": exc.message}})
                self._send(route, exc.to_header(job_id))
            except Exception as exc:  # a bug in handling one message must never stop the loop
                self.counters["errors"] += 1
                log.exception("request handling failed", extra={"fields": {"op": header.get("op")}})
                job_id = header.get("id") if isinstance(header.get("id"), str) else None
                self._send(route, ProtocolError("engine_failed", f"server error: {exc.__class__.__name__}: {exc}",
                                                hint="see the server log").to_header(job_id))

    # ------------------------------------------------------------------------------- identity
    def _owner(self, route: bytes, frames: List[Any], header: Dict[str, Any]) -> str:
        """Who sent this message (docs/protocol.md, *Ownership*): ``curve:<client public key>`` as ZAP
        authenticated it, else ``key:<sha256 of owner_key>``, else ``conn:<routing id>`` (this connection only)."""
        if self._authenticator is not None:
            user = _frame_property(frames, "User-Id")
            if user:
                return f"curve:{user}"
        key = protocol.validate_owner_key(header)
        if key is not None:
            return "key:" + hashlib.sha256(key.encode()).hexdigest()
        return f"conn:{route.hex()}"

    def _is_local(self, frames: List[Any]) -> bool:
        """True for a connection on this host, from the transport: an ipc endpoint, or tcp from a loopback
        address (``Peer-Address``). What the client says about itself (``hostname``) plays no part."""
        if not self.bound_endpoint or not self.bound_endpoint.startswith("tcp://"):
            return bool(self.bound_endpoint) and self.bound_endpoint.split("://", 1)[0] in ("ipc", "inproc")
        address = _frame_property(frames, "Peer-Address") or ""
        try:
            return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
        except ValueError:
            return False

    # ---------------------------------------------------------------------------------- requests
    def _handle(self, route: bytes, header: Dict[str, Any], buffers: List[Any], frames: List[Any],
                owner: str) -> None:
        op = header["op"]
        request_id = header.get("id")
        if op not in protocol.CLIENT_OPS:
            raise ProtocolError("unknown_op", f"unknown op '{op}'", field="op",
                                hint=f"client ops are {', '.join(protocol.CLIENT_OPS)}")
        if op == protocol.HELLO:
            reply = self.hello_info(request_id)
            if protocol.SHM in header:  # same-host probe: can this server read the client's segment?
                if self.shm is None:
                    ok, why = False, "shared memory is off on this server"
                elif not self._is_local(frames):
                    ok, why = False, "shared memory is offered only to local connections (ipc, or tcp from loopback)"
                else:
                    ok, why = self.shm.probe(route, header[protocol.SHM])
                reply[protocol.SHM], reply["shm_reason"] = ok, why
            self._send(route, reply)
        elif op == protocol.STATUS:
            self._send(route, dict(self.status_info(owner), op=protocol.STATUS, id=request_id))
        elif op == protocol.MATTE:
            self._submit(route, header, buffers, frames, owner)
        else:
            job = self._job(header, owner)
            if job.shot is not None:
                job.shot.heard()  # any message of the owner keeps a waiting shot alive
            if op == protocol.FRAME:
                self._frame(job, route, header, buffers)
            elif op == protocol.CANCEL:
                self._cancel(job, route)
            elif op == protocol.ATTACH:
                self._attach(job, route)
            elif op == protocol.RELEASE:
                if job.state in FINISHED:
                    self._forget(job)

    def _attach(self, job: Job, route: bytes) -> None:
        """Route the job's messages to ``route`` and report its state; a result kept on disk (stored, or left by
        the previous server) is read by the store's thread and re-delivered with inline frames."""
        moved, job.route = job.route != route, route
        reply = job.reply
        if moved and job.shot is not None and job.shot.wanted is not None:  # the old connection may have lost it
            self._send(route, {"op": protocol.NEED, "id": job.id, "frame": job.shot.wanted})
        if reply is not None:
            self._send(route, *reply)
        elif job.result_on_disk and self.store is not None:
            def lost(error: ProtocolError) -> None:
                job.state, job.result_on_disk = FAILED, False
                job.reply = (error.to_header(job.id), [])
                self._notify(job, *job.reply, final=False)

            self.store.deliver(job.id, lambda header, frames: self._notify(job, header, frames, final=False), lost)
        else:
            self._send(route, dict(job.last_progress, op=protocol.PROGRESS, id=job.id, state=job.state))

    def _forget(self, job: Job) -> None:
        """Drop a finished job (released by its client, or expired) from memory and from the store."""
        self.jobs.pop(job.id, None)
        self._held_results.pop(job.id, None)
        job.released = True
        job.reply = None  # the result's memory goes now, not when the store's writer reaches the job
        if self.store is not None:
            self.store.forget(job.id)

    def _job(self, header: Dict[str, Any], owner: str) -> Job:
        """The job the header names, if ``owner`` owns it; to anyone else it does not exist (same answer as an
        unknown id, so a job id is neither a capability nor something to probe for)."""
        job_id = protocol.validate_job_id(header)
        job = self.jobs.get(job_id)
        if job is None or not hmac.compare_digest(job.client.encode(), owner.encode()):
            raise ProtocolError("unknown_job", f"no job '{job_id}' of yours (never submitted, submitted by another "
                                f"client, released, expired, or the server restarted)", field="id",
                                hint="attach with the owner_key (or CURVE key) the job was submitted with")
        return job

    def _check_quota(self, owner: str, nbytes: int) -> None:
        """Refuse a new job over the per-owner or global job and byte limits (counted over unfinished jobs)."""
        limits = self.config.limits
        jobs = [j for j in self.jobs.values() if j.state not in FINISHED]
        mine = [j for j in jobs if j.client == owner]
        if len(mine) >= limits["max_queued_jobs_per_client"]:
            raise ProtocolError("queue_full", f"this client already has {len(mine)} unfinished jobs (limit "
                                f"max_queued_jobs_per_client {limits['max_queued_jobs_per_client']})", field="id",
                                hint="wait for results before submitting more")
        if len(jobs) >= limits["max_queued_jobs"]:
            raise ProtocolError("queue_full", f"the server already has {len(jobs)} unfinished jobs (limit "
                                f"max_queued_jobs {limits['max_queued_jobs']})", field="id",
                                hint="retry when earlier jobs have finished")
        self._check_bytes(owner, nbytes)

    def _check_bytes(self, owner: str, nbytes: int) -> None:
        """Refuse ``nbytes`` more input (a job's, or a shot's next frame) over the owner's or the server's budget."""
        limits = self.config.limits
        jobs = [j for j in self.jobs.values() if j.state not in FINISHED]
        mine = [j for j in jobs if j.client == owner]
        held = sum(j.nbytes for j in mine)
        if held + nbytes > limits["max_bytes_per_client"]:
            raise ProtocolError("over_budget", f"this client's unfinished jobs hold {held} bytes; {nbytes} more is "
                                f"over max_bytes_per_client {limits['max_bytes_per_client']}", field="buffers",
                                hint="wait for results before submitting more")
        held = sum(j.nbytes for j in jobs)
        if held + nbytes > limits["max_bytes_in_flight"]:
            raise ProtocolError("over_budget", f"unfinished jobs hold {held} bytes; {nbytes} more is over "
                                f"max_bytes_in_flight {limits['max_bytes_in_flight']}", field="buffers",
                                hint="retry when earlier jobs have finished")

    def _submit(self, route: bytes, header: Dict[str, Any], buffers: List[Any], frames: List[Any],
                owner: str) -> None:
        if self.stop_event.is_set():
            raise ProtocolError("server_busy", "the server is shutting down")
        job_id = protocol.validate_job_id(header)
        limits = self.config.limits
        size = protocol.message_nbytes(buffers)  # within max_message_bytes: checked as they arrived (intake.py)
        if job_id in self.jobs:
            raise ProtocolError("duplicate_job", f"job '{job_id}' already exists", field="id",
                                hint="use a fresh id per job (the client does)")
        params = protocol.validate_params(header.get("params"))
        if protocol.SHOT in header:
            self._submit_shot(route, header, buffers, params, owner)
            return
        self._check_quota(owner, size + _declared_shm_nbytes(header))  # before shared memory is copied in
        resolve = None
        if self.shm is not None:
            resolve = lambda value, nbytes: self.shm.read(route, owner, value, nbytes)  # noqa: E731
        described = protocol.validate_buffers(header, buffers, limits, shm=resolve)
        reply_region = None
        if protocol.REPLY_SHM in header:
            if self.shm is None:
                raise ProtocolError("bad_field", "reply_shm sent but shared memory is off", field=protocol.REPLY_SHM)
            try:
                reply_region = self.shm.reply_region(route, owner, header[protocol.REPLY_SHM])
            except ValueError as exc:
                raise ProtocolError("bad_field", str(exc), field=protocol.REPLY_SHM) from None
        engine = resolve_engine(params["engine"], described)
        params["engine"] = engine.name
        job = Job(id=job_id, client=owner, route=route, params=params, buffers=described,
                  priority=params.get("priority", 0), reply_region=reply_region,
                  nbytes=sum(buf.nbytes for buf in described.values()),
                  shm_route=route if reply_region is not None else None)
        self.jobs[job_id] = job
        self.counters["jobs"] += 1
        accepted = {"op": protocol.ACCEPTED, "id": job_id, "engine": engine.name,
                    "queue_position": self.queue.ahead_of(job.priority)}
        if self.store is None:
            self.queue.put(job)
            self._send(route, accepted)
        else:
            # recorded and spooled on the store's thread (before the worker can report it started); 'accepted'
            # goes out once that is done, so an accepted job is one a restart will not lose
            def stored(ok: bool) -> None:
                job.stored = ok
                self._notify(job, dict(accepted, stored=ok), [])

            self.store.add(job, described, stored)
            self.queue.put(job)
        log.info("job queued", extra={"fields": {"id": job_id, "engine": engine.name, "bytes": size}})

    def _submit_shot(self, route: bytes, header: Dict[str, Any], buffers: List[Any], params: Dict[str, Any],
                     owner: str) -> None:
        """Queue a shot job (docs/protocol.md, *Shots*): no pixels now; its worker asks for each frame with
        ``need``. Not recorded in the job store: after a restart the job is unknown (the client says job_lost)."""
        from .shots.session import ShotSession

        spec = protocol.validate_shot(header)
        if header.get("buffers", []) != [] or buffers:
            raise ProtocolError("bad_field", "a shot job sends no buffers with matte: each frame comes in a frame "
                                "message when the server asks for it", field="buffers")
        if protocol.REPLY_SHM in header:
            raise ProtocolError("bad_field", "a shot job's results come as frames, not in reply_shm",
                                field=protocol.REPLY_SHM)
        if params["engine"] not in ("auto", "classical"):
            raise ProtocolError("bad_field", f"engine '{params['engine']}': a shot is solved by the classical "
                                f"engine (auto or classical)", field="params.engine")
        if params.get("roi"):
            raise ProtocolError("bad_field", "roi is not supported for shots", field="params.roi")
        if self.config.backend is not None:
            raise ProtocolError("bad_field", "shot jobs run on a server without --cluster (its replicas cannot ask "
                                "the client for frames)", field=protocol.SHOT)
        self._check_quota(owner, 0)
        params["engine"] = "classical-shot"
        job = Job(id=header["id"], client=owner, route=route, params=params, buffers=None,
                  priority=params.get("priority", 0))
        job.shot = ShotSession(job.id, spec, params, self.config.limits["shot_timeout_s"], job.cancel_event,
                               on_bytes=lambda n: setattr(job, "nbytes", n),
                               max_wait=self.config.limits["shot_max_wait_s"])
        self.jobs[job.id] = job
        self.counters["jobs"] += 1
        self.shot_queue.put(job)
        self._send(route, {"op": protocol.ACCEPTED, "id": job.id, "engine": params["engine"],
                           "queue_position": self.shot_queue.ahead_of(job.priority), "stored": False})
        log.info("shot queued", extra={"fields": {"id": job.id, "frames": len(spec["frames"]),
                                                  "keys": len(spec["keys"])}})

    def _frame(self, job: Job, route: bytes, header: Dict[str, Any], buffers: List[Any]) -> None:
        """A frame of a shot job, from its owner: checked as a matte request's buffers are (limits, shapes,
        shared memory) and against the shot; a bad one fails the shot with the error naming the field."""
        if job.shot is None:
            raise ProtocolError("bad_field", f"job {job.id} is not a shot job: it takes no frames", field="op")
        frame = protocol.validate_frame_number(header)
        if job.state in FINISHED:
            raise ProtocolError("bad_field", f"shot job {job.id} has ended; frame {frame} is not needed",
                                field="frame")
        try:
            job.shot.admit(frame)  # an unasked-for frame is refused before its buffers are checked or copied
            try:
                self._check_bytes(job.client, protocol.message_nbytes(buffers) + _declared_shm_nbytes(header))
                resolve = None
                if self.shm is not None:
                    resolve = lambda value, nbytes: self.shm.read(route, job.client, value, nbytes)  # noqa: E731
                described = protocol.validate_buffers(header, buffers, self.config.limits, shm=resolve)
            except ProtocolError as exc:  # say which frame it was
                raise ProtocolError(exc.code, f"frame {frame}: {exc.message}", exc.field, exc.hint) from None
            fields = {desc["name"]: f"buffers.{index}" for index, desc in enumerate(header["buffers"])}
            job.shot.offer(frame, described, fields)
        except ProtocolError as exc:
            job.shot.fail(exc)

    def _cancel(self, job: Job, route: bytes) -> None:
        job.cancel_event.set()
        if job.shot is not None:
            job.shot.wake()
        self._send(route, {"op": protocol.CANCEL, "id": job.id, "state": job.state})
        if job.state == QUEUED:  # never started: finish it here (the worker skips it)
            job.state = CANCELLED
            job.buffers = None
            job.finished = time.monotonic()
            job.expires = job.finished + self.config.result_ttl
            job.reply = (ProtocolError("cancelled", f"job {job.id} was cancelled").to_header(job.id), [])
            if self.store is not None:
                self.store.finished(job, lambda: None)
            self._send(job.route, *job.reply)

    # -------------------------------------------------------------------------------- notifications
    def _notify(self, job: Job, header: Dict[str, Any], frames: List[Any], final: Optional[bool] = None) -> None:
        """Called from worker threads (and the store's): hand a message for ``job`` to the loop (one PUSH socket
        per thread). ``final`` defaults to "this is the job's result or error"; re-deliveries pass False.

        This is also where the job store follows a job: its start, and its end (enqueued before the message goes
        out, so a release can never overtake the write). A job stopped by a clean shutdown is recorded as queued
        again and its 'cancelled' is not sent. Shot jobs are not stored (docs/protocol.md, *Shots*)."""
        if final is None:
            final = header["op"] in (protocol.RESULT, protocol.ERROR)
            if self.store is not None and job.shot is None:
                if final and job.interrupted and job.state == CANCELLED:
                    self.store.requeue(job.id)
                    return
                if final:
                    self.store.finished(job, lambda: self._result_stored(job))
                elif job.state == RUNNING and not job.start_recorded:
                    job.start_recorded = True
                    self.store.started(job.id)
        sock = getattr(self._notify_local, "sock", None)
        if sock is None:
            sock = self.ctx.socket(zmq.PUSH)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(self._notify_endpoint)
            self._notify_local.sock = sock
            with self._notify_lock:
                self._notify_sockets.append(sock)
        sock.send_multipart([job.id.encode(), b"1" if final else b"0", *protocol.encode(header, frames)], copy=False)

    @staticmethod
    def _result_stored(job: Job) -> None:
        """The store's thread wrote the job's end: a result's frames now live on disk only (read on attach)."""
        if job.state == DONE:
            job.result_on_disk = True
            job.reply = None

    def _forward_notifications(self) -> None:
        for _ in range(256):
            try:
                frames = self._pull.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            job = self.jobs.get(frames[0].bytes.decode())
            if job is None:
                continue
            final = frames[1].bytes == b"1"
            if final:
                self.counters["results"] += 1
                job.expires = time.monotonic() + self.config.result_ttl
                log.info("job finished", extra={"fields": {"id": job.id, "state": job.state}})
            if final and job.shm_route is not None and job.route != job.shm_route and job.reply is not None:
                self._send(job.route, *job.reply)  # attached from elsewhere: the submitter's shm is not theirs
            elif job.route:  # a job restored after a restart has no route until its client attaches
                self.router.send_multipart([job.route, *frames[2:]], copy=False)
            if final:
                self._hold_result(job)

    def _hold_result(self, job: Job) -> None:
        """On a memory-only server, count a just-finished result against ``max_result_bytes`` and evict the oldest
        results past it. An evicted job keeps a small ``result_evicted`` error for a late fetch until it expires.
        (With a store, results move to disk as soon as they are written.)"""
        if job.state != DONE or job.reply is None or self.store is not None:
            return
        self._held_results[job.id] = protocol.message_nbytes(job.reply[1])
        budget = self.config.limits["max_result_bytes"]
        while sum(self._held_results.values()) > budget:
            oldest, nbytes = self._held_results.popitem(last=False)
            evicted = self.jobs.get(oldest)
            if evicted is None:
                continue
            evicted.state = FAILED
            evicted.reply = (ProtocolError("result_evicted", f"the result of job {oldest} ({nbytes} bytes) was "
                                           f"dropped to keep finished results within max_result_bytes {budget} "
                                           f"before it was fetched; submit the job again", field="id",
                                           hint="fetch results promptly, or run the server with a state "
                                           "directory").to_header(oldest), [])
            self.counters["evicted"] += 1
            log.info("result evicted", extra={"fields": {"id": oldest, "bytes": nbytes}})

    # ------------------------------------------------------------------------------------- replies
    def _send(self, route: bytes, header: Dict[str, Any], frames: List[Any] = ()) -> None:
        if route:  # a job restored after a restart has no route until its client attaches
            self.router.send_multipart([route, *protocol.encode(header, frames)], copy=False)

    def hello_info(self, request_id: Optional[str] = None) -> Dict[str, Any]:
        return {"op": protocol.HELLO, "id": request_id, "server_version": __version__,
                "protocol": protocol.PROTOCOL_VERSION, "engines": engines.describe_all(),
                "limits": dict(self.config.limits), "device": self.config.device,
                "outputs": list(protocol.OUTPUTS), "inputs": list(protocol.INPUTS), "pid": os.getpid(),
                "hostname": _hostname()}

    def status_info(self, owner: Optional[str] = None) -> Dict[str, Any]:
        """Server health for anyone; ``running`` details (job ids, progress) only of ``owner``'s jobs, the others
        only counted in ``running_other``."""
        states: Dict[str, int] = {}
        for job in self.jobs.values():
            states[job.state] = states.get(job.state, 0) + 1
        running = [w.current for w in self.workers if w.current is not None]
        mine = [job for job in running if owner is not None and job.client == owner]
        return {"server_version": __version__, "uptime_s": round(time.time() - self.started, 3),
                "queue": len(self.queue) + len(self.shot_queue), "jobs": states, "device": self.config.device,
                "running": [job.summary() for job in mine], "running_other": len(running) - len(mine),
                "bytes_held": sum(j.nbytes for j in self.jobs.values() if j.state not in FINISHED),
                "results_in_memory": {"bytes": sum(self._held_results.values()),
                                      "limit": self.config.limits["max_result_bytes"]},
                "memory": memory_usage(), "counters": dict(self.counters), "endpoint": self.bound_endpoint,
                "store": self.store_info(),
                **({"cluster": self.config.backend.status()} if self.config.backend is not None else {})}

    def store_info(self) -> Dict[str, Any]:
        if self.store is None:
            return {"enabled": False, "reason": self.store_problem or "memory-only (no state directory)"}
        return {"enabled": True, "state_dir": str(self.store.directory), "pending_writes": self.store.pending(),
                "results_on_disk": sum(1 for j in self.jobs.values() if j.result_on_disk),
                **self.store.counters}

    # ------------------------------------------------------------------------------------ lifecycle
    def _sweep(self) -> None:
        """Forget finished results past their expiry (memory and disk); drop shared memory of dead clients."""
        if self.shm is not None:
            self.shm.sweep()
        if self._auth_log is not None:
            self._auth_log.summarise()
        now = time.monotonic()
        for job in list(self.jobs.values()):
            if job.state in FINISHED and job.expires is not None and now > job.expires:
                self._forget(job)

    def _shutdown(self) -> None:
        log.info("shutting down", extra={"fields": {"queued": len(self.queue)}})
        for job in self.jobs.values():
            if job.state not in FINISHED:
                job.interrupted = True  # with a store: rerun after the restart
            job.cancel_event.set()
            if job.shot is not None:
                job.shot.wake()
        self.queue.close()
        self.shot_queue.close()
        for worker in self.workers:
            worker.stopping.set()
        for worker in self.workers:
            worker.join(timeout=10)
        if self.store is not None:
            self.store.close()  # finishes the queued writes
        with self._notify_lock:
            for sock in self._notify_sockets:
                sock.close(linger=0)
        self._pull.close(linger=0)
        self.router.close(linger=0)
        if self._authenticator is not None:
            self._authenticator.stop()
        if self.shm is not None:
            self.shm.close()
        if self.config.backend is not None:
            self.config.backend.close()
        if self._own_context:
            self.ctx.term()


def _bind(router: zmq.Socket, endpoint: str) -> None:
    """Bind ``router`` to ``endpoint`` (``tcp://HOST:0``: any free port; IPv6 literals such as ``tcp://[::1]:P``),
    turning ZeroMQ's errors into a :class:`BindRefused` that names the endpoint and what to do."""
    address = endpoint[:-2] + ":*" if endpoint.startswith("tcp://") and endpoint.endswith(":0") else endpoint
    if address.startswith("tcp://["):
        router.setsockopt(zmq.IPV6, 1)
    try:
        router.bind(address)
    except zmq.ZMQError as exc:
        if exc.errno == zmq.EADDRINUSE:
            raise BindRefused(f"cannot bind {endpoint}: the address is already in use (another mattebox server, or "
                              f"another program, listens there). Stop it, or give another port: --endpoint "
                              f"tcp://127.0.0.1:PORT (port 0 picks a free one)") from None
        raise BindRefused(f"cannot bind {endpoint}: {exc.strerror}. Expected tcp://HOST:PORT (an address of this "
                          f"machine, IPv6 in brackets: tcp://[::1]:23517) or ipc://PATH") from None


class _AuthLog:
    """zmq.auth logs every decision at debug level; a refused client must show in a normal server log, so its
    DENIED lines are raised to warning (everything else stays debug). Rate-limited so that a client retrying a bad
    key cannot flood the log: the first :attr:`FIRST` refusals of each key per :attr:`PERIOD`, and at most
    :attr:`FIRST_TOTAL` in all (keys cost nothing to make, so a per-key limit alone does not bound a stranger who
    brings a fresh key each time), are logged one by one, the rest as one summary line per period (counts per
    key). Called from the authenticator's thread
    (refusals) and the request loop's sweep (:meth:`summarise`)."""

    FIRST = 3  #: refusals of one key logged individually per period
    FIRST_TOTAL = 10  #: refusals of all keys logged individually per period
    PERIOD = 60.0  #: seconds between summaries
    MAX_KEYS = 1000  #: distinct keys counted per period; further ones are counted together

    def __init__(self, logger: logging.Logger, clock=time.monotonic):
        self.logger = logger
        self.clock = clock
        self._lock = threading.Lock()
        self._period_start = clock()
        self._counts: Dict[str, int] = {}  #: refusals per client key in this period
        self._quiet = 0  #: refusals in this period not logged one by one
        self._logged = 0  #: refusals in this period logged one by one

    def debug(self, msg, *args, **kwargs):
        text = str(msg) % args if args else str(msg)
        if text.startswith("DENIED"):
            self._refused(text)
        else:
            self.logger.debug(msg, *args, **kwargs)

    def _refused(self, text: str) -> None:
        self.summarise()
        key = text.partition("client_key=")[2] or "(no key)"
        with self._lock:
            if key not in self._counts and len(self._counts) >= self.MAX_KEYS:
                key = "(other keys)"
            count = self._counts[key] = self._counts.get(key, 0) + 1
            if count > self.FIRST or self._logged >= self.FIRST_TOTAL:
                self._quiet += 1
                return
            self._logged += 1
            last = count == self.FIRST or self._logged == self.FIRST_TOTAL
        more = f"; further refusals are summarised every {self.PERIOD:.0f} s" if last else ""
        self.logger.warning("client refused: %s%s", text, more,
                            extra={"fields": {"reason": "CURVE key not allowed", "refusals": count}})

    def summarise(self) -> None:
        """At the end of each period: one line with the refusals not logged individually, then start afresh."""
        with self._lock:
            if self.clock() - self._period_start < self.PERIOD:
                return
            counts, quiet = self._counts, self._quiet
            self._counts, self._quiet, self._logged, self._period_start = {}, 0, 0, self.clock()
        if quiet:
            busiest = dict(sorted(counts.items(), key=lambda item: -item[1])[:10])
            self.logger.warning("clients refused %d more times in the last %.0f s (not logged one by one)", quiet,
                                self.PERIOD, extra={"fields": {"reason": "CURVE key not allowed",
                                                               "keys": len(counts), "refusals_by_key": busiest}})

    def __getattr__(self, name):
        return getattr(self.logger, name)


def _shm_cache():
    """The same-host fast path's segment cache, or None where this host has no /dev/shm."""
    from mattebox_plugin import shm

    from .shm_server import ServerCache

    if not shm.supported() or os.environ.get("MATTEBOX_SHM", "1") == "0":
        return None
    shm.sweep_dead()  # segments left by clients killed while no server ran
    return ServerCache()


def _spooled_inputs(job_id: str, path: Path) -> Dict[str, Any]:
    """A restored job's inputs from the spool; a missing or corrupt file fails the job with job_lost."""
    try:
        return load_inputs(path)
    except StoredFileError as exc:
        log.warning("spooled inputs unreadable", extra={"fields": {"id": job_id, "error": str(exc)}})
        raise ProtocolError("job_lost", f"job {job_id} was restored after a server restart, but its spooled inputs "
                            f"cannot be read ({exc}); submit it again", hint="the server log has the details") from None


def _frame_property(frames: List[Any], name: str) -> Optional[str]:
    """A ZeroMQ message property (``User-Id``, ``Peer-Address``) of a received message, or None."""
    try:
        return frames[-1].get(name)
    except (zmq.ZMQError, AttributeError, IndexError):
        return None


def _declared_shm_nbytes(header: Dict[str, Any]) -> int:
    """Bytes the header's shared-memory buffers declare (malformed descriptions count 0: validate_buffers refuses
    them), so a quota can be checked before the server copies them in."""
    total = 0
    for desc in header.get("buffers") if isinstance(header.get("buffers"), list) else ():
        if isinstance(desc, dict) and protocol.SHM in desc:
            try:
                total += protocol.expected_nbytes(desc.get("shape"), desc.get("dtype"))
            except Exception:  # noqa: BLE001 - any malformed shape or dtype
                pass
    return total


def _hostname() -> str:
    import socket

    return socket.gethostname()


__all__ = ["Server", "ServerConfig", "BindRefused", "is_loopback"]
