"""Headless farm render: `nuke -t farm.py --frames 1-3 --write comp` through the fake nuke, in a subprocess.

The subprocess starts like terminal-mode Nuke (tests/fakes/nuke_t.py): NUKE_PATH points at nodes/nuke, whose
init.py alone must make the node importable (no PYTHONPATH help), then the farm script opens the comp script,
mattes every Mattebox node over the frames and executes the comp's own Write.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from tests.support.fake_nuke import FAKE_NUKE_T, FARM_SCRIPT, NODE_DIR, NUKE_VERSIONS

sys.path.insert(0, str(NODE_DIR)) if str(NODE_DIR) not in sys.path else None
from mattebox_plugin import exr  # noqa: E402

OpenEXR = pytest.importorskip("OpenEXR", reason="the fake nuke's Read/Write use the OpenEXR bindings (dev extra)")
H, W = 24, 32

COMP = '''
import os
import nuke
from mattebox_nuke import node

nuke.root()["first_frame"].setValue(1)
nuke.root()["last_frame"].setValue(3)
plate = nuke.nodes.Read(name="plate", file={plate!r}, first=1, last=3)
mask = nuke.nodes.Read(name="mask", file={mask!r}, first=1, last=3)
matte = node.build(nuke.nodes.Group(name="Mattebox1"))  # a Group's pipes exist once its Input nodes do
matte.setInput(0, plate)
matte.setInput(2, mask)
matte["endpoint"].setValue(os.environ["TEST_ENDPOINT"])
matte["engine"].setValues(["auto", "passthrough"])
matte["engine"].setValue("passthrough")
matte["cache_dir"].setValue({cache!r})
out = nuke.nodes.Write(name="Write_comp", file={out!r}, inputs=[matte])
out["file_type"].setValue("exr")
out["datatype"].setValue("32 bit float")
out["channels"].setValue("all")
out["create_directories"].setValue(True)
'''


def _comp(tmp_path):
    rng = np.random.default_rng(5)
    plates, masks = {}, {}
    for f in (1, 2, 3):
        plates[f] = {c: rng.random((H, W)).astype(np.float32) for c in "RGB"}
        plates[f]["A"] = np.ones((H, W), np.float32)
        masks[f] = {"A": (rng.random((H, W)) > 0.5).astype(np.float32)}
        exr.write(str(tmp_path / f"plate.{f:04d}.exr"), W, H, plates[f], "zips")
        exr.write(str(tmp_path / f"mask.{f:04d}.exr"), W, H, masks[f], "none")
    script = tmp_path / "comp.py"
    script.write_text(COMP.format(plate=str(tmp_path / "plate.####.exr"), mask=str(tmp_path / "mask.####.exr"),
                                  cache=str(tmp_path / "cache"), out=str(tmp_path / "out" / "comp.####.exr")))
    return script, plates, masks


def _run(tmp_path, script, endpoint, *extra, version="15.1"):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MATTEBOX_ENDPOINT")}
    env["FAKE_NUKE_API"] = version  # the Nuke whose API reference the fake enforces
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env.update(HOME=str(home), NUKE_PATH=str(NODE_DIR), TEST_ENDPOINT=endpoint,
               MATTEBOX_CONFIG=str(tmp_path / "client.json"))
    return subprocess.run([sys.executable, str(FAKE_NUKE_T), str(FARM_SCRIPT), "--frames", "1-3", *extra,
                           str(script)], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("version", NUKE_VERSIONS)
def test_farm_render_mattes_then_writes(tmp_path, mattebox_server, version):
    script, plates, masks = _comp(tmp_path)
    proc = _run(tmp_path, script, mattebox_server, "--write", version=version)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "matted 1 node(s) over 3 frame(s)" in proc.stdout
    for f in (1, 2, 3):
        image = exr.read(str(tmp_path / "out" / f"comp.{f:04d}.exr"))
        assert np.array_equal(image.planes["A"], masks[f]["A"])
        for c in "RGB":
            assert np.array_equal(image.planes[c], plates[f][c])
        assert "mattebox.trimap" in image.planes
    # a second farm task over the same frames reuses the cached results
    again = _run(tmp_path, script, mattebox_server, version=version)
    assert again.returncode == 0 and "(3 from cache)" in again.stdout


def test_farm_fails_loudly_when_the_server_is_down(tmp_path, down_endpoint):
    endpoint = down_endpoint
    script, _, _ = _comp(tmp_path)
    proc = _run(tmp_path, script, endpoint, "--write")
    assert proc.returncode == 1
    assert f"Mattebox1 failed: no mattebox server at {endpoint}" in proc.stderr
    assert not (tmp_path / "out").exists()  # nothing rendered black
