"""mattebox_plugin.run: the frame run Blender and Nuke share (content key, cache, progress, cancel, errors).

Scripted clients make the timing-free cases exact; one test drives a real in-process server. The hosts' own use
of it is tested in test_blender_logic.py and test_nuke_node.py."""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from mattebox_plugin import run as frame_run
from mattebox_plugin.client import Client, JobFailed, ServerUnavailable
from mattebox_plugin.protocol import Buffer

HELLO = {"server_version": "1.0", "engines": [{"name": "classical", "kind": "classical", "available": True},
                                              {"name": "vitmatte", "kind": "learned", "available": False}]}


def _request(image, **params):
    return {"image": image, "params": dict(params)}


def test_content_key_covers_pixels_params_server_and_engine():
    image = np.random.default_rng(0).random((6, 8, 3), dtype=np.float32)
    key = frame_run.content_key(_request(image, engine="classical"), HELLO)
    assert key == frame_run.content_key(_request(image.copy(), engine="classical"), HELLO)
    # the same bytes as a Buffer, and defaults given or left out, are the same request
    assert key == frame_run.content_key(_request(Buffer.from_array("image", image), engine="classical",
                                                 quality="balanced"), HELLO)
    touched = image.copy()
    touched[5, 7, 2] += 1e-6
    changed = [
        _request(touched, engine="classical"),
        _request(image, engine="classical", quality="best"),
        dict(_request(image, engine="classical"), mask=np.ones((6, 8), np.float32)),
        dict(_request(image, engine="classical"), colorspace="srgb"),
    ]
    for request in changed:
        assert frame_run.content_key(request, HELLO) != key
    newer = dict(HELLO, server_version="1.1")
    assert frame_run.content_key(_request(image, engine="classical"), newer) != key
    assert frame_run.content_key(_request(image, engine="classical"), HELLO, extra={"premultiply": True}) != key
    # 'auto' depends on what is available; a named engine only on its own row
    installed = dict(HELLO, engines=[HELLO["engines"][0], dict(HELLO["engines"][1], available=True)])
    auto = _request(image)
    assert frame_run.content_key(auto, installed) != frame_run.content_key(auto, HELLO)
    assert frame_run.content_key(_request(image, engine="classical"), installed) == key
    # what a cache remembers of the hello gives the same keys (an offline run recomputes them from it)
    for hello in (HELLO, installed, dict(HELLO, device="cuda", engines=[dict(HELLO["engines"][0], note="x")])):
        assert frame_run.content_key(auto, frame_run.key_hello(hello)) == frame_run.content_key(auto, hello)


class _Job:
    """A job that reports the scripted progress events, then its result or error."""

    def __init__(self, events, info, error=None):
        self._events, self._info, self._error = list(events), info, error
        self.cancelled = False

    @property
    def done(self):
        return not self._events or self.cancelled

    def poll(self, timeout):
        return [self._events.pop(0)] if self._events else []

    def cancel(self):
        self.cancelled = True

    def result(self, timeout=None):
        if self.cancelled:
            raise JobFailed("cancelled", "the job was cancelled")
        if self._error is not None:
            raise self._error
        return type("Result", (), {"info": self._info})()


class _Client:
    server_info = HELLO

    def __init__(self, jobs):
        self.jobs, self.submitted, self.closed = list(jobs), [], False

    def submit(self, **request):
        self.submitted.append(request)
        return self.jobs.pop(0)

    def close(self):
        self.closed = True


def _image(frame):
    return {"image": np.full((2, 2, 3), frame / 10, np.float32), "params": {"engine": "classical"}}


class _Cache:
    """FrameRun's cache interface over a set of keys, remembering each frame's hello as the hosts' caches do."""

    def __init__(self, keys=()):
        self.keys, self.recorded = set(keys), []
        self.hellos = frame_run.RememberedHellos()

    def reuse(self, frame, key, outputs):
        return key in self.keys

    def record(self, frame, key, info, hello):
        self.recorded.append((frame, key, info))
        self.keys.add(key)
        self.hellos.remember(frame, hello)

    def made_under(self, frame):
        return self.hellos.get(frame)


def test_frames_run_in_order_with_cache_outcomes_and_monotonic_progress():
    backwards = [{"stage": "solve", "done": 3, "total": 4}, {"stage": "foreground", "done": 0, "total": 4}]
    client = _Client([_Job(backwards, {"engine": "classical", "frame": f}) for f in (1, 3)])
    cache = _Cache({frame_run.content_key(dict(_image(2), params={"engine": "classical", "outputs": ["alpha"]}),
                                          HELLO)})
    written, fractions = [], []
    run = frame_run.FrameRun([1, 2, 3], lambda: client, _image, lambda work, result: written.append(work.frame),
                             cache=cache, outputs=["alpha"])
    assert run.wait(on_step=lambda r: fractions.append(r.fraction)) == frame_run.FINISHED, run.error
    assert written == [1, 3] and run.computed == [1, 3] and run.reused == [2]
    assert [o.frame for o in run.outcomes] == [1, 2, 3] and run.infos[3]["frame"] == 3
    assert [frame for frame, _, _ in cache.recorded] == [1, 3]
    assert all(r["params"]["outputs"] == ["alpha"] for r in client.submitted)
    assert fractions == sorted(fractions) and fractions[-1] == 1.0  # the second stage's 0/4 never went back
    assert run.join(timeout=30) and client.closed


def test_a_bad_frame_and_a_server_error_are_described_with_the_frame():
    def read(frame):
        if frame == 2:
            raise ValueError("mask: 3x3 pixels, but the image is 4x4")
        return _image(frame)

    run = frame_run.FrameRun([1, 2], lambda: _Client([_Job([], {})]), read, lambda work, result: None)
    assert run.wait() == frame_run.FAILED
    assert run.error == "frame 2: mask: 3x3 pixels, but the image is 4x4"
    assert isinstance(run.exception, ValueError)

    refused = JobFailed("unknown_engine", "no engine 'x'", field="params.engine")
    run = frame_run.FrameRun([1, 2], lambda: _Client([_Job([], {}, refused)]), _image, lambda work, result: None)
    assert run.wait() == frame_run.FAILED
    assert run.error == "frame 1: no engine 'x' [unknown_engine] (field params.engine)" and run.exception is refused


def test_a_frame_that_cannot_be_read_ends_the_run_after_the_frames_before_it():
    """Frame 2 is read ahead while frame 1 is matted; its missing file fails the run only once frame 1 is written,
    so a re-run (mattebox render's resume) starts at frame 2."""
    written = []

    def read(frame):
        if frame == 2:
            raise ValueError("plate.0002.png: no such file")
        return _image(frame)

    client = _Client([_Job([{"stage": "solve", "done": 1, "total": 2}], {"engine": "classical"})])
    run = frame_run.FrameRun([1, 2, 3], lambda: client, read, lambda work, result: written.append(work.frame))
    assert run.wait() == frame_run.FAILED
    assert written == [1] and [o.frame for o in run.outcomes] == [1] and run.current_frame == 2
    assert run.error == "frame 2: plate.0002.png: no such file" and len(client.submitted) == 1


def test_a_write_failure_names_the_frame_and_what_failed():
    def write(work, result):
        raise OSError("disk full")

    run = frame_run.FrameRun([4], lambda: _Client([_Job([], {})]), _image, write)
    assert run.wait() == frame_run.FAILED and run.error == "frame 4: writing the result failed: disk full"


class _EndlessJob(_Job):
    """A job that reports progress until it is cancelled (each poll waits for the cancel as a real one would)."""

    def __init__(self):
        super().__init__([], {})
        self._cancelled = threading.Event()

    @property
    def done(self):
        return self._cancelled.is_set()

    def poll(self, timeout):
        self._cancelled.wait(timeout)
        return [{"stage": "solve", "done": 1, "total": 2}]

    def cancel(self):
        self.cancelled = True
        self._cancelled.set()


def test_cancel_tells_the_server_and_ends_cancelled():
    job = _EndlessJob()
    run = frame_run.FrameRun([1, 2], lambda: _Client([job]), _image, lambda work, result: None)

    def cancel_once_running(r):
        if r.last_event is not None:
            r.cancel()

    assert run.wait(on_step=cancel_once_running) == frame_run.CANCELLED
    assert job.cancelled and run.error == "cancelled" and run.outcomes == []


def test_cancel_while_connecting_ends_at_once():
    release = threading.Event()

    def slow_connect():
        release.wait(30)
        return _Client([])

    run = frame_run.FrameRun([1], slow_connect, _image, lambda work, result: None)
    run.cancel()
    assert run.state == frame_run.CANCELLED and run.done
    release.set()


def test_a_real_server_round_trip(embedded_server):
    on_connected = []
    plates = {f: np.random.default_rng(f).random((12, 16, 3), dtype=np.float32) for f in (7, 8)}
    results = {}
    run = frame_run.FrameRun(
        [7, 8], lambda: Client(embedded_server.bound_endpoint, timeout=10),
        lambda f: {"image": plates[f], "mask": (plates[f][..., 0] > 0.5).astype(np.float32),
                   "params": {"engine": "passthrough"}},
        lambda work, result: results.update({work.frame: result.foreground}), on_connected=on_connected.append)
    assert run.wait(timeout=120) == frame_run.FINISHED, run.error
    assert on_connected[0]["server_version"] == run.hello["server_version"]
    for frame, plate in plates.items():
        assert np.array_equal(results[frame], plate)
    assert run.status_text() == "finished, frame 8 (2/2)"


def test_an_empty_frame_list_is_refused():
    with pytest.raises(ValueError, match="nothing to matte"):
        frame_run.FrameRun([], lambda: None, _image, lambda work, result: None)


# ---------------------------------------------------------------------------------------------- shots
def _shot_plates(frames, size=(24, 32)):
    """A bright square moving one pixel a frame over a dark background, and its mask."""
    plates, masks = {}, {}
    for index, frame in enumerate(frames):
        image = np.full(size + (3,), 0.1, np.float32)
        mask = np.zeros(size, np.float32)
        image[6:18, 8 + index:20 + index] = (0.9, 0.7, 0.4)
        mask[6:18, 8 + index:20 + index] = 1.0
        plates[frame], masks[frame] = image, mask
    return plates, masks


def test_a_shot_reads_frames_on_the_stepping_thread_and_writes_them_in_order(embedded_server):
    """Shot mode through a real server: every read happens on the thread that steps the run (a host's main
    thread), guidance goes only with the key frames, results come back per frame, in order."""
    frames = [11, 12, 13, 14]
    plates, masks = _shot_plates(frames)
    stepping = threading.current_thread()
    reads, written, events = [], [], []

    def read(frame):
        reads.append((frame, threading.current_thread() is stepping))
        return {"image": plates[frame], "mask": masks[frame], "second": None, "params": {"engine": "auto"}}

    statuses = []  # the status line as each frame is written (how many results came with one step is timing)

    def write(work, result):
        written.append((work.frame, work.key, sorted(work.request), result.alpha))
        statuses.append(run.status_text())

    run = frame_run.FrameRun(frames, lambda: Client(embedded_server.bound_endpoint, timeout=30), read, write,
                             cache=_Cache(), shot=frame_run.Shot(keys=[11], params={"engine": "auto"}, radius=1))
    assert run.wait(timeout=240, on_step=lambda r: events.append(r.status_text())) == frame_run.FINISHED, run.error
    assert [frame for frame, *_ in written] == frames and run.computed == frames
    assert all(on_stepping for _, on_stepping in reads) and {f for f, _ in reads} == set(frames)
    assert written[0][2] == ["image", "mask"] and all(names == ["image"] for _, _, names, _ in written[1:])
    assert all(key is None for _, key, _, _ in written)
    assert [(f, key) for f, key, _ in run.cache.recorded] == [(f, None) for f in frames]  # shots are not cached
    for frame, _, _, alpha in written:
        inside = masks[frame] > 0.5
        assert alpha[inside].mean() > 0.9 and alpha[~inside].mean() < 0.1, frame
    assert all(info["frame"] == frame for frame, info in run.infos.items())
    assert [f"frame {frame} ({n}/4)" in text for n, (frame, text) in enumerate(zip(frames, statuses), 1)] == [True] * 4
    assert events and all("/4)" in text for text in events)


def test_a_shot_refuses_what_it_cannot_send_and_names_the_frame():
    shot = frame_run.Shot(keys=[1])
    with pytest.raises(ValueError, match="not background: turn it off"):
        shot.frame_inputs(1, {"image": 1, "mask": 2, "background": 3})
    with pytest.raises(ValueError, match="key frame 1 has no mask or trimap"):
        shot.frame_inputs(1, {"image": 1, "mask": None})
    assert shot.frame_inputs(2, {"image": 1, "mask": 2, "params": {}}) == {"image": 1}
    with pytest.raises(ValueError, match="one ascending range with one step"):
        frame_run.FrameRun([1, 2, 4], lambda: None, _image, lambda work, result: None, shot=shot)
    with pytest.raises(ValueError, match="key frames: 9 is not one of the frames"):
        frame_run.FrameRun([1, 2], lambda: None, _image, lambda work, result: None, shot=frame_run.Shot(keys=[9]))


def test_a_shot_frame_that_cannot_be_read_fails_the_run_naming_it(embedded_server):
    plates, masks = _shot_plates([1, 2, 3])

    def read(frame):
        if frame == 2:
            raise OSError("plate.0002.exr is missing")
        return {"image": plates[frame], "mask": masks[frame]}

    run = frame_run.FrameRun([1, 2, 3], lambda: Client(embedded_server.bound_endpoint, timeout=30), read,
                             lambda work, result: None, shot=frame_run.Shot(keys=[1]))
    assert run.wait(timeout=240) == frame_run.FAILED
    assert run.error == "frame 2: plate.0002.exr is missing", run.error


class _ShotClient(_Client):
    """matte_shot as the contract says: reads lazily, yields in order, stops on should_cancel with 'cancelled'."""

    def __init__(self):
        super().__init__([])
        self.read = []

    def matte_shot(self, frames, read_frame, *, keys, engine, params, outputs, radius, on_progress, should_cancel):
        self.read.append(read_frame(frames[0]))
        yield frames[0], type("Result", (), {"info": {"frame": frames[0]}})()
        pause = threading.Event()
        while not should_cancel():  # the second frame never finishes: the host cancels
            on_progress({"stage": "shot", "done": 1, "total": len(frames), "frame": frames[1]})
            pause.wait(0.01)
        raise JobFailed("cancelled", "shot cancelled")


def test_a_shot_reports_per_frame_progress_and_cancels():
    client = _ShotClient()
    written = []
    run = frame_run.FrameRun([5, 6, 7], lambda: client, _image, lambda work, result: written.append(work.frame),
                             shot=frame_run.Shot(params={"engine": "classical"}))

    def cancel_on_the_second_frame(r):
        if r.state == frame_run.RUNNING and r.outcomes and r.last_event is not None:
            assert r.status_text().startswith("running, frame 6 (2/3): shot 1/3"), r.status_text()
            r.cancel()

    assert run.wait(on_step=cancel_on_the_second_frame) == frame_run.CANCELLED
    assert written == [5] and run.error == "cancelled" and sorted(client.read[0]) == ["image"]


# -------------------------------------------------------------------------------------------- offline
DOWN = ServerUnavailable("no mattebox server at tcp://127.0.0.1:9")


def _unreachable():
    raise DOWN


def _cached_run(frames, read=_image, **options):
    """A cache filled by a run of ``frames`` against the scripted server."""
    cache = _Cache()
    client = _Client([_Job([], {"engine": "classical", "frame": f}) for f in frames])
    run = frame_run.FrameRun(frames, lambda: client, read, lambda work, result: None, cache=cache, **options)
    assert run.wait() == frame_run.FINISHED and run.offline is None, run.error
    return cache


def test_with_no_server_unchanged_frames_come_from_the_cache_and_the_run_says_why():
    cache = _cached_run([1, 2, 3])
    # what the cache keeps survives a save and a reload (the hosts keep it as JSON)
    cache.hellos = frame_run.RememberedHellos(json.loads(json.dumps(cache.hellos.to_json())))
    written, texts = [], []

    def read(frame):  # the status while the run goes on without the server
        texts.append(run.status_text())
        return _image(frame)

    run = frame_run.FrameRun([1, 2, 3], _unreachable, read, lambda work, result: written.append(work.frame),
                             cache=cache)
    assert run.wait() == frame_run.FINISHED, run.error
    assert run.reused == [1, 2, 3] and written == [] and run.hello is None
    assert run.offline == "no mattebox server at tcp://127.0.0.1:9" and run.error is None
    assert run.offline_note() == "3 frame(s) from cache; server not reachable: no mattebox server at tcp://127.0.0.1:9"
    assert texts[1] == "running, frame 2 (2/3): from the cache (server not reachable)", texts


def test_with_no_server_a_changed_frame_fails_naming_it_and_the_reason():
    cache = _cached_run([1, 2, 3])

    def retouched(frame):
        request = _image(frame)
        if frame == 2:
            request["image"][0, 0, 0] += 0.01
        return request

    run = frame_run.FrameRun([1, 2, 3], _unreachable, retouched, lambda work, result: None, cache=cache)
    assert run.wait() == frame_run.FAILED and run.reused == [1] and run.exception is DOWN
    assert run.error == "frame 2: not in the cache, and the server is not reachable: no mattebox server at " \
                        "tcp://127.0.0.1:9"
    # a changed setting changes every frame's key: the first frame fails with the reason alone, as with no cache
    run = frame_run.FrameRun([1, 2, 3], _unreachable, lambda f: dict(_image(f), params={"engine": "classical",
                                                                                          "quality": "best"}),
                             lambda work, result: None, cache=cache)
    assert run.wait() == frame_run.FAILED and run.reused == [] and run.offline is None
    assert run.error == "no mattebox server at tcp://127.0.0.1:9"
    # so does a frame the cache holds nothing for, and a cache that remembers no hellos (no made_under)
    run = frame_run.FrameRun([4], _unreachable, _image, lambda work, result: None, cache=cache)
    assert run.wait() == frame_run.FAILED and run.error == "no mattebox server at tcp://127.0.0.1:9"
    run = frame_run.FrameRun([1], _unreachable, _image, lambda work, result: None, cache=object())
    assert run.wait() == frame_run.FAILED and run.error == "no mattebox server at tcp://127.0.0.1:9"


def test_a_shot_with_no_server_fails_with_the_reason():
    """Shot frames depend on their neighbours and are never cached, so a shot needs the server."""
    cache = _cached_run([1, 2, 3])
    read = []
    run = frame_run.FrameRun([1, 2, 3], _unreachable, lambda f: read.append(f) or _image(f),
                             lambda work, result: None, cache=cache, shot=frame_run.Shot())
    assert run.wait() == frame_run.FAILED and run.offline is None and read == [] and run.outcomes == []
    assert run.error == "no mattebox server at tcp://127.0.0.1:9" and run.exception is DOWN


def test_remembered_hellos_are_kept_once_and_damage_loads_as_empty():
    hellos = frame_run.RememberedHellos()
    newer = dict(HELLO, server_version="1.1")
    for frame in (1, 2, 3):
        hellos.remember(frame, HELLO)
    hellos.remember(3, newer)
    saved = hellos.to_json()
    assert len(saved["hellos"]) == 2 and saved["frames"]["1"] == saved["frames"]["2"] != saved["frames"]["3"]
    assert hellos.get(3) == frame_run.key_hello(newer) and hellos.get(9) is None
    hellos.remember(3, None)  # a result made under an unknown hello: forgotten, and its hello no longer saved
    assert hellos.get(3) is None and len(hellos.to_json()["hellos"]) == 1
    for damaged in (None, [], {"hellos": [1], "frames": {}}, {"hellos": {"a": 1}, "frames": {"1": "a"}}):
        assert frame_run.RememberedHellos(damaged).get(1) is None
