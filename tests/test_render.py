"""`mattebox render`: frame patterns, chunks, resumable re-runs, through a real server."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from mattebox.commands.frames import frame_path
from mattebox.commands.render import MAX_FRAMES, chunk_of, parse_frames
from mattebox.imageio import read_gray, write_png
from mattebox.testing.engines import SLOW_ENGINE

from .conftest import tree_env


def test_patterns_ranges_and_chunks():
    assert frame_path("a/shot.####.exr", 7) == "a/shot.0007.exr"
    assert frame_path("shot.%04d.png", 12) == "shot.0012.png"
    assert list(parse_frames("1001-1005")) == [1001, 1002, 1003, 1004, 1005]
    assert list(parse_frames("1-9x4")) == [1, 5, 9]
    assert list(parse_frames("1-3,7")) == [1, 2, 3, 7]  # the hosts' grammar (mattebox_plugin.frames)
    with pytest.raises(ValueError, match="^--frames: cannot read 'x'"):
        parse_frames("1-3,x")
    frames = parse_frames("1-10")
    slices = [chunk_of(frames, f"{k}/3") for k in (1, 2, 3)]
    assert [f for s in slices for f in s] == list(frames) and all(slices)
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


def test_a_huge_frame_range_is_refused_and_no_range_is_materialised():
    """The issue's `--frames 1-300000000` built a 300M-element list (11.8 GB); now it is refused by its size and
    every range stays a range, chunks included."""
    with pytest.raises(ValueError, match=r"300000000 frames, over the limit of 1000000"):
        parse_frames("1-300000000")
    frames = parse_frames(f"1-{MAX_FRAMES}")
    assert frames.ranges == (range(1, MAX_FRAMES + 1),)
    assert chunk_of(frames, "2/3").ranges == (range(MAX_FRAMES // 3 + 1, 2 * MAX_FRAMES // 3 + 1),)
    proc = subprocess.run([sys.executable, "-m", "mattebox", "render", "p.####.png", "--frames", "1-300000000",
                           "--alpha", "a.####.png", "--local"], env=tree_env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "over the limit" in proc.stderr and "Traceback" not in proc.stderr


def _plates(folder, frames):
    for frame in frames:
        write_png(str(folder / f"plate.{frame:04d}.png"), np.full((12, 16, 3), 0.5, np.float32))
        write_png(str(folder / f"mask.{frame:04d}.png"), np.full((12, 16), 0.75, np.float32))


def _render_cmd(folder, frames, *extra, python=("-m", "mattebox")):
    return [sys.executable, *python, "render", str(folder / "plate.####.png"), "--frames", frames,
            "--mask", str(folder / "mask.####.png"), "--alpha", str(folder / "out" / "alpha.####.png"),
            "--engine", "passthrough", "--local", *extra]


def _render(folder, frames, *extra, python=("-m", "mattebox")):
    return subprocess.run(_render_cmd(folder, frames, *extra, python=python), env=tree_env(), capture_output=True,
                          text=True, timeout=300)


#: `python -c` that runs the CLI with its local server claiming another version (a server upgrade)
UPGRADED = ("-c", "import sys, mattebox.server as s; s.__version__ = '99.0'; from mattebox.cli import main; "
                  "sys.exit(main(sys.argv[1:]))")


def test_a_restarted_server_reuses_frames_and_an_upgraded_one_remattes(tmp_path):
    """The sidecar key is FrameRun's content key: every --local run is a new server (a restart), which reuses
    unchanged frames; a server with another version re-mattes them and records the hello it made them under."""
    _plates(tmp_path, (1, 2))
    assert "rendered 2, up to date 0" in _render(tmp_path, "1-2").stdout
    restarted = _render(tmp_path, "1-2")
    assert restarted.returncode == 0 and "rendered 0, up to date 2" in restarted.stdout, restarted.stderr
    assert "frame 1: up to date" in restarted.stdout
    upgraded = _render(tmp_path, "1-2", python=UPGRADED)
    assert upgraded.returncode == 0 and "rendered 2, up to date 0" in upgraded.stdout, upgraded.stderr
    record = json.loads((tmp_path / "out" / "alpha.0001.png.json").read_text())
    assert record["made_under"]["server_version"] == "99.0"
    with_foreground = _render(tmp_path, "1-2", "--foreground", str(tmp_path / "out" / "fg.####.png"))
    assert "rendered 2, up to date 0" in with_foreground.stdout, with_foreground.stderr  # a new output: re-matted
    assert (tmp_path / "out" / "fg.0002.png").is_file()



def test_a_named_server_that_is_down_still_counts_up_to_date_frames(tmp_path):
    """`render --endpoint E` with nothing answering at E: frames whose sidecars are up to date are done (exit 0,
    said so, at once: no wait for the time-out), and the first frame that needs the server stops the run, named."""
    from mattebox.testing.servers import free_endpoint

    _plates(tmp_path, (1, 2, 3))
    assert _render(tmp_path, "1-2").returncode == 0
    command = [arg for arg in _render_cmd(tmp_path, "1-2") if arg != "--local"]
    down = ["--endpoint", free_endpoint(), "--timeout", "600"]
    done = subprocess.run(command + down, env=tree_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "rendered 0, up to date 2, of 2 frames" in done.stdout, done.stderr
    assert "server not reachable: no server answers at" in done.stderr
    command[command.index("1-2")] = "1-3"
    stopped = subprocess.run(command + down, env=tree_env(), capture_output=True, text=True, timeout=300)
    assert stopped.returncode == 1, stopped.stderr
    assert "frame 3: not in the cache, and the server is not reachable" in stopped.stderr
    assert not (tmp_path / "out" / "alpha.0003.png").exists()

def test_ctrl_c_cancels_the_frame_on_the_server_and_says_where_to_resume(tmp_path):
    _plates(tmp_path, (1, 2))
    log = tmp_path / "engine.log"
    env = tree_env(MATTEBOX_ENGINES=SLOW_ENGINE, MATTEBOX_TEST_STEPS="4000",
                   MATTEBOX_TEST_RUN_LOG=str(log))
    cmd = _render_cmd(tmp_path, "1-2")
    cmd[cmd.index("passthrough")] = "test-slow"
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (log.exists() and "start" in log.read_text()):  # the engine is working on frame 1
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert "mattebox render: cancelled" in err and "stopped at frame 1 (0 rendered" in err
    assert "end" not in log.read_text()  # the server stopped the job rather than finishing it
    assert not (tmp_path / "out" / "alpha.0001.png").exists()


def test_a_missing_frame_is_named_and_a_rerun_resumes(tmp_path):
    _plates(tmp_path, (1, 2, 4))
    first = _render(tmp_path, "1-4")
    assert first.returncode == 2 and "Traceback" not in first.stderr, first.stderr
    assert f"frame 3: {tmp_path / 'plate.0003.png'}: no such file" in first.stderr
    assert "2 rendered and 0 up to date before it" in first.stderr
    assert (tmp_path / "out" / "alpha.0002.png").is_file() and not (tmp_path / "out" / "alpha.0004.png").exists()
    _plates(tmp_path, (3,))
    again = _render(tmp_path, "1-4")
    assert again.returncode == 0 and "rendered 2, up to date 2" in again.stdout, again.stdout + again.stderr


def test_outputs_never_write_through_a_link_planted_at_the_output_path(tmp_path):
    _plates(tmp_path, (1, 2))
    (tmp_path / "out").mkdir()
    victim, other = tmp_path / "victim.txt", tmp_path / "other.txt"
    victim.write_text("precious")
    other.write_text("also precious")
    (tmp_path / "out" / "alpha.0001.png").symlink_to(victim)
    os.link(other, tmp_path / "out" / "alpha.0002.png")  # a hard link: replaced, never written into
    proc = _render(tmp_path, "1-2")
    assert proc.returncode == 2 and "is a symbolic link" in proc.stderr and "Traceback" not in proc.stderr
    assert victim.read_text() == "precious"
    (tmp_path / "out" / "alpha.0001.png").unlink()
    proc = _render(tmp_path, "1-2")
    assert proc.returncode == 0, proc.stderr
    assert other.read_text() == "also precious"
    assert read_gray(str(tmp_path / "out" / "alpha.0002.png"))[5, 5] == pytest.approx(0.75, abs=0.01)
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".part")]


def _args(folder, *extra):
    from mattebox.cli import build_parser

    return build_parser("render").parse_args(_render_cmd(folder, "1-2", *extra)[3:])


def test_the_sidecars_are_a_frame_run_cache_that_works_with_no_server(tmp_path, embedded_server):
    """FrameFiles in process: a run against a server records each frame's key and hello in its sidecar; a run whose
    server cannot be reached reuses the unchanged frames from them and says why; --force reuses nothing."""
    from mattebox_plugin.client import Client, ServerUnavailable
    from mattebox_plugin.run import FAILED, FINISHED, FrameRun

    from mattebox.commands.render import FrameFiles

    _plates(tmp_path, (1, 2))
    files = FrameFiles(_args(tmp_path))
    endpoint = embedded_server.bound_endpoint
    run = FrameRun([1, 2], lambda: Client(endpoint, timeout=60), files.read, files.write, cache=files,
                   outputs=files.outputs)
    assert run.wait(timeout=120) == FINISHED and run.computed == [1, 2], run.error
    assert files.made_under(2)["server_version"] == run.hello["server_version"]

    def unreachable():
        raise ServerUnavailable("no mattebox server at tcp://127.0.0.1:9")

    offline = FrameRun([1, 2], unreachable, files.read, files.write, cache=files, outputs=files.outputs)
    assert offline.wait(timeout=120) == FINISHED and offline.reused == [1, 2]
    assert "server not reachable: no mattebox server" in offline.offline_note()
    forced = FrameFiles(_args(tmp_path, "--force"))
    offline = FrameRun([1, 2], unreachable, forced.read, forced.write, cache=forced, outputs=forced.outputs)
    assert offline.wait(timeout=120) == FAILED and "no mattebox server" in offline.error
