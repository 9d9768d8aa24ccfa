"""`mattebox render`: frame patterns, chunks, resumable re-runs, through a real server."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from mattebox.commands.render import chunk_of, frame_path, parse_frames
from mattebox.imageio import read_gray, write_png

from .conftest import tree_env


def test_patterns_ranges_and_chunks():
    assert frame_path("a/shot.####.exr", 7) == "a/shot.0007.exr"
    assert frame_path("shot.%04d.png", 12) == "shot.0012.png"
    assert parse_frames("1001-1005") == [1001, 1002, 1003, 1004, 1005]
    assert parse_frames("1-9x4") == [1, 5, 9]
    frames = parse_frames("1-10")
    slices = [chunk_of(frames, f"{k}/3") for k in (1, 2, 3)]
    assert sum(slices, []) == frames and all(slices)
    with pytest.raises(ValueError, match="--chunk"):
        chunk_of(frames, "4/3")
    with pytest.raises(ValueError, match="no frame number"):
        frame_path("shot.exr", 1)


def test_render_a_range_is_resumable(mattebox_server, tmp_path):
    for frame in (1, 2, 3):
        image = np.full((40, 50, 3), 0.2, np.float32)
        image[10:30, 12 + frame:38 + frame] = [0.9, 0.6, 0.3]
        mask = np.zeros((40, 50), np.float32)
        mask[10:30, 12 + frame:38 + frame] = 1
        write_png(str(tmp_path / f"plate.{frame:04d}.png"), image)
        write_png(str(tmp_path / f"mask.{frame:04d}.png"), mask)
    cmd = [sys.executable, "-m", "mattebox", "render", str(tmp_path / "plate.####.png"), "--frames", "1-3",
           "--mask", str(tmp_path / "mask.####.png"), "--alpha", str(tmp_path / "out" / "alpha.####.exr"),
           "--foreground", str(tmp_path / "out" / "fg.####.exr"), "--endpoint", mattebox_server]
    first = subprocess.run(cmd, env=tree_env(), capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "rendered 3, up to date 0" in first.stdout
    alpha = read_gray(str(tmp_path / "out" / "alpha.0002.exr"))
    assert alpha[20, 25] > 0.95 and alpha[2, 2] < 0.05
    record = json.loads((tmp_path / "out" / "alpha.0002.exr.json").read_text())
    assert record["frame"] == 2 and len(record["inputs_sha256"]) == 64
    write_png(str(tmp_path / "mask.0003.png"), np.ones((40, 50), np.float32))  # frame 3's input changed
    again = subprocess.run(cmd, env=tree_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "rendered 1, up to date 2" in again.stdout, again.stdout
