"""The attack bench's own instruments (bench/support/attacks.py): the RSS watch that keeps attacks bounded, the folder
snapshot that decides whether anything outside mattebox's files changed, and the output checks. The attacks
themselves are measurements (their verdicts change as issue #17 is fixed) and run in the bench, not here."""
from __future__ import annotations

import subprocess
import sys

from bench.support.attacks import Watch, changed, clear, last_line, snapshot

GROW = "import sys, time; blocks = [b'x' * (16 << 20) for _ in range(int(sys.argv[1]))]; print('up', flush=True); " \
       "time.sleep(60)"


def _grower(mib: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", GROW, str(mib // 16)], stdout=subprocess.PIPE, text=True)


def test_watch_kills_a_process_past_its_cap():
    proc = _grower(512)
    watch = Watch(proc.pid, cap_mb=256)
    proc.wait(timeout=60)
    watch.stop()
    assert watch.killed and proc.returncode == -9
    assert watch.peak > 256


def test_watch_leaves_a_process_under_its_cap_and_reports_its_growth():
    proc = _grower(128)
    watch = Watch(proc.pid, cap_mb=1024)
    try:
        assert proc.stdout.readline().strip() == "up"
        watch.stop()
        assert not watch.killed and proc.poll() is None
        assert watch.peak > 128 and 0 < watch.growth < 1024
    finally:
        proc.kill()
        proc.wait()


def test_snapshot_notices_deleted_and_rewritten_files_not_new_ones(tmp_path):
    (tmp_path / "keep.txt").write_text("a")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "gone.txt").write_text("b")
    (tmp_path / "link").symlink_to(tmp_path / "keep.txt")
    before = snapshot(tmp_path)
    (tmp_path / "new.txt").write_text("c")
    assert changed(before, snapshot(tmp_path)) == []
    (tmp_path / "sub" / "gone.txt").unlink()
    (tmp_path / "link").write_text("written through the link")
    assert changed(before, snapshot(tmp_path)) == ["keep.txt", "sub/gone.txt"]


def test_output_checks_flag_tracebacks_and_mask_scratch_folders_and_ports():
    assert not clear("Traceback (most recent call last):\n  ...\nValueError: x")
    assert not clear("error: OpenCV(4.14.0) grabcut.cpp:386: error: (-215:Assertion failed)")
    assert clear("mattebox render: SCRATCH/plate.0002.png: no such file")
    import tempfile

    line = last_line(f"first\nno {tempfile.gettempdir()}/mattebox-attack-ab12/x.png at tcp://127.0.0.1:4242\n")
    assert line == "no SCRATCH/x.png at tcp://127.0.0.1:PORT"
