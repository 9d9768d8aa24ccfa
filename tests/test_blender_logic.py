"""The Blender extension's Blender-free parts: pixel layout, colour, cache keys of its requests, the output
index, and the shared frame run (mattebox_plugin.run) driving them against a real server (no bpy needed; the
real-Blender tests are in test_blender_host.py)."""
from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "nodes" / "blender"))

from mattebox_blender import core  # noqa: E402
from mattebox_blender.connection import make_connect  # noqa: E402
from mattebox_plugin import run as frame_run  # noqa: E402
from mattebox.testing.engines import SLOW_ENGINE  # noqa: E402
from mattebox.testing.servers import free_endpoint  # noqa: E402

HELLO = {"server_version": "1.0", "engines": [{"name": "classical", "kind": "classical", "available": True}]}


def _key(request):
    return frame_run.content_key(request, HELLO)


# ------------------------------------------------------------------------------------------- pixels
def test_blender_pixels_are_bottom_up_and_round_trip():
    rgba = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)  # 2 rows, 3 columns
    flat = core.to_blender_pixels(rgba)
    assert flat.dtype == np.float32 and flat.shape == (24,)
    assert np.array_equal(flat[:12], rgba[1].ravel())  # Blender's first row is the image's bottom row
    assert np.array_equal(core.from_blender_pixels(flat, 3, 2), rgba)


def test_single_channel_fills_every_channel_and_rgb_gets_opaque_alpha():
    alpha = np.array([[0.25, 0.5]], np.float32)
    assert np.array_equal(core.to_blender_pixels(alpha), np.repeat(alpha.ravel(), 4))
    rgb = np.full((1, 1, 3), 0.3, np.float32)
    assert np.array_equal(core.to_blender_pixels(rgb), np.array([0.3, 0.3, 0.3, 1.0], np.float32))
    with pytest.raises(ValueError, match="expected 3x2x4 = 24 values, got 23"):
        core.from_blender_pixels(np.zeros(23, np.float32), 3, 2)
    with pytest.raises(ValueError, match="shape"):
        core.to_blender_pixels(np.zeros((2, 2, 2), np.float32))


def test_srgb_decoding_and_linearise():
    rgba = np.full((1, 1, 4), 0.5, np.float32)
    assert core.linearise(rgba, True, "sRGB") is rgba  # float images are already scene-linear in Blender
    decoded = core.linearise(rgba, False, "sRGB")
    assert np.allclose(decoded[0, 0, :3], 0.21404114) and decoded[0, 0, 3] == 0.5  # alpha untouched
    assert core.linearise(rgba, False, "Non-Color") is rgba
    with pytest.raises(ValueError, match="'AgX Log'"):
        core.linearise(rgba, False, "AgX Log")


def test_mask_channels_and_size_check():
    rgba = np.zeros((2, 2, 4), np.float32)
    rgba[..., 0], rgba[..., 3] = 2.0, 0.25
    assert np.all(core.mask_channel(rgba, "RED") == 1.0)  # clipped to [0, 1]
    assert np.all(core.mask_channel(rgba, "ALPHA") == 0.25)
    assert np.allclose(core.mask_channel(rgba, "LUMINANCE"), 0.4252)
    with pytest.raises(ValueError, match="mask channel"):
        core.mask_channel(rgba, "GREEN")
    with pytest.raises(ValueError, match="second: 3x2 pixels, but the image is 2x2"):
        core.build_request(rgba, np.zeros((2, 3, 4), np.float32), None, {})


def test_content_key_changes_with_any_input_or_param():
    image = np.random.default_rng(0).random((8, 8, 4), dtype=np.float32)
    base = core.build_request(image, None, None, {"engine": "auto"})
    key = _key(base)
    assert key == _key(core.build_request(image.copy(), None, None, {"engine": "auto"}))
    touched = image.copy()
    touched[3, 3, 1] += 1e-6
    assert _key(core.build_request(touched, None, None, {"engine": "auto"})) != key
    assert _key(core.build_request(image, None, None, {"engine": "classical"})) != key
    assert _key(core.build_request(image, None, image[..., 0].copy(), {"engine": "auto"})) != key
    assert _key(core.build_request(image, image, None, {"engine": "auto"})) != key


def test_clean_plate_is_sent_as_background_and_must_match_the_image():
    image = np.random.default_rng(2).random((6, 8, 4), dtype=np.float32)
    plate = image * 0.5
    request = core.build_request(image, None, None, {"engine": "classical"}, background=plate)
    assert request["background"] is plate and request["colorspace"] == "linear" and not request["premultiplied"]
    assert core.build_request(image, None, None, {})["background"] is None  # optional
    with pytest.raises(ValueError, match=r"^clean plate: 8x5 pixels, but the image is 8x6"):
        core.build_request(image, None, None, {}, background=plate[:5])


def test_content_key_changes_with_the_clean_plate():
    image = np.random.default_rng(3).random((8, 8, 4), dtype=np.float32)
    plate = np.random.default_rng(4).random((8, 8, 4), dtype=np.float32)
    without = _key(core.build_request(image, None, None, {"engine": "classical"}))
    with_plate = _key(core.build_request(image, None, None, {"engine": "classical"}, background=plate))
    assert with_plate != without
    assert with_plate == _key(core.build_request(image, None, None, {"engine": "classical"},
                                                             background=plate.copy()))
    touched = plate.copy()
    touched[7, 0, 2] += 1e-6
    assert _key(core.build_request(image, None, None, {"engine": "classical"},
                                               background=touched)) != with_plate
    # the same pixels as a plate or as a second frame are different requests
    assert _key(core.build_request(image, plate, None, {"engine": "classical"})) != with_plate


def test_plate_note_says_whether_the_plate_was_used():
    from mattebox_plugin.client import plate_note

    assert plate_note([{"engine": "classical", "guidance": "mask", "foreground_method": "blur_fusion"}]) is None
    assert plate_note([{"engine": "passthrough", "ignored_inputs": ["background"]}] * 2) == (
        "clean plate ignored on 2 frame(s): engine passthrough does not use one")
    infos = [{"guidance": "plate:difference", "foreground_method": "multilevel+plate"},
             {"guidance": "mask", "foreground_method": "multilevel+plate"}]
    assert plate_note(infos) == "clean plate used on 2 frame(s), its difference matte guided 1 (no mask or trimap)"
    assert plate_note(infos[1:]) == "clean plate used on 1 frame(s)"


def test_frame_index_needs_matching_key_and_files(tmp_path):
    index = core.FrameIndex(str(tmp_path))
    index.record(3, "abc", {"engine": "classical"})
    assert not index.reuse(3, "abc", ["alpha"])  # no file yet
    Path(core.result_path(str(tmp_path), "alpha", 3)).write_bytes(b"x")
    assert core.FrameIndex(str(tmp_path)).reuse(3, "abc", ["alpha"])  # persisted
    assert not index.reuse(3, "abd", ["alpha"])
    assert not index.reuse(4, "abc", ["alpha"])
    assert index.made_under(3) is None  # recorded without the server's hello: no offline reuse
    index.record(3, "abc", {"engine": "classical"}, frame_run.key_hello(HELLO))
    assert core.FrameIndex(str(tmp_path)).made_under(3) == frame_run.key_hello(HELLO)  # persisted with the key
    (tmp_path / core.FrameIndex.NAME).write_text("{not json")
    assert core.FrameIndex(str(tmp_path)).frames == {}  # a damaged index only costs a recompute
    (tmp_path / core.FrameIndex.NAME).write_text("[]")
    assert core.FrameIndex(str(tmp_path)).made_under(3) is None


def test_endpoint_policy_and_error_text():
    assert core.split_command("  ") is None
    assert core.split_command("/opt/mb/bin/mattebox serve --device cpu") == ["/opt/mb/bin/mattebox", "serve",
                                                                           "--device", "cpu"]


# ------------------------------------------------------------------------------------------ the run
def _plates(n, size=(24, 32)):
    rng = np.random.default_rng(1)
    return {f: rng.random(size + (4,), dtype=np.float32) for f in range(1, n + 1)}


def _run(endpoint, plates, written, directory, frames=None, read=None):
    def read_inputs(frame):
        mask = (plates[frame][..., 0] > 0.5).astype(np.float32)
        return core.build_request(plates[frame], None, mask, {"engine": "passthrough"})

    return frame_run.FrameRun(frames or sorted(plates), make_connect(endpoint, 30.0, None, False, False),
                              read or read_inputs, lambda work, result: written.update({work.frame: result}),
                              cache=core.FrameIndex(str(directory)), outputs=("alpha", "foreground"))


def test_run_mattes_frames_in_order_without_blocking_and_reuses_cache(embedded_server, tmp_path):
    plates, written = _plates(3), {}
    run = _run(embedded_server.bound_endpoint, plates, written, tmp_path)
    seen_running = False
    while not run.step():
        seen_running = seen_running or run.state in (frame_run.CONNECTING, frame_run.RUNNING)
        time.sleep(0.01)
    assert seen_running and run.state == frame_run.FINISHED, run.error
    assert run.computed == [1, 2, 3] and run.reused == []
    for frame, plate in plates.items():
        assert np.array_equal(written[frame].foreground, plate[..., :3])  # passthrough: exact round trip
        assert np.array_equal(written[frame].alpha, (plate[..., 0] > 0.5).astype(np.float32))
        for kind in ("alpha", "foreground"):  # what a writer would have stored
            Path(core.result_path(str(tmp_path), kind, frame)).write_bytes(b"x")
    assert run.fraction == 1.0

    plates[2] = plates[2].copy()
    plates[2][0, 0, 0] += 0.25
    again = _run(embedded_server.bound_endpoint, plates, {}, tmp_path)
    assert again.wait() == frame_run.FINISHED
    assert again.computed == [2] and again.reused == [1, 3]


def test_run_sends_the_clean_plate_and_recomputes_when_it_changes(embedded_server, tmp_path):
    plates, clean = _plates(2), {"plate": np.full((24, 32, 4), 0.25, np.float32)}

    def read(frame):
        return core.build_request(plates[frame], None, None, {"engine": "passthrough"}, background=clean["plate"])

    def finished_run():
        run = _run(embedded_server.bound_endpoint, plates, {}, tmp_path, read=read)
        assert run.wait() == frame_run.FINISHED, run.error
        for frame in run.computed:
            for kind in ("alpha", "foreground"):
                Path(core.result_path(str(tmp_path), kind, frame)).write_bytes(b"x")
        return run

    first = finished_run()
    assert first.computed == [1, 2]
    # the plate reached the server: passthrough accepts it and says it ignored it
    assert all(info["ignored_inputs"] == ["background"] for info in first.infos.values()), first.infos
    assert finished_run().reused == [1, 2]
    clean["plate"] = clean["plate"].copy()
    clean["plate"][5, 5, 0] = 0.5  # one pixel of the plate: every frame that used it is stale
    assert finished_run().computed == [1, 2]


def test_run_reports_bad_inputs_with_the_frame(embedded_server, tmp_path):
    def read(frame):
        if frame == 2:
            raise ValueError("mask: 3x3 pixels, but the image is 4x4")
        return core.build_request(np.ones((4, 4, 4), np.float32), None, None, {"engine": "passthrough"})

    run = _run(embedded_server.bound_endpoint, _plates(3), {}, tmp_path, read=read)
    assert run.wait() == frame_run.FAILED
    assert run.error == "frame 2: mask: 3x3 pixels, but the image is 4x4"


def test_run_with_no_server_fails_fast_with_the_endpoint(tmp_path, down_endpoint):
    endpoint = down_endpoint
    run = _run(endpoint, _plates(1), {}, tmp_path)
    assert run.wait(timeout=60) == frame_run.FAILED  # refused at once; the time-out only bounds a hang
    assert f"no mattebox server at {endpoint}" in run.error


def test_run_with_no_server_reuses_the_index_and_says_why(embedded_server, tmp_path):
    """Issue 19: yesterday's results come back from the output folder with no server, and the run says why."""
    plates = _plates(2)
    first = _run(embedded_server.bound_endpoint, plates, {}, tmp_path)
    assert first.wait() == frame_run.FINISHED, first.error
    for frame in first.computed:
        for kind in ("alpha", "foreground"):
            Path(core.result_path(str(tmp_path), kind, frame)).write_bytes(b"x")
    endpoint = free_endpoint()
    again = _run(endpoint, plates, {}, tmp_path)
    assert again.wait(timeout=30) == frame_run.FINISHED, again.error
    assert again.reused == [1, 2] and f"no mattebox server at {endpoint}" in again.offline


def test_remote_endpoint_needs_online_access():
    connect = make_connect("tcp://192.0.2.1:23517", 1.0, None, True, online_access=False)
    with pytest.raises(RuntimeError, match="online access is off"):
        connect()


def test_run_fails_clearly_when_the_server_dies_mid_job(server_process, monkeypatch, tmp_path):
    monkeypatch.setenv("MATTEBOX_ENGINES", SLOW_ENGINE)
    monkeypatch.setenv("MATTEBOX_TEST_STEPS", "400")
    server = server_process()

    def read(frame):
        return core.build_request(np.ones((8, 8, 4), np.float32), None, None, {"engine": "test-slow"})

    run = frame_run.FrameRun([1], make_connect(server.endpoint, 1.0, None, False, False), read,
                             lambda work, result: None)
    while run.last_event is None and not run.done:
        run.step()
        time.sleep(0.02)
    server.stop(signal.SIGKILL)
    assert run.wait(timeout=30) == frame_run.FAILED  # the client's timeout (1 s, one reconnect), not a hang
    assert f"no answer from the mattebox server at {server.endpoint}" in run.error


def test_check_server_report_names_the_command_for_missing_weights():
    from mattebox_plugin.client import engine_note

    engines = [{"name": "classical", "available": True},
               {"name": "vitmatte", "available": False, "why": "weights not installed; ...",
                "get": "mattebox models pull vitmatte-small-composition-1k"},
               {"name": "parallax", "available": False, "why": "weights not installed: train them"}]
    assert core.engines_summary(engines, engine_note) == (
        "classical | vitmatte not installed: run `mattebox models pull vitmatte-small-composition-1k` (`mattebox "
        "models` lists the choices); parallax unavailable: weights not installed: train them")


def test_engine_menu_from_hello_or_the_built_in_engines():
    from mattebox_plugin.client import engine_note

    fallback = core.engine_menu(None, engine_note)
    assert [item[0] for item in fallback] == ["auto", *core.FALLBACK_ENGINES]
    hello = [{"name": "classical", "available": True, "description": "closed-form matting"},
             {"name": "vitmatte", "available": False, "get": "mattebox models pull vitmatte-small"},
             {"name": "gpu-only", "available": False, "why": "needs CUDA"}]
    items = {item[0]: item for item in core.engine_menu(hello, engine_note)}
    assert list(items) == ["auto", "classical", "vitmatte", "gpu-only"]
    assert items["classical"][1:3] == ("classical", "closed-form matting")
    assert items["vitmatte"][1] == "vitmatte (not installed)"
    assert "`mattebox models pull vitmatte-small`" in items["vitmatte"][2]
    assert items["gpu-only"][1] == "gpu-only (unavailable)" and "needs CUDA" in items["gpu-only"][2]
    # Blender stores such a menu's choice by number: the same engine keeps its number in any list order
    assert items["auto"][3] == 0
    assert items["classical"][3] == {i[0]: i[3] for i in fallback}["classical"] == core.enum_number("classical")
    assert len({item[3] for item in items.values()}) == len(items)


def test_a_shot_of_blender_requests_uses_the_mask_on_key_frames_only(embedded_server, tmp_path):
    """Blender's requests (RGBA linear, mask from the mask image on every frame) through FrameRun's shot mode:
    results for every frame in order, none recorded in the output index (a frame matted before is dropped from it:
    its files are the shot's now); a clean plate is refused by name."""
    plates, written = _plates(3), {}
    core.FrameIndex(str(tmp_path)).record(2, "made-before", {}, frame_run.key_hello(HELLO))
    run = frame_run.FrameRun(sorted(plates), make_connect(embedded_server.bound_endpoint, 10.0, None, False, False),
                             lambda f: core.build_request(plates[f], None, plates[f][..., 0] > 0.5,
                                                          {"engine": "classical"}),
                             lambda work, result: written.update({work.frame: result}),
                             cache=core.FrameIndex(str(tmp_path)), outputs=("alpha",),
                             shot=frame_run.Shot(keys=[1], params={"engine": "classical"}))
    assert run.wait(timeout=240) == frame_run.FINISHED, run.error
    assert sorted(written) == [1, 2, 3] and run.computed == [1, 2, 3] and run.cache.frames == {}
    with_plate = frame_run.FrameRun(
        [1, 2], make_connect(embedded_server.bound_endpoint, 10.0, None, False, False),
        lambda f: core.build_request(plates[f], None, None, {}, background=plates[3]), lambda work, result: None,
        shot=frame_run.Shot())
    assert with_plate.wait(timeout=120) == frame_run.FAILED
    assert with_plate.error.startswith("frame 1: a shot uses the image and the key frames' mask or trimap, not "
                                       "background"), with_plate.error
