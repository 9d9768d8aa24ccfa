"""The fake nuke itself: that it refuses what Nuke would, and behaves as Nuke does in the cases the node depends on.

A double that accepts what Nuke refuses makes the node's tests pass for code that fails in Nuke (issue #19: an
empty Group took 99 inputs), so these tests pin the fake's strictness down.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.support.fake_nuke import FAKES, fake_nuke_fixture, plate_frames  # noqa: F401


def _generator():
    import importlib.util

    spec = importlib.util.spec_from_file_location("nuke_api_gen", FAKES / "nuke_api_gen.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    return gen


def test_committed_whitelist_is_what_the_generator_makes():
    assert json.loads((FAKES / "nuke_api.json").read_text(encoding="utf-8")) == _generator().build()


def test_every_entry_says_how_it_was_verified():
    """Each function and class carries its evidence; what no page verifies is listed in docs/hosts/nuke.md, and an
    UNVERIFIED note without the searches tried does not build."""
    gen = _generator()
    api = gen.build()
    for entry in api["versions"].values():
        for name, fn in entry["functions"].items():
            assert fn["evidence"] in ("page", "call", "unverified"), name
            assert fn["evidence"] == "page" or fn["source"].split(" ", 1)[0] in ("CALL", "UNVERIFIED"), name
    weak = gen.weak_entries(api)
    assert "nuke.message" not in weak and weak["nuke.scriptOpen"] == "unverified"
    assert weak["Menu.addCommand"] == "call (13.2 14.0)"  # 15.1 and 16.0 have the MenuBar page's signature
    doc = (FAKES.parent.parent / "docs" / "hosts" / "nuke.md").read_text(encoding="utf-8")
    assert [name for name in weak if f"`{name}`" not in doc] == []
    with pytest.raises(ValueError, match="searches tried"):
        gen.build("# UNVERIFIED nuke.nothing (no page)\nnuke.nothing()\n")
    with pytest.raises(ValueError, match="unclosed"):
        gen.build("# ref:160/nuke.x\nnuke.x(a,\n")


def test_names_outside_the_reference_are_refused(fake_nuke):
    nuke = fake_nuke
    with pytest.raises(AttributeError, match="no attribute 'createNodes'"):
        nuke.createNodes  # noqa: B018  (a typo Nuke would refuse too)
    group = nuke.nodes.Group()
    with pytest.raises(AttributeError, match="'Group' object has no attribute 'parent'"):
        group.parent  # noqa: B018
    with pytest.raises(AttributeError, match="'File_Knob' object has no attribute 'evaluated'"):
        nuke.nodes.Read()["file"].evaluated  # noqa: B018
    with pytest.raises(TypeError, match="missing a required argument: 'items'"):
        nuke.Enumeration_Knob("engine", "engine")  # constructors are checked where the reference lists them
    assert nuke.PyScript_Knob("go", "Go", "print(1)").value() == "print(1)"
    assert nuke.fake is not None and callable(nuke.nodes.Read)  # the test hooks and node constructors stay


@pytest.mark.parametrize("version, ok", [("13.2", False), ("14.0", False), ("15.1", False), ("16.0", True)])
def test_signatures_follow_the_version(fake_nuke, version, ok):
    """createNode's second parameter is 'args' up to 15.1 and 'knobs' in 16.0; selectedNodes gained
    'recursive' in 15.1."""
    nuke = fake_nuke
    nuke.fake.use_api(version)
    if ok:
        assert nuke.createNode("NoOp", knobs="").Class() == "NoOp"
    else:
        with pytest.raises(TypeError, match="unexpected keyword argument 'knobs'"):
            nuke.createNode("NoOp", knobs="")
    if version in ("13.2", "14.0"):
        with pytest.raises(TypeError, match="recursive"):
            nuke.selectedNodes(recursive=True)
    else:
        assert nuke.selectedNodes(recursive=True) == nuke.selectedNodes()
    with pytest.raises(RuntimeError, match="GUI"):
        nuke.menu("Nuke")  # terminal mode, as the fixture starts
    nuke.fake.reset(gui=True)
    menu = nuke.menu("Nuke")
    if version in ("13.2", "14.0"):  # addCommand's 'node' first appears on the 15.0 MenuBar page
        with pytest.raises(TypeError, match="'node'"):
            menu.addCommand("Edit/X", "pass", node=None)
    else:
        assert menu.addCommand("Edit/X", "pass", node=None).name() == "X"
    with pytest.raises(TypeError, match="too many positional arguments"):
        nuke.nodes.Group().setInput(0, None, 1)
    assert nuke.env["NukeVersionMajor"] == int(version.split(".")[0])


def test_a_group_has_one_input_pipe_per_input_node(fake_nuke):
    nuke = fake_nuke
    source = nuke.nodes.NoOp()
    group = nuke.nodes.Group()
    assert group.maxInputs() == 0 and group.setInput(0, source) is False and group.input(0) is None
    source.setSelected(True)
    created = nuke.createNode("Group", "", False)
    assert created.input(0) is None  # createNode below the selection cannot connect an empty Group
    with group:
        nuke.nodes.Input()
    assert group.maxInputs() == 1 and group.setInput(0, source) is True and group.input(0) is source
    assert group.setInput(1, source) is False


def test_exr_knobs_exist_only_once_file_type_is_exr(fake_nuke):
    write = fake_nuke.nodes.Write()
    assert write.knob("compression") is None and write.knob("datatype") is None
    with pytest.raises(NameError):
        write["datatype"].setValue("32 bit float")
    write["file_type"].setValue("exr")
    assert write["compression"].value() == "Zip (1 scanline)" and write["datatype"].value() == "16 bit half"
    assert write.knob("metadata") is not None
    write["file_type"].setValue("png")
    assert write.knob("compression") is None


def test_file_knobs_are_tcl_evaluated(fake_nuke, tmp_path):
    from mattebox_plugin import exr

    folder = tmp_path / "a [b] $c"
    folder.mkdir()
    exr.write(str(folder / "p.0001.exr"), 4, 2, {"R": np.ones((2, 4), np.float32)}, "none")
    read = fake_nuke.nodes.Read(on_error="error")
    read["file"].setValue(f"{folder}/p.####.exr")
    with pytest.raises(RuntimeError, match='invalid command name "b"'):
        read._render(1)
    read["file"].setValue(str(folder).replace("[", "\\[").replace("]", "\\]") + "/p.####.exr")
    with pytest.raises(RuntimeError, match="can't read \"c\": no such variable"):
        read._render(1)
    read["file"].setValue(f"{tmp_path}/a \\[b\\] \\$c/p.####.exr")
    assert read["file"].evaluate() == f"{folder}/p.####.exr"
    assert float(read._render(1)["rgba.red"].min()) == 1.0


def test_set_value_sets_the_text_and_from_user_text_the_format_and_range(fake_nuke, tmp_path):
    from mattebox_plugin import exr

    for f in (3, 4, 5):
        exr.write(str(tmp_path / f"p.{f:04d}.exr"), 6, 2, {"R": np.zeros((2, 6), np.float32)}, "none", 2.0)
    pattern = f"{tmp_path}/p.####.exr"
    read = fake_nuke.nodes.Read()
    read["file"].setValue(pattern)
    assert (read.firstFrame(), read.lastFrame(), read.format().width(), read.pixelAspect()) == (1, 1, 64, 1.0)
    read["file"].fromUserText(pattern)
    assert (read.firstFrame(), read.lastFrame(), read.format().width(), read.pixelAspect()) == (3, 5, 6, 2.0)
    read["file"].fromUserText(f"{pattern} 4-4")
    assert (read["file"].value(), read.firstFrame(), read.lastFrame()) == (pattern, 4, 4)


def _stereo_write(nuke, tmp_path, name):
    nuke.fake.set_views(["left", "right"])
    left, right = plate_frames([1], 4, 6, seed=1), plate_frames([1], 4, 6, seed=2)
    source = nuke.nodes.FakeSource(frames=left, views={"left": left, "right": right})
    write = nuke.nodes.Write(inputs=[source])
    write["file"].setValue(str(tmp_path / name))
    write["file_type"].setValue("exr")
    write["datatype"].setValue("32 bit float")
    return write


def test_execute_renders_every_view_unless_told(fake_nuke, tmp_path):
    nuke = fake_nuke
    write = _stereo_write(nuke, tmp_path, "one.####.exr")
    nuke.execute(write, 1, 1)
    assert nuke.fake.overwritten == [(str(tmp_path / "one.0001.exr"), "left", "right")]
    nuke.fake.overwritten.clear()
    nuke.executeMultiple((write,), ((1, 1, 1),), ["left"])
    assert not nuke.fake.overwritten
    write["file"].setValue(str(tmp_path / "eye_%V.####.exr"))
    nuke.execute(write, 1, 1)
    assert not nuke.fake.overwritten
    assert (tmp_path / "eye_left.0001.exr").is_file() and (tmp_path / "eye_right.0001.exr").is_file()
    with pytest.raises(ValueError, match="not in the script"):
        nuke.executeMultiple((write,), ((1, 1, 1),), ["main"])


def test_execute_is_cancellable(fake_nuke, tmp_path):
    nuke = fake_nuke
    write = _stereo_write(nuke, tmp_path, "c.####.exr")
    nuke.fake.cancel_requested.set()  # the user presses cancel on the render progress bar
    with pytest.raises(RuntimeError, match="^Cancelled$"):
        nuke.execute(write, 1, 3)
    assert not list(tmp_path.glob("c.*.exr"))


def test_root_name_is_root_until_saved(fake_nuke, tmp_path):
    nuke = fake_nuke
    assert nuke.root().name() == "Root"
    with pytest.raises(RuntimeError):
        nuke.scriptName()
    nuke.nodes.NoOp(name="Keep")
    nuke.scriptSaveAs(str(tmp_path / "a.nk"))
    assert nuke.root().name() == nuke.scriptName() == str(tmp_path / "a.nk")
    with pytest.raises(RuntimeError, match="already exists"):
        nuke.scriptSaveAs(str(tmp_path / "a.nk"))
    nuke.scriptClear()
    assert nuke.root().name() == "Root" and nuke.toNode("Keep") is None
    nuke.scriptOpen(str(tmp_path / "a.nk"))
    assert nuke.toNode("Keep").Class() == "NoOp"
