"""mattebox.heap: glibc's allocator held for one-frame processes, and `mattebox matte` asking for it."""
from __future__ import annotations

import platform
import subprocess
import sys

import numpy as np
import pytest

from mattebox import heap

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt")
def test_a_process_that_holds_freed_memory_reuses_its_pages_instead_of_faulting_fresh_ones():
    """After hold_freed_memory, a matte's temporaries (four 8 MiB arrays made and dropped, ten times over) come
    back from the heap: ~no page faults, where glibc's defaults fault ~20 000 fresh pages in (each array its own
    mmap, given back when freed)."""
    script = """
import resource, sys
import numpy as np
from mattebox import heap
held = heap.hold_freed_memory() if sys.argv[1] == "held" else False
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def frame():
    arrays = [np.ones(1 << 20) for _ in range(4)]
    del arrays
frame()
before = faults()
for _ in range(10):
    frame()
print(held, faults() - before)
"""
    runs = {}
    for mode in ("held", "default"):
        out = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, check=True)
        held, faults = out.stdout.split()
        runs[mode] = (held == "True", int(faults))
    assert runs["held"][0]
    assert runs["held"][1] < 1000 and runs["default"][1] > 5 * 2048  # of 10 rounds x 4 x 2048 pages: a quarter


def test_hold_and_trim_do_nothing_where_the_c_library_is_not_glibc(monkeypatch):
    monkeypatch.setattr(heap, "_libc", False)
    assert heap.hold_freed_memory() is False
    heap.trim()  # no error


@pytest.mark.parametrize("hold_pixels, held", [(40 * 50, True), (40 * 50 + 1, False)])
def test_mattebox_matte_holds_freed_memory_for_big_frames_before_the_engine_runs(tmp_path, monkeypatch, hold_pixels,
                                                                                  held):
    """From HOLD_PIXELS on (here lowered to the test frame's size), after reading its files and before the engine
    runs; below it, never (small frames gained no time and lost peak memory to fragmentation)."""
    from mattebox.cli import main
    from mattebox.imageio import write_png
    from mattebox.jobs import run_engine

    calls = []
    monkeypatch.setattr(heap, "HOLD_PIXELS", hold_pixels)
    monkeypatch.setattr(heap, "hold_freed_memory", lambda: calls.append("held") or True)
    monkeypatch.setattr("mattebox.jobs.run_engine", lambda *a, **k: calls.append("engine") or run_engine(*a, **k))
    monkeypatch.setenv("MATTEBOX_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    write_png(str(tmp_path / "plate.png"), rng.random((40, 50, 3), dtype=np.float32))
    trimap = np.zeros((40, 50), np.float32)
    trimap[10:30, 15:35] = 0.5
    trimap[15:25, 20:30] = 1.0
    write_png(str(tmp_path / "trimap.png"), trimap)
    assert main(["matte", str(tmp_path / "plate.png"), "--trimap", str(tmp_path / "trimap.png"), "--out",
                 str(tmp_path / "out"), "--local", "--quiet"]) == 0
    assert calls == (["held", "engine"] if held else ["engine"])
