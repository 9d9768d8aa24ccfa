"""The server speaks protocol v1: every op, every bad-input case, concurrency, cancel, disconnects, restarts.

Most tests use a server inside this process (fast); the kill/restart tests use real server processes.
Sockets bind random loopback ports, linger 0, and every receive has a timeout.
"""
from __future__ import annotations

import subprocess
import sys
import threading
import time

import msgpack
import numpy as np
import pytest
import zmq

from mattebox import engines
from mattebox.testing.engines import SLOW_ENGINE
from mattebox_plugin import protocol
from mattebox_plugin.client import Client, JobFailed, ServerUnavailable

from tests.support.wait import wait_for

from .conftest import tree_env

engines.register("test-slow", "mattebox.testing.engines:SlowEngine")
engines.register("test-fail", "mattebox.testing.engines:FailingEngine")


@pytest.fixture
def client(embedded_server):
    with Client(embedded_server.bound_endpoint, timeout=10) as c:
        yield c


@pytest.fixture
def raw(embedded_server):
    """A bare DEALER for sending malformed messages; recv() returns the decoded header or None on timeout."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(embedded_server.bound_endpoint)

    class Raw:
        def send(self, frames):
            sock.send_multipart(frames)

        def recv(self, timeout=60.0):
            if not sock.poll(int(timeout * 1000)):
                return None
            return protocol.decode(sock.recv_multipart())[0]

        def request(self, header, buffers=()):
            self.send(protocol.encode(header, buffers))
            return self.recv()

    yield Raw()
    sock.close()
    ctx.term()


def image(h=24, w=32, seed=0):
    return np.random.default_rng(seed).random((h, w, 3), dtype=np.float32)


def matte_header(descs, **params):
    return {"op": "matte", "id": f"j{time.monotonic_ns()}", "params": dict(engine="test-slow", **params),
            "buffers": descs}


def desc(name="image", shape=(24, 32, 3), dtype="float32", **extra):
    return dict(name=name, shape=list(shape), dtype=dtype, colorspace="linear", premultiplied=False, **extra)


def test_hello_reports_versions_engines_and_limits(client):
    info = client.hello()
    assert info["protocol"] == protocol.PROTOCOL_VERSION
    names = {e["name"] for e in info["engines"]}
    assert {"classical", "test-slow"} <= names
    assert info["limits"]["max_pixels"] == protocol.DEFAULT_LIMITS["max_pixels"]


def test_matte_round_trip_progress_and_result(client):
    img = image()
    job = client.submit(image=img, params={"engine": "test-slow", "outputs": ["alpha", "foreground", "trimap",
                                                                               "premultiplied"]})
    events = list(job.progress())
    assert [e["stage"] for e in events if e["stage"] == "work"], "progress per step"
    result = job.result()
    np.testing.assert_allclose(result.alpha, img.mean(axis=2), atol=1e-6)
    np.testing.assert_allclose(result.foreground, img, atol=1e-6)
    assert result.premultiplied.shape == (24, 32, 4)
    np.testing.assert_allclose(result.premultiplied[..., :3], img * result.alpha[..., None], atol=1e-6)
    assert result.info["engine"] == "test-slow"


def test_colourspace_round_trip_srgb_uint8(client):
    img8 = (image() * 255).astype(np.uint8)
    result = client.submit(image=img8, colorspace="srgb", params={"engine": "test-slow"}).result()
    # the engine returns the linear image as foreground: back in sRGB it must match the input
    np.testing.assert_allclose(result.foreground, img8 / 255.0, atol=2e-3)


def test_premultiplied_rgba_input_is_unpremultiplied(client):
    rgb, a = image(), np.full((24, 32, 1), 0.5, np.float32)
    result = client.submit(image=np.concatenate([rgb * a, a], 2), premultiplied=True,
                           params={"engine": "test-slow"}).result()
    np.testing.assert_allclose(result.foreground, rgb, atol=1e-5)


def test_status_reports_queue_memory_uptime(client):
    status = client.status()
    assert status["memory"]["rss"] > 0 and status["uptime_s"] >= 0 and status["queue"] == 0
    assert status["server_version"]


def test_cancel_mid_job(client, monkeypatch):
    monkeypatch.setenv("MATTEBOX_TEST_STEPS", "200")
    job = client.submit(image=image(), params={"engine": "test-slow"})
    while not any(e["stage"] == "work" for e in job.poll(0.5)):
        pass
    job.cancel()
    with pytest.raises(JobFailed) as err:
        job.result(timeout=60)
    assert err.value.code == "cancelled"


def test_cancel_queued_job(client, monkeypatch):
    monkeypatch.setenv("MATTEBOX_TEST_STEPS", "40")
    first = client.submit(image=image(), params={"engine": "test-slow"})
    second = client.submit(image=image(), params={"engine": "test-slow"})
    second.cancel()
    with pytest.raises(JobFailed, match="cancelled"):
        second.result(timeout=60)
    assert first.result(timeout=60).alpha.shape == (24, 32)


def test_engine_failure_is_an_error_not_a_crash(client):
    with pytest.raises(JobFailed) as err:
        client.submit(image=image(), params={"engine": "test-fail"}).result(timeout=60)
    assert err.value.code == "engine_failed" and "deliberate failure" in err.value.message
    assert client.hello()["protocol"] == 1


BAD_REQUESTS = [
    # (name, header, buffers, expected code, expected field)
    ("wrong dtype", matte_header([desc(dtype="float64")]), [b"\0" * 24 * 32 * 3 * 8], "bad_buffer", "buffers.0.dtype"),
    ("size mismatch", matte_header([desc()]), [b"\0" * 100], "bad_buffer", "buffers.0.shape"),
    ("missing frame", matte_header([desc(), desc("mask", (24, 32))]), [b"\0" * 24 * 32 * 12], "bad_buffer",
     "buffers"),
    ("absurd dimensions", matte_header([desc(shape=(100000, 100000, 3))]), [b""], "too_large", "buffers.0.shape"),
    ("negative dimensions", matte_header([desc(shape=(-4, 32, 3))]), [b""], "bad_field", "buffers.0.shape"),
    ("five channels", matte_header([desc(shape=(24, 32, 5))]), [b"\0" * 24 * 32 * 20], "bad_field",
     "buffers.0.shape"),
    ("second of another size", matte_header([desc(), desc("second", (12, 32, 3))]),
     [b"\0" * 24 * 32 * 12, b"\0" * 12 * 32 * 12], "shape_mismatch", "buffers.1.shape"),
    ("unknown input", matte_header([desc(), desc("depth", (24, 32))]), [b"\0" * 24 * 32 * 12, b"\0" * 24 * 32 * 4],
     "bad_field", "buffers.1.name"),
    ("no image", matte_header([desc("mask", (24, 32))]), [b"\0" * 24 * 32 * 4], "bad_field", "buffers"),
    ("unknown param", dict(matte_header([desc()]), params={"sharpness": 3}), [b"\0" * 24 * 32 * 12], "bad_field",
     "params.sharpness"),
    ("bad param value", dict(matte_header([desc()]), params={"quality": "ultra"}), [b"\0" * 24 * 32 * 12],
     "bad_field", "params.quality"),
    ("unknown engine", dict(matte_header([desc()]), params={"engine": "nope"}), [b"\0" * 24 * 32 * 12],
     "unknown_engine", "params.engine"),
    ("bad job id", dict(matte_header([desc()]), id="../../etc"), [b"\0" * 24 * 32 * 12], "bad_field", "id"),
    ("unknown op", {"op": "explode", "id": "x"}, [], "unknown_op", "op"),
    ("cancel unknown job", {"op": "cancel", "id": "nope"}, [], "unknown_job", "id"),
]


@pytest.mark.parametrize("name,header,buffers,code,field", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_requests_name_the_field_and_server_keeps_serving(raw, client, name, header, buffers, code, field):
    reply = raw.request(header, buffers)
    assert reply is not None, "the server must answer a bad request"
    assert reply["op"] == "error" and reply["code"] == code, reply
    assert reply.get("field") == field, reply
    assert reply["message"]
    assert client.hello()["protocol"] == 1  # other clients still served


def test_nan_pixels_are_rejected_naming_the_buffer(client):
    img = image()
    img[3, 4, 1] = np.nan
    second = image(seed=1)
    second[0, 0, 0] = np.inf
    with pytest.raises(JobFailed) as err:
        client.submit(image=image(), second=second, params={"engine": "test-slow"}).result(timeout=60)
    assert err.value.code == "bad_pixels" and err.value.field == "buffers.1"
    with pytest.raises(JobFailed) as err:
        client.submit(image=img, params={"engine": "test-slow"}).result(timeout=60)
    assert err.value.code == "bad_pixels" and err.value.field == "buffers.0"


@pytest.mark.parametrize("frames", [
    [b"garbage"],
    [b"XYZ", b"whatever"],
    [protocol.MAGIC, b"\xc1\xc1\xc1 not msgpack"],
    [protocol.MAGIC, msgpack.packb([1, 2, 3])],
    [protocol.MAGIC, msgpack.packb({"v": 99, "op": "hello"})],
    [protocol.MAGIC, msgpack.packb({"v": 1, "op": 7})],
], ids=["one frame", "wrong magic", "not msgpack", "not a map", "future version", "op not a string"])
def test_garbage_gets_an_error_and_the_connection_stays_usable(raw, frames):
    reply = raw.request({"op": "hello", "id": "before"})
    assert reply["op"] == "hello"
    raw.send(frames)
    reply = raw.recv()
    assert reply is not None and reply["op"] == "error"
    assert reply["code"] in ("bad_message", "bad_version", "bad_field")
    assert raw.request({"op": "hello", "id": "after"})["op"] == "hello"


def test_version_mismatch_names_both_versions(raw):
    raw.send([protocol.MAGIC, msgpack.packb({"v": 2, "op": "hello", "id": "x"})])
    reply = raw.recv()
    assert reply["code"] == "bad_version" and "v1" in reply["message"] and "2" in reply["message"]


def test_queue_limit_per_client(embedded_server, monkeypatch):
    monkeypatch.setenv("MATTEBOX_TEST_STEPS", "100")
    embedded_server.config.limits["max_queued_jobs_per_client"] = 2
    with Client(embedded_server.bound_endpoint, timeout=10) as c:
        jobs = [c.submit(image=image(), params={"engine": "test-slow"}) for _ in range(2)]
        with pytest.raises(JobFailed) as err:
            c.submit(image=image(), params={"engine": "test-slow"})
        assert err.value.code == "queue_full"
        for job in jobs:
            job.cancel()


def test_message_size_limit_checked_before_sending(embedded_server):
    embedded_server.config.limits["max_message_bytes"] = 1000
    with Client(embedded_server.bound_endpoint, timeout=10) as c:
        with pytest.raises(JobFailed) as err:
            c.submit(image=image(), params={"engine": "test-slow"})
        assert err.value.code == "too_large"


def test_concurrent_clients_get_their_own_results(embedded_server, monkeypatch):
    monkeypatch.setenv("MATTEBOX_TEST_STEPS", "2")
    errors, results = [], {}

    def run(seed):
        try:
            with Client(embedded_server.bound_endpoint, timeout=20) as c:
                img = image(seed=seed)
                for _ in range(3):
                    res = c.submit(image=img, params={"engine": "test-slow"}).result(timeout=60)
                    np.testing.assert_allclose(res.alpha, img.mean(axis=2), atol=1e-6)
                results[seed] = True
        except Exception as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(seed,)) for seed in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and len(results) == 6


def test_reconnect_and_fetch_finished_job(embedded_server, monkeypatch):
    """A client that drops its connection mid-job re-attaches on a new socket and gets the result."""
    monkeypatch.setenv("MATTEBOX_TEST_STEPS", "10")
    with Client(embedded_server.bound_endpoint, timeout=10) as c:
        job = c.submit(image=image(), params={"engine": "test-slow"})
        c._reconnect()  # new socket, new identity: the old route is gone
        wait_for(lambda: embedded_server.counters["results"] == 1, what="the job finishing while no socket is "
                 "routed to it")
        assert job.result(timeout=60).alpha.shape == (24, 32)


def test_server_down_raises_server_unavailable_naming_endpoint():
    endpoint = "tcp://127.0.0.1:9"  # nothing listens on the discard port
    with Client(endpoint, timeout=0.5) as c:
        with pytest.raises(ServerUnavailable, match="127.0.0.1:9"):
            c.hello()


def test_client_killed_mid_job_does_not_hurt_the_server(server_process, monkeypatch):
    """The orphaned job (10 s) runs on, is counted in status without its id, and the server serves the next."""
    monkeypatch.setenv("MATTEBOX_ENGINES", SLOW_ENGINE)
    monkeypatch.setenv("MATTEBOX_TEST_STEPS", "200")
    server = server_process()
    script = ("import sys, time, numpy as np; from mattebox_plugin.client import Client\n"
              "c = Client(sys.argv[1], timeout=10)\n"
              "job = c.submit(image=np.random.rand(400, 400, 3).astype(np.float32), params={'engine': 'test-slow'})\n"
              "print('submitted', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", script, server.endpoint], env=tree_env(), stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().startswith(b"submitted")
    finally:
        proc.kill()
        proc.wait()
    with Client(server.endpoint, timeout=10) as c:
        assert c.hello()["protocol"] == 1
        def orphan_running():  # it may still be queued when submit returns
            status = c.status()
            return status if status["running_other"] else None

        status = wait_for(orphan_running, what="the orphaned job running")
        assert status["running_other"] == 1 and status["running"] == []  # the orphan runs on, its id not shown
        img = image()
        res = c.submit(image=img, params={"engine": "test-slow"}).result(timeout=120)  # after the orphan
        np.testing.assert_allclose(res.alpha, img.mean(axis=2), atol=1e-6)


def test_memory_only_server_restart_loses_no_work(tmp_path, server_process, monkeypatch):
    """Kill a memory-only server (no job store) mid-job and start a new one on the same endpoint: it answers
    unknown_job to the client's attach, and the client resubmits the job it kept. (With a job store the server
    reruns it itself: tests/test_jobstore.py.)"""
    monkeypatch.setenv("MATTEBOX_ENGINES", SLOW_ENGINE)
    monkeypatch.setenv("MATTEBOX_TEST_STEPS", "40")
    first = server_process("--state-dir", "none")
    endpoint = first.endpoint
    port = endpoint.rsplit(":", 1)[1]
    with Client(endpoint, timeout=2, heartbeat=0.3) as c:
        img = image()
        job = c.submit(image=img, params={"engine": "test-slow"})
        first.stop(9)
        server_process("--state-dir", "none", endpoint=f"tcp://127.0.0.1:{port}", env={"MATTEBOX_TEST_STEPS": "3"})
        result = job.result(timeout=60)
        np.testing.assert_allclose(result.alpha, img.mean(axis=2), atol=1e-6)
        assert job._resubmitted


def test_non_loopback_bind_is_refused_without_curve_keys(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mattebox", "serve", "--endpoint", "tcp://0.0.0.0:0"],
                          env=tree_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "not a loopback address" in proc.stderr and "mattebox keys" in proc.stderr


def test_sigterm_shuts_down_cleanly(server_process):
    server = server_process()
    assert server.stop() == 0


def test_result_is_released_after_delivery(embedded_server, monkeypatch):
    monkeypatch.setenv("MATTEBOX_TEST_STEPS", "1")
    with Client(embedded_server.bound_endpoint, timeout=10) as c:
        job = c.submit(image=image(), params={"engine": "test-slow"})
        job.result(timeout=60)
        deadline = time.monotonic() + 60
        while job.id in embedded_server.jobs and time.monotonic() < deadline:
            c._pump(0.05)  # the client sends its release as it reads the result's delivery
        assert job.id not in embedded_server.jobs


def test_protocol_doc_names_every_op_field_and_error():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "protocol.md").read_text()
    names = (list(protocol.ERROR_CODES) + list(protocol.MATTE_PARAMS) + list(protocol.INPUTS) +
             list(protocol.OUTPUTS) + list(protocol.DEFAULT_LIMITS) + list(protocol.CLIENT_OPS) +
             list(protocol.SERVER_OPS) + list(protocol.DTYPES) + list(protocol.COLORSPACES) +
             list(protocol.SHOT_FIELDS))
    missing = [n for n in names if f"`{n}`" not in doc]
    assert not missing, f"docs/protocol.md does not document {missing}"


# ------------------------------------------------------------------------------------------- ownership
def _ask(client, header, timeout=60.0):
    """``header`` with the client's owner key on its own connection -> the reply (matched by id)."""
    client._send(client._owned(header))
    deadline = time.monotonic() + timeout
    while header["id"] not in client._replies:
        assert time.monotonic() < deadline, f"no reply to {header}"
        client._pump(0.1)
    return client._replies.pop(header["id"])


def _answer(raw, header, frames=(), skip=("progress",)):
    """Send on the raw socket; the first message about ``header['id']`` whose op is not in ``skip``."""
    raw.send(protocol.encode(header, frames))
    while True:
        reply = raw.recv(60.0)
        assert reply is not None, f"no answer to {header['op']} {header['id']}"
        if reply.get("id") == header["id"] and reply["op"] not in skip:
            return reply


def test_only_the_owner_can_attach_cancel_release_or_see_a_job(embedded_server, monkeypatch):
    """A job id is not a capability: another client knowing it gets unknown_job for attach, cancel and release
    (the same answer as for an id that never existed) and does not see it in status; a client with the owner's
    key (a restarted farm process, say) does. The job would run 20 s, so it is surely running when status is
    asked; then its remaining steps take no time (the test engine reads MATTEBOX_TEST_STEP_S at each step)."""
    monkeypatch.setenv("MATTEBOX_TEST_STEPS", "400")
    with Client(embedded_server.bound_endpoint, timeout=10) as owner, \
            Client(embedded_server.bound_endpoint, timeout=10) as other:
        img = image(seed=3)
        job = owner.submit(image=img, params={"engine": "test-slow"})
        for op in ("attach", "cancel", "release"):
            reply = _ask(other, {"op": op, "id": job.id}) if op == "attach" else None
            if reply is None:  # cancel and release of someone else's job are refused, then checked below
                other._send(other._owned({"op": op, "id": job.id}))
                reply = _ask(other, {"op": "attach", "id": job.id})
            assert (reply["code"], reply["field"]) == ("unknown_job", "id"), op
        running = wait_for(lambda: owner.status()["running"], what="the job running")
        assert [r["id"] for r in running] == [job.id]
        status = other.status()
        assert status["running"] == [] and status["running_other"] == 1 and job.id not in str(status)
        monkeypatch.setenv("MATTEBOX_TEST_STEP_S", "0")
        result = job.result(timeout=30)  # neither cancelled nor released by the other client
        np.testing.assert_allclose(result.alpha, img.mean(axis=2), atol=1e-6)

        again = owner.submit(image=img, params={"engine": "test-slow"})
        with Client(embedded_server.bound_endpoint, timeout=10, owner_key=owner.owner_key) as heir:
            np.testing.assert_allclose(heir.attach(again.id).result(timeout=30).alpha, img.mean(axis=2), atol=1e-6)


def test_limits_count_per_owner_not_per_client_field(embedded_server, raw, monkeypatch):
    """A new 'client' string per job used to get past the queue limit; the owner here is the connection. Bytes
    of unfinished jobs are limited per owner and in all, and jobs in all."""
    monkeypatch.setenv("MATTEBOX_TEST_STEPS", "200")
    limits = embedded_server.config.limits
    limits["max_queued_jobs_per_client"] = 2
    img = image()

    def submit(job_id, client_field):
        return _answer(raw, dict(matte_header([desc()]), id=job_id, client=client_field), [img.tobytes()], skip=())

    assert submit("q1", "a")["op"] in ("accepted", "progress")
    assert submit("q2", "b")["op"] in ("accepted", "progress")
    reply = submit("q3", "c")
    assert (reply["code"], reply["field"]) == ("queue_full", "id") and "max_queued_jobs_per_client" in reply["message"]

    limits["max_queued_jobs_per_client"] = 16
    limits["max_bytes_per_client"] = 3 * img.nbytes - 1
    reply = submit("q4", "d")
    assert (reply["code"], reply["field"]) == ("over_budget", "buffers") and "max_bytes_per_client" in reply["message"]
    limits["max_bytes_per_client"] = 1 << 30
    limits["max_bytes_in_flight"] = 3 * img.nbytes - 1
    with Client(embedded_server.bound_endpoint, timeout=10) as other:  # another owner, same server-wide budget
        with pytest.raises(JobFailed) as err:
            other.submit(image=img, params={"engine": "test-slow"})
        assert err.value.code == "over_budget" and "max_bytes_in_flight" in err.value.message
        limits["max_bytes_in_flight"] = 1 << 30
        limits["max_queued_jobs"] = 2
        with pytest.raises(JobFailed) as err:
            other.submit(image=img, params={"engine": "test-slow"})
        assert err.value.code == "queue_full" and "max_queued_jobs " in err.value.message
    for job_id in ("q1", "q2"):
        _answer(raw, {"op": "cancel", "id": job_id})


def test_memory_only_results_are_evicted_oldest_first_with_a_clear_error(embedded_server, raw):
    """Results nobody fetches no longer pile up for the 24 h TTL: past max_result_bytes the oldest go, and a late
    attach says so (result_evicted) instead of unknown_job."""
    img = image()
    one_result = 24 * 32 * 4 * 4  # alpha + foreground, float32
    embedded_server.config.limits["max_result_bytes"] = 2 * one_result
    for n in range(3):
        header = dict(matte_header([desc()]), id=f"r{n}", params={"engine": "passthrough"})
        assert _answer(raw, header, [img.tobytes()], skip=())["op"] in ("accepted", "progress", "result")
    wait_for(lambda: embedded_server.counters["results"] == 3, what="three results")
    reply = _answer(raw, {"op": "attach", "id": "r0"}, skip=("progress", "accepted", "result"))
    assert (reply["code"], reply["field"]) == ("result_evicted", "id") and "max_result_bytes" in reply["message"]
    assert _answer(raw, {"op": "attach", "id": "r2"}, skip=("progress", "accepted"))["op"] == "result"
    assert embedded_server.status_info()["results_in_memory"]["bytes"] <= 2 * one_result
    assert embedded_server.counters["evicted"] == 1


def test_a_peer_cannot_take_over_another_connections_route(embedded_server, monkeypatch):
    """A DEALER may set its routing id; set to another connection's, it must not receive that connection's
    messages (ROUTER_HANDOVER would hand the route over)."""
    monkeypatch.setenv("MATTEBOX_TEST_STEPS", "10")
    with Client(embedded_server.bound_endpoint, timeout=10) as victim:
        job = victim.submit(image=image(), params={"engine": "test-slow"})
        ctx = zmq.Context()
        thief = ctx.socket(zmq.DEALER)
        thief.setsockopt(zmq.LINGER, 0)
        thief.setsockopt(zmq.ROUTING_ID, embedded_server.jobs[job.id].route)
        thief.connect(embedded_server.bound_endpoint)
        try:
            thief.send_multipart(protocol.encode({"op": "hello", "id": "h"}))
            assert job.result(timeout=30).alpha.shape == (24, 32)
            assert not thief.poll(200)  # refused: not even its hello is answered
        finally:
            thief.close()
            ctx.term()


@pytest.mark.parametrize("roi", [[0, 0, 33, 24], [30, 0, 4, 4], [0, 20, 32, 8], [100, 100, 1, 1]])
def test_roi_outside_the_image_is_refused_naming_it(raw, roi):
    header = matte_header([desc()], roi=roi)
    reply = raw.request(header, [image().tobytes()])
    assert reply["code"] == "bad_field" and reply["field"] == "params.roi", reply
    assert "outside the 32×24 image" in reply["message"]


def test_empty_roi_is_refused(raw):
    reply = raw.request(matte_header([desc()], roi=[0, 0, 0, 5]), [image().tobytes()])
    assert reply["code"] == "bad_field" and reply["field"] == "params.roi", reply


def test_roi_inside_the_image_is_accepted(client):
    result = client.submit(image(), mask=np.ones((24, 32), np.float32),
                           params={"engine": "passthrough", "roi": [0, 0, 32, 24]}).result()
    assert result.alpha.shape == (24, 32)


def test_roi_solves_only_inside_and_keeps_the_guidance_outside(client):
    """params.roi: the engine sees only the region; outside it alpha is the guidance, the foreground the plate."""
    rng = np.random.default_rng(5)
    plate = rng.random((40, 60, 3)).astype(np.float32)
    trimap = np.zeros((40, 60), np.float32)
    trimap[10:30, 15:45] = 0.5
    trimap[15:25, 22:38] = 1.0
    whole = client.submit(plate, trimap=trimap, params={"engine": "classical"}).result()
    part = client.submit(plate, trimap=trimap, params={"engine": "classical", "roi": [10, 5, 25, 30]}).result()
    inside = (slice(5, 35), slice(10, 35))
    outside = np.ones((40, 60), bool)
    outside[inside] = False
    assert part.info["roi"] == [10, 5, 25, 30]
    np.testing.assert_array_equal(part.alpha[outside], (trimap == 1.0)[outside].astype(np.float32))
    assert np.abs(part.alpha[inside] - whole.alpha[inside]).mean() < 0.1  # the same solve where the roi sees it
    assert part.alpha[inside][trimap[inside] == 0.5].std() > 0  # solved, not copied from the guidance
    np.testing.assert_allclose(part.foreground[outside], plate[outside], atol=1e-6)


@pytest.mark.parametrize("size", [(1, 1), (2, 2), (1, 50)])
def test_tiny_image_without_guidance_gets_a_clear_error(client, size):
    with pytest.raises(JobFailed) as err:
        client.submit(np.full(size + (3,), 0.5, np.float32), params={"engine": "classical"}).result()
    assert err.value.code == "bad_field" and err.value.field == "buffers"
    assert "too small to find the subject" in err.value.message and "OpenCV" not in err.value.message
