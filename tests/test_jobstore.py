"""Jobs survive a server restart (jobstore.py): kill -9 with results unfetched, jobs queued or running; expiry;
a corrupt database or spool; bad input still refused field by field. Real server processes (conftest's
``server_process``) on a per-test state directory; the test engine logs each run so a rerun cannot hide."""
from __future__ import annotations

import os
import signal
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
import zmq

from mattebox.jobstore import (MARKER, JobStore, StoredFileError, StoreUnavailable, describe_state_dir, read_message,
                               write_message)
from mattebox.testing.engines import SLOW_ENGINE
from mattebox_plugin import protocol
from mattebox_plugin.client import Client, JobFailed
from tests.support.wait import wait_for



@pytest.fixture
def state(tmp_path, monkeypatch) -> Path:
    """The state directory servers in this test use (conftest points MATTEBOX_STATE at it), the test engine,
    and a run log: one line per engine run."""
    monkeypatch.setenv("MATTEBOX_ENGINES", SLOW_ENGINE)
    monkeypatch.setenv("MATTEBOX_TEST_RUN_LOG", str(tmp_path / "runs.log"))
    return tmp_path / "state"


def runs(state: Path) -> int:
    """How many times the test engine started a run (server/mattebox/testing/engines.py)."""
    log = state.parent / "runs.log"
    return sum(line.startswith("start ") for line in log.read_text().splitlines()) if log.exists() else 0


def image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((24, 32, 3), dtype=np.float32)


def stored(*jobs) -> None:
    """Wait for the jobs' ``accepted``: a server with a store sends it once the job is on disk. (``submit`` may
    return earlier, on the job's first progress, when it starts at once.)"""
    wait_for(lambda: [job.poll(0) for job in jobs] and all(job.accepted for job in jobs), what="accepted")


def expect_restart(client: Client) -> None:
    """From now on 2 s of silence mean the server went away: the client reconnects and re-attaches (short, so the
    test is quick). Set just before the stop: until then a loaded machine may keep a live server quiet longer."""
    client.timeout = 2.0


def status(endpoint: str) -> dict:
    with Client(endpoint, timeout=10) as c:
        return c.status()


def restart(server_process, endpoint: str, *args: str):
    """A new server on the same port (and, through MATTEBOX_STATE, the same state directory)."""
    return server_process("--endpoint", endpoint, *args)


class Raw:
    """A bare DEALER: submits without ever fetching or releasing (a client that went away)."""

    def __init__(self, endpoint: str):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)

    def request(self, header, frames=(), timeout=10.0, skip=("accepted", "progress", "result")):
        """Send; the first reply about the same id whose op is not in ``skip``. Late messages of earlier jobs may
        still be on their way, even from a server killed since: they once made this flaky. Submits pass
        ``skip=()``."""
        self.sock.send_multipart(protocol.encode(header, frames))
        while True:
            reply = self.recv(timeout)
            if reply.get("id") == header.get("id") and reply["op"] not in skip:
                return reply

    def recv(self, timeout=10.0):
        assert self.sock.poll(int(timeout * 1000)), "no answer"
        return protocol.decode(self.sock.recv_multipart())[0]

    def submit(self, img: np.ndarray, job_id: str) -> dict:
        header = {"op": "matte", "id": job_id, "client": "raw", "params": {"engine": "test-slow"},
                  "buffers": [{"name": "image", "shape": list(img.shape), "dtype": "float32"}]}
        return self.request(header, [img.tobytes()], skip=())

    def close(self):
        self.sock.close()
        self.ctx.term()


# ----------------------------------------------------------------------------------------- files, lock
def test_stored_files_detect_truncation_and_corruption(tmp_path):
    frames = [np.arange(1000, dtype=np.float32), b"abc"]
    path = tmp_path / "job.mbx"
    write_message(path, {"op": "result", "n": 1}, frames)
    header, back = read_message(path)
    assert header == {"op": "result", "n": 1}
    assert bytes(back[0]) == frames[0].tobytes() and bytes(back[1]) == b"abc"
    assert not list(tmp_path.glob("*.tmp"))  # written under a temporary name, then moved into place
    whole = path.read_bytes()
    path.write_bytes(whole[:-100])  # a write cut short (what a kill mid-write would leave without os.replace)
    with pytest.raises(StoredFileError, match="interrupted write"):
        read_message(path)
    flipped = bytearray(whole)
    flipped[-5] ^= 0xFF
    path.write_bytes(bytes(flipped))
    with pytest.raises(StoredFileError, match="checksum"):
        read_message(path)
    with pytest.raises(StoredFileError, match="missing"):
        read_message(tmp_path / "nope.mbx")


def test_one_server_per_state_dir_and_a_locked_dir_means_memory_only(tmp_path, caplog):
    from mattebox.server import Server, ServerConfig

    holder = JobStore(tmp_path / "state", ttl=60)
    try:
        with pytest.raises(StoreUnavailable, match="in use by mattebox server pid"):
            JobStore(tmp_path / "state", ttl=60)
        server = Server(ServerConfig(endpoint="tcp://127.0.0.1:0", state_dir=str(tmp_path / "state")))
        thread = server.start_background()
        try:
            info = server.status_info()["store"]
            assert info["enabled"] is False and "in use" in info["reason"]
            assert "job store unavailable" in caplog.text
            with Client(server.bound_endpoint, timeout=10) as c:  # and it still serves
                assert c.submit(image=image(0), params={"engine": "passthrough"}).result(timeout=10).alpha.shape \
                    == (24, 32)
        finally:
            server.stop()
            thread.join(timeout=15)
    finally:
        holder.close()


# ------------------------------------------------------------------------- the state directory is mattebox's
def _snapshot(folder: Path) -> dict:
    """Every entry under ``folder`` (links not followed) -> its bytes, link target or 'dir'."""
    out = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        out[key] = (f"-> {os.readlink(path)}" if path.is_symlink() else "dir" if path.is_dir() else path.read_bytes())
    return out


def _users_folder(root: Path) -> Path:
    """A folder someone else filled, with names that look like a state directory's."""
    for name, data in {"results/keep.mbx": b"render notes", "spool/a.mbx": b"x", "running/a.run": b"",
                       "lock": b"my lock notes", "photo.jpg": b"\xff\xd8"}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def test_a_new_state_dir_is_private_and_marked(tmp_path):
    store = JobStore(tmp_path / "new" / "state", ttl=60)
    store.close()
    assert (tmp_path / "new" / "state" / MARKER).is_file()
    assert (tmp_path / "new" / "state").stat().st_mode & 0o777 == 0o700


def test_a_non_empty_folder_without_the_marker_is_refused_untouched(tmp_path, caplog):
    from mattebox.server import Server, ServerConfig

    folder = _users_folder(tmp_path / "mine")
    before = _snapshot(folder)
    with pytest.raises(StoreUnavailable, match=r"not empty and is not a mattebox state directory .*photo\.jpg"):
        JobStore(folder, ttl=60)
    assert describe_state_dir(folder).startswith("REFUSED: state directory")  # what `mattebox doctor` prints
    server = Server(ServerConfig(endpoint="tcp://127.0.0.1:0", state_dir=str(folder)))
    thread = server.start_background()
    try:
        assert "not a mattebox state directory" in server.status_info()["store"]["reason"]
        logged = [r.fields["error"] for r in caplog.records if r.getMessage().startswith("job store unavailable")]
        assert "not a mattebox state directory" in logged[0]  # the log says why it runs memory-only
    finally:
        server.stop()
        thread.join(timeout=15)
    assert _snapshot(folder) == before


@pytest.mark.parametrize("name", ["results", "spool", "running", "lock", "jobs.sqlite3", MARKER])
def test_links_inside_the_state_dir_are_refused_not_followed(tmp_path, name):
    state = tmp_path / "state"
    JobStore(state, ttl=60).close()
    victim = tmp_path / "elsewhere"
    victim.mkdir()
    (victim / "keep.mbx").write_bytes(b"someone's file")
    (victim / "file").write_bytes(b"someone's file")
    target = victim if name in ("results", "spool", "running") else victim / "file"
    path = state / name
    if path.is_dir():
        path.rmdir()
    else:
        path.unlink()
    path.symlink_to(target)
    before = _snapshot(victim)
    with pytest.raises(StoreUnavailable, match=f"{name} is a symbolic link"):
        JobStore(state, ttl=60)
    assert "symbolic link" in describe_state_dir(state)
    assert _snapshot(victim) == before


def test_stored_files_never_follow_links(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    (tmp_path / "job.mbx.tmp").symlink_to(victim)  # planted where the next write starts
    write_message(tmp_path / "job.mbx", {"op": "result"}, [b"abc"])
    assert victim.read_bytes() == b"keep" and read_message(tmp_path / "job.mbx")[0] == {"op": "result"}
    (tmp_path / "link.mbx").symlink_to(tmp_path / "job.mbx")
    with pytest.raises(StoredFileError, match="link"):
        read_message(tmp_path / "link.mbx")


def test_recovery_deletes_only_the_files_the_store_wrote(tmp_path):
    state = tmp_path / "state"
    store = JobStore(state, ttl=60)
    store._write(store.results / "ghost.mbx", {"op": "result"}, [b"abc"])  # written, then a kill before its row
    (store.results / "ghost.mbx.tmp").write_bytes(b"half")  # ... or during the write
    store.close()
    foreign = {"results/notes.mbx": b"mine", "spool/x.mbx": b"mine", "running/other.run": b"", "results/a.txt": b""}
    for name, data in foreign.items():
        (state / name).write_bytes(data)
    again = JobStore(state, ttl=60)
    try:
        assert again.recover() == []
    finally:
        again.close()
    assert not (state / "results" / "ghost.mbx").exists() and not (state / "results" / "ghost.mbx.tmp").exists()
    assert {name: (state / name).read_bytes() for name in foreign} == foreign


# ------------------------------------------------------------------------------------------- restarts
def test_finished_unfetched_results_survive_kill9(server_process, state, monkeypatch):
    """Results finished but not fetched at a kill -9 come back from disk: to another process holding the job's
    owner_key (the owner survives the restart; a client without the key gets unknown_job), and to the job's own
    client through its attach; neither resubmits and the engine ran once per job."""
    monkeypatch.setenv("MATTEBOX_TEST_STEPS", "3")
    monkeypatch.setenv("MATTEBOX_TEST_STEP_S", "0.1")
    first = server_process()
    owner = Client(first.endpoint, timeout=60, heartbeat=0.2)
    try:
        images = [image(1), image(2)]
        jobs = [owner.submit(image=img, params={"engine": "test-slow"}) for img in images]
        assert owner.shared_memory  # the first delivery would have gone through its shared memory
        owner._reconnect()  # its old connection is gone: the results have nowhere to go before the kill
        wait_for(lambda: status(first.endpoint)["store"]["results_on_disk"] == 2, what="both results on disk")
        expect_restart(owner)
        first.stop(signal.SIGKILL)
        assert len(list((state / "results").glob("*.mbx"))) == 2

        second = restart(server_process, first.endpoint)
        with Client(second.endpoint, timeout=10) as stranger:
            with pytest.raises(JobFailed) as refused:
                stranger.attach(jobs[1].id, release=False).result(timeout=20)
            assert refused.value.code == "unknown_job"
        with Client(second.endpoint, timeout=10, owner_key=owner.owner_key) as heir:
            fetched = heir.attach(jobs[1].id, release=False).result(timeout=20)
        results = [job.result(timeout=30) for job in jobs]
        for img, result in zip(images, results):
            np.testing.assert_allclose(result.alpha, img.mean(axis=2), atol=1e-6)
        np.testing.assert_array_equal(fetched.alpha, results[1].alpha)
        np.testing.assert_array_equal(fetched.foreground, results[1].foreground)
        assert not any(job._resubmitted for job in jobs)
        assert runs(state) == 2
        wait_for(lambda: not list((state / "results").iterdir()), what="released results deleted from disk")
    finally:
        owner.close()


def test_queued_jobs_rerun_after_kill9_without_resubmission(server_process, state, monkeypatch):
    monkeypatch.setenv("MATTEBOX_TEST_STEPS", "4")
    monkeypatch.setenv("MATTEBOX_TEST_STEP_S", "0.05")
    first = server_process()
    with Client(first.endpoint, timeout=60, heartbeat=0.2, resubmit=False) as c:
        images = [image(10 + i) for i in range(4)]
        jobs = [c.submit(image=img, params={"engine": "test-slow"}) for img in images]
        stored(*jobs)
        expect_restart(c)
        first.stop(signal.SIGKILL)
        second = restart(server_process, first.endpoint)
        for img, job in zip(images, jobs):
            np.testing.assert_allclose(job.result(timeout=30).alpha, img.mean(axis=2), atol=1e-6)
        info = c.status()
    assert info["counters"]["recovered"] >= 3  # the first may already have finished (and be stored) at the kill
    assert second.stop() == 0


def test_running_job_is_rerun_once_then_reported_lost(server_process, state, monkeypatch):
    monkeypatch.setenv("MATTEBOX_TEST_STEPS", "400")
    monkeypatch.setenv("MATTEBOX_TEST_STEP_S", "0.05")
    server = server_process()
    endpoint = server.endpoint
    with Client(endpoint, timeout=60, heartbeat=0.2, resubmit=False) as c:
        job = c.submit(image=image(3), params={"engine": "test-slow"})
        stored(job)
        for expected_runs in (1, 2):
            wait_for(lambda n=expected_runs: runs(state) == n and status(endpoint)["running_other"],
                     what="the job running")
            expect_restart(c)
            server.stop(signal.SIGKILL)
            server = restart(server_process, endpoint)
        with pytest.raises(JobFailed) as failure:
            job.result(timeout=30)
    assert failure.value.code == "job_lost"
    assert "server stopped" in failure.value.message and "rerun after 1 earlier server restart" in \
        failure.value.message
    assert runs(state) == 2
    assert "job lost across a restart" in (state.parent / "server.log").read_text()


def test_clean_shutdown_requeues_the_running_job(server_process, state, monkeypatch):
    """SIGTERM stops a running job at its next step; it reruns after the restart instead of ending 'cancelled'.
    The job runs 20 s on the first server (it cannot finish before the SIGTERM however loaded the machine) and one
    step on the second."""
    monkeypatch.setenv("MATTEBOX_TEST_STEPS", "400")
    monkeypatch.setenv("MATTEBOX_TEST_STEP_S", "0.05")
    first = server_process()
    with Client(first.endpoint, timeout=60, heartbeat=0.2, resubmit=False) as c:
        img = image(4)
        job = c.submit(image=img, params={"engine": "test-slow"})
        stored(job)
        wait_for(lambda: runs(state) == 1, what="the job running")
        expect_restart(c)
        assert first.stop() == 0
        with closing(sqlite3.connect(state / "jobs.sqlite3")) as db:  # queued again, not counted as a rerun
            assert db.execute("SELECT state, reruns FROM jobs WHERE id=?", (job.id,)).fetchone() == ("queued", 0)
        assert not list((state / "running").iterdir())
        monkeypatch.setenv("MATTEBOX_TEST_STEPS", "1")
        restart(server_process, first.endpoint)
        np.testing.assert_allclose(job.result(timeout=30).alpha, img.mean(axis=2), atol=1e-6)
    assert runs(state) == 2


def test_corrupt_spooled_inputs_are_reported_lost(server_process, state, monkeypatch):
    """The first job runs 20 s on the first server, so the second is still queued (its inputs spooled) at the
    kill however loaded the machine; one step after the restart."""
    monkeypatch.setenv("MATTEBOX_TEST_STEPS", "400")
    monkeypatch.setenv("MATTEBOX_TEST_STEP_S", "0.05")
    first = server_process()
    with Client(first.endpoint, timeout=60, heartbeat=0.2, resubmit=False) as c:
        running = c.submit(image=image(5), params={"engine": "test-slow"})
        queued = c.submit(image=image(6), params={"engine": "test-slow"})
        stored(running, queued)
        wait_for(lambda: runs(state) == 1, what="the first job running")
        expect_restart(c)
        first.stop(signal.SIGKILL)
        spooled = state / "spool" / f"{queued.id}.mbx"
        spooled.write_bytes(spooled.read_bytes()[:-64])
        monkeypatch.setenv("MATTEBOX_TEST_STEPS", "1")
        restart(server_process, first.endpoint)
        with pytest.raises(JobFailed) as failure:
            queued.result(timeout=30)
        assert failure.value.code == "job_lost" and "spooled inputs" in failure.value.message
        assert running.result(timeout=30).alpha.shape == (24, 32)


def test_expired_results_are_removed_from_disk(server_process, state, monkeypatch):
    """At start-up (the result expired while no server ran) and by the running server's sweep. No step waits for
    time to pass or races the sweep: the offline expiry is moved into the past in the database (as a clock that
    ran on while no server ran would have it), and the sweep's result is checked after the store's counter says
    the result was written, however soon the sweep then removed it."""
    monkeypatch.setenv("MATTEBOX_TEST_STEPS", "1")
    first = server_process()  # the default TTL (a day): nothing expires before the kill
    raw = Raw(first.endpoint)
    try:
        assert raw.submit(image(7), "expires-offline")["op"] in ("accepted", "progress")  # see protocol.md
        wait_for(lambda: status(first.endpoint)["store"]["results_on_disk"] == 1, what="the result on disk")
        first.stop(signal.SIGKILL)
        with closing(sqlite3.connect(state / "jobs.sqlite3")) as db, db:
            moved = db.execute("UPDATE jobs SET expires=? WHERE id=?", (time.time() - 1, "expires-offline"))
            assert moved.rowcount == 1, "the finished job's row is not in the database"
        assert list((state / "results").iterdir())
        second = restart(server_process, first.endpoint, "--result-ttl", "0.5")
        assert not list((state / "results").iterdir())
        assert raw.request({"op": "attach", "id": "expires-offline"})["code"] == "unknown_job"

        assert raw.submit(image(8), "expires-online")["op"] in ("accepted", "progress")
        wait_for(lambda: status(second.endpoint)["store"]["stored_results"] == 1, what="the result written")
        wait_for(lambda: not list((state / "results").iterdir()), what="the sweep")
        assert raw.request({"op": "attach", "id": "expires-online"})["code"] == "unknown_job"
        assert second.stop() == 0
    finally:
        raw.close()


def test_corrupt_database_is_moved_aside_and_the_server_serves(server_process, state, tmp_path):
    state.mkdir(parents=True)
    (state / "jobs.sqlite3").write_bytes(b"this is not a database" * 100)
    server = server_process()
    with Client(server.endpoint, timeout=10) as c:
        assert c.status()["store"]["enabled"] is True
        assert c.submit(image=image(9), params={"engine": "passthrough"}).result(timeout=20).alpha.shape == (24, 32)
    assert list(state.glob("jobs.sqlite3.corrupt-*"))
    assert "job database unreadable; moved aside" in (tmp_path / "server.log").read_text()


@pytest.mark.parametrize("header, frames, code, field", [
    ({"op": "matte", "id": "bad1", "params": {"quality": "ultra"},
      "buffers": [{"name": "image", "shape": [4, 4, 3], "dtype": "float32"}]}, [bytes(192)], "bad_field",
     "params.quality"),
    ({"op": "matte", "id": "bad2", "buffers": [{"name": "image", "shape": [4, 4, 3], "dtype": "float32"}]},
     [bytes(10)], "bad_buffer", "buffers.0.shape"),
    ({"op": "attach", "id": "never-submitted"}, [], "unknown_job", "id"),
])
def test_bad_input_is_refused_naming_the_field_and_never_stored(server_process, state, header, frames, code,
                                                               field):
    server = server_process()
    raw = Raw(server.endpoint)
    try:
        reply = raw.request(header, frames)
    finally:
        raw.close()
    assert (reply["code"], reply["field"]) == (code, field)
    assert not list((state / "spool").iterdir())


def test_memory_only_server_reports_it_in_status(server_process, state):
    server = server_process("--state-dir", "none")
    info = status(server.endpoint)["store"]
    assert info == {"enabled": False, "reason": "memory-only (no state directory)"}
    assert not state.exists()


def test_doctor_describes_the_state_dir_read_only(server_process, state):
    from mattebox.jobstore import describe_state_dir

    assert "not created yet" in describe_state_dir(state)
    server = server_process()
    with Client(server.endpoint, timeout=10) as client:
        client.submit(image=image(5), params={"engine": "test-slow"})  # its result is never fetched: kept
        wait_for(lambda: status(server.endpoint)["store"]["results_on_disk"] == 1, what="result on disk")
        line = describe_state_dir(state)
        assert "1 done" in line and "1 results on disk" in line, line
        assert f"in use by mattebox server pid {server.proc.pid}" in line, line
        assert status(server.endpoint)["store"]["enabled"]  # the probe did not take the server's lock
    server.stop()
    assert describe_state_dir(state).endswith("free")
