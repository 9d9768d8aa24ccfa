"""Shot jobs through a real server process (docs/protocol.md, *Shots*): the same mattes as matte_shot in process,
frames read lazily, cancel, ownership, bad frames, and a client that vanishes."""
from __future__ import annotations

import time

import numpy as np
import pytest

from mattebox.shots import Key, matte_shot
from mattebox.synth.shots import make_shot
from mattebox_plugin import protocol
from mattebox_plugin.client import Client, JobFailed, ShotJob

from .support.servers import ServerProcess

FRAMES = list(range(1001, 1011))  # a 10-frame shot
KEYS = (1001, 1005)  # trimap keys on two frames
WAIT = 60.0  # generous: CI is a loaded 2-core box


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


def wait_for(condition, what, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


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


def test_frames_are_read_lazily_and_results_stream_in_order(rendered):
    _, log, events = rendered
    assert [f for kind, f in log if kind == "result"] == FRAMES
    first_result = log.index(("result", FRAMES[0]))
    read_before = {f for kind, f in log[:first_result] if kind == "read"}
    # frame 1001's neighbours (1002, 1003) are guided by both keys, so the flow reaches key 1005: five frames
    assert read_before == set(range(1001, 1006))
    # later, a frame is read at most radius + 1 frames ahead of the result being solved
    for position, (kind, frame) in enumerate(log):
        if kind == "read" and position > first_result:
            returned = [f for k, f in log[:position] if k == "result"]
            assert frame <= returned[-1] + 3, (frame, returned[-1])
    solving = [e["frame"] for e in events if e.get("stage") == "shot" and e.get("done", 0) < len(FRAMES)]
    assert solving and solving == sorted(solving) and set(solving) <= set(FRAMES)


def test_should_cancel_stops_the_shot_on_the_server(server, shot):
    seen = []
    with Client(server.endpoint) as client:
        before = client.status()["counters"]["received"]
        with pytest.raises(JobFailed) as failed:
            for frame, _ in client.matte_shot(FRAMES, Reader(shot), keys=KEYS, should_cancel=lambda: len(seen) >= 1):
                seen.append(frame)
        assert failed.value.code == "cancelled" and seen == [FRAMES[0]]
        status = client.status()
        assert status["counters"]["received"] > before
        wait_for(lambda: not client.status()["running"] and client.status()["bytes_held"] == 0,
                 "the cancelled shot to stop and free its frames")


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
                wait_for(lambda: job_id in stranger._replies or stranger._pump(0.1), "the refusal")
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
        wait_for(lambda: client.status()["bytes_held"] == 0, "the failed shot to free its frames")


def test_a_client_that_vanishes_fails_its_shot_and_frees_its_memory(tmp_path, shot):
    server = ServerProcess(tmp_path, "--shot-timeout", "2", state_dir="none")
    try:
        client = Client(server.endpoint)
        client.hello()
        job = ShotJob(client, "vanishing-shot", FRAMES)
        client._jobs[job.id] = job
        client._send(client._owned({"op": protocol.MATTE, "id": job.id, "client": client.client_id, "buffers": [],
                                    "params": {"engine": "classical"},
                                    protocol.SHOT: {"first": FRAMES[0], "last": FRAMES[-1], "keys": [1001]}}))
        wait_for(lambda: job.needs or client._pump(0.1), "the first need")
        client._send_frame(job, job.needs.pop(0), Reader(shot, keys=(1001,))(1001))
        wait_for(lambda: job.needs or client._pump(0.1), "the second need")
        with Client(server.endpoint, owner_key=client.owner_key) as watcher:
            assert watcher.status()["bytes_held"] > 0  # frame 1001 is held for the walk
            client.close()  # gone without a word
            # (status is not about the job: an attach would be the owner's word and keep the shot waiting)
            wait_for(lambda: watcher.status()["jobs"].get("failed") == 1, "the shot to time out")
            with pytest.raises(JobFailed) as failed:
                watcher.attach(job.id).result(timeout=WAIT)
            assert failed.value.code == "frame_timeout"
            status = watcher.status()
            assert status["bytes_held"] == 0 and not status["running"] and server.alive()
    finally:
        server.stop()
