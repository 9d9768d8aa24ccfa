"""Where a whole `mattebox matte` process spends its CPU time, stage by stage (issue #21).

Runs the real command in this process (``mattebox.cli.main``, the same arguments; add ``--local`` so no server is
asked) with each stage's function wrapped to add up its CPU seconds (user + system, all threads: getrusage), and
prints a table: interpreter and libraries, the kernels' first call (loading the ahead-of-time extension, or
numba's import and first call where it is absent: ``MATTEBOX_KERNELS=jit`` to compare), reading, decoding,
guidance, the alpha stage's parts (known-region expansion, colour prior, coarse-to-fine solve), foreground,
writing. CPU seconds because on a shared machine they are steadier than wall time; each wrapped stage's wall
seconds beside them (below its CPU seconds where both cores work: frames from 1M pixels run their kernels in
blocks on several threads). Run from the repository root:

    PYTHONPATH=plugin:server:installers python bench/matte_stages.py plate.png --trimap t.png --out /tmp/o --local

``MATTEBOX_THREADS=1`` gives the one-thread costs (a second thread adds a little CPU for less wall).
"""
from __future__ import annotations

import functools
import inspect
import os
import resource
import sys
import time


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


STAGES: dict = {}  #: stage -> CPU seconds
WALL: dict = {}  #: stage -> wall seconds (what a user waits; below the CPU seconds where both cores work)


def timed(owner, name: str, stage: str) -> None:
    """Replace ``owner.name`` (a module attribute or dict entry) by a wrapper adding its CPU time to ``stage``
    (outermost calls only, so a recursive solve counts once)."""
    get = owner.get if isinstance(owner, dict) else functools.partial(getattr, owner)
    function = get(name)
    depth = [0]

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        depth[0] += 1
        start, start_wall = cpu(), time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            depth[0] -= 1
            if depth[0] == 0:
                STAGES[stage] = STAGES.get(stage, 0.0) + cpu() - start
                WALL[stage] = WALL.get(stage, 0.0) + time.perf_counter() - start_wall

    if isinstance(owner, dict):
        owner[name] = wrapper
    elif isinstance(inspect.getattr_static(owner, name), staticmethod):
        setattr(owner, name, staticmethod(wrapper))
    else:
        setattr(owner, name, wrapper)


def main(argv) -> int:
    started_wall = time.perf_counter()
    # as mattebox/__init__.py does before numpy loads in a real `mattebox matte` (imported first here, numpy would
    # ask for transparent huge pages: ~2-3 s more system time at 4K than the command spends)
    os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")
    import cv2  # noqa: F401
    import numpy as np

    STAGES["interpreter, numpy, OpenCV"] = cpu()
    mark, mark_wall = cpu(), time.perf_counter()
    from mattebox import cli, imageio, jobs
    from mattebox.commands import matte
    from mattebox.engines import classical as engine
    from mattebox.matting import alpha, compiled

    STAGES["mattebox modules"] = cpu() - mark
    WALL["mattebox modules"] = time.perf_counter() - mark_wall
    mark, mark_wall = cpu(), time.perf_counter()
    compiled.dot(np.zeros(1), np.zeros(1))
    path = "ahead-of-time extension" if compiled.extension() else "numba import, JIT from the cache"
    STAGES[f"kernels' first call ({path})"] = cpu() - mark
    WALL[f"kernels' first call ({path})"] = time.perf_counter() - mark_wall
    timed(imageio, "read_image", "read the files")
    timed(jobs, "decode_request", "decode the inputs")
    timed(engine.ClassicalEngine, "guidance", "guidance")
    timed(alpha, "expand_known", "alpha: known-region expansion")
    timed(alpha, "alpha_prior", "alpha: colour prior")
    timed(alpha, "_solve_level", "alpha: coarse-to-fine solve")
    for method in list(engine.FOREGROUND_METHODS):
        timed(engine.FOREGROUND_METHODS, method, "foreground")
    timed(matte, "_write_outputs", "write the outputs")
    timed(matte, "_matte_in_process", "_in_process")
    code = cli.main(["matte", *argv])
    rest = "rest of the pipeline (checks, engine glue)"
    for spent in (STAGES, WALL):
        in_process = spent.pop("_in_process")
        spent[rest] = in_process - sum(v for k, v in spent.items() if k in ("decode the inputs", "guidance",
                                                                            "foreground") or k.startswith("alpha:"))
    total = cpu()
    width = max(len(k) for k in STAGES)
    print(f"{'stage':{width}s}    CPU       wall")
    for stage, seconds in STAGES.items():
        wall = f"{WALL[stage]:6.2f} s" if stage in WALL else ""
        print(f"{stage:{width}s} {seconds:6.2f} s  {wall}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"{'total CPU':{width}s} {total:6.2f} s (wall {time.perf_counter() - started_wall:.2f} s, peak RSS "
          f"{peak:.0f} MiB)")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
