"""Same-host shared memory: chosen from the hello, exact round trips, segment reuse, refusals naming the field, and
no leaked segments after a kill -9 of either side. Segments are sealed memfds where the kernel allows (the
default), else named /dev/shm files; the attacks run against both kinds."""
from __future__ import annotations

import fcntl
import os
import secrets
import signal
import subprocess
import sys
import time

import msgpack
import numpy as np
import pytest
import zmq

from mattebox import shm_server
from mattebox.testing.engines import SLOW_ENGINE
from mattebox_plugin import protocol, shm
from mattebox_plugin.client import Client, Job, JobFailed, ServerUnavailable
from tests.support.wait import wait_for

from .conftest import tree_env

pytestmark = pytest.mark.skipif(not shm.supported(), reason="no writable /dev/shm on this platform")


def _memfd_links(pid: int, owner: int, where: str):
    """memfd segments made by process ``owner`` that process ``pid`` has open (``fd``) or mapped (``maps``)."""
    prefix = f"/memfd:{shm.PREFIX}{owner}-"
    links = []
    try:
        if where == "fd":
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
                except OSError:  # closed while listed (the listing's own descriptor, for one)
                    pass
        else:
            with open(f"/proc/{pid}/maps") as fh:
                links = [line.split(None, 5)[-1].strip() for line in fh]
    except OSError:  # the process is gone
        return []
    return sorted({link for link in links if link.startswith(prefix)})


def segments_of(pid: int):
    """The segments process ``pid`` offers: its named files in /dev/shm and the memfds it holds open."""
    named = [n for n in os.listdir(shm.SHM_DIR) if shm.NAME_RE.match(n) and shm.owner_pid(n) == pid]
    return named + _memfd_links(pid, pid, "fd")


def offered(name: str) -> bool:
    """Whether the segment ``name`` is still offered by its client: a named file exists, or the memfd is still
    open under the descriptor its name carries (what the server's sweep checks)."""
    match = shm.MEMFD_RE.match(name)
    if match is None:
        return os.path.exists(os.path.join(shm.SHM_DIR, name))
    base, pid, fd = match.groups()
    try:
        return os.readlink(f"/proc/{pid}/fd/{fd}") == f"/memfd:{base} (deleted)"
    except OSError:
        return False


def mapped_by(holder: int, owner: int):
    """Segments of process ``owner`` that process ``holder`` (a server) still maps."""
    return _memfd_links(holder, owner, "maps")


KINDS = pytest.mark.parametrize("memfd", [True, False], ids=["memfd", "named"])


@pytest.fixture
def kind(monkeypatch, memfd):
    """Make this process's clients use one kind of segment (the server handles both)."""
    if memfd and not shm.memfd_supported():
        pytest.skip("no sealed memfd reachable through /proc here")
    if not memfd and not shm.named_supported():
        pytest.skip("no writable /dev/shm here")
    monkeypatch.setattr(shm, "memfd_supported", lambda: memfd)
    return memfd


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def frame(h=48, w=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((h, w, 3), dtype=np.float32), rng.random((h, w), dtype=np.float32)


@KINDS
def test_hello_picks_shared_memory_and_pixels_round_trip_exactly(embedded_server, kind):
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
        names = [segment.name for segment in client._shm_pool.segments]
        assert names and all(offered(name) for name in names)
    assert not any(offered(name) for name in names)  # close unlinks (named) or closes (memfd)


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
        assert sock.poll(60000), "no reply"
        return msgpack.unpackb(sock.recv_multipart()[1])
    finally:
        sock.close()


def _on(client, header):
    """``header`` (with the client's owner key) on the client's own connection -> the reply header."""
    client._send(client._owned(header))
    deadline = time.monotonic() + 60
    while header["id"] not in client._replies:
        assert time.monotonic() < deadline, "no reply"
        client._pump(0.1)
    return client._replies.pop(header["id"])


def image_desc(ref, shape=(8, 8, 3)):
    return {"name": "image", "shape": list(shape), "dtype": "float32", "colorspace": "linear", "shm": ref}


@KINDS
def test_unproven_connection_wrong_key_and_out_of_range_offsets_are_refused_naming_the_field(embedded_server, kind):
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


@pytest.mark.skipif(not (shm.memfd_supported() and shm.named_supported()), reason="needs memfd and /dev/shm")
def test_a_memfd_that_can_shrink_or_is_not_the_one_named_is_refused_naming_the_field(embedded_server):
    """The server maps only a memfd sealed against shrinking (else it could SIGBUS) that is the one the name
    says, on the kernel's shmem mount (not a /dev/shm file or any other file passed as a descriptor); a forged
    memfd with the seal and the key passes, so each refusal is down to the property it names."""
    key = secrets.token_bytes(shm.KEY_BYTES)

    def forge(seal: bool):
        base = f"{shm.PREFIX}{os.getpid()}-{secrets.token_hex(8)}"
        fd = os.memfd_create(base, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        os.ftruncate(fd, 4096)
        os.pwrite(fd, shm.MAGIC + key, 0)
        if seal:
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK)
        return base, fd

    (loose_base, loose), (sealed_base, sealed) = forge(False), forge(True)
    named = shm.Segment.create(4096, memfd=False)
    named_fd = os.open(named.path, os.O_RDWR | os.O_CLOEXEC)
    try:
        with Client(embedded_server.bound_endpoint, timeout=10) as client:
            client.hello()
            assert client._shm_pool.memfd
            for i, (name, key_hex, words) in enumerate((
                    (f"{loose_base}@{loose}", key.hex(), "F_SEAL_SHRINK"),
                    (f"{loose_base}@{sealed}", key.hex(), "is not the memfd"),  # another memfd's descriptor
                    (f"{named.name}@{named_fd}", named.key, "is not the memfd"))):  # a /dev/shm file
                reply = _on(client, {"op": "matte", "id": f"forged{i}",
                                     "buffers": [image_desc({"name": name, "offset": 64, "key": key_hex})]})
                assert (reply["code"], reply["field"]) == ("bad_buffer", "buffers.0.shm"), name
                assert words in reply["message"], reply["message"]
                probe = _raw(embedded_server.bound_endpoint, {"op": "hello", "id": "h",
                                                               "shm": {"name": name, "key": key_hex}})
                assert probe["shm"] is False and words in probe["shm_reason"], probe["shm_reason"]
            genuine = {"name": f"{sealed_base}@{sealed}", "key": key.hex()}
            probe = _raw(embedded_server.bound_endpoint, {"op": "hello", "id": "h", "shm": genuine})
            assert probe["shm"] is True, probe["shm_reason"]
    finally:
        for fd in (loose, sealed, named_fd):
            os.close(fd)
        named.unlink()
        named.close()


@pytest.mark.skipif(not (shm.memfd_supported() and shm.named_supported()), reason="needs memfd and /dev/shm")
def test_a_client_whose_memfd_the_server_cannot_open_falls_back_to_a_named_segment(embedded_server, monkeypatch):
    """Where the server may not open this process's /proc/<pid>/fd entries (another user, a non-dumpable host
    process), the client proves a /dev/shm segment instead, and pixels still go through shared memory."""
    def refuse(cls, name, key, owner):
        raise ValueError(f"cannot open segment '{name}': Permission denied")

    monkeypatch.setattr(shm_server.MappedSegment, "open_memfd", classmethod(refuse))
    image, mask = frame()
    with Client(embedded_server.bound_endpoint, timeout=10) as client:
        assert client.hello()["shm"] is True and client.shared_memory and client._shm_pool.memfd is False
        result = client.submit(image=image, mask=mask, params={"engine": "passthrough"}).result(timeout=30)
        np.testing.assert_array_equal(result.alpha, mask)
        assert all(shm.NAME_RE.match(name) for name in embedded_server.shm._segments)


@KINDS
def test_an_empty_or_wrong_probe_key_proves_nothing(embedded_server, kind):
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


def _truncate(segment: shm.Segment, size: int = 4096) -> bool:
    """Try to shrink ``segment`` as its client; False when the kernel refuses (a memfd sealed with F_SEAL_SHRINK)."""
    try:
        os.truncate(segment.path, size)
        return True
    except PermissionError:
        return False


@KINDS
def test_a_segment_truncated_under_the_server_fails_the_job_and_the_server_lives(server_process, monkeypatch, kind):
    """The SIGBUS attack: a client maps a segment, runs a job, truncates the segment and submits over it again.
    A sealed memfd cannot shrink (the truncation fails in the client, and the server, which maps it, serves the
    repeated job); a named segment is read with pread after an fstat, so the job fails naming the field. Either
    way the server keeps serving, and a segment truncated while a job runs gets its result (a named one is
    extended by pwrite, never a fault)."""
    monkeypatch.setenv("MATTEBOX_ENGINES", SLOW_ENGINE)
    monkeypatch.setenv("MATTEBOX_TEST_STEPS", "40")
    server = server_process("--state-dir", "none")
    with Client(server.endpoint, timeout=10) as client:
        client.hello()
        assert client._shm_pool.memfd is kind
        sent = []
        send = client._send
        client._send = lambda header, frames=(): (sent.append(header), send(header, frames))
        image, mask = frame(64, 64)
        assert client.submit(image=image, mask=mask, params={"engine": "passthrough"}).result(timeout=30)
        header = next(h for h in sent if h["op"] == "matte")
        segment = client._shm_pool.get(header["reply_shm"]["name"])
        client._shm_pool.segments.remove(segment)  # this client must not touch it again either (SIGBUS)
        assert _truncate(segment) is not kind  # a sealed memfd refuses to shrink
        if kind:  # nothing shrank: the same request over the same segment is served, and its result is right
            client._shm_pool.segments.append(segment)
            again = Job(client, "after-truncate", None, [])
            client._jobs[again.id] = again
            client._send(client._owned(dict(header, id=again.id)))
            np.testing.assert_array_equal(again.result(timeout=30).alpha, mask)
        else:
            reply = _on(client, dict(header, id="after-truncate"))
            assert (reply["code"], reply["field"]) == ("bad_buffer", "buffers.0.shm") and "outside" in reply["message"]
        assert server.proc.poll() is None and client.hello()["protocol"] == 1

        job = client.submit(image=image, params={"engine": "test-slow"})  # a fresh, full-size segment
        running = client._shm_pool.get(next(h for h in sent if h["op"] == "matte" and h["id"] == job.id)
                                       ["reply_shm"]["name"])
        assert _truncate(running) is not kind  # while the job runs
        assert job.result(timeout=30).info["engine"] == "test-slow"  # (its arrays are not read: not needed)
        client._shm_pool.segments.remove(running)
        assert server.proc.poll() is None and client.status()["server_version"]
        for dropped in (segment, running):
            dropped.unlink()


def test_stale_segments_of_dead_processes_are_swept_on_start(tmp_path):
    stale = f"mattebox-{dead_pid()}-{'ab' * 8}"
    open(os.path.join(shm.SHM_DIR, stale), "wb").close()
    mine = shm.Segment.create(64, memfd=False)
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


@KINDS
def test_client_killed_mid_job_leaves_no_segment(server_process, monkeypatch, kind):
    """The server lets go of a dead client's segments: unlinks its named files at once, unmaps its memfds (whose
    memory the kernel then frees) once the job reading them has finished."""
    monkeypatch.setenv("MATTEBOX_ENGINES", SLOW_ENGINE)
    monkeypatch.setenv("MATTEBOX_TEST_STEPS", "200")
    server = server_process()
    script = CLIENT_SCRIPT if kind else "from mattebox_plugin import shm\nshm.memfd_supported = lambda: False\n" \
        + CLIENT_SCRIPT
    proc = subprocess.Popen([sys.executable, "-c", script, server.endpoint], env=tree_env(),
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "submitted"
        assert segments_of(proc.pid)
        if kind:  # the server maps a memfd when it accepts the job
            wait_for(lambda: mapped_by(server.proc.pid, proc.pid), what="the server mapping the client's memfd")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    deadline = time.monotonic() + 120  # a memfd is unmapped once its running job (200 x 0.05 s) lets go of it
    while (segments_of(proc.pid) or mapped_by(server.proc.pid, proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not segments_of(proc.pid), "the server's sweep did not remove the dead client's segments"
    assert not mapped_by(server.proc.pid, proc.pid), "the server still maps the dead client's memfd"
    with Client(server.endpoint, timeout=10) as client:  # and it still serves
        assert client.hello()["shm"] is True


def test_server_killed_mid_job_leaves_no_segment(server_process, monkeypatch):
    monkeypatch.setenv("MATTEBOX_ENGINES", SLOW_ENGINE)
    monkeypatch.setenv("MATTEBOX_TEST_STEPS", "200")
    server = server_process()
    client = Client(server.endpoint, timeout=60, heartbeat=0.1, resubmit=False)
    try:
        client.hello()
        job = client.submit(image=np.ones((32, 32, 3), np.float32), params={"engine": "test-slow"})
        client.timeout = 0.5  # only now: a live server on a loaded box may be silent longer than that
        server.stop(signal.SIGKILL)
        # this client's segments (other tests' clients in this process may still hold theirs until collected)
        ours = [segment.name for segment in client._shm_pool.segments]
        assert ours and all(offered(name) for name in ours)  # still in use
        with pytest.raises(ServerUnavailable):
            job.result(timeout=60)  # the client's 0.5 s time-out, with no reply, raises it well before
    finally:
        client.close()
    assert not any(offered(name) for name in ours) and not segments_of(server.proc.pid)


def test_job_error_frees_the_segment(embedded_server):
    with Client(embedded_server.bound_endpoint, timeout=10) as client:
        client.hello()
        image = np.ones((16, 16, 3), np.float32)
        with pytest.raises(JobFailed):
            client.submit(image=image, params={"engine": "no-such-engine"}).result(timeout=10)
        assert all(not s.in_use() for s in client._shm_pool.segments)


@KINDS
def test_server_drops_mappings_of_segments_a_live_client_dropped(embedded_server, kind):
    with Client(embedded_server.bound_endpoint, timeout=10) as client:
        client.hello()
        small, small_mask = frame(8, 8)
        client.submit(image=small, mask=small_mask, params={"engine": "passthrough"}).result(timeout=30)
        big, big_mask = frame(64, 96)
        result = client.submit(image=big, mask=big_mask, params={"engine": "passthrough"}).result(timeout=30)
        np.testing.assert_array_equal(result.alpha, big_mask)
        assert len(client._shm_pool.segments) == 1  # the idle small segment was dropped for a bigger one
        wait_for(lambda: len(embedded_server.shm) == 1,
                 what="the server letting go of the dropped segment (freeing its memory)")


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
@KINDS
def test_another_local_user_can_neither_read_nor_write_a_clients_segment(server_process, kind):
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
        target_path = f"/proc/{os.getpid()}/fd/{target.fd}" if target.memfd else target.path

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
                open(target_path, "rb")
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
