"""Scale-out behind the same ZeroMQ front door: jobs run on Ray Serve replicas, one per GPU (or CPU replicas).

``mattebox serve --cluster [--ray-address ADDR] [--replicas N]`` starts (or joins) a Ray cluster and deploys
:class:`MatteReplica` with ``N`` replicas (default: one per GPU Ray sees, else 2 CPU replicas). The front door is
the normal :class:`mattebox.server.Server` — same protocol, same validation, same shared-memory path — but its
workers are :class:`ClusterWorker` threads (one per replica, so every replica has a job in flight) that hand each
job to the Serve deployment handle. Ray Serve owns placement, health checks and replacing dead replicas; a job
whose replica dies mid-run (the handle raises an actor error) is sent again, up to ``retries`` times, so it is
not lost. Engine errors are not retried: they fail the job as on a single server.

Replicas run :func:`mattebox.jobs.compute_locally`, exactly the single server's pipeline. Each registers in a
small Ray actor (:class:`ReplicaRegistry`) so ``status`` shows per-replica pid, node, device, current job and
jobs done. This module is the only one that imports ray, and only ``--cluster`` imports it.

Progress and cancel go through the same registry actor. A replica's progress callback reports the job's stage
there (at stage changes and at most every ``PROGRESS_INTERVAL`` s) and learns in the same call whether the job
was cancelled, raising :class:`JobCancelled` at that stage boundary as the single server does; the front door's
worker polls the registry while it waits and forwards new stages to the client. Serve's own
``DeploymentResponse.cancel()`` is not used: once a request runs on a replica it cancels only Serve's asyncio
wrapper, while the synchronous ``matte`` keeps running in the replica's thread pool (Ray does not interrupt running
actor tasks), so Serve would count the replica free and could start a second job on the same GPU. A job cancelled
before any replica took it ends at once at the front door; the replica that later receives it sees the flag before
decoding and returns at once.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any, Dict, List, Optional

import numpy as np

from mattebox_plugin.protocol import Buffer, ProtocolError

from .contract import JobCancelled
from .jobs import Job, JobQueue, Notify, Worker

log = logging.getLogger("mattebox.cluster")
APP_NAME = "mattebox"
REGISTRY_NAME = "mattebox-replicas"
NAMESPACE = "mattebox"
#: environment a replica needs from the front door's: the import path and every MATTEBOX_* setting
#: (docs/environment.md), so a replica sees the same engines, models and state as the front door
FORWARDED_PREFIX = "MATTEBOX_"
PROGRESS_INTERVAL = 0.2  #: seconds between a replica's progress reports within one stage (also its cancel checks)


class ReplicaRegistry:
    """Ray actor: what each replica is doing (registered by the replicas, read by ``status``), and the channel for
    per-job progress (replica -> front door) and cancel requests (front door -> replica)."""

    def __init__(self):
        self.replicas: Dict[str, Dict[str, Any]] = {}
        self.progress: Dict[str, Dict[str, Any]] = {}  #: job id -> last progress event a replica reported
        self.cancelled: Dict[str, float] = {}  #: job id -> when the front door cancelled it

    def report(self, job_id: str, event: Optional[Dict[str, Any]]) -> bool:
        """A replica's progress for ``job_id`` (None: only asking); returns True when the job was cancelled."""
        if event is not None:
            self.progress[job_id] = event
        return job_id in self.cancelled

    def poll(self, job_id: str) -> Optional[Dict[str, Any]]:
        return self.progress.get(job_id)

    def cancel(self, job_id: str) -> None:
        self.cancelled[job_id] = time.time()

    def forget(self, job_id: str) -> None:
        """The front door is done with the job. A cancel flag stays a while: the replica may not have seen it."""
        self.progress.pop(job_id, None)
        now = time.time()
        for stale in [j for j, when in self.cancelled.items() if now - when > 3600]:
            del self.cancelled[stale]

    def register(self, replica: str, info: Dict[str, Any]) -> None:
        self.replicas[replica] = dict(info, job=None, done=0, since=time.time())

    def update(self, replica: str, job: Optional[str], finished: bool = False) -> None:
        entry = self.replicas.setdefault(replica, {"done": 0})
        entry["job"] = job
        entry["done"] = entry.get("done", 0) + (1 if finished else 0)

    def snapshot(self) -> Dict[str, Dict[str, Any]]:
        return self.replicas


class MatteReplica:
    """Ray Serve deployment body: one per GPU. Runs jobs with the single server's pipeline."""

    def __init__(self, device: str):
        import ray
        from ray import serve

        from .sysinfo import resolve_device

        self.device = resolve_device(device)
        context = serve.get_replica_context()
        self.replica = str(getattr(context, "replica_id", None) and context.replica_id.unique_id
                           or getattr(context, "replica_tag", os.getpid()))
        self.registry = ray.get_actor(REGISTRY_NAME, namespace=NAMESPACE)
        ray.get(self.registry.register.remote(self.replica, {
            "pid": os.getpid(), "node": ray.util.get_node_ip_address(), "device": self.device}))

    def matte(self, job_id: str, inputs: Dict[str, Any], params: Dict[str, Any]):
        from .jobs import compute_locally

        self.registry.update.remote(self.replica, job_id)
        buffers = {name: Buffer(name, array, desc["shape"], desc["dtype"], desc.get("colorspace", "linear"),
                                desc.get("premultiplied", False)) for name, (desc, array) in inputs.items()}
        progress = _ReplicaProgress(self.registry, job_id)
        try:
            progress.check_cancelled()  # cancelled while it waited for a replica
            descs, frames, info = compute_locally(buffers, params, progress, self.device)
        finally:
            self.registry.update.remote(self.replica, None, finished=True)
        info = dict(info, replica=self.replica, replica_pid=os.getpid())
        return descs, [np.asarray(frame) for frame in frames], info


class _ReplicaProgress:
    """A replica's ``progress`` callback: reports to the registry at stage changes and at most every
    PROGRESS_INTERVAL s within a stage, and raises JobCancelled when the front door cancelled the job."""

    def __init__(self, registry: Any, job_id: str, interval: float = PROGRESS_INTERVAL):
        self.registry = registry
        self.job_id = job_id
        self.interval = interval
        self.last = (0.0, None)

    def __call__(self, stage: str, done: int = 0, total: int = 0, message: str = "") -> None:
        now = time.monotonic()
        if stage == self.last[1] and now - self.last[0] < self.interval and done != total:
            return
        self.last = (now, stage)
        event = {"stage": stage, "done": int(done), "total": int(total), "message": message}
        if self._report(event):
            raise JobCancelled()

    def check_cancelled(self) -> None:
        if self._report(None):
            raise JobCancelled()

    def _report(self, event: Optional[Dict[str, Any]]) -> bool:
        import ray

        try:
            return bool(ray.get(self.registry.report.remote(self.job_id, event), timeout=5))
        except Exception:  # the registry is unreachable: carry on (progress is a courtesy, cancel best effort)
            return False


class ClusterBackend:
    """Starts or joins Ray, deploys the replicas, and makes the front door's workers."""

    def __init__(self, address: Optional[str] = None, replicas: Optional[int] = None, device: str = "auto",
                 retries: int = 3, replica_cpus: float = 0.5, poll_interval: float = PROGRESS_INTERVAL):
        self.address = address
        self.replicas = replicas
        self.device = device
        self.retries = retries
        self.replica_cpus = replica_cpus
        self.poll_interval = poll_interval
        self.handle = None
        self.registry = None
        self._started_ray = False
        self.retried = 0

    def start(self) -> None:
        import ray
        from ray import serve

        env = replica_environment(os.environ)
        if self.address:
            ray.init(address=self.address, namespace=NAMESPACE, runtime_env={"env_vars": env},
                     log_to_driver=False)
        else:
            ray.init(namespace=NAMESPACE, include_dashboard=False, runtime_env={"env_vars": env},
                     log_to_driver=False, num_cpus=max(2, os.cpu_count() or 2))
            self._started_ray = True
        gpus = int(ray.cluster_resources().get("GPU", 0))
        count = self.replicas or (gpus if gpus else 2)
        use_gpu = gpus > 0 and self.device != "cpu"
        self.replicas = count
        self.registry = ray.remote(ReplicaRegistry).options(name=REGISTRY_NAME, namespace=NAMESPACE,
                                                           get_if_exists=True, num_cpus=0).remote()
        serve.start(proxy_location="Disabled")
        options = {"num_gpus": 1} if use_gpu else {"num_cpus": self.replica_cpus}
        deployment = serve.deployment(MatteReplica, name="MatteReplica", num_replicas=count,
                                      ray_actor_options=options, max_ongoing_requests=1,
                                      health_check_period_s=2, health_check_timeout_s=10)
        self.handle = serve.run(deployment.bind("cuda" if use_gpu else "cpu"), name=APP_NAME, route_prefix=None)
        log.info("cluster ready", extra={"fields": {"replicas": count, "gpu": use_gpu,
                                                    "address": self.address or "local"}})

    def make_workers(self, queue: JobQueue, notify: Notify) -> List[Worker]:
        """One front-door worker per replica: each keeps one job in flight."""
        return [ClusterWorker(queue, notify, self) for _ in range(self.replicas)]

    def status(self) -> Dict[str, Any]:
        import ray
        from ray import serve

        replicas = ray.get(self.registry.snapshot.remote(), timeout=5)
        states: Dict[str, int] = {}
        try:
            deployment = serve.status().applications[APP_NAME].deployments["MatteReplica"]
            states = {str(k): v for k, v in deployment.replica_states.items()}
        except Exception as exc:  # status must answer even while Serve is reconfiguring
            states = {"unknown": str(exc)}
        for info in replicas.values():
            info["alive"] = _pid_alive(info.get("pid")) if info.get("node") == ray.util.get_node_ip_address() else None
        return {"address": self.address or "local", "replicas_wanted": self.replicas, "replica_states": states,
                "replicas": replicas, "retried_jobs": self.retried}

    def close(self) -> None:
        try:
            import ray
            from ray import serve

            serve.delete(APP_NAME)
            if self._started_ray:
                serve.shutdown()
                ray.shutdown()
        except Exception:  # best effort at shutdown
            log.exception("cluster shutdown")


class ClusterWorker(Worker):
    """A front-door worker whose jobs run on a Serve replica; retries a job whose replica died."""

    def __init__(self, queue: JobQueue, notify: Notify, backend: ClusterBackend):
        super().__init__(queue, notify, "cluster")
        self.backend = backend

    def compute(self, job: Job, progress: Any) -> tuple:
        import ray.exceptions

        inputs = {name: (buf.describe(), np.frombuffer(buf.data, np.uint8)) for name, buf in job.buffers.items()}
        last_error: Optional[BaseException] = None
        try:
            for attempt in range(1, self.backend.retries + 1):
                progress("cluster", attempt - 1, self.backend.retries, "sent to a replica" if attempt == 1 else
                         f"replica lost ({last_error.__class__.__name__}); retry {attempt - 1}")
                try:
                    descs, frames, info = self._wait(job, self.backend.handle.matte.remote(job.id, inputs,
                                                                                           job.params), progress)
                except JobCancelled:
                    self.backend.registry.cancel.remote(job.id)  # the replica stops at its next progress call
                    raise
                except ray.exceptions.RayTaskError as exc:  # the engine failed: as on a single server, no retry
                    cause = getattr(exc, "cause", None)
                    if isinstance(cause, (ProtocolError, JobCancelled)):
                        raise cause from None
                    raise RuntimeError(f"replica: {cause.__class__.__name__ if cause else 'error'}: "
                                       f"{cause or exc}") from None
                except (ray.exceptions.RayError, RuntimeError) as exc:  # replica died or unreachable: run it again
                    last_error = exc
                    self.backend.retried += 1
                    log.warning("replica lost mid-job; retrying", extra={"fields": {
                        "id": job.id, "attempt": attempt, "error": str(exc)[:200]}})
                    time.sleep(min(2.0, 0.5 * attempt))
                    continue
                job.buffers = None
                return descs, frames, dict(info, attempts=attempt)
            raise RuntimeError(f"job {job.id} lost its replica {self.backend.retries} times: {last_error}")
        finally:
            self.backend.registry.forget.remote(job.id)

    def _wait(self, job: Job, response: Any, progress: Any) -> tuple:
        """The replica's answer; meanwhile forward the stages it reports, and raise JobCancelled (through
        ``progress``) as soon as the job is cancelled here."""
        import ray

        seen = None
        while True:
            try:
                return response.result(timeout_s=self.backend.poll_interval)
            except TimeoutError:  # includes ray's GetTimeoutError: still running
                pass
            if job.cancel_event.is_set():
                raise JobCancelled()
            try:
                event = ray.get(self.backend.registry.poll.remote(job.id), timeout=5)
            except Exception:  # the registry is busy or gone: keep waiting for the result itself
                event = None
            if event and event != seen:
                seen = event
                progress(event["stage"], event["done"], event["total"], event["message"])



def replica_environment(environ: Dict[str, str]) -> Dict[str, str]:
    """What a replica inherits from the front door: PYTHONPATH and every ``MATTEBOX_*`` variable."""
    return {k: v for k, v in environ.items() if k == "PYTHONPATH" or k.startswith(FORWARDED_PREFIX)}


def _pid_alive(pid: Any) -> Optional[bool]:
    if not isinstance(pid, int):
        return None
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


__all__ = ["ClusterBackend", "ClusterWorker", "MatteReplica", "ReplicaRegistry"]
