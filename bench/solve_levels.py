"""The coarse-to-fine alpha solve level by level: unknowns, operator, CG iterations and CPU seconds (issue #21).

Runs ``solve_alpha`` in this process on bench/speed.py's two large cases — the 1920x1080 hair portrait (roto mask
→ default band, ``trimap_from_mask``) and GT04's wide trimap scaled to 3840x2160 — once per preconditioner named
on the command line (``jacobi``, the engine's; ``multigrid``: :mod:`mattebox.matting.multigrid`), alternating,
and prints per level (0 = full resolution) the unknown pixels, the operator (crop or band tiles), the iterations
run and the CPU seconds of the level's own work (set-up, multigrid hierarchy, CG; not the levels below), with the
SAD against the case's ground truth. CPU seconds (user + system, all threads), steadier than wall time on a shared
machine. Run from the repository root:

    MATTEBOX_ALPHAMATTING=/work/shared/data/alphamatting-dev PYTHONPATH=plugin:server:installers \\
        python bench/solve_levels.py jacobi multigrid
"""
from __future__ import annotations

import resource
import sys
from dataclasses import replace

import cv2
import numpy as np

from mattebox import evaluation as ev
from mattebox.matting import alpha, multigrid
from mattebox.matting.guidance import trimap_from_mask
from mattebox.paths import alphamatting_dir


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cases():
    from mattebox.colour import linear_to_srgb
    from mattebox.synth.pairs import make_pair

    pair = make_pair(7, size=(1080, 1920), real_alpha=False)
    image = np.round(np.clip(linear_to_srgb(pair.image), 0, 1) * 255).astype(np.float32) / 255
    yield "1920x1080 portrait, roto band", image, trimap_from_mask((pair.alpha > 0.5).astype(np.float32)), pair.alpha
    image, gt, trimap = ev.load_sample(alphamatting_dir(), "GT04", "trimap2")
    size = (3840, 2160)
    plate = np.clip(cv2.resize(image[..., :3].astype(np.float32) / 255, size, interpolation=cv2.INTER_CUBIC), 0, 1)
    yield ("3840x2160 GT04 wide", np.round(plate * 255).astype(np.float32) / 255,
           cv2.resize(trimap, size, interpolation=cv2.INTER_NEAREST),
           cv2.resize(gt, size, interpolation=cv2.INTER_LINEAR))


def profiled_solve(image, trimap, settings):
    """solve_alpha with each level's CPU time (its own: the levels below subtracted) and CG's products by the
    level's operator (a multigrid iteration makes 2 more in its V-cycle) recorded; (α, rows by level, CPU s)."""
    rows = []
    solve_level, cg, fcg = alpha._solve_level, alpha._cg, multigrid.flexible_cg

    def level(image_, trimap_, *args, **kwargs):
        row = {"unknowns": int((trimap_ == alpha.UNKNOWN).sum()), "products": 0, "solver": "-", "limit": 0}
        rows.append(row)
        start = cpu()
        try:
            return solve_level(image_, trimap_, *args, **kwargs)
        finally:
            row["inclusive"] = cpu() - start

    def counting(solver):
        def run(apply_a, b, x, precond, iterations, tolerance, report):
            row = [r for r in rows if "inclusive" not in r][-1]  # the innermost level still running
            row["limit"], row["solver"] = iterations, solver.__name__.strip("_")

            def counted(v):
                row["products"] += 1
                return apply_a(v)
            return solver(counted, b, x, precond, iterations, tolerance, report)
        return run

    alpha._solve_level, alpha._cg, multigrid.flexible_cg = level, counting(cg), counting(fcg)
    try:
        start = cpu()
        result = alpha.solve_alpha(image, trimap, settings)
        total = cpu() - start
    finally:
        alpha._solve_level, alpha._cg, multigrid.flexible_cg = solve_level, cg, fcg
    for row, below in zip(rows, rows[1:] + [{"inclusive": 0.0}]):  # level k calls level k + 1, once
        row["cpu"] = row["inclusive"] - below["inclusive"]
    return result, rows, total


def main(argv) -> int:
    preconditioners = argv or ["jacobi", "multigrid"]
    for title, image, trimap, truth in cases():
        for name in preconditioners:
            settings = replace(alpha.SolverSettings(), preconditioner=name)
            result, rows, total = profiled_solve(image, trimap, settings)
            sad = ev.sad(np.clip(result, 0, 1), truth, trimap == alpha.UNKNOWN)
            print(f"{title}, {name}: solve_alpha {total:.2f} s CPU, SAD {sad:.1f}, peak RSS "
                  f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB (process so far)")
            for k, row in enumerate(rows):
                print(f"  level {k}: {row['unknowns']:8d} unknowns, {row['solver']:12s} (at most {row['limit']:3d} "
                      f"iterations) {row['products']:4d} CG products, {row['cpu']:.2f} s CPU")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
