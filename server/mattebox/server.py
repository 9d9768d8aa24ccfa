"""The mattebox server: a ZeroMQ ROUTER request loop in front of a job queue and per-device workers.

The loop does only cheap work: decode and validate headers and buffer sizes, queue jobs, answer hello/status/
cancel/attach/release, and forward what workers report. It never runs an engine, so a long matte never delays
another client's handshake. Messages to a client go to the route (ROUTER identity) the job currently has; a
client that reconnects sends ``attach`` to re-route its job and gets the stored result if it is finished.

With a state directory (``ServerConfig.state_dir``) jobs survive a restart: every accepted job is recorded and its
inputs spooled by the job store's writer thread (jobstore.py) before ``accepted`` goes out, results are stored
when they finish, and start-up restores what the previous process left (see jobstore.recover). Without one
(embedded servers, ``--state-dir none``) jobs live in memory and clients resubmit after a restart.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional
from urllib.parse import urlparse

import zmq

from mattebox_plugin import protocol
from mattebox_plugin.protocol import ProtocolError

from . import __version__, engines
from .jobs import CANCELLED, DONE, FAILED, FINISHED, QUEUED, RUNNING, Job, JobQueue, Worker, resolve_engine
from .jobstore import JobStore, StoredFileError, StoredJob, load_inputs
from .sysinfo import memory_usage

log = logging.getLogger("mattebox.server")
NOTIFY_ENDPOINT = "inproc://mattebox-notify-{}"


class BindRefused(RuntimeError):
    """A non-loopback bind was asked for without CURVE keys."""


@dataclass
class ServerConfig:
    endpoint: str = "tcp://127.0.0.1:23517"
    device: str = "cpu"
    workers: int = 1
    limits: Dict[str, int] = field(default_factory=lambda: dict(protocol.DEFAULT_LIMITS))
    result_ttl: float = 86400.0  #: seconds a finished, unreleased result is kept for a client to fetch
    state_dir: Optional[str] = None  #: job store directory (jobstore.py); None keeps jobs in memory only
    curve_secret_key_file: Optional[str] = None  #: server key pair file from `mattebox keys` (zmq.auth format)
    curve_clients_dir: Optional[str] = None  #: folder of allowed client public keys; None allows any CURVE client
    backend: Any = None  #: cluster.ClusterBackend (started): jobs run on its replicas instead of local workers


def is_loopback(endpoint: str) -> bool:
    """True for ipc://, inproc:// and tcp:// endpoints on a loopback address."""
    scheme = endpoint.split("://", 1)[0]
    if scheme in ("ipc", "inproc"):
        return True
    host = urlparse(endpoint).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # an interface name or '*': not loopback


class Server:
    def __init__(self, config: ServerConfig, context: Optional[zmq.Context] = None):
        self.config = config
        self.ctx = context or zmq.Context()
        self._own_context = context is None
        self.jobs: Dict[str, Job] = {}
        self.queue = JobQueue()
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
        self.shm = _shm_cache()
        self.counters = {"received": 0, "errors": 0, "jobs": 0, "results": 0, "recovered": 0}
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
                              f"{endpoint} --curve-secret-key DIR/server.key_secret [--curve-clients DIR/clients]`")
        router = self.ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        router.setsockopt(zmq.MAXMSGSIZE, int(self.config.limits["max_message_bytes"]))
        router.setsockopt(zmq.ROUTER_HANDOVER, 1)
        if curve:
            self._setup_curve(router, curve)
        if endpoint.startswith("tcp://") and endpoint.endswith(":0"):
            endpoint = endpoint[:-2] + ":*"
        router.bind(endpoint)
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

        public, secret = zmq.auth.load_certificate(secret_file)
        if secret is None:
            raise BindRefused(f"{secret_file} holds no secret key; pass the server's .key_secret file")
        self._authenticator = ThreadAuthenticator(self.ctx, log=_AuthLog(logging.getLogger("mattebox.auth")))
        self._authenticator.start()
        clients = self.config.curve_clients_dir
        if clients:
            self._authenticator.configure_curve(domain="*", location=str(Path(clients)))
        else:
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
            try:
                frames = self.router.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self.counters["received"] += 1
            route = frames[0].bytes
            header: Dict[str, Any] = {}
            try:
                header, buffers = protocol.decode([f.buffer for f in frames[1:]])
                self._handle(route, header, buffers, frames)
            except ProtocolError as exc:
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

    def _handle(self, route: bytes, header: Dict[str, Any], buffers: List[Any], frames: List[Any]) -> None:
        op = header["op"]
        request_id = header.get("id")
        if op not in protocol.CLIENT_OPS:
            raise ProtocolError("unknown_op", f"unknown op '{op}'", field="op",
                                hint=f"client ops are {', '.join(protocol.CLIENT_OPS)}")
        if op == protocol.HELLO:
            reply = self.hello_info(request_id)
            if protocol.SHM in header:  # same-host probe: can this server read the client's segment?
                ok, why = self.shm.probe(header.get("client"), header[protocol.SHM]) if self.shm is not None \
                    else (False, "shared memory is off on this server")
                reply[protocol.SHM], reply["shm_reason"] = ok, why
            self._send(route, reply)
        elif op == protocol.STATUS:
            self._send(route, dict(self.status_info(), op=protocol.STATUS, id=request_id))
        elif op == protocol.MATTE:
            self._submit(route, header, buffers, frames)
        else:
            job = self._job(header)
            if op == protocol.CANCEL:
                self._cancel(job, route)
            elif op == protocol.ATTACH:
                self._attach(job, route)
            elif op == protocol.RELEASE:
                if job.state in FINISHED:
                    self._forget(job)

    def _attach(self, job: Job, route: bytes) -> None:
        """Route the job's messages to ``route`` and report its state; a result kept on disk (stored, or left by
        the previous server) is read by the store's thread and re-delivered with inline frames."""
        job.route = route
        reply = job.reply
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
        job.released = True
        job.reply = None  # the result's memory goes now, not when the store's writer reaches the job
        if self.store is not None:
            self.store.forget(job.id)

    def _job(self, header: Dict[str, Any]) -> Job:
        job_id = protocol.validate_job_id(header)
        job = self.jobs.get(job_id)
        if job is None:
            raise ProtocolError("unknown_job", f"no job '{job_id}' (never submitted, released, expired, or the "
                                f"server restarted)", field="id")
        return job

    def _submit(self, route: bytes, header: Dict[str, Any], buffers: List[Any], frames: List[Any]) -> None:
        if self.stop_event.is_set():
            raise ProtocolError("server_busy", "the server is shutting down")
        job_id = protocol.validate_job_id(header)
        limits = self.config.limits
        size = protocol.message_nbytes(buffers)
        if size > limits["max_message_bytes"]:
            raise ProtocolError("too_large", f"message is {size} bytes, over max_message_bytes "
                                f"{limits['max_message_bytes']}", field="buffers")
        if job_id in self.jobs:
            raise ProtocolError("duplicate_job", f"job '{job_id}' already exists", field="id",
                                hint="use a fresh id per job (the client does)")
        params = protocol.validate_params(header.get("params"))
        client = header.get("client") if isinstance(header.get("client"), str) else route.hex()
        resolve = None
        if self.shm is not None:
            resolve = lambda value, nbytes: self.shm.view(client, _get(value, "name"), _get(value, "offset"), nbytes)
        described = protocol.validate_buffers(header, buffers, limits, shm=resolve)
        reply_region = None
        if protocol.REPLY_SHM in header:
            if self.shm is None:
                raise ProtocolError("bad_field", "reply_shm sent but shared memory is off", field=protocol.REPLY_SHM)
            try:
                reply_region = self.shm.reply_region(client, header[protocol.REPLY_SHM])
            except ValueError as exc:
                raise ProtocolError("bad_field", str(exc), field=protocol.REPLY_SHM) from None
        engine = resolve_engine(params["engine"], described)
        queued = sum(1 for j in self.jobs.values() if j.client == client and j.state not in FINISHED)
        if queued >= limits["max_queued_jobs_per_client"]:
            raise ProtocolError("queue_full", f"this client already has {queued} unfinished jobs (limit "
                                f"{limits['max_queued_jobs_per_client']})", field="id",
                                hint="wait for results before submitting more")
        params["engine"] = engine.name
        job = Job(id=job_id, client=client, route=route, params=params, buffers=described,
                  priority=params.get("priority", 0), reply_region=reply_region)
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

    def _cancel(self, job: Job, route: bytes) -> None:
        job.cancel_event.set()
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
        again and its 'cancelled' is not sent."""
        if final is None:
            final = header["op"] in (protocol.RESULT, protocol.ERROR)
            if self.store is not None:
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
            if frames[1].bytes == b"1":
                self.counters["results"] += 1
                job.expires = time.monotonic() + self.config.result_ttl
                log.info("job finished", extra={"fields": {"id": job.id, "state": job.state}})
            if job.route:  # a job restored after a restart has no route until its client attaches
                self.router.send_multipart([job.route, *frames[2:]], copy=False)

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

    def status_info(self) -> Dict[str, Any]:
        states: Dict[str, int] = {}
        for job in self.jobs.values():
            states[job.state] = states.get(job.state, 0) + 1
        return {"server_version": __version__, "uptime_s": round(time.time() - self.started, 3),
                "queue": len(self.queue), "jobs": states, "device": self.config.device,
                "running": [w.current.summary() for w in self.workers if w.current is not None],
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
        self.queue.close()
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


class _AuthLog:
    """zmq.auth logs every decision at debug level; a refused client must show in a normal server log, so
    its DENIED lines are raised to warning (everything else stays debug)."""

    def __init__(self, logger: logging.Logger):
        self.logger = logger

    def debug(self, msg, *args, **kwargs):
        text = str(msg) % args if args else str(msg)
        if text.startswith("DENIED"):
            self.logger.warning("client refused: %s", text, extra={"fields": {"reason": "CURVE key not allowed"}})
        else:
            self.logger.debug(msg, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.logger, name)


def _shm_cache():
    """The same-host fast path's segment cache, or None where this host has no /dev/shm."""
    from mattebox_plugin import shm

    if not shm.supported() or os.environ.get("MATTEBOX_SHM", "1") == "0":
        return None
    shm.sweep_dead()  # segments left by clients killed while no server ran
    return shm.ServerCache()


def _spooled_inputs(job_id: str, path: Path) -> Dict[str, Any]:
    """A restored job's inputs from the spool; a missing or corrupt file fails the job with job_lost."""
    try:
        return load_inputs(path)
    except StoredFileError as exc:
        log.warning("spooled inputs unreadable", extra={"fields": {"id": job_id, "error": str(exc)}})
        raise ProtocolError("job_lost", f"job {job_id} was restored after a server restart, but its spooled inputs "
                            f"cannot be read ({exc}); submit it again", hint="the server log has the details") from None


def _get(value: Any, key: str) -> Any:
    if not isinstance(value, dict):
        raise ValueError("shm must be a map {name, offset}")
    return value.get(key)


def _hostname() -> str:
    import socket

    return socket.gethostname()


__all__ = ["Server", "ServerConfig", "BindRefused", "is_loopback"]
