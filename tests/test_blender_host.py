"""The Blender extension in REAL Blender (bpy 5.0.1 in a cached venv), against real mattebox servers on loopback.

Each test runs a snippet inside a fresh Blender process (tests/hosts/blender_session.py) with its own user
resources folder, so nothing touches the user's Blender. Skipped with the reason when the venv cannot be built
(no python3.11 or no network to PyPI); under CI (``$CI`` set) that is a failure instead.
"""
from __future__ import annotations

import os
import shlex
import signal
import sys

import pytest

from mattebox.testing.engines import SLOW_ENGINE
from mattebox.testing.servers import free_endpoint
from tests.conftest import tree_env
from tests.hosts.blender_harness import blender_python_or_skip, run_blender
from mattebox.testing.engines import run_events_once_idle

pytestmark = pytest.mark.host


@pytest.fixture(scope="session")
def blender_python():
    return blender_python_or_skip()


def test_register_unregister_leaves_nothing(blender_python, tmp_path):
    result = run_blender(blender_python, tmp_path, '''
        import addon_utils
        def ours():
            bases = (bpy.types.Operator, bpy.types.Panel, bpy.types.PropertyGroup, bpy.types.AddonPreferences)
            names = [c.__name__ for b in bases for c in b.__subclasses__()
                     if c.__module__.startswith(helpers.MODULE) and c.is_registered]
            names += [n for n in dir(bpy.types) if n.startswith("MATTEBOX_")]
            ops = [n for n in dir(bpy.ops.mattebox)]
            return {"types": sorted(set(names)), "ops": sorted(ops), "scene": hasattr(bpy.types.Scene, "mattebox"),
                    "wm": hasattr(bpy.types.WindowManager, "mattebox_status"),
                    "enabled": helpers.MODULE in bpy.context.preferences.addons}
        before = ours()
        addon_utils.disable(helpers.MODULE, default_set=True, handle_error=helpers._raise)
        after = ours()
        addon_utils.enable(helpers.MODULE, default_set=True, handle_error=helpers._raise)
        again = ours()
        RESULT = {"before": before, "after": after, "again": again}
    ''')
    before, after, again = result["before"], result["after"], result["again"]
    assert before["enabled"] and before["scene"] and before["wm"]
    assert {"MATTEBOX_OT_matte", "MATTEBOX_PT_matte", "MatteboxSettings"} <= set(before["types"])
    assert {"matte", "cancel", "check_server"} <= set(before["ops"])
    assert after == {"types": [], "ops": [], "scene": False, "wm": False, "enabled": False}
    assert again == before  # symmetric: enable after disable gives the same state


def test_matte_matches_server_output_exactly_and_renders(blender_python, tmp_path, mattebox_server):
    result = run_blender(blender_python, tmp_path, '''
        s, plate, inside = setup_scene(ARGS["endpoint"])
        error, seconds = report_of(lambda: bpy.ops.mattebox.matte())
        assert error is None, error
        got = {k: helpers.image_array(bpy.data.images["Matte " + k.title()]) for k in ("alpha", "foreground", "trimap")}
        # the same request straight through the client: the extension must have stored exactly this
        package = ext.connection.client_package()
        client = package.client.Client(ARGS["endpoint"], timeout=30)
        params = dict(s.params(), outputs=["alpha", "foreground", "trimap"])
        want = client.submit(image=plate, mask=inside, params=params, colorspace="linear").result(timeout=60)
        client.close()
        diffs = {
            "alpha": float(np.abs(got["alpha"][..., 0] - want.alpha).max()),
            "alpha_all_channels": float(np.abs(got["alpha"] - want.alpha[..., None]).max()),
            "foreground": float(np.abs(got["foreground"][..., :3] - want.foreground).max()),
            "trimap": float(np.abs(got["trimap"][..., 0] - want.trimap).max()),
        }
        # render the compositor (Set Alpha(Foreground, Alpha) -> output) to a 32-bit EXR and read it back
        scene = bpy.context.scene
        scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = W, H, 100
        scene.view_settings.view_transform = "Standard"
        scene.render.engine = "CYCLES"  # Blender 4.x renders the scene too; EEVEE on CPU compiles for minutes
        scene.cycles.samples, scene.cycles.device = 1, "CPU"
        fmt = scene.render.image_settings
        fmt.file_format, fmt.color_depth, fmt.color_mode = "OPEN_EXR", "32", "RGBA"
        scene.render.filepath = os.path.join(os.getcwd(), "render.exr")
        bpy.ops.render.render(write_still=True)
        rendered = bpy.data.images.load(scene.render.filepath)
        rendered.colorspace_settings.name = "Non-Color"
        rendered.alpha_mode = "CHANNEL_PACKED"
        out = helpers.image_array(rendered)
        group = bpy.data.node_groups["Mattebox Matte"]
        RESULT = {"diffs": diffs, "seconds": seconds,
                  "render_alpha_diff": float(np.abs(out[..., 3] - want.alpha).max()),
                  "render_rgb_diff": float(np.abs(out[..., :3] - want.foreground * want.alpha[..., None]).max()),
                  "outputs": [s.name for s in group.interface.items_tree if s.in_out == "OUTPUT"],
                  "info": want.info.get("engine"), "alpha_range": [float(want.alpha.min()), float(want.alpha.max())],
                  "alpha_colorspace": bpy.data.images["Matte Alpha"].colorspace_settings.name,
                  "alpha_is_float": bpy.data.images["Matte Alpha"].is_float}
    ''', endpoint=mattebox_server)
    assert result["info"] == "classical"
    assert result["alpha_range"][0] < 0.05 and result["alpha_range"][1] > 0.95  # a real matte, not a constant
    assert result["diffs"] == {"alpha": 0.0, "alpha_all_channels": 0.0, "foreground": 0.0, "trimap": 0.0}
    assert result["alpha_colorspace"] == "Non-Color" and result["alpha_is_float"]
    assert result["outputs"] == ["Alpha", "Foreground", "Trimap"]
    assert result["render_alpha_diff"] == 0.0
    assert result["render_rgb_diff"] < 1e-6


def test_result_is_laid_out_beside_the_graph_wired_and_viewed(blender_python, tmp_path, mattebox_server):
    """Issue 19: the group went over the Composite node at fixed coordinates, with Use Nodes off (4.x) Set Alpha's
    wire looped back under it, and nothing was visible. Now: below the existing nodes, left of the output, wires
    running left to right, into the output and a Viewer, backdrop on."""
    result = run_blender(blender_python, tmp_path, '''
        s, plate, inside = setup_scene(ARGS["endpoint"], engine="passthrough")
        scene = bpy.context.scene
        four = not hasattr(scene, "compositing_node_group")
        if four:
            scene.use_nodes = False  # the 4.x default: Use Nodes off, no tree yet
        error, _ = report_of(lambda: bpy.ops.mattebox.matte())
        tree, _ = ext.blender_io.scene_compositor(scene, create=False)
        def rect(n):  # left, top, right, bottom (y grows upwards; nothing is drawn, so a nominal height)
            return (n.location.x, n.location.y, n.location.x + n.width,
                    n.location.y - (n.dimensions.y or ext.blender_io.NODE_HEIGHT))
        ours = tree.nodes["Mattebox Matte"]
        def apart(n):
            a, b = rect(n), rect(ours)
            return a[0] >= b[2] or a[2] <= b[0] or a[3] >= b[1] or a[1] <= b[3]
        final = ext.blender_io._final_output(tree)
        viewers = [n for n in tree.nodes if n.bl_idname == "CompositorNodeViewer"]
        backdrops = [sp.show_backdrop for sc in bpy.data.screens for a in sc.areas for sp in a.spaces
                     if sp.type == "NODE_EDITOR" and sp.tree_type == "CompositorNodeTree"]
        RESULT = {"error": error, "use_nodes": scene.use_nodes if four else True,
                  "overlaps": [n.name for n in tree.nodes if n != ours and not apart(n)],
                  "backward_links": [(l.from_node.name, l.to_node.name) for l in tree.links
                                     if l.from_node.location.x >= l.to_node.location.x],
                  "output_from": [l.from_node.bl_idname for l in final.links],
                  "viewer_from": [l.from_node.bl_idname for v in viewers for l in v.inputs[0].links],
                  "left_of_output": rect(ours)[2] < final.node.location.x, "backdrops": backdrops}
    ''', endpoint=mattebox_server)
    assert result["error"] is None
    assert result["use_nodes"]
    assert result["overlaps"] == []
    assert result["backward_links"] == []  # no wire loops back under a node
    assert result["output_from"] == ["CompositorNodeSetAlpha"]  # Render Layers -> Composite replaced on 4.x
    assert result["viewer_from"] == ["CompositorNodeSetAlpha"]
    assert result["left_of_output"]
    assert result["backdrops"] and all(result["backdrops"])


def test_frame_range_with_second_frame_and_content_cache(blender_python, tmp_path, mattebox_server):
    result = run_blender(blender_python, tmp_path, '''
        s, plate, inside = setup_scene(ARGS["endpoint"])
        seq_dir = os.path.join(os.getcwd(), "plates")
        for frame in range(1, 5):
            path = os.path.join(seq_dir, f"plate_{frame:04d}.exr")
            ext.blender_io.write_exr(path, make_plate(seed=frame, shift=frame)[0])
        seq = bpy.data.images.load(os.path.join(seq_dir, "plate_0001.exr"))
        seq.source = "SEQUENCE"
        s.image, s.use_range, s.frames, s.use_second, s.second_offset = seq, True, "1-3", True, 1
        runs = []
        go = lambda: run_once(runs)
        go()
        go()  # nothing changed: every frame comes from the cache
        ext.blender_io.write_exr(os.path.join(seq_dir, "plate_0002.exr"), make_plate(seed=99, shift=2)[0])
        go()  # frame 2 changed, and frame 1 (its second frame is plate 2) changed too
        alpha = bpy.data.images["Matte Alpha"]
        node = bpy.data.node_groups["Mattebox Matte"].nodes["Alpha"]
        files = sorted(os.listdir(os.path.join(os.getcwd(), "mattes", "Matte")))
        # after three runs (re-publishing keeps the compositor's links), each scene frame composites its own
        # matte file: render frames 3 and 2, compare with the files
        scene = bpy.context.scene
        scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = W, H, 100
        scene.render.engine, scene.cycles.samples = "CYCLES", 1
        fmt = scene.render.image_settings
        fmt.file_format, fmt.color_depth, fmt.color_mode = "OPEN_EXR", "32", "RGBA"
        composited = {}
        for f in (3, 2):
            scene.frame_set(f)
            scene.render.filepath = os.path.join(os.getcwd(), f"comp_{f}.exr")
            bpy.ops.render.render(write_still=True)
            out = bpy.data.images.load(scene.render.filepath)
            out.colorspace_settings.name, out.alpha_mode = "Non-Color", "CHANNEL_PACKED"
            got = helpers.image_array(out)[..., 3]
            want = {}
            for g in (1, 2, 3):
                img = bpy.data.images.load(os.path.join(os.getcwd(), "mattes", "Matte", f"alpha_{g:04d}.exr"))
                img.colorspace_settings.name, img.alpha_mode = "Non-Color", "CHANNEL_PACKED"
                want[g] = helpers.image_array(img)[..., 0]
            composited[f] = {g: float(np.abs(got - want[g]).max()) for g in want}
        RESULT = {"runs": runs, "source": alpha.source, "files": files, "composited": composited,
                  "node": [node.frame_start, node.frame_offset, node.frame_duration]}
    ''', endpoint=mattebox_server)
    runs = result["runs"]
    assert [r["state"] for r in runs] == ["finished"] * 3, runs
    assert runs[0]["computed"] == [1, 2, 3] and runs[0]["reused"] == []
    # the scene's engine is "classical", which has no use for the second frame: the report says so
    assert "second frame ignored on 3 frame(s): engine classical" in runs[0]["report"], runs[0]["report"]
    assert runs[1]["computed"] == [] and runs[1]["reused"] == [1, 2, 3] and "second frame" not in runs[1]["report"]
    assert runs[2]["computed"] == [1, 2] and runs[2]["reused"] == [3]
    assert result["source"] == "SEQUENCE"
    assert result["node"] == [1, 0, 3]
    for frame, diffs in result["composited"].items():  # the compositor shows frame f's own matte, exactly
        assert diffs[frame] == 0.0 and all(d > 0 for g, d in diffs.items() if g != frame), (frame, diffs)
    assert [f for f in result["files"] if f.startswith("alpha_")] == ["alpha_0001.exr", "alpha_0002.exr",
                                                                      "alpha_0003.exr"]


def test_an_image_sequence_as_one_shot_from_a_key_frame(blender_python, tmp_path, mattebox_server):
    """'As One Shot' with key frame 1: the sequence goes to the server as one shot (engine classical-shot), the
    mask guides frame 1 and is carried to frames 2-3 as the subject moves; nothing is cached."""
    result = run_blender(blender_python, tmp_path, '''
        s, plate, inside = setup_scene(ARGS["endpoint"])
        seq_dir = os.path.join(os.getcwd(), "plates")
        insides = {}
        for frame in range(1, 4):
            image, insides[frame] = make_plate(seed=frame, shift=2 * frame)
            ext.blender_io.write_exr(os.path.join(seq_dir, f"plate_{frame:04d}.exr"), image)
        seq = bpy.data.images.load(os.path.join(seq_dir, "plate_0001.exr"))
        seq.source = "SEQUENCE"
        s.mask = helpers.new_image("mask1", insides[1], "Non-Color")
        s.image, s.use_range, s.frames, s.use_shot, s.key_frames = seq, True, "1-3", True, "1"
        runs = []
        run_once(runs)
        run_once(runs)
        scores = {}
        for frame, mask in insides.items():
            img = bpy.data.images.load(os.path.join(os.getcwd(), "mattes", "Matte", f"alpha_{frame:04d}.exr"))
            img.colorspace_settings.name, img.alpha_mode = "Non-Color", "CHANNEL_PACKED"
            alpha = helpers.image_array(img)[..., 0]
            scores[frame] = [float(alpha[mask > 0].mean()), float(alpha[mask == 0].mean())]
        s.key_frames = "9"
        try:
            ext.operators.start_run(bpy.context)
            bad_keys = None
        except ValueError as exc:
            bad_keys = str(exc)
        RESULT = {"runs": runs, "scores": scores, "bad_keys": bad_keys}
    ''', endpoint=mattebox_server)
    first, second = result["runs"][:2]
    assert first["state"] == "finished" and first["computed"] == [1, 2, 3], first
    assert {info["engine"] for info in first["infos"].values()} == {"classical-shot"}, first["infos"]
    assert second["computed"] == [1, 2, 3] and second["reused"] == []  # a shot frame depends on its neighbours
    for frame, (inside, outside) in result["scores"].items():
        assert inside > 0.9 and outside < 0.1, (frame, inside, outside)
    assert result["bad_keys"] == "key frames: 9 is not one of the frames to matte (1-3)"


def test_clean_plate_guides_the_matte_and_keys_the_cache(blender_python, tmp_path, mattebox_server):
    """A clean plate and no mask: the classical engine's guidance is the plate's difference matte (it would be
    GrabCut without the plate), the report says so, and changing the plate recomputes the cached frame."""
    result = run_blender(blender_python, tmp_path, '''
        s, plate, inside = setup_scene(ARGS["endpoint"])
        s.mask = None
        clean = make_plate(seed=11, subject=False)[0]
        s.clean_plate = helpers.new_image("clean plate", clean)
        runs = []
        go = lambda: run_once(runs)
        go()
        alpha = helpers.image_array(bpy.data.images["Matte Alpha"])[..., 0]
        go()  # unchanged: from the cache
        brighter = clean.copy()
        brighter[..., :3] *= 1.01
        s.clean_plate.pixels.foreach_set(core.to_blender_pixels(brighter))
        go()  # the plate changed: the frame is recomputed
        # a clean pass as an image sequence: each frame's own plate, like the mask (a still serves every frame)
        cleans = {f: make_plate(seed=20 + f, subject=False)[0] for f in (1, 2)}
        for f, c in cleans.items():
            ext.blender_io.write_exr(os.path.join(os.getcwd(), "clean", f"clean_{f:04d}.exr"), c)
        s.clean_plate = bpy.data.images.load(os.path.join(os.getcwd(), "clean", "clean_0001.exr"))
        s.clean_plate.source = "SEQUENCE"
        sent = ext.blender_io.read_request(s, bpy.context.scene, 2, s.params())["background"]
        sequence_diff = float(np.abs(sent - cleans[2]).max())
        s.clean_plate = helpers.new_image("small plate", clean[:40, :50])
        error, _ = report_of(lambda: bpy.ops.mattebox.matte())
        RESULT = {"runs": runs, "error": error, "alpha_error": float(np.abs(alpha - inside).mean()),
                  "sequence_diff": sequence_diff,
                  "alpha_in": float(alpha[inside > 0].mean()), "alpha_out": float(alpha[inside == 0].mean())}
    ''', endpoint=mattebox_server)
    first, cached, changed = result["runs"]
    assert [r["state"] for r in result["runs"]] == ["finished"] * 3, result["runs"]
    info = first["infos"]["1"]
    assert info["engine"] == "classical" and info["guidance"] == "plate:difference", info
    assert info["foreground_method"].endswith("+plate") and "ignored_inputs" not in info
    assert "clean plate used on 1 frame(s), its difference matte guided 1" in first["report"], first["report"]
    # the matte is the disc: alpha ~1 inside, ~0 outside (mean error over the frame ~ the soft edge only)
    assert result["alpha_in"] > 0.95 and result["alpha_out"] < 0.02 and result["alpha_error"] < 0.03, result
    assert cached["computed"] == [] and cached["reused"] == [1]
    assert changed["computed"] == [1] and changed["reused"] == []
    assert result["sequence_diff"] == 0.0
    assert "clean plate: 50x40 pixels, but the image is 96x72" in result["error"]


def test_server_down_reports_clearly_without_hanging(blender_python, tmp_path, down_endpoint):
    endpoint = down_endpoint
    result = run_blender(blender_python, tmp_path, '''
        setup_scene(ARGS["endpoint"], auto_start=False, timeout=120)
        down, down_s = report_of(lambda: bpy.ops.mattebox.matte())
        helpers.use_server(ARGS["endpoint"], auto_start=True, server_command="/bin/false")
        failing, failing_s = report_of(lambda: bpy.ops.mattebox.matte())
        RESULT = {"down": down, "down_s": down_s, "failing": failing, "failing_s": failing_s,
                  "images": [i.name for i in bpy.data.images]}
    ''', endpoint=endpoint)
    assert f"no mattebox server at {endpoint}" in result["down"]
    assert result["down_s"] < 60  # refused at once, not after the client's 120 s time-out (nor a hang)
    assert "exited with code 1" in result["failing"] and "/bin/false" in result["failing"]
    assert result["failing_s"] < 10
    assert not any(name.startswith("Matte ") for name in result["images"])


def test_mismatched_frame_sizes_name_the_input(blender_python, tmp_path, mattebox_server):
    result = run_blender(blender_python, tmp_path, '''
        s, plate, inside = setup_scene(ARGS["endpoint"])
        s.mask = helpers.new_image("small mask", np.ones((40, 50), np.float32), "Non-Color")
        error, _ = report_of(lambda: bpy.ops.mattebox.matte())
        RESULT = {"error": error}
    ''', endpoint=mattebox_server)
    assert "mask: 50x40 pixels, but the image is 96x72" in result["error"]


def test_server_error_message_reaches_the_report(blender_python, tmp_path, mattebox_server):
    result = run_blender(blender_python, tmp_path, '''
        setup_scene(ARGS["endpoint"])
        # the menu offers only engines a server listed; an engine name from elsewhere comes in by the farm path
        run = ext.scene_run.SceneRun.from_preferences(bpy.context.scene, helpers.use_server(ARGS["endpoint"]),
                                                      engine="no-such-engine")
        run.wait(timeout=60)
        reports = []
        ext.operators.finish_run(run, lambda kind, text: reports.append(text))
        RESULT = {"error": reports[-1]}
    ''', endpoint=mattebox_server)
    assert "no-such-engine" in result["error"] and "[unknown_engine]" in result["error"]


def test_engine_menu_comes_from_the_server_and_quality_from_the_protocol(blender_python, tmp_path, server_process,
                                                                         monkeypatch):
    """Issue 19: Engine was a free-text field. Before any server answers it offers the built-in engines; after a
    handshake, the server's (one missing its weights says how to get them)."""
    monkeypatch.setenv("MATTEBOX_ENGINES", SLOW_ENGINE)
    endpoint = server_process().endpoint
    result = run_blender(blender_python, tmp_path, '''
        s = bpy.context.scene.mattebox
        helpers.use_server(ARGS["endpoint"])
        def menu(name):
            items = ext.properties.engine_items(s, bpy.context) if name == "engine" else ext.properties.QUALITIES
            return {i[0]: (i[1], i[2]) for i in items}
        def settable(value):
            try:
                s.engine = value
                return s.engine == value
            except TypeError:
                return False
        before = menu("engine")
        before_slow = settable("test-slow")
        bpy.ops.mattebox.check_server()
        after = menu("engine")
        after_slow = settable("test-slow")
        ext.connection.remember_engines({"engines": []})  # a later session that has reached no server yet
        RESULT = {"before": sorted(before), "before_slow": before_slow, "after": after, "after_slow": after_slow,
                  "quality": sorted(menu("quality")), "default_quality": s.quality,
                  "unlisted": [s.engine, s.params()["engine"]]}
    ''', endpoint=endpoint)
    assert result["before"] == ["auto", "classical", "classical-pair", "passthrough"]
    assert not result["before_slow"] and result["after_slow"]
    assert {"auto", "classical", "passthrough", "test-slow"} <= set(result["after"])
    missing = {name: text for name, text in result["after"].items() if "(not installed)" in text[0]}
    assert missing, result["after"]  # learned engines without weights stay listed ...
    assert all("mattebox models" in description for _, description in missing.values())  # ... with the command
    assert result["quality"] == ["balanced", "best", "fast"] and result["default_quality"] == "balanced"
    assert result["unlisted"] == ["", "test-slow"]  # the choice is kept and sent, never silently 'auto'


def test_cached_rerun_says_the_server_is_down(blender_python, tmp_path, server_process):
    """Issue 19: a re-run served from the cache reported success with the server down. The output folder's index
    keeps the server hello each frame was made under (its content key holds the server's version and engines), so
    with no server the unchanged frame is reused, and the report and the panel say the server was not reachable and
    why, as a warning."""
    server = server_process()
    snippet = '''
        setup_scene(ARGS["endpoint"], engine="passthrough")
        run = ext.operators.start_run(bpy.context)
        run.wait(timeout=120)
        reports = []
        ext.operators.finish_run(run, lambda level, text: reports.append((sorted(level), text)))
        RESULT = {"run": {"state": run.state, "computed": run.computed, "reused": run.reused,
                          "report": reports[-1][1]},
                  "level": reports[-1][0], "status": bpy.context.window_manager.mattebox_status.text,
                  "images": sorted(i.name for i in bpy.data.images)}
    '''
    first = run_blender(blender_python, tmp_path, snippet, endpoint=server.endpoint)
    assert first["run"]["state"] == "finished" and first["level"] == ["INFO"]
    assert "server not reachable" not in first["run"]["report"]
    server.stop()
    again = run_blender(blender_python, tmp_path, snippet, endpoint=server.endpoint)
    assert again["run"]["state"] == "finished" and again["run"]["reused"] == [1], again["run"]
    assert again["level"] == ["WARNING"]
    report = again["run"]["report"]
    assert report.startswith("Mattebox: 1 frame(s) from cache; server not reachable: ") and server.endpoint in report
    assert again["status"] == report  # the panel's status line says it too
    assert "Matte Alpha" in again["images"]


def test_cancel_mid_job(blender_python, tmp_path, server_process, monkeypatch):
    monkeypatch.setenv("MATTEBOX_ENGINES", SLOW_ENGINE)
    monkeypatch.setenv("MATTEBOX_TEST_STEPS", "400")
    monkeypatch.setenv("MATTEBOX_TEST_STEP_S", "0.05")  # 20 s if never cancelled
    monkeypatch.setenv("MATTEBOX_TEST_RUN_LOG", str(tmp_path / "runs.log"))
    endpoint = server_process().endpoint
    result = run_blender(blender_python, tmp_path, '''
        setup_scene(ARGS["endpoint"], engine="test-slow")
        run = ext.operators.start_run(bpy.context)
        t = time.monotonic()
        while run.last_event is None and time.monotonic() - t < 120:
            run.step()
            time.sleep(0.02)
        progressed = run.last_event and run.last_event.stage  # a mattebox_plugin.protocol.ProgressEvent
        run.cancel()
        state = run.wait(timeout=60)
        RESULT = {"progressed": progressed, "state": state,
                  "images": [i.name for i in bpy.data.images],
                  "files": os.listdir(os.path.join(os.getcwd(), "mattes")) if os.path.isdir("mattes") else [],
                  "cancel_poll_after": bpy.ops.mattebox.cancel.poll()}
    ''', endpoint=endpoint)
    assert result["progressed"] == "work"
    assert result["state"] == "cancelled"
    assert run_events_once_idle(endpoint, tmp_path / "runs.log") == ["start"]  # the server stopped the engine
    assert not any(name.startswith("Matte ") for name in result["images"])
    assert result["files"] == []
    assert result["cancel_poll_after"] is False


def test_headless_frame_range_script(blender_python, tmp_path, mattebox_server):
    """The farm path: the extension's headless module mattes a frame range of a saved .blend."""
    result = run_blender(blender_python, tmp_path, '''
        s, plate, inside = setup_scene(ARGS["endpoint"])
        seq_dir = os.path.join(os.getcwd(), "plates")
        for frame in range(1, 4):
            ext.blender_io.write_exr(os.path.join(seq_dir, f"plate_{frame:04d}.exr"), make_plate(seed=frame)[0])
        seq = bpy.data.images.load(os.path.join(seq_dir, "plate_0001.exr"))
        seq.source = "SEQUENCE"
        s.image, s.output_dir = seq, "//farm/"
        bpy.ops.wm.save_as_mainfile(filepath=os.path.join(os.getcwd(), "shot.blend"))
        import importlib
        headless = importlib.import_module(helpers.MODULE + ".headless")
        import sys
        bad = headless.main(["--frames", "3-1", "--endpoint", ARGS["endpoint"], "--no-start"])
        # what `blender -b shot.blend --python-expr "...; headless.run_cli()" -- ARGS` runs
        scene = bpy.context.scene
        scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = W, H, 100
        scene.render.engine = "CYCLES"  # Blender 4.x renders the scene too; keep it cheap
        scene.cycles.samples = 1
        scene.render.filepath = os.path.join(os.getcwd(), "renders", "shot_")
        sys.argv = ["blender", "-b", "shot.blend", "--", "--frames", "2-3", "--endpoint", ARGS["endpoint"],
                    "--no-start", "--save", "--render"]
        headless.run_cli()  # returns on success, sys.exit(1) on failure
        files = sorted(os.listdir(os.path.join(os.getcwd(), "farm", "Matte")))
        renders = sorted(os.listdir(os.path.join(os.getcwd(), "renders")))
        bpy.ops.wm.open_mainfile(filepath=os.path.join(os.getcwd(), "shot.blend"))  # --save kept the group
        tree, _ = ext.blender_io.scene_compositor(bpy.context.scene, create=False)  # Blender 4.x or 5
        saved = "Mattebox Matte" in bpy.data.node_groups and any(n.bl_idname == "CompositorNodeGroup"
                                                                 for n in tree.nodes)
        RESULT = {"bad": bad, "saved": saved, "files": files, "renders": renders}
    ''', endpoint=mattebox_server)
    assert result["bad"] == 1 and result["saved"]
    assert result["renders"] == ["shot_0002.png", "shot_0003.png"]
    assert {"alpha_0002.exr", "alpha_0003.exr", "foreground_0003.exr"} <= set(result["files"])
    assert "alpha_0001.exr" not in result["files"]


def test_render_and_movie_clip_sources(blender_python, tmp_path, mattebox_server):
    """The render result (rendered with compositing off, then restored) and an image-sequence movie clip."""
    result = run_blender(blender_python, tmp_path, '''
        s, plate, inside = setup_scene(ARGS["endpoint"], engine="passthrough")
        scene = bpy.context.scene
        scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = W, H, 100
        scene.render.engine = "CYCLES"  # on a CPU-only machine EEVEE compiles shaders for minutes
        scene.cycles.samples, scene.cycles.device = 1, "CPU"
        s.source, s.mask = "RENDER", None
        error_render, _ = report_of(lambda: bpy.ops.mattebox.matte())
        fg = helpers.image_array(bpy.data.images["Matte Foreground"])
        render_info = {"error": error_render, "size": list(bpy.data.images["Matte Foreground"].size),
                       "compositing_restored": scene.render.use_compositing,
                       "format_restored": scene.render.image_settings.file_format,
                       "not_blank": float(fg[..., :3].std())}
        seq_dir = os.path.join(os.getcwd(), "clip")
        plates = {f: make_plate(seed=f, shift=f)[0] for f in range(1, 4)}
        for f, p in plates.items():
            ext.blender_io.write_exr(os.path.join(seq_dir, f"shot_{f + 100:04d}.exr"), p)
        clip = bpy.data.movieclips.load(os.path.join(seq_dir, "shot_0101.exr"))
        clip.frame_start = 1
        got = ext.blender_io.clip_frame_rgba(clip, 2)
        try:
            ext.blender_io.clip_frame_rgba(clip, 9)
            outside = None
        except ValueError as exc:
            outside = str(exc)
        s.source, s.clip, s.name = "CLIP", clip, "Clip"
        scene.frame_set(3)
        error_clip, _ = report_of(lambda: bpy.ops.mattebox.matte())
        clip_fg = helpers.image_array(bpy.data.images["Clip Foreground"])[..., :3]
        RESULT = {"render": render_info, "clip_source": clip.source,
                  "clip_frame_diff": float(np.abs(got - plates[2]).max()),
                  "outside": outside, "error_clip": error_clip,
                  "clip_matte_diff": float(np.abs(clip_fg - plates[3][..., :3]).max())}
    ''', endpoint=mattebox_server)
    render = result["render"]
    assert render["error"] is None
    assert render["size"] == [96, 72] and render["not_blank"] > 0
    assert render["compositing_restored"] is True and render["format_restored"] == "PNG"
    assert result["clip_source"] == "SEQUENCE"
    assert result["clip_frame_diff"] == 0.0
    assert "no frame at scene frame 9" in result["outside"]
    assert result["error_clip"] is None and result["clip_matte_diff"] == 0.0


def test_movie_file_frames_via_clip_and_image(blender_python, tmp_path, mattebox_server):
    """Movie files (not image sequences): frames decoded by Blender itself, the right frame each time."""
    result = run_blender(blender_python, tmp_path, '''
        s, plate, inside = setup_scene(ARGS["endpoint"], engine="passthrough")
        scene = bpy.context.scene
        movie_dir = os.path.join(os.getcwd(), "movie")
        pngs = {}
        for f in range(1, 4):  # 8-bit frames, encoded losslessly (FFV1) into a movie by Blender's sequencer
            png = helpers.new_image(f"png{f}", make_plate(seed=f, shift=4 * f)[0])
            png.filepath_raw, png.file_format = os.path.join(movie_dir, f"p_{f:04d}.png"), "PNG"
            os.makedirs(movie_dir, exist_ok=True)
            png.save()
            pngs[f] = png.filepath_raw
        editor = scene.sequence_editor_create()
        strips = editor.strips if hasattr(editor, "strips") else editor.sequences
        strip = strips.new_image("plates", pngs[1], 1, 1)
        for f in (2, 3):
            strip.elements.append(os.path.basename(pngs[f]))
        scene.frame_start, scene.frame_end = 1, 3
        scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = W, H, 100
        fmt = scene.render.image_settings
        if hasattr(fmt, "media_type"):  # Blender 5 separates images from videos
            fmt.media_type = "VIDEO"
        fmt.file_format, fmt.color_mode = "FFMPEG", "RGB"
        scene.render.ffmpeg.format, scene.render.ffmpeg.codec = "MKV", "FFV1"
        scene.view_settings.view_transform = "Standard"
        scene.render.dither_intensity = 0.0  # no noise added on the way to 8 bits
        scene.render.filepath = os.path.join(movie_dir, "movie_")
        bpy.ops.render.render(animation=True)
        strips.remove(strip)
        movie = [os.path.join(movie_dir, n) for n in os.listdir(movie_dir) if n.endswith(".mkv")][0]
        def expected(f):  # the PNG decoded by Blender: 8-bit sRGB made linear
            image = bpy.data.images.load(pngs[f])
            return core.linearise(helpers.image_array(image), image.is_float, image.colorspace_settings.name)
        clip = bpy.data.movieclips.load(movie)
        clip_diffs = [float(np.abs(ext.blender_io.clip_frame_rgba(clip, f)[..., :3] - expected(f)[..., :3]).max())
                      for f in (1, 2, 3)]
        image = bpy.data.images.load(movie)
        image.source = "MOVIE"
        image_diffs = [float(np.abs(ext.blender_io.image_frame_rgba(image, f)[..., :3] - expected(f)[..., :3]).max())
                       for f in (3, 1)]
        frames_differ = float(np.abs(expected(1) - expected(3)).max())
        s.source, s.clip, s.mask, s.name = "CLIP", clip, None, "Movie"
        scene.frame_set(2)
        error, _ = report_of(lambda: bpy.ops.mattebox.matte())
        fg = helpers.image_array(bpy.data.images["Movie Foreground"])[..., :3]
        RESULT = {"clip_source": clip.source, "clip_diffs": clip_diffs, "image_diffs": image_diffs, "error": error,
                  "frames_differ": frames_differ, "matte_diff": float(np.abs(fg - expected(2)[..., :3]).max()),
                  "scenes": [sc.name for sc in bpy.data.scenes]}
    ''', endpoint=mattebox_server)
    assert result["clip_source"] == "MOVIE"
    assert result["frames_differ"] > 0.1  # the frames really differ, so reading the wrong one would fail
    # within one 8-bit code value (the sequencer's byte -> float -> byte trip while encoding the test movie), and
    # far from the other frames: the right frame, decoded
    assert max(result["clip_diffs"]) < 0.006, result["clip_diffs"]
    assert max(result["image_diffs"]) < 0.006, result["image_diffs"]
    assert result["error"] is None and result["matte_diff"] < 0.006
    assert result["scenes"] == ["Scene"]  # the decode scenes are gone


def test_modal_operator_steps_reports_and_cancels_with_esc(blender_python, tmp_path, server_process, monkeypatch):
    """The UI path: the operator's modal() driven by timer events and Esc, with Blender's real window manager
    (background Blender has no event loop, so the test plays the events; the operator's methods run unchanged)."""
    monkeypatch.setenv("MATTEBOX_ENGINES", SLOW_ENGINE)
    monkeypatch.setenv("MATTEBOX_TEST_STEPS", "40")
    monkeypatch.setenv("MATTEBOX_TEST_STEP_S", "0.25")  # 10 s per job: ESC lands mid-job however loaded the box
    endpoint = server_process().endpoint
    result = run_blender(blender_python, tmp_path, '''
        import types
        setup_scene(ARGS["endpoint"], engine="test-slow")
        op = ext.operators.MATTEBOX_OT_matte
        wm = bpy.context.window_manager
        def play(esc_after_progress):
            reports = []
            fake = types.SimpleNamespace(report=lambda kind, text: reports.append([sorted(kind)[0], text]))
            for name in ("_start", "_cleanup", "_end"):
                setattr(fake, name, getattr(op, name).__get__(fake))
            assert fake._start(bpy.context)
            fake._timer = wm.event_timer_add(0.1, window=None)
            wm.progress_begin(0, 1000)
            texts, outcome, t = [], None, time.monotonic()
            while time.monotonic() - t < 120:
                kind = "TIMER"
                if esc_after_progress and fake._run.last_event is not None:
                    kind = "ESC"
                outcome = op.modal(fake, bpy.context, types.SimpleNamespace(type=kind))
                texts.append(wm.mattebox_status.text)
                if outcome != {"RUNNING_MODAL"}:
                    break
                time.sleep(0.05)
            return {"outcome": sorted(outcome), "reports": reports, "active": ext.operators.active_run() is not None,
                    "running": wm.mattebox_status.running, "saw_stage": any("(1/1): work" in t for t in texts)}
        finished = play(False)
        images_after_finish = sorted(i.name for i in bpy.data.images if i.name.startswith("Matte "))
        bpy.context.scene.mattebox.quality = "fast"  # a new content key: the frame is not taken from the cache
        cancelled = play(True)
        RESULT = {"finished": finished, "cancelled": cancelled, "images": images_after_finish}
    ''', endpoint=endpoint)
    finished, cancelled = result["finished"], result["cancelled"]
    assert finished["outcome"] == ["FINISHED"] and finished["reports"][0][0] == "INFO"
    assert finished["saw_stage"]  # the status text followed the server's progress
    assert not finished["active"] and not finished["running"]
    assert result["images"] == ["Matte Alpha", "Matte Foreground", "Matte Trimap"]
    assert cancelled["outcome"] == ["CANCELLED"]
    assert cancelled["reports"] == [["WARNING", "Mattebox: cancelled"]]
    assert not cancelled["active"] and not cancelled["running"]


def _pids_with(marker: str) -> list:
    """Processes whose command line contains ``marker`` (our own detached server, found by its unique port)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    if marker.encode() in fh.read():
                        pids.append(int(entry))
            except OSError:
                continue
    return pids


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the started server through /proc")
def test_starts_a_local_server_when_none_answers(blender_python, tmp_path):
    endpoint = free_endpoint()
    command = " ".join([shlex.quote(sys.executable), "-m", "mattebox", "serve", "--device", "cpu"])
    env_prefix = f"env PYTHONPATH={shlex.quote(tree_env()['PYTHONPATH'])} "
    try:
        result = run_blender(blender_python, tmp_path, '''
            setup_scene(ARGS["endpoint"], engine="passthrough", auto_start=True, server_command=ARGS["command"])
            error, seconds = report_of(lambda: bpy.ops.mattebox.matte())
            RESULT = {"error": error, "seconds": seconds, "images": sorted(i.name for i in bpy.data.images)}
        ''', endpoint=endpoint, command=env_prefix + command)
        assert result["error"] is None
        assert "Matte Alpha" in result["images"]
        assert _pids_with(endpoint), "the started server should outlive Blender and serve later calls"
    finally:
        for pid in _pids_with(endpoint):
            os.kill(pid, signal.SIGTERM)


def test_check_server_uses_the_client_config(blender_python, tmp_path, mattebox_server):
    result = run_blender(blender_python, tmp_path, '''
        setup_scene(ARGS["endpoint"])
        RESULT = {"status": sorted(bpy.ops.mattebox.check_server())}
    ''', endpoint=mattebox_server)
    assert result["status"] == ["FINISHED"]


def test_unsaved_blend_results_go_to_a_named_temporary_folder(blender_python, tmp_path, mattebox_server):
    """Issue 19: an unsaved .blend's results went to Blender's per-session temp folder (deleted on quit) as
    .../mattebox/mattebox/..., without a word. Saved files keep the folder next to the .blend."""
    result = run_blender(blender_python, tmp_path, '''
        s, plate, inside = setup_scene(ARGS["endpoint"], engine="passthrough")
        s.output_dir = "//mattebox/"
        bpy.context.preferences.filepaths.temporary_directory = os.path.join(os.getcwd(), "tmp")
        runs = []
        unsaved_dir = ext.blender_io.output_directory(s)
        run_once(runs)
        os.makedirs("saved")
        bpy.ops.wm.save_as_mainfile(filepath=os.path.join(os.getcwd(), "saved", "shot.blend"))
        saved_dir = ext.blender_io.output_directory(s)
        run_once(runs)
        RESULT = {"runs": runs, "unsaved_dir": unsaved_dir, "saved_dir": saved_dir,
                  "files": sorted(os.listdir(unsaved_dir))}
    ''', endpoint=mattebox_server)
    assert result["unsaved_dir"] == str(tmp_path / "tmp" / "mattebox" / "Matte")
    assert "alpha_0001.exr" in result["files"]
    unsaved, saved = (run["report"] for run in result["runs"])
    assert f"files in {result['unsaved_dir']} (the .blend is not saved yet" in unsaved
    assert result["saved_dir"] == str(tmp_path / "saved" / "mattebox" / "Matte")
    assert f"files in {result['saved_dir']}" in saved and "not saved" not in saved
