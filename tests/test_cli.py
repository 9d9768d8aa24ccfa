"""The `mattebox` command line end to end: matte on real data through a real server, doctor, help, and the
classical path staying free of torch."""
from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from mattebox.imageio import read_gray, read_image, write_png
from mattebox.paths import alphamatting_dir

from .conftest import tree_env
from .support.matte import matte_in_fresh_process

DATA = alphamatting_dir()
needs_data = pytest.mark.skipif(DATA is None, reason="../shared/data/alphamatting-dev is absent")


def mattebox(*args, timeout=300, **env):
    return subprocess.run([sys.executable, "-m", "mattebox", *args], env=tree_env(**env), capture_output=True,
                          text=True, timeout=timeout)


@needs_data
def test_matte_alphamatting_image_through_a_running_server(mattebox_server, tmp_path):
    image, trimap = DATA / "image" / "GT05.png", DATA / "trimap1" / "GT05.png"
    proc = mattebox("matte", str(image), "--trimap", str(trimap), "--endpoint", mattebox_server, "--out",
                    str(tmp_path), "--quiet")
    assert proc.returncode == 0, proc.stderr
    alpha_exr, _ = read_image(str(tmp_path / "GT05_alpha.exr"))
    gt = read_gray(str(DATA / "alpha" / "GT05.png"))
    tri = read_gray(str(trimap))
    unknown = np.abs(tri - 0.5) < 0.1
    assert alpha_exr.shape == gt.shape and alpha_exr.dtype == np.float32
    sad = np.abs(alpha_exr - gt)[unknown].sum() / 1000
    assert sad < 20, f"SAD {sad:.1f} on GT05/trimap1 is far worse than the closed-form solution (~5)"
    fg, space = read_image(str(tmp_path / "GT05_fg.exr"))
    assert space == "linear" and fg.shape == (*gt.shape, 3)
    for name in ("GT05_alpha.png", "GT05_fg_premult.png", "GT05_trimap.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_matte_without_a_server_runs_in_process_without_torch(tmp_path):
    """With no server running, `matte` runs the engine in its own process, with no server thread or sockets (the
    server module is never imported, nor pyzmq: no socket is opened); the classical path never imports torch."""
    rng = np.random.default_rng(0)
    image = np.zeros((64, 80, 3), np.float32) + rng.random((1, 1, 3), dtype=np.float32) * 0.3
    image[16:48, 20:60] = [0.9, 0.7, 0.2]
    mask = np.zeros((64, 80), np.float32)
    mask[16:48, 20:60] = 1
    write_png(str(tmp_path / "plate.png"), image)
    write_png(str(tmp_path / "mask.png"), mask)
    _, modules = matte_in_fresh_process(str(tmp_path / "plate.png"), "--mask", str(tmp_path / "mask.png"),
                                        "--out", str(tmp_path / "out"))
    assert "torch" not in modules, "torch was imported on the classical path"
    assert not {"mattebox.server", "zmq"} & modules, "a server or a socket was started for a one-off --local matte"
    alpha = read_gray(str(tmp_path / "out" / "plate_alpha.exr"))
    assert alpha[32, 40] > 0.95 and alpha[2, 2] < 0.05


def test_matte_reports_unreadable_input_clearly(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not a png")
    proc = mattebox("matte", str(tmp_path / "bad.png"), "--local")
    assert proc.returncode == 2 and "not an image" in proc.stderr


def test_matte_in_process_refuses_an_unknown_engine_naming_the_field(tmp_path):
    write_png(str(tmp_path / "plate.png"), np.zeros((20, 30, 3), np.float32))
    proc = mattebox("matte", str(tmp_path / "plate.png"), "--engine", "nope", "--local", "--quiet")
    assert proc.returncode == 1 and "unknown_engine" in proc.stderr and "params.engine" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_matte_reports_mismatched_mask_naming_the_field(tmp_path):
    write_png(str(tmp_path / "plate.png"), np.zeros((20, 30, 3), np.float32))
    write_png(str(tmp_path / "mask.png"), np.zeros((10, 30), np.float32))
    proc = mattebox("matte", str(tmp_path / "plate.png"), "--mask", str(tmp_path / "mask.png"), "--local")
    assert proc.returncode == 1 and "shape_mismatch" in proc.stderr and "buffers.1.shape" in proc.stderr


def test_doctor_reports_versions_and_reachability(mattebox_server):
    proc = mattebox("doctor", "--endpoint", mattebox_server)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "pyzmq" in proc.stdout and "classical" in proc.stdout
    assert "kernels      ahead-of-time" in proc.stdout or "kernels      numba JIT" in proc.stdout
    assert re.search(r"threads      \d+", proc.stdout)
    typo = mattebox("doctor", "--endpoint", mattebox_server, MATTEBOX_THREADS="many")
    assert "threads      MATTEBOX_THREADS: expected a whole number of threads, got 'many'" in typo.stdout
    down = mattebox("doctor", "--endpoint", "tcp://127.0.0.1:9", "--timeout", "0.5")
    assert down.returncode == 1 and "no answer" in down.stdout


def test_help_lists_every_command():
    from mattebox.cli import COMMANDS

    proc = mattebox("--help")
    assert proc.returncode == 0
    for name in COMMANDS:
        assert name in proc.stdout


def test_install_and_uninstall_forward_to_the_host_installer(tmp_path):
    target = tmp_path / "plug-ins"
    proc = mattebox("install", "gimp", "--target", str(target), "--vendor", "never", "--no-config")
    assert proc.returncode == 0, proc.stderr
    assert (target / "mattebox" / "mattebox.py").is_file()
    proc = mattebox("uninstall", "gimp", "--target", str(target))
    assert proc.returncode == 0 and not (target / "mattebox").exists()


def test_matte_with_a_second_frame_says_whether_the_pair_helped(tmp_path, capsys):
    from mattebox.cli import main
    from mattebox.colour import linear_to_srgb
    from mattebox.synth.pairs import make_pair

    pair = make_pair(11, size=(96, 128), real_alpha=False)
    for name, frame in (("a.png", pair.image), ("b.png", pair.second)):
        write_png(str(tmp_path / name), linear_to_srgb(frame))
    write_png(str(tmp_path / "t.png"), pair.trimap)
    common = ["--trimap", str(tmp_path / "t.png"), "--local", "--quiet", "--quality", "fast"]
    assert main(["matte", str(tmp_path / "a.png"), "--second", str(tmp_path / "b.png"), *common,
                 "--out", str(tmp_path / "pair")]) == 0
    assert "second frame used: known background behind" in capsys.readouterr().out
    # the same frame twice: no parallax, so the engine says why it gave the single-frame result
    assert main(["matte", str(tmp_path / "a.png"), "--second", str(tmp_path / "a.png"), *common,
                 "--out", str(tmp_path / "same")]) == 0
    out = capsys.readouterr().out
    assert "second frame not used:" in out and "0.00 px apart" in out


def test_matte_with_a_clean_plate_keys_the_difference(tmp_path, capsys):
    from mattebox.cli import main
    from mattebox.colour import linear_to_srgb
    from mattebox.synth.pairs import make_pair

    pair = make_pair(12, size=(96, 128), real_alpha=False)
    write_png(str(tmp_path / "shot.png"), linear_to_srgb(pair.image))
    write_png(str(tmp_path / "plate.png"), linear_to_srgb(pair.background))
    assert main(["matte", str(tmp_path / "shot.png"), "--background", str(tmp_path / "plate.png"), "--local",
                 "--quiet", "--quality", "fast", "--out", str(tmp_path / "out")]) == 0
    assert "guidance plate:difference" in capsys.readouterr().out
    alpha = read_gray(str(tmp_path / "out" / "shot_alpha.exr"))
    truth = pair.alpha >= 0.5
    assert ((alpha >= 0.5) & truth).sum() / ((alpha >= 0.5) | truth).sum() > 0.7


@pytest.mark.parametrize("host", ["gimp", "blender", "nuke"])
def test_host_installer_help_names_the_mattebox_command(host):
    """`mattebox install HOST --help` reads as the command the user typed, not `python -m mattebox_installers...`."""
    for action, shown in (("install", "install"), ("uninstall", "uninstall"), ("host-doctor", "host-doctor")):
        out = mattebox(action, host, "--help")
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith(f"usage: mattebox {shown} {host} "), out.stdout[:80]


def test_matte_writes_only_the_files_asked_for(tmp_path, capsys):
    """--write picks files from the five (a compositor takes the EXRs, a web user the PNGs); the alpha written
    is the same either way, and a bad list is refused naming the option and the choices, before any work."""
    from mattebox.cli import main
    from mattebox.colour import linear_to_srgb
    from mattebox.synth.pairs import make_pair

    pair = make_pair(13, size=(96, 128), real_alpha=False)
    write_png(str(tmp_path / "shot.png"), linear_to_srgb(pair.image))
    write_png(str(tmp_path / "t.png"), pair.trimap)
    common = [str(tmp_path / "shot.png"), "--trimap", str(tmp_path / "t.png"), "--local", "--quiet",
              "--quality", "fast"]
    assert main(["matte", *common, "--out", str(tmp_path / "all")]) == 0
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == [
        "shot_alpha.exr", "shot_alpha.png", "shot_fg.exr", "shot_fg_premult.png", "shot_trimap.png"]
    assert main(["matte", *common, "--out", str(tmp_path / "two"), "--write", "alpha.exr, fg_premult.png"]) == 0
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["shot_alpha.exr", "shot_fg_premult.png"]
    np.testing.assert_array_equal(read_gray(str(tmp_path / "two" / "shot_alpha.exr")),
                                  read_gray(str(tmp_path / "all" / "shot_alpha.exr")))
    capsys.readouterr()
    for bad in ("alpha.tif", ","):
        with pytest.raises(SystemExit) as exc:
            main(["matte", *common, "--out", str(tmp_path / "bad"), "--write", bad])
        assert exc.value.code == 2
        assert "--write: expected a comma-separated list of alpha.exr, alpha.png" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
