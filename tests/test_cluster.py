"""`mattebox serve --cluster`: Ray Serve replicas behind the same ZeroMQ front door (local Ray, 2 CPU replicas).
Jobs spread over replicas, status shows each replica, a replica killed mid-job has its job retried, a replica's
progress reaches the client, and a cancel stops the job on its replica."""
from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from mattebox_plugin.client import Client, JobFailed

from mattebox.testing.engines import SLOW_ENGINE
from mattebox.testing.servers import ServerProcess, tree_env, wait_for_busy_replica

from .support.wait import wait_for

HAVE_RAY = importlib.util.find_spec("ray") is not None and importlib.util.find_spec("ray.serve") is not None


def test_single_server_path_never_imports_ray():
    code = ("import sys, numpy as np\n"
            "from mattebox.server import Server, ServerConfig\n"
            "from mattebox.commands import serve\n"
            "from mattebox_plugin.client import Client\n"
            "s = Server(ServerConfig(endpoint='tcp://127.0.0.1:0')); t = s.start_background()\n"
            "c = Client(s.bound_endpoint, timeout=10); c.hello(); c.status()\n"
            "c.submit(image=np.ones((8, 8, 3), np.float32), params={'engine': 'passthrough'}).result(timeout=30)\n"
            "c.close(); s.stop(); t.join()\n"
            "assert 'ray' not in sys.modules, 'ray was imported'\n")
    subprocess.run([sys.executable, "-c", code], env=tree_env(), check=True, timeout=60)


@pytest.fixture(scope="module")
def cluster_server(tmp_path_factory):
    if not HAVE_RAY:
        pytest.skip("ray[serve] is not installed (pip install 'mattebox[cluster]')")
    folder = tmp_path_factory.mktemp("cluster")
    server = ServerProcess(folder, "--cluster", "--replicas", "2", "--log-level", "info", start_timeout=600,
                           env=dict(MATTEBOX_ENGINES=SLOW_ENGINE,
                                    MATTEBOX_TEST_STEPS="30", MATTEBOX_TEST_STEP_S="0.1",
                                    MATTEBOX_TEST_RUN_LOG=str(folder / "runs.log"),
                                    MATTEBOX_TEST_HOLD=str(folder / "hold")))
    server.run_log, server.hold = folder / "runs.log", folder / "hold"
    yield server
    server.stop()


def _image(seed=0):
    return np.random.default_rng(seed).random((24, 24, 3), dtype=np.float32)


@pytest.mark.slow
def test_jobs_spread_over_replicas_and_status_lists_them(cluster_server):
    with Client(cluster_server.endpoint, timeout=60) as client:
        info = client.hello()
        assert info["protocol"] == 1  # the same front door: clients cannot tell
        images = [_image(i) for i in range(4)]
        jobs = [client.submit(image=img, params={"engine": "test-slow"}) for img in images]
        results = [job.result(timeout=180) for job in jobs]
        for img, result in zip(images, results):
            np.testing.assert_allclose(result.alpha, img.mean(axis=2), atol=1e-6)
        assert len({r.info["replica"] for r in results}) == 2
        cluster = client.status()["cluster"]
        assert len(cluster["replicas"]) == 2 and cluster["replica_states"].get("RUNNING") == 2
        assert sum(r["done"] for r in cluster["replicas"].values()) >= 4


@pytest.mark.slow
def test_replica_killed_mid_job_has_its_job_retried(cluster_server):
    with Client(cluster_server.endpoint, timeout=60) as client:
        client.hello()
        images = [_image(10 + i) for i in range(2)]
        jobs = [client.submit(image=img, params={"engine": "test-slow"}) for img in images]
        victim = wait_for_busy_replica(client, timeout=60, poll=0.2)
        assert victim is not None, "no replica picked up a job"
        os.kill(victim["pid"], signal.SIGKILL)
        results = [job.result(timeout=240) for job in jobs]
        for img, result in zip(images, results):
            np.testing.assert_allclose(result.alpha, img.mean(axis=2), atol=1e-6)
        assert max(r.info["attempts"] for r in results) >= 2
        assert client.status()["cluster"]["retried_jobs"] >= 1


@pytest.mark.slow
def test_replica_progress_reaches_the_client(cluster_server):
    with Client(cluster_server.endpoint, timeout=60) as client:
        img = _image(20)
        job = client.submit(image=img, params={"engine": "test-slow"})
        events = list(job.progress())
        np.testing.assert_allclose(job.result().alpha, img.mean(axis=2), atol=1e-6)
    work = [e for e in events if e["stage"] == "work"]  # the test engine's own stage, reported by its replica
    # sampled every 0.2 s from a 3 s job: two samples show it advancing (more would count the machine's load)
    assert len(work) >= 2 and work[-1]["total"] == 30 and work[-1]["done"] > work[0]["done"]


@pytest.mark.slow
def test_cancel_stops_the_job_on_its_replica(cluster_server):
    """The engine stops at its next progress call on the replica (it logs no 'end'), and the replica is free.
    The job is held after its steps until the test has cancelled it, so it cannot end first on a loaded box."""
    with Client(cluster_server.endpoint, timeout=60) as client:
        img = _image(21)
        cluster_server.hold.touch()
        try:
            job = client.submit(image=img, params={"engine": "test-slow"})
            for event in job.progress():
                if event["stage"] == "work" and event["done"] >= 2:
                    break
            job.cancel()
            with pytest.raises(JobFailed) as failure:
                job.result(timeout=60)
            assert failure.value.code == "cancelled"
            wait_for(lambda: not any(r["job"] == job.id for r in client.status()["cluster"]["replicas"].values()),
                     what="the replica letting go of the cancelled job", poll=0.1)
        finally:
            cluster_server.hold.unlink()
        key = f"{float(img.mean()):.6f}"
        log = cluster_server.run_log.read_text().splitlines()
        assert f"start {key}" in log and f"end {key}" not in log
        # the replica takes new work
        other = _image(22)
        result = client.submit(image=other, params={"engine": "test-slow"}).result(timeout=120)
        np.testing.assert_allclose(result.alpha, other.mean(axis=2), atol=1e-6)
