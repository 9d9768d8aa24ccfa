"""Same-host shared memory: chosen from the hello, exact round trips, segment reuse, refusals naming the field, and
no leaked segments after a kill -9 of either side."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import msgpack
import numpy as np
import pytest
import zmq

from mattebox_plugin import protocol, shm
from mattebox_plugin.client import Client, JobFailed, ServerUnavailable

from .conftest import tree_env

pytestmark = pytest.mark.skipif(not shm.supported(), reason="no writable /dev/shm on this platform")
TEST_ENGINES = "test-slow=tests.support.engines:SlowEngine"


def segments_of(pid: int):
    return [n for n in os.listdir(shm.SHM_DIR) if shm.owner_pid(n) == pid]


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def frame(h=48, w=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((h, w, 3), dtype=np.float32), rng.random((h, w), dtype=np.float32)


def test_hello_picks_shared_memory_and_pixels_round_trip_exactly(embedded_server):
    image, mask = frame()
    with Client(embedded_server.bound_endpoint, timeout=10) as client:
        info = client.hello()
        assert info["shm"] is True and info["hostname"] and client.shared_memory
        sent = []
        send = client._send
        client._send = lambda header, frames=(): (sent.append((header, list(frames))), send(header, frames))
        job = client.submit(image=image, mask=mask, params={"engine": "passthrough",
                                                            "outputs": ["alpha", "foreground", "premultiplied"]})
        header, frames = next(m for m in sent if m[0]["op"] == "matte")
        assert all("shm" in d for d in header["buffers"]) and frames == [] and "reply_shm" in header
        result = job.result(timeout=30)
        assert all(not isinstance(b.data, (bytes, memoryview)) for b in result.buffers.values())  # views of shm
        np.testing.assert_array_equal(result.alpha, mask)
        np.testing.assert_array_equal(result.foreground, image)
        np.testing.assert_allclose(result.premultiplied[..., :3], image * mask[..., None], rtol=1e-6)
        assert len(embedded_server.shm) == 1  # the server mapped the client's one segment
        assert segments_of(os.getpid())
    assert not segments_of(os.getpid())  # close unlinks


def test_segments_are_reused_unless_a_result_still_views_them(embedded_server):
    image, mask = frame()
    with Client(embedded_server.bound_endpoint, timeout=10) as client:
        client.hello()
        first = client.submit(image=image, mask=mask, params={"engine": "passthrough"}).result(timeout=30)
        kept = first.alpha[4:10, 2]  # a view keeps the segment from reuse
        del first
        image2, mask2 = frame(seed=1)
        second = client.submit(image=image2, mask=mask2, params={"engine": "passthrough"}).result(timeout=30)
        assert len(client._shm_pool.segments) == 2
        np.testing.assert_array_equal(kept, mask[4:10, 2])  # not overwritten by the second job
        np.testing.assert_array_equal(second.alpha, mask2)
        del kept, second
        client.submit(image=image, mask=mask, params={"engine": "passthrough"}).result(timeout=30)
        assert len(client._shm_pool.segments) == 2  # no third segment: a free one was reused


def test_a_new_connection_proves_shared_memory_again_before_using_it(embedded_server):
    """Proof is per connection: after a reconnect (a status that timed out, a heartbeat) the client says hello
    again before its next job instead of naming segments on a connection that proved nothing."""
    image, mask = frame()
    with Client(embedded_server.bound_endpoint, timeout=10) as client:
        client.hello()
        client._reconnect()
        result = client.submit(image=image, mask=mask, params={"engine": "passthrough"}).result(timeout=30)
        assert client.shared_memory
        np.testing.assert_array_equal(result.alpha, mask)


def test_inline_when_turned_off(embedded_server, monkeypatch):
    image, mask = frame()
    monkeypatch.setenv("MATTEBOX_SHM", "0")
    with Client(embedded_server.bound_endpoint, timeout=10) as client:
        assert "shm" not in client.hello() and not client.shared_memory
        np.testing.assert_array_equal(client.submit(image=image, mask=mask, params={"engine": "passthrough"})
                                      .result(timeout=30).alpha, mask)


def _raw(endpoint, header):
    """``header`` from a fresh connection (that never said hello) -> the reply header."""
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        sock.send_multipart(protocol.encode(header))
        assert sock.poll(10000), "no reply"
        return msgpack.unpackb(sock.recv_multipart()[1])
    finally:
        sock.close()


def _on(client, header):
    """``header`` (with the client's owner key) on the client's own connection -> the reply header."""
    client._send(client._owned(header))
    deadline = time.monotonic() + 10
    while header["id"] not in client._replies:
        assert time.monotonic() < deadline, "no reply"
        client._pump(0.1)
    return client._replies.pop(header["id"])


def image_desc(ref, shape=(8, 8, 3)):
    return {"name": "image", "shape": list(shape), "dtype": "float32", "colorspace": "linear", "shm": ref}


def test_unproven_connection_wrong_key_and_out_of_range_offsets_are_refused_naming_the_field(embedded_server):
    with Client(embedded_server.bound_endpoint, timeout=10) as client:
        client.hello()
        own = client._shm_pool.acquire(1024)
        # another connection, even knowing the name and key, has not proved it shares this host
        reply = _raw(embedded_server.bound_endpoint, {"op": "matte", "id": "j1", "buffers": [image_desc(own.ref(64))]})
        assert reply["code"] == "bad_buffer" and reply["field"] == "buffers.0.shm" and "proved" in reply["message"]
        for ref, words in ((own.ref(own.size - 16), "outside"), (own.ref(0), "outside"),
                           (dict(own.ref(64), key=""), "key"), (dict(own.ref(64), key="0" * 64), "key"),
                           ({"name": "../../etc/passwd", "offset": 64, "key": own.key}, "not made by")):
            reply = _on(client, {"op": "matte", "id": "j2", "buffers": [image_desc(ref)]})
            assert (reply["code"], reply["field"]) == ("bad_buffer", "buffers.0.shm"), ref
            assert words in reply["message"], reply["message"]
        reply = _on(client, {"op": "matte", "id": "j3", "buffers": [image_desc(own.ref(64))],
                             "reply_shm": dict(own.ref(64), key="")})
        assert (reply["code"], reply["field"]) == ("bad_field", "reply_shm")
        assert client.hello()["protocol"] == 1  # still serving


def test_an_empty_or_wrong_probe_key_proves_nothing(embedded_server):
    """The hello probe compares the whole key in constant time: an empty or wrong one never passes."""
    victim = shm.Segment.create(64)
    try:
        for key in ("", "00" * 32, victim.key[:-2]):
            reply = _raw(embedded_server.bound_endpoint, {"op": "hello", "id": "h",
                                                           "shm": {"name": victim.name, "key": key}})
            assert reply["shm"] is False and "key" in reply["shm_reason"], key
        reply = _raw(embedded_server.bound_endpoint, {"op": "hello", "id": "h",
                                                       "shm": {"name": victim.name, "key": victim.key}})
        assert reply["shm"] is True
    finally:
        victim.unlink()
        victim.close()


def test_shared_memory_is_refused_on_a_connection_that_is_not_local(embedded_server, monkeypatch):
    """Locality comes from the transport (the peer's address), not from anything the client says."""
    import mattebox.server as server_module

    real = server_module._frame_property
    monkeypatch.setattr(server_module, "_frame_property",
                        lambda frames, name: "192.0.2.7" if name == "Peer-Address" else real(frames, name))
    with Client(embedded_server.bound_endpoint, timeout=10) as client:
        info = client.hello()
        assert info["shm"] is False and "local" in info["shm_reason"] and not client.shared_memory
        image, mask = frame()
        result = client.submit(image=image, mask=mask, params={"engine": "passthrough"}).result(timeout=30)
        np.testing.assert_array_equal(result.alpha, mask)  # frames instead


def test_a_segment_truncated_under_the_server_fails_the_job_and_the_server_lives(server_process, monkeypatch):
    """The SIGBUS attack: a client maps a segment, runs a job, truncates the segment and submits over it again.
    The server reads with pread after an fstat, so the job fails naming the field and the server keeps serving;
    a segment truncated while a job runs gets its result with pwrite (extended, never a fault)."""
    monkeypatch.setenv("MATTEBOX_ENGINES", TEST_ENGINES)
    monkeypatch.setenv("MATTEBOX_TEST_STEPS", "40")
    server = server_process("--state-dir", "none")
    with Client(server.endpoint, timeout=10) as client:
        client.hello()
        sent = []
        send = client._send
        client._send = lambda header, frames=(): (sent.append(header), send(header, frames))
        image, mask = frame(64, 64)
        assert client.submit(image=image, mask=mask, params={"engine": "passthrough"}).result(timeout=30)
        header = next(h for h in sent if h["op"] == "matte")
        segment = client._shm_pool.get(header["reply_shm"]["name"])
        client._shm_pool.segments.remove(segment)  # this client must not touch it again either (SIGBUS)
        os.truncate(os.path.join(shm.SHM_DIR, segment.name), 4096)
        reply = _on(client, dict(header, id="after-truncate"))
        assert (reply["code"], reply["field"]) == ("bad_buffer", "buffers.0.shm") and "outside" in reply["message"]
        assert server.proc.poll() is None and client.hello()["protocol"] == 1

        job = client.submit(image=image, params={"engine": "test-slow"})  # a fresh, full-size segment
        running = client._shm_pool.get(next(h for h in sent if h["op"] == "matte" and h["id"] == job.id)
                                       ["reply_shm"]["name"])
        os.truncate(os.path.join(shm.SHM_DIR, running.name), 4096)  # while the job runs
        assert job.result(timeout=30).info["engine"] == "test-slow"  # (its arrays are not read: not needed)
        client._shm_pool.segments.remove(running)
        assert server.proc.poll() is None and client.status()["server_version"]
        for dropped in (segment, running):
            dropped.unlink()


def test_stale_segments_of_dead_processes_are_swept_on_start(tmp_path):
    stale = f"mattebox-{dead_pid()}-{'ab' * 8}"
    open(os.path.join(shm.SHM_DIR, stale), "wb").close()
    mine = shm.Segment.create(64)
    try:
        shm.ClientPool()  # a client start sweeps (so does a server start)
        assert not os.path.exists(os.path.join(shm.SHM_DIR, stale))
        assert os.path.exists(os.path.join(shm.SHM_DIR, mine.name))  # a live owner's segment stays
    finally:
        mine.unlink()
        mine.close()


CLIENT_SCRIPT = """
import sys, numpy as np
from mattebox_plugin.client import Client
c = Client(sys.argv[1], timeout=30)
c.hello()
assert c.shared_memory
job = c.submit(image=np.ones((64, 64, 3), np.float32), params={"engine": "test-slow"})
print("submitted", flush=True)
for _ in job.progress():
    pass
"""


def test_client_killed_mid_job_leaves_no_segment(server_process, monkeypatch):
    monkeypatch.setenv("MATTEBOX_ENGINES", TEST_ENGINES)
    monkeypatch.setenv("MATTEBOX_TEST_STEPS", "200")
    server = server_process()
    proc = subprocess.Popen([sys.executable, "-c", CLIENT_SCRIPT, server.endpoint], env=tree_env(),
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "submitted"
        assert segments_of(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    deadline = time.monotonic() + 10
    while segments_of(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not segments_of(proc.pid), "the server's sweep did not remove the dead client's segments"
    with Client(server.endpoint, timeout=10) as client:  # and it still serves
        assert client.hello()["shm"] is True


def test_server_killed_mid_job_leaves_no_segment(server_process, monkeypatch):
    monkeypatch.setenv("MATTEBOX_ENGINES", TEST_ENGINES)
    monkeypatch.setenv("MATTEBOX_TEST_STEPS", "200")
    server = server_process()
    client = Client(server.endpoint, timeout=0.5, heartbeat=0.1, resubmit=False)
    try:
        client.hello()
        job = client.submit(image=np.ones((32, 32, 3), np.float32), params={"engine": "test-slow"})
        server.stop(signal.SIGKILL)
        assert segments_of(os.getpid())  # the client's own, still in use
        with pytest.raises(ServerUnavailable):
            job.result(timeout=5)
    finally:
        client.close()
    assert not segments_of(os.getpid()) and not segments_of(server.proc.pid)


def test_job_error_frees_the_segment(embedded_server):
    with Client(embedded_server.bound_endpoint, timeout=10) as client:
        client.hello()
        image = np.ones((16, 16, 3), np.float32)
        with pytest.raises(JobFailed):
            client.submit(image=image, params={"engine": "no-such-engine"}).result(timeout=10)
        assert all(not s.in_use() for s in client._shm_pool.segments)


def test_server_drops_mappings_of_segments_a_live_client_dropped(embedded_server):
    with Client(embedded_server.bound_endpoint, timeout=10) as client:
        client.hello()
        small, small_mask = frame(8, 8)
        client.submit(image=small, mask=small_mask, params={"engine": "passthrough"}).result(timeout=30)
        big, big_mask = frame(64, 96)
        result = client.submit(image=big, mask=big_mask, params={"engine": "passthrough"}).result(timeout=30)
        np.testing.assert_array_equal(result.alpha, big_mask)
        assert len(client._shm_pool.segments) == 1  # the idle small segment was dropped for a bigger one
        deadline = time.monotonic() + 5
        while len(embedded_server.shm) > 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(embedded_server.shm) == 1  # the server let go of the dropped one (its memory is freed)


def _as_nobody(fn) -> dict:
    """Run ``fn()`` (returning a JSON-able dict) in a forked child under uid nobody, a second local user; the
    interpreter and imports are already loaded, so the child needs no access to root's files."""
    import json
    import pwd

    nobody = pwd.getpwnam("nobody")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        code = 1
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            os.write(write, json.dumps(fn()).encode())
            code = 0
        except BaseException as exc:  # reported to the parent
            os.write(write, json.dumps({"child_error": repr(exc)}).encode())
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as fh:
        out = fh.read()
    os.waitpid(pid, 0)
    return json.loads(out)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the second user (uid nobody)")
def test_another_local_user_can_neither_read_nor_write_a_clients_segment(server_process):
    """The issue's attack, by a second local user: probe another user's segment with an empty key, then name it
    in a passthrough job (to read the plate) and in reply_shm (to overwrite a live result). Every step is refused
    naming the field, and the victim's bytes are unchanged."""
    server = server_process("--state-dir", "none")
    image, mask = frame()
    with Client(server.endpoint, timeout=10) as victim:
        victim.hello()
        result = victim.submit(image=image, mask=mask, params={"engine": "passthrough"}).result(timeout=30)
        target = victim._shm_pool.segments[0]  # still viewed by result: a live result
        before = bytes(target.map)

        def attack():
            ctx = zmq.Context()
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(server.endpoint)

            def ask(header):
                sock.send_multipart(protocol.encode(header))
                if not sock.poll(10000):
                    return {"code": "no answer"}
                return msgpack.unpackb(sock.recv_multipart()[1])

            out = {"uid": os.getuid()}
            try:
                open(os.path.join(shm.SHM_DIR, target.name), "rb")
                out["opened"] = True
            except PermissionError:
                out["opened"] = False
            out["empty_key"] = ask({"op": "hello", "id": "h1", "shm": {"name": target.name, "key": ""}})["shm"]
            own = shm.Segment.create(4096)
            try:
                out["own_probe"] = ask({"op": "hello", "id": "h2", "shm": {"name": own.name, "key": own.key}})["shm"]
                stolen = {"name": target.name, "offset": 64, "key": "0" * 64}
                read = ask({"op": "matte", "id": "steal", "params": {"engine": "passthrough"},
                            "buffers": [image_desc(stolen, (48, 64, 3))]})
                write = ask({"op": "matte", "id": "spoil", "params": {"engine": "passthrough"},
                             "buffers": [image_desc(own.ref(64), (8, 8, 3))],
                             "reply_shm": dict(stolen, size=1024)})
                out["read"] = [read.get("code"), read.get("field")]
                out["write"] = [write.get("code"), write.get("field")]
            finally:
                own.unlink()
                own.close()
                sock.close()
                ctx.term()
            return out

        seen = _as_nobody(attack)
        assert seen["uid"] != 0 and "child_error" not in seen, seen
        assert seen["opened"] is False and seen["empty_key"] is False and seen["own_probe"] is True
        assert seen["read"] == ["bad_buffer", "buffers.0.shm"]
        assert seen["write"] == ["bad_field", "reply_shm"]
        assert bytes(target.map) == before
        np.testing.assert_array_equal(result.alpha, mask)
