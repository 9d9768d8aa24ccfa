"""The Mattebox Nuke node against the fake nuke and a real mattebox server on loopback."""
from __future__ import annotations

import os

import numpy as np
import pytest

from tests.support.fake_nuke import (fake_nuke_each_fixture, fake_nuke_fixture,  # noqa: F401
                                     plate_frames, rgba_planes, square_mask)
from mattebox.testing.engines import SLOW_ENGINE
from mattebox.testing.servers import ServerProcess

H, W = 48, 64


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One real server for this module (classical + passthrough engines, and the slow test engine)."""
    process = ServerProcess(tmp_path_factory.mktemp("server"),
                            env={"MATTEBOX_ENGINES": SLOW_ENGINE})
    yield process.endpoint
    process.stop()


def _box_trimap() -> np.ndarray:
    """A box of unknown with a smaller box of foreground inside, background around."""
    trimap = np.zeros((H, W), np.float32)
    trimap[12:36, 16:48] = 0.5
    trimap[18:30, 24:40] = 1.0
    return trimap


def make_comp(nuke, endpoint, frames=(1, 2, 3), guide=None, engine="passthrough"):
    """plate (FakeSource) -> Mattebox, with an optional guide; returns (group, plate frames)."""
    pixels = plate_frames(frames, H, W)
    plate = nuke.nodes.FakeSource(frames=pixels, first=min(frames), last=max(frames))
    plate.setSelected(True)
    import mattebox_nuke

    group = mattebox_nuke.create()
    if guide is not None:
        source = nuke.nodes.FakeSource(frames=lambda f: {"rgba.alpha": guide}, first=min(frames), last=max(frames))
        group.setInput(2, source)
    group["endpoint"].setValue(endpoint)
    group["frame_range"].setValue("input range")
    group["engine"].setValues(["auto", engine])
    group["engine"].setValue(engine)
    return group, pixels


def test_build_makes_the_documented_node(fake_nuke_each):
    """Against each version's API: created below the selection, the plate connected once the pipes exist."""
    nuke = fake_nuke_each
    plate = nuke.nodes.FakeSource(frames=plate_frames([1]))
    plate.setSelected(True)
    import mattebox_nuke
    from mattebox_nuke import node

    group = mattebox_nuke.create()
    assert group.name() == "Mattebox1" and node.is_mattebox(group)
    assert group.input(0) is plate  # created below the selection: the plate input
    for knob in ("endpoint", "engine", "band_width", "outputs", "matte", "frame_range", "first", "last", "status",
                 "guide", "guide_channel", "premultiply", "cache_dir", "refresh"):
        assert group.knob(knob) is not None, knob
    assert group["quality"].values() == ["balanced", "fast", "best"]  # protocol.param_choices, default first
    inputs = sorted((n["number"].value(), n.name()) for n in group.nodes() if n.Class() == "Input")
    assert inputs == [(0, "plate"), (1, "second"), (2, "guide"), (3, "clean")]
    writes = [n for n in group.nodes() if n.Class() == "Write"]
    assert len(writes) == 4 and all(w["disable"].value() for w in writes)  # `nuke -x` must not run them
    assert all(w["datatype"].value() == "32 bit float" and w["raw"].value() for w in writes)
    assert group.output().input(0).Class() == "Read"
    assert mattebox_nuke.create().name() == "Mattebox2"
    # before any matte the node is black, not an error
    assert float(group._render(1)["rgba.alpha"].max()) == 0.0


def test_passthrough_round_trip_is_exact(fake_nuke_each, server):
    """Pixels survive Write -> EXR -> server -> EXR -> Read bit for bit (passthrough engine), each version."""
    mask = square_mask(H, W)
    group, pixels = make_comp(fake_nuke_each, server, guide=mask)
    import mattebox_nuke

    run = mattebox_nuke.matte(group)
    assert run.error is None and [o.frame for o in run.outcomes] == [1, 2, 3]
    for f in (1, 2, 3):
        out = group._render(f)
        assert sorted(out) == ["mattebox.trimap", "rgba.alpha", "rgba.blue", "rgba.green", "rgba.red"]
        assert np.array_equal(out["rgba.alpha"], mask)
        for c in ("red", "green", "blue"):
            assert np.array_equal(out[f"rgba.{c}"], pixels[f][f"rgba.{c}"])
    assert group["status"].value().startswith("matted frames 1-3 (0 from cache) with passthrough")
    assert group["engine"].values()[0] == "auto" and "classical" in group["engine"].values()


def test_cache_reuses_results_and_invalidates_on_change(fake_nuke, server):
    import mattebox_nuke

    group, _ = make_comp(fake_nuke, server, guide=square_mask(H, W))
    mattebox_nuke.matte(group)
    again = mattebox_nuke.matte(group)
    assert all(o.cached for o in again.outcomes) and "(3 from cache)" in group["status"].value()
    assert all(o.cached for o in mattebox_nuke.matte(group).outcomes)  # a third time: same files, no leftovers
    node_dir = os.path.join(group["cache_dir"].value(), "Mattebox1")
    assert sorted(os.listdir(node_dir)) == ["in", "made_under.json", "result.0001.exr", "result.0002.exr",
                                            "result.0003.exr"]
    group["premultiply"].setValue(True)  # a setting that changes the result file: new key
    changed = mattebox_nuke.matte(group, frames=[2])
    assert not changed.outcomes[0].cached
    out = group._render(2)
    mask = square_mask(H, W)
    assert np.array_equal(out["rgba.alpha"], mask)
    assert float(np.abs(out["rgba.red"] * (1 - mask)).max()) == 0.0  # premultiplied: zero outside the mask


def test_alpha_only_output_keeps_the_plate_rgb(fake_nuke, server):
    import mattebox_nuke

    mask = square_mask(H, W)
    group, pixels = make_comp(fake_nuke, server, frames=(1,), guide=mask)
    group["outputs"].setValue("alpha")
    mattebox_nuke.matte(group)
    out = group._render(1)
    assert "mattebox.trimap" not in out and np.array_equal(out["rgba.alpha"], mask)
    assert np.array_equal(out["rgba.blue"], pixels[1]["rgba.blue"])


def test_create_lists_engines_when_a_server_answers(fake_nuke, server, monkeypatch, down_endpoint):
    import mattebox_nuke

    monkeypatch.setenv("MATTEBOX_ENDPOINT", server)
    group = mattebox_nuke.create()
    assert group["endpoint"].value() == server
    assert {"auto", "classical", "passthrough", "test-slow"} <= set(group["engine"].values())
    monkeypatch.setenv("MATTEBOX_ENDPOINT", down_endpoint)
    offline = mattebox_nuke.create()
    assert offline["engine"].values() == ["auto"] and "not reachable" in offline["status"].value()


def test_classical_engine_with_trimap(fake_nuke, server):
    """A real solve: alpha is 1/0 in the trimap's known regions and the trimap layer is the one used."""
    import mattebox_nuke

    trimap = _box_trimap()
    group, _ = make_comp(fake_nuke, server, frames=(1,), guide=trimap, engine="classical")
    group["guide"].setValue("trimap")
    mattebox_nuke.matte(group)
    out = group._render(1)
    alpha = out["rgba.alpha"]
    assert np.all(alpha[trimap == 1.0] > 0.99) and np.all(alpha[trimap == 0.0] < 0.01)
    assert np.all((alpha >= 0) & (alpha <= 1))
    assert np.array_equal(out["mattebox.trimap"], trimap)


def test_status_says_whether_the_second_frame_was_used(fake_nuke, server):
    """A second input with no parallax (the plate itself): the status names why the pair engine did not use it."""
    import mattebox_nuke

    trimap = _box_trimap()
    group, pixels = make_comp(fake_nuke, server, frames=(1,), guide=trimap, engine="classical-pair")
    group["guide"].setValue("trimap")
    group.setInput(1, fake_nuke.nodes.FakeSource(frames=pixels, first=1, last=1))
    mattebox_nuke.matte(group)
    status = group["status"].value()
    assert "second frame not used on 1 of 1 frame(s)" in status and "px apart" in status, status


def test_clean_plate_input_guides_the_matte_and_the_status_says_so(fake_nuke, server):
    """The plate equals the shot except in a square (the subject): the difference matte finds the square."""
    import mattebox_nuke

    group, pixels = make_comp(fake_nuke, server, frames=(1,), engine="classical")
    subject = square_mask(H, W) > 0
    plate = {name: np.where(subject, 0.5 * value + 0.4, value) if name != "rgba.alpha" else value
             for name, value in pixels[1].items()}
    group.setInput(3, fake_nuke.nodes.FakeSource(frames={1: plate}, first=1, last=1))
    mattebox_nuke.matte(group)
    assert "clean plate used on 1 frame(s), its difference matte guided 1" in group["status"].value()
    alpha = group._render(1)["rgba.alpha"]
    assert alpha[subject].mean() > 0.9 and alpha[~subject].mean() < 0.1


def test_frame_range_modes(fake_nuke):
    import mattebox_nuke  # noqa: F401
    from mattebox_nuke import node
    from mattebox_nuke.job import MatteboxError

    nuke = fake_nuke
    group, _ = make_comp(nuke, "tcp://127.0.0.1:1", frames=(5, 6, 7, 8))
    assert node.frames_to_matte(group) == [5, 6, 7, 8]
    group["frame_range"].setValue("current frame")
    nuke.frame(6)
    assert node.frames_to_matte(group) == [6]
    group["frame_range"].setValue("project range")
    nuke.root()["first_frame"].setValue(2)
    nuke.root()["last_frame"].setValue(4)
    assert node.frames_to_matte(group) == [2, 3, 4]
    group["frame_range"].setValue("custom")
    group["first"].setValue(9)
    group["last"].setValue(3)
    with pytest.raises(MatteboxError, match="9-3 is empty"):
        node.frames_to_matte(group)


def test_gui_mode_runs_in_a_thread_with_progress(fake_nuke, server):
    """GUI: matte() returns at once; progress goes through ProgressTask, node updates through the main thread."""
    import mattebox_nuke

    nuke = fake_nuke
    nuke.env["gui"] = True
    group, _ = make_comp(nuke, server, frames=(1, 2), engine="test-slow")
    run = mattebox_nuke.matte(group)
    assert run.thread is not None
    nuke.fake.process_main_thread(until=run.finished.is_set, timeout=60)
    run.wait()
    values = [v for kind, v in nuke.fake.progress if kind == "progress"]
    assert values == sorted(values) and values[-1] == 100 and len(values) > 4
    assert any(kind == "message" and "frame 2 (2/2): work" in v for kind, v in nuke.fake.progress)
    assert group["status"].value().startswith("matted frames 1-2")
    assert "test-slow" in group["engine"].values()  # the engine list was refreshed from hello on the main thread
    assert not nuke.fake.messages  # no error dialog


def test_cancel_from_the_progress_bar(fake_nuke, server):
    import mattebox_nuke
    from mattebox_nuke.job import MatteboxError

    nuke = fake_nuke
    nuke.env["gui"] = True
    group, _ = make_comp(nuke, server, frames=(1, 2, 3), engine="test-slow")
    run = mattebox_nuke.matte(group)
    nuke.fake.cancel_requested.set()  # the user presses the progress bar's cancel button
    nuke.fake.process_main_thread(until=run.finished.is_set, timeout=60)
    with pytest.raises(MatteboxError, match="cancelled"):
        run.wait()
    assert len(run.outcomes) < 3
    assert group["label"].value().startswith("error: cancelled")
    assert nuke.fake.messages and "cancelled" in nuke.fake.messages[-1][1]


def test_server_down_surfaces_on_the_node(fake_nuke, capsys, down_endpoint):
    import mattebox_nuke
    from mattebox_plugin.client import ServerUnavailable

    endpoint = down_endpoint
    group, _ = make_comp(fake_nuke, endpoint, frames=(1,))
    with pytest.raises(ServerUnavailable):
        mattebox_nuke.matte(group)
    assert endpoint in group["status"].value() and "mattebox serve" in group["status"].value()
    assert group["label"].value().startswith("error: ")
    assert f"[mattebox] Mattebox1: ERROR no mattebox server at {endpoint}" in capsys.readouterr().err


def test_server_down_rematte_is_served_from_the_cache_and_says_so(fake_nuke, tmp_path):
    """Issue 19: with the server stopped, re-matting what did not change reuses the cached results, and the status
    says the server is down (not a plain success); a changed frame fails naming the frame and why."""
    import mattebox_nuke
    from mattebox_plugin.client import ServerUnavailable

    process = ServerProcess(tmp_path)
    group, pixels = make_comp(fake_nuke, process.endpoint, guide=square_mask(H, W))
    try:
        mattebox_nuke.matte(group)
    finally:
        process.stop()
    first = group._render(2)["rgba.alpha"].copy()
    again = mattebox_nuke.matte(group)
    assert [o.cached for o in again.outcomes] == [True, True, True]
    status = group["status"].value()
    assert status.startswith("frames 1-3: 3 frame(s) from cache; server not reachable: "), status
    assert process.endpoint in status and not group["label"].value().startswith("error: ")
    assert np.array_equal(group._render(2)["rgba.alpha"], first)
    pixels[3]["rgba.red"] = pixels[3]["rgba.red"] * 0.5  # a retouched plate frame needs the server
    with pytest.raises(ServerUnavailable):
        mattebox_nuke.matte(group)
    status = group["status"].value()
    assert status.startswith("frame 3: not in the cache, and the server is not reachable: "), status
    assert process.endpoint in status and group["label"].value().startswith("error: ")


def test_server_down_in_gui_shows_a_message(fake_nuke, down_endpoint):
    from mattebox_nuke import node

    nuke = fake_nuke
    nuke.env["gui"] = True
    group, _ = make_comp(nuke, down_endpoint, frames=(1,))
    nuke.fake.progress.clear()
    group["matte"].execute()  # the button: errors stay on the node in the GUI, nothing raises
    run = node._running[group.fullName()]
    nuke.fake.process_main_thread(until=lambda: run.finished.is_set(), timeout=30)
    assert nuke.fake.messages and "no mattebox server" in nuke.fake.messages[-1][1]
    assert group["label"].value().startswith("error: ")


def test_bad_inputs_are_named(fake_nuke, server):
    import mattebox_nuke
    from mattebox_nuke.job import MatteboxError
    from mattebox_plugin.client import JobFailed

    nuke = fake_nuke
    from mattebox_nuke import node

    # no plate
    lonely = mattebox_nuke.create()
    lonely["frame_range"].setValue("current frame")
    with pytest.raises(MatteboxError, match="plate input is not connected"):
        node.matte(lonely)
    assert "plate input is not connected" in lonely["status"].value()
    # guide of another size
    group, _ = make_comp(nuke, server, frames=(1,), guide=np.ones((H // 2, W // 2), np.float32))
    with pytest.raises(MatteboxError, match="input 'guide' is 32x24 but the plate is 64x48"):
        mattebox_nuke.matte(group)
    assert "Reformat 'guide'" in group["status"].value()
    # an engine the server does not know (a script saved elsewhere)
    group2, _ = make_comp(nuke, server, frames=(1,), engine="no-such-engine")
    with pytest.raises(JobFailed) as failed:
        mattebox_nuke.matte(group2)
    assert failed.value.code == "unknown_engine" and "unknown_engine" in group2["status"].value()
    # NaN pixels in the plate: the server names the buffer
    bad = plate_frames([1], H, W)
    bad[1]["rgba.green"][3, 4] = np.nan
    plate = nuke.nodes.FakeSource(frames=bad)
    group3, _ = make_comp(nuke, server, frames=(1,))
    group3.setInput(0, plate)
    with pytest.raises(JobFailed) as failed:
        mattebox_nuke.matte(group3)
    assert failed.value.code == "bad_pixels" and "image" in group3["status"].value()


def test_headless_render_pulls_results_through_the_group(fake_nuke, server, tmp_path):
    """After matting, a downstream Write renders the group's output (what `nuke -x` does)."""
    import mattebox_nuke

    nuke = fake_nuke
    mask = square_mask(H, W)
    group, pixels = make_comp(nuke, server, guide=mask)
    mattebox_nuke.matte(group)
    final = nuke.nodes.Write(file=str(tmp_path / "out" / "comp.####.exr"), inputs=[group])
    final["file_type"].setValue("exr")
    final["datatype"].setValue("32 bit float")
    final["channels"].setValue("all")
    final["create_directories"].setValue(True)
    nuke.execute(final, 1, 3)
    from mattebox_plugin import exr

    image = exr.read(str(tmp_path / "out" / "comp.0002.exr"))
    assert np.array_equal(image.planes["A"], mask)
    assert np.array_equal(image.planes["R"], pixels[2]["rgba.red"])
    assert "mattebox.trimap" in image.planes


def test_menu_entry_in_gui_startup(fake_nuke_each):
    from tests.support.fake_nuke import NODE_DIR

    nuke = fake_nuke_each
    nuke.env["gui"] = True
    nuke.fake.startup([str(NODE_DIR)])
    item = nuke.toolbar("Nodes").findItem("Mattebox/Mattebox")
    assert item is not None
    nuke.nodes.FakeSource(frames={1: rgba_planes(np.zeros((H, W, 3)))}).setSelected(True)
    group = item.invoke()
    assert group.name() == "Mattebox1"


def test_engine_menu_lists_runnable_engines_and_the_command_for_missing_weights(fake_nuke):
    import mattebox_nuke
    from mattebox_nuke import node

    group = mattebox_nuke.create()
    node.set_engines(group, {"engines": [
        {"name": "classical", "description": "closed-form", "available": True},
        {"name": "vitmatte", "description": "ViTMatte", "available": False, "why": "weights not installed; ...",
         "get": "mattebox models pull vitmatte-small-composition-1k"}]})
    assert group["engine"].values() == ["auto", "classical"]
    assert group["engine"].tooltip().splitlines() == [
        "classical: closed-form",
        "vitmatte: ViTMatte (not installed: run `mattebox models pull vitmatte-small-composition-1k` (`mattebox "
        "models` lists the choices))"]


def test_anamorphic_plate_keeps_its_pixel_aspect(fake_nuke, server):
    """A 2:1 anamorphic plate: the result EXR carries pixel aspect 2 and the group's output format has it."""
    import mattebox_nuke
    from mattebox_plugin import exr

    nuke = fake_nuke
    pixels = plate_frames([4, 5], H, W)
    plate = nuke.nodes.FakeSource(frames=pixels, first=4, last=5, pixel_aspect=2.0)
    plate.setSelected(True)
    group = mattebox_nuke.create()
    group.setInput(2, nuke.nodes.FakeSource(frames=lambda f: {"rgba.alpha": square_mask(H, W)}, first=4, last=5))
    group["endpoint"].setValue(server)
    group["frame_range"].setValue("input range")
    group["engine"].setValues(["auto", "passthrough"])
    group["engine"].setValue("passthrough")
    mattebox_nuke.matte(group)
    read = group.node("Read_result")
    assert (read["first"].value(), read["last"].value()) == (4, 5)  # the range, from fromUserText
    assert (group.format().width(), group.format().height(), group.pixelAspect()) == (W, H, 2.0)
    result = exr.read(os.path.join(group["cache_dir"].evaluate(), "Mattebox1", "result.0005.exr"))
    assert result.header["pixelAspectRatio"] == 2.0


def test_paths_with_tcl_characters_are_escaped(fake_nuke, server, tmp_path, monkeypatch):
    """File knobs are TCL-evaluated: a cache folder named with [ ] and $ must still work (escaped)."""
    import mattebox_nuke

    odd = tmp_path / "shots [v2] $USER"
    monkeypatch.setenv("MATTEBOX_NUKE_CACHE", str(odd))
    mask = square_mask(H, W)
    group, pixels = make_comp(fake_nuke, server, frames=(1,), guide=mask)
    mattebox_nuke.matte(group)
    assert group["cache_dir"].evaluate() == str(odd)
    assert group.node("Read_result")["file"].value().startswith(str(tmp_path / "shots \\[v2\\] \\$USER"))
    out = group._render(1)
    assert np.array_equal(out["rgba.alpha"], mask) and np.array_equal(out["rgba.red"], pixels[1]["rgba.red"])
    assert (odd / "Mattebox1" / "result.0001.exr").is_file()


def test_stereo_script_mattes_the_main_view_once(fake_nuke, server):
    """In a stereo script execute renders every view by default; the node renders only the main (first) view,
    so its one-view input files are not overwritten by the other eye."""
    import mattebox_nuke

    nuke = fake_nuke
    nuke.fake.set_views(["left", "right"])
    left, right = plate_frames([1], H, W, seed=1), plate_frames([1], H, W, seed=2)
    mask = square_mask(H, W)
    group, _ = make_comp(nuke, server, frames=(1,), guide=mask)
    group.setInput(0, nuke.nodes.FakeSource(frames=left, views={"left": left, "right": right}))
    mattebox_nuke.matte(group)
    assert not nuke.fake.overwritten
    assert np.array_equal(group._render(1)["rgba.green"], left[1]["rgba.green"])


def test_cancelled_input_render_is_a_cancel(fake_nuke, server):
    """Cancelling Nuke's render progress bar (executeMultiple raises RuntimeError('Cancelled')) cancels the
    matte with the node's own message, not a traceback."""
    import mattebox_nuke
    from mattebox_nuke.job import MatteboxError

    group, _ = make_comp(fake_nuke, server, frames=(1, 2), guide=square_mask(H, W))
    fake_nuke.fake.cancel_requested.set()
    with pytest.raises(MatteboxError, match="cancelled"):
        mattebox_nuke.matte(group)
    assert group["label"].value() == "error: cancelled"


def test_saved_script_reopens_and_mattes_the_same(fake_nuke_each, server, tmp_path):
    """Save the comp as a .nk, clear, reopen: the group (knobs, inner nodes, connections) comes back and mattes
    again to the same pixels, from the cache."""
    import mattebox_nuke
    from mattebox_nuke import node
    from mattebox_plugin import exr

    nuke = fake_nuke_each
    mask = square_mask(H, W)
    pixels = plate_frames([1, 2], H, W)
    for f in (1, 2):
        planes = {"R": pixels[f]["rgba.red"], "G": pixels[f]["rgba.green"], "B": pixels[f]["rgba.blue"]}
        exr.write(str(tmp_path / f"plate.{f:04d}.exr"), W, H, planes, "none", pixel_aspect=2.0)
        exr.write(str(tmp_path / f"mask.{f:04d}.exr"), W, H, {"A": mask}, "none")
    plate = nuke.nodes.Read()
    plate["file"].fromUserText(f"{tmp_path}/plate.####.exr 1-2")
    guide = nuke.nodes.Read()
    guide["file"].fromUserText(f"{tmp_path}/mask.####.exr")
    plate.setSelected(True)
    group = mattebox_nuke.create()
    group.setInput(2, guide)
    group["endpoint"].setValue(server)
    group["frame_range"].setValue("input range")
    group["engine"].setValues(["auto", "passthrough"])
    group["engine"].setValue("passthrough")
    mattebox_nuke.matte(group)
    before = {f: group._render(f) for f in (1, 2)}
    script = str(tmp_path / "comp.nk")
    nuke.scriptSaveAs(script)
    assert nuke.root().name() == script
    nuke.scriptClear()
    assert nuke.root().name() == "Root" and not nuke.allNodes()
    nuke.scriptOpen(script)
    reopened = nuke.toNode("Mattebox1")
    assert node.is_mattebox(reopened) and reopened.input(0).name() == plate.name()
    assert reopened.input(2).name() == guide.name() and reopened["engine"].value() == "passthrough"
    assert reopened.pixelAspect() == 2.0
    for f in (1, 2):  # the saved result paths read back before any new matte
        assert np.array_equal(reopened._render(f)["rgba.alpha"], before[f]["rgba.alpha"])
    again = mattebox_nuke.matte(reopened)
    assert all(o.cached for o in again.outcomes)
    for f in (1, 2):
        out = reopened._render(f)
        for channel, plane in before[f].items():
            assert np.array_equal(out[channel], plane), (f, channel)


def test_shot_knob_mattes_the_range_as_one_shot_from_its_key_frames(fake_nuke, server):
    """The shot checkbox: frames 1-3 go to the server as one shot; only key frame 1's guide is sent, the others
    are carried from it; a subject on a flat background is found on every frame, and a rerun is not cached."""
    import mattebox_nuke

    nuke = fake_nuke
    mask = square_mask(H, W)
    subject = rgba_planes(np.where(mask[..., None] > 0, np.float32([0.9, 0.7, 0.4]), np.float32(0.1)))
    group, _ = make_comp(nuke, server, frames=(1, 2, 3), guide=mask, engine="classical")
    group.setInput(0, nuke.nodes.FakeSource(frames={f: subject for f in (1, 2, 3)}, first=1, last=3))
    group["shot"].setValue(True)
    group["key_frames"].setValue("1")
    run = mattebox_nuke.matte(group)
    assert run.error is None and [o.frame for o in run.outcomes] == [1, 2, 3]
    assert all(not o.cached and o.info["frame"] == o.frame for o in run.outcomes)
    for f in (1, 2, 3):
        alpha = group._render(f)["rgba.alpha"]
        assert alpha[mask > 0].mean() > 0.9 and alpha[mask == 0].mean() < 0.1, f
    assert group["status"].value().startswith("matted frames 1-3 (0 from cache) with classical")
    group["key_frames"].setValue("1,7")
    from mattebox_nuke.job import MatteboxError

    with pytest.raises(ValueError, match="frames: 7 is not one of the frames to matte"):
        mattebox_nuke.matte(group)
    assert "key frames: 7 is not one of the frames to matte (1-3)" in group["status"].value()
    group["key_frames"].setValue("1-x")
    with pytest.raises(MatteboxError, match="key frames: cannot read '1-x'"):
        mattebox_nuke.matte(group)
