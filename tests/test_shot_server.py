"""Shot jobs through a real server process (docs/protocol.md, *Shots*): the same mattes as matte_shot in process,
frames read lazily, cancel, ownership, bad frames, and a client that vanishes."""
from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from mattebox.imageio import read_gray, read_linear_rgb, write_exr, write_png
from mattebox.shots import Key, ShotSettings, matte_shot
from mattebox.synth.shots import make_shot
from mattebox_plugin import protocol
from mattebox_plugin.client import Client, JobFailed, ShotJob

from mattebox.testing.servers import ServerProcess, tree_env

from .support.wait import GENEROUS, wait_for

FRAMES = list(range(1001, 1011))  # a 10-frame shot
KEYS = (1001, 1005)  # trimap keys on two frames
WAIT = GENEROUS


@pytest.fixture(scope="module")
def shot():
    return make_shot(7, size=(48, 64), length=len(FRAMES), real_alpha=False)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    process = ServerProcess(tmp_path_factory.mktemp("shot-server"), state_dir="none")
    yield process
    process.stop()


class Reader:
    """``read_frame`` for the synthetic shot; records every call in ``log`` (shared with the results' arrivals)."""

    def __init__(self, shot, keys=KEYS, log=None, change=None):
        self.shot, self.keys, self.log = shot, keys, log if log is not None else []
        self.change = change or (lambda frame, inputs: inputs)

    def __call__(self, frame):
        self.log.append(("read", frame))
        index = frame - FRAMES[0]
        inputs = {"image": self.shot.frames[index]}
        if frame in self.keys:
            inputs["trimap"] = self.shot.trimap(index)
        return self.change(frame, inputs)


def in_process(shot, keys=KEYS):
    """The shot as `mattebox render --shot` solves it: matte_shot in this process."""
    key_map = {k: Key("trimap", shot.trimap(k - FRAMES[0])) for k in keys}
    return {done.frame: done for done in matte_shot(lambda f: shot.frames[f - FRAMES[0]], FRAMES, key_map)}


@pytest.fixture(scope="module")
def rendered(server, shot):
    """One shot rendered through the server: (results by frame, the log of reads and results in order,
    progress events)."""
    log, events, results = [], [], {}
    with Client(server.endpoint) as client:
        for frame, result in client.matte_shot(FRAMES, Reader(shot, log=log), keys=KEYS,
                                               on_progress=events.append):
            log.append(("result", frame))
            results[frame] = (result.alpha.copy(), result.foreground.copy(), result.info)
    return results, log, events


def test_a_server_rendered_shot_equals_matte_shot_in_process(rendered, shot):
    results, _, _ = rendered
    reference = in_process(shot)
    assert sorted(results) == FRAMES
    for frame in FRAMES:
        alpha, foreground, info = results[frame]
        assert info["frame"] == frame and info["engine"] == "classical-shot"
        assert info["guidance"] == reference[frame].info["guidance"]
        assert np.array_equal(alpha, reference[frame].alpha), frame
        assert np.array_equal(foreground, reference[frame].foreground), frame


def test_a_server_rendered_shot_equals_render_shot_on_the_same_files(server, shot, tmp_path):
    """`mattebox render --shot` on EXR plates and mask keys (PNG) writes the alphas the server returns for the
    same pixels (float32 linear plates, 8-bit masks), bit for bit."""
    frames, keys = FRAMES[:6], (1001, 1005)
    for frame in frames:
        write_exr(str(tmp_path / f"plate.{frame}.exr"), shot.frames[frame - FRAMES[0]])
    masks = {k: (shot.alphas[k - FRAMES[0]] >= 0.5).astype(np.uint8) * 255 for k in keys}
    for k, mask in masks.items():
        write_png(str(tmp_path / f"roto.{k}.png"), mask / 255.0)
    cli = subprocess.run([sys.executable, "-m", "mattebox", "render", str(tmp_path / "plate.####.exr"), "--frames",
                          f"{frames[0]}-{frames[-1]}", "--alpha", str(tmp_path / "out" / "alpha.####.exr"),
                          "--mask", str(tmp_path / "roto.####.png"), "--shot", "--band-width", "6"],
                         env=tree_env(), capture_output=True, text=True, timeout=600)
    assert cli.returncode == 0, cli.stderr

    def read_frame(frame):
        inputs = {"image": read_linear_rgb(str(tmp_path / f"plate.{frame}.exr"))[0]}
        return dict(inputs, mask=masks[frame]) if frame in keys else inputs

    with Client(server.endpoint) as client:
        served = {frame: result.alpha for frame, result in
                  client.matte_shot(frames, read_frame, keys=keys, params={"band_width": 6}, outputs=("alpha",))}
    for frame in frames:
        assert np.array_equal(served[frame], read_gray(str(tmp_path / "out" / f"alpha.{frame}.exr"))), frame


def test_frames_are_read_lazily_and_results_stream_in_order(rendered):
    _, log, events = rendered
    assert [f for kind, f in log if kind == "result"] == FRAMES
    first_result = log.index(("result", FRAMES[0]))
    read_before = {f for kind, f in log[:first_result] if kind == "read"}
    # frame 1001's neighbours (1002, 1003) are guided by both keys, so the flow reaches key 1005: five frames
    assert read_before == set(range(1001, 1006))
    # later, a frame is read at most radius + lookahead frames ahead of the frame being solved (the one after the
    # last result): its window, and the frames whose independent solves run ahead while that frame is steadied
    ahead = ShotSettings().radius + ShotSettings().lookahead
    for position, (kind, frame) in enumerate(log):
        if kind == "read" and position > first_result:
            returned = [f for k, f in log[:position] if k == "result"]
            assert frame <= returned[-1] + 1 + ahead, (frame, returned[-1])
    solving = [e["frame"] for e in events if e.get("stage") == "shot" and e.get("done", 0) < len(FRAMES)]
    assert solving and solving == sorted(solving) and set(solving) <= set(FRAMES)


def test_should_cancel_or_closing_the_iterator_cancels_the_shot_on_the_server(server, shot):
    def cancelled(client):
        return client.status()["jobs"].get("cancelled", 0)

    seen = []
    with Client(server.endpoint) as client:
        before = cancelled(client)
        with pytest.raises(JobFailed) as failed:
            for frame, _ in client.matte_shot(FRAMES, Reader(shot), keys=KEYS, should_cancel=lambda: len(seen) >= 1):
                seen.append(frame)
        assert failed.value.code == "cancelled" and seen == [FRAMES[0]]
        wait_for(lambda: cancelled(client) == before + 1, what="the server to cancel the shot")
        log = []
        shots = client.matte_shot(FRAMES, Reader(shot, log=log), keys=KEYS)
        assert next(shots)[0] == FRAMES[0]
        shots.close()  # the caller stops early
        wait_for(lambda: cancelled(client) == before + 2, what="the server to cancel the abandoned shot")
        status = client.status()
        assert not status["running"] and status["bytes_held"] == 0
        assert max(f for _, f in log) < FRAMES[-1]  # stopped mid-shot: the last frames were never read


def test_another_owner_can_neither_feed_frames_nor_attach(server, shot):
    with Client(server.endpoint) as owner, Client(server.endpoint) as stranger:
        stranger.hello()
        answers = []

        def intrude(frame, inputs):
            if frame == FRAMES[0]:
                job_id = next(iter(owner._jobs))
                image = protocol.Buffer.from_array("image", inputs["image"])
                stranger._send(stranger._owned({"op": protocol.FRAME, "id": job_id, "frame": frame,
                                                "buffers": [image.describe()]}), [image.data])
                wait_for(lambda: job_id in stranger._replies or stranger._pump(0.1), what="the refusal")
                answers.append(stranger._replies.pop(job_id))
                with pytest.raises(JobFailed) as attached:
                    stranger.attach(job_id).result(timeout=WAIT)
                answers.append({"code": attached.value.code})
            return inputs

        frames = [frame for frame, _ in owner.matte_shot(FRAMES[:4], Reader(shot, keys=(1001,), change=intrude),
                                                         keys=(1001,))]
    assert [a["code"] for a in answers] == ["unknown_job", "unknown_job"]
    assert frames == FRAMES[:4]  # the owner's shot went on undisturbed


@pytest.mark.parametrize("change, code, field", [
    (lambda frame, inputs: dict(inputs, image=inputs["image"][:-2]) if frame == 1003 else inputs,
     "shape_mismatch", "buffers.0.shape"),
    (lambda frame, inputs: dict(inputs, mask=np.ones(inputs["image"].shape[:2], np.float32))
     if frame == 1002 else inputs, "bad_field", "buffers.1.name"),
], ids=["wrong shape", "guidance on a frame that is not a key"])
def test_a_bad_frame_fails_the_shot_naming_the_field(server, shot, change, code, field):
    with Client(server.endpoint) as client:
        with pytest.raises(JobFailed) as failed:
            list(client.matte_shot(FRAMES, Reader(shot, change=change), keys=KEYS))
        assert failed.value.code == code and failed.value.field == field
        assert "frame 100" in failed.value.message
        wait_for(lambda: client.status()["bytes_held"] == 0, what="the failed shot to free its frames")


@pytest.mark.parametrize("shot_map, params, field", [
    ({"first": 1, "last": 10, "step": 2}, {}, "shot.last"),
    ({"first": 1, "last": 9, "step": 2, "keys": [4]}, {}, "shot.keys.0"),
    ({"first": 1, "last": 9, "keys": [5, 3]}, {}, "shot.keys"),
    ({"first": 1, "last": 9, "radius": 9}, {}, "shot.radius"),
    ({"first": 1, "last": 9, "length": 9}, {}, "shot.length"),
    ({"first": 1}, {}, "shot.last"),
    ({"first": 1, "last": 9}, {"engine": "passthrough"}, "params.engine"),
    ({"first": 1, "last": 9}, {"roi": [0, 0, 4, 4]}, "params.roi"),
], ids=["last off the step", "key outside", "keys not ascending", "radius", "unknown field", "no last", "engine",
        "roi"])
def test_a_bad_shot_request_is_refused_naming_the_field(server, shot_map, params, field):
    with Client(server.endpoint) as client:
        client.hello()
        client._send(client._owned({"op": protocol.MATTE, "id": "bad-shot", "client": client.client_id,
                                    "buffers": [], "params": params, protocol.SHOT: shot_map}))
        wait_for(lambda: "bad-shot" in client._replies or client._pump(0.1), what="the refusal")
        reply = client._replies.pop("bad-shot")
    assert reply["op"] == "error" and reply["code"] == "bad_field" and reply["field"] == field, reply


def test_the_client_checks_its_shot_before_sending(server, shot):
    with Client(server.endpoint) as client:
        with pytest.raises(JobFailed) as failed:
            list(client.matte_shot([1, 2, 4], Reader(shot)))
        assert failed.value.field == "frames"
        with pytest.raises(JobFailed) as failed:
            list(client.matte_shot([1, 2, 3], Reader(shot), keys=[7]))
        assert failed.value.field == "shot.keys.0"


def test_frames_held_count_against_the_owners_byte_budget(tmp_path, shot):
    """Each frame is 36,864 bytes; five are held before the first result, over a 100,000-byte budget."""
    server = ServerProcess(tmp_path, "--max-bytes-per-client", "100000", state_dir="none")
    try:
        with Client(server.endpoint) as client:
            with pytest.raises(JobFailed) as failed:
                list(client.matte_shot(FRAMES, Reader(shot), keys=KEYS))
            assert failed.value.code == "over_budget" and failed.value.field == "buffers"
            assert "max_bytes_per_client" in failed.value.message
            wait_for(lambda: client.status()["bytes_held"] == 0, what="the refused shot to free its frames")
    finally:
        server.stop()


def start_shot(client, shot, job_id):
    """Submit a shot with one key by hand, answer the first need, and wait for the second: -> the ShotJob (the
    server then holds frame 1001 and waits for the next)."""
    client.hello()
    job = ShotJob(client, job_id, FRAMES)
    client._jobs[job.id] = job
    client._send(client._owned({"op": protocol.MATTE, "id": job.id, "client": client.client_id, "buffers": [],
                                "params": {"engine": "classical"},
                                protocol.SHOT: {"first": FRAMES[0], "last": FRAMES[-1], "keys": [1001]}}))
    wait_for(lambda: job.needs or client._pump(0.1), what="the first need")
    client._send_frame(job, job.needs.pop(0), Reader(shot, keys=(1001,))(1001))
    wait_for(lambda: job.needs or client._pump(0.1), what="the second need")
    return job


def test_a_shot_is_not_kept_across_a_restart_and_its_client_hears_job_lost(tmp_path, shot):
    state = tmp_path / "state"
    first = ServerProcess(tmp_path, state_dir=state)
    with Client(first.endpoint) as client:
        assert [f for f, _ in client.matte_shot(FRAMES[:3], Reader(shot, keys=()), radius=0)] == FRAMES[:3]
        assert not list((state / "running").glob("*")), "a finished shot left a run marker in the job store"
        job = start_shot(client, shot, "restarted-shot")
        assert first.stop() == 0
        assert not list((state / "running").glob("*")), "a shot job left a run marker in the job store"
        second = ServerProcess(tmp_path, state_dir=state)
        try:
            with Client(second.endpoint, owner_key=client.owner_key) as again:
                lost = ShotJob(again, job.id, FRAMES)
                again._jobs[lost.id] = lost
                lost._attach()
                with pytest.raises(JobFailed) as failed:
                    lost.result(timeout=WAIT)
            assert failed.value.code == "job_lost"
        finally:
            second.stop()


def test_a_client_that_vanishes_fails_its_shot_and_frees_its_memory(tmp_path, shot):
    # 15 s: long enough that a loaded box reads bytes_held before the time-out, short enough to wait out
    server = ServerProcess(tmp_path, "--shot-timeout", "15", state_dir="none")
    try:
        client = Client(server.endpoint)
        job = start_shot(client, shot, "vanishing-shot")
        with Client(server.endpoint, owner_key=client.owner_key) as watcher:
            assert watcher.status()["bytes_held"] > 0  # frame 1001 is held for the walk
            client.close()  # gone without a word
            # (status is not about the job: an attach would be the owner's word and keep the shot waiting)
            wait_for(lambda: watcher.status()["jobs"].get("failed") == 1, what="the shot to time out")
            with pytest.raises(JobFailed) as failed:
                watcher.attach(job.id).result(timeout=WAIT)
            assert failed.value.code == "frame_timeout"
            status = watcher.status()
            assert status["bytes_held"] == 0 and not status["running"] and server.alive()
    finally:
        server.stop()


# ------------------------------------------------------------------ attacks on shot jobs (#17 applied to #20)
def open_shot(client, job_id, shot_map=None):
    """Submit a shot by hand and wait until the server asks for its first frame (it is then running, holding a
    shot worker) -> the ShotJob. The frame is never sent."""
    client.hello()
    job = ShotJob(client, job_id, FRAMES)
    client._jobs[job.id] = job
    client._send(client._owned({"op": protocol.MATTE, "id": job.id, "client": client.client_id, "buffers": [],
                                "params": {"engine": "classical"},
                                protocol.SHOT: shot_map or {"first": FRAMES[0], "last": FRAMES[-1]}}))
    return job


def asked(client, job):
    """True once the server asked ``job`` for a frame (pumping the client's socket)."""
    client._pump(0.05)
    return bool(job.needs) or job.done


def rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_a_shot_waiting_for_its_client_does_not_hold_up_single_frames(tmp_path):
    """One device worker; a shot whose client never answers `need` used to keep it for shot_timeout_s, and every
    single-frame job waited that long. Shots have workers of their own."""
    server = ServerProcess(tmp_path, "--workers", "1", "--shot-timeout", "600", state_dir="none")
    try:
        with Client(server.endpoint) as hog, Client(server.endpoint) as other:
            stalled = open_shot(hog, "stalled-shot")
            wait_for(lambda: asked(hog, stalled), what="the shot to ask for its first frame")
            mask = np.full((16, 16), 0.25, np.float32)
            job = other.submit(image=np.ones((16, 16, 3), np.float32), mask=mask,
                               params={"engine": "passthrough", "outputs": ["alpha"]})
            assert np.array_equal(job.result(timeout=WAIT).alpha, mask)
            stalled.cancel()
            wait_for(lambda: hog.status()["bytes_held"] == 0 and not hog.status()["running"],
                     what="the cancelled shot to free its worker")
    finally:
        server.stop()


def test_shots_queue_fairly_between_owners(tmp_path):
    """One shot worker: owner A runs a shot and queues another, then B queues one. When A's first ends, B's shot
    runs before A's second (a first-come queue let one owner's shots keep everyone else's waiting)."""
    server = ServerProcess(tmp_path, "--max-running-shots", "1", "--shot-timeout", "600", state_dir="none")
    try:
        with Client(server.endpoint) as a, Client(server.endpoint) as b:
            first = open_shot(a, "a-first")
            wait_for(lambda: asked(a, first), what="A's first shot to run")
            second = open_shot(a, "a-second")
            wait_for(lambda: a.status()["queue"] == 1, what="A's second shot to queue")
            theirs = open_shot(b, "b-first")
            wait_for(lambda: b.status()["queue"] == 2, what="B's shot to queue")
            first.cancel()
            wait_for(lambda: asked(b, theirs), what="B's shot to run")
            a._pump(0.2)
            assert not second.needs and a.status()["queue"] == 1  # A's second still waits its turn
            second.cancel()
            theirs.cancel()
            wait_for(lambda: a.status()["jobs"].get("cancelled") == 3, what="the shots to be cancelled")
    finally:
        server.stop()


def test_a_shot_cannot_wait_for_its_client_for_ever(tmp_path, shot):
    """A client that pings (attach every 0.2 s) but never sends the frame asked for kept its shot, and a worker,
    for ever: pings reset shot_timeout_s. shot_max_wait_s bounds a shot's waits in all."""
    server = ServerProcess(tmp_path, "--shot-timeout", "600", "--shot-max-wait", "3", state_dir="none")
    try:
        with Client(server.endpoint, heartbeat=0.2) as client:
            job = start_shot(client, shot, "trickling-shot")  # frame 1001 sent; the second need unanswered
            started = time.monotonic()
            with pytest.raises(JobFailed) as failed:
                job.result(timeout=WAIT)  # waits, pinging with attach
            assert failed.value.code == "frame_timeout" and failed.value.field == "frame"
            assert "shot_max_wait_s 3" in failed.value.message
            assert time.monotonic() - started < WAIT
            status = client.status()
            assert status["bytes_held"] == 0 and not status["running"] and server.alive()
    finally:
        server.stop()


def test_queued_shot_declarations_cost_bytes_not_megabytes(tmp_path, shot):
    """64 shots of 100,000 frames from 64 owners (a fresh owner_key each) used to hold two lists of 100,000 ints
    each while queued: ~8 MiB a shot, 512 MiB here, 2 GiB at the server's 256-job limit."""
    server = ServerProcess(tmp_path, "--shot-timeout", "600", state_dir="none")
    try:
        with Client(server.endpoint) as warm:  # load the shot solver's modules first: they are not the attack
            assert [f for f, _ in warm.matte_shot(FRAMES[:2], Reader(shot, keys=()), radius=0)] == FRAMES[:2]
        before = rss_mib(server.proc.pid)
        clients = [Client(server.endpoint) for _ in range(64)]
        try:
            jobs = [open_shot(c, f"long-{i}", {"first": 0, "last": 99_999}) for i, c in enumerate(clients)]
            wait_for(lambda: clients[0].status()["queue"] >= 62, what="the shots to queue behind the running ones")
            grown = rss_mib(server.proc.pid) - before
            assert grown < 64, f"64 queued shot declarations grew the server by {grown:.0f} MiB"
            for job in jobs:
                job.cancel()
        finally:
            for client in clients:
                client.close()
    finally:
        server.stop()


@pytest.mark.parametrize("shot_map", [{"first": 0, "last": 100_000}, {"first": -2**63, "last": 2**63 - 1}],
                         ids=["100,001 frames", "2**64 frames"])
def test_a_shot_over_the_frame_limit_is_too_large_naming_shot_last(server, shot_map):
    """2**64 frames answered engine_failed (OverflowError from len(range)) instead of naming the field."""
    with Client(server.endpoint) as client:
        job = open_shot(client, "endless-shot", shot_map)
        with pytest.raises(JobFailed) as failed:
            job.result(timeout=WAIT)
    assert failed.value.code == "too_large" and failed.value.field == "shot.last", failed.value


def test_frames_trickled_just_inside_the_time_out_still_meet_the_shots_wait_cap():
    """In process: every frame comes 0.1 s after its need, well inside shot_timeout_s (60 s), so each wait alone
    is fine; their sum passes shot_max_wait_s (1 s) and the shot ends with frame_timeout (it used to run on, one
    slow frame at a time, for as long as the client liked: 40 frames here, any number of 100,000 in general)."""
    import threading

    from mattebox.shots.session import ShotSession

    spec = protocol.validate_shot({protocol.SHOT: {"first": 1, "last": 40, "radius": 0}})
    params = protocol.validate_params({"engine": "classical", "outputs": ["alpha"]})
    session = ShotSession("trickle", spec, params, timeout=60, cancelled=threading.Event(), max_wait=1.0)
    image = protocol.Buffer.from_array("image", np.random.default_rng(0).random((16, 16, 3), dtype=np.float32))
    timers, late = [], []

    def deliver(frame):
        try:
            session.offer(frame, {"image": image}, {"image": "buffers.0"})
        except protocol.ProtocolError as exc:  # the answer to the need the shot gave up on
            late.append(exc.message)

    def send(header, frames):
        if header["op"] == protocol.NEED:
            timers.append(threading.Timer(0.1, deliver, (header["frame"],)))
            timers[-1].start()

    with pytest.raises(protocol.ProtocolError) as failed:
        session.run(lambda *args, **kwargs: None, send)
    for timer in timers:
        timer.join()
    assert failed.value.code == "frame_timeout" and "shot_max_wait_s 1" in failed.value.message
    assert 2 <= len(timers) < 40  # the cap is on the sum: frames came, each in time, before it was reached
    assert all("has ended" in message for message in late)
