"""The coarse-to-fine alpha solve level by level: unknowns, operator, CG iterations and CPU seconds (issue #21).

Runs ``solve_alpha`` in this process on bench/speed.py's two large cases — the 1920x1080 hair portrait (roto mask
→ default band, ``trimap_from_mask``) and GT04's wide trimap scaled to 3840x2160 — once per preconditioner named
on the command line (``jacobi``, the engine's; ``multigrid``: :mod:`mattebox.matting.multigrid`), alternating,
and prints per level (0 = full resolution) the unknown pixels, CG's products and the CPU seconds of the level's own
work (not the levels below), split into Levin's affine upsampling into it, Δ_k (the operator's set-up), diag(L),
the multigrid hierarchy's set-up, CG, and the rest (masks, data term, right-hand side), with the SAD against the
case's ground truth. CPU seconds (user + system, all threads), steadier than wall time on a shared
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
from mattebox.matting import alpha, laplacian, multigrid
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


#: the parts of a level's own work timed separately: (module or class, attribute, label)
PARTS = ((alpha, "affine_upsample", "upsampling"), (laplacian.MattingLaplacian, "__init__", "Δ_k"),
         (laplacian.MattingLaplacian, "diagonal", "diag(L)"), (multigrid.VCycle, "__init__", "multigrid set-up"),
         (alpha, "_cg", "CG"), (multigrid, "flexible_cg", "CG"))


def profiled_solve(image, trimap, settings):
    """solve_alpha with each level's CPU time (its own: the levels below subtracted), the CPU time of its parts
    (:data:`PARTS`) and CG's products by the level's operator (a multigrid iteration makes 2 more in its V-cycle)
    recorded; (α, rows by level, CPU s)."""
    rows = []
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in PARTS] + [
        (alpha, "_solve_level", alpha._solve_level)]

    def running():
        return [r for r in rows if "inclusive" not in r][-1]  # the innermost level still running

    def level(image_, trimap_, *args, **kwargs):
        row = {"unknowns": int((trimap_ == alpha.UNKNOWN).sum()), "products": 0, "solver": "-", "limit": 0,
               "parts": {}}
        rows.append(row)
        start = cpu()
        try:
            return originals[-1][2](image_, trimap_, *args, **kwargs)
        finally:
            row["inclusive"] = cpu() - start

    def timed(function, label):
        def run(*args, **kwargs):
            row, start = running(), cpu()
            if label == "CG":  # (apply_a, b, x, precond, iterations, tolerance, report)
                row["limit"], row["solver"] = args[4], function.__name__.strip("_")
                apply_a = args[0]

                def counted(v):
                    row["products"] += 1
                    return apply_a(v)
                args = (counted, *args[1:])
            try:
                return function(*args, **kwargs)
            finally:
                row["parts"][label] = row["parts"].get(label, 0.0) + cpu() - start
        return run

    for (owner, name, label), (_, _, function) in zip(PARTS, originals):
        setattr(owner, name, timed(function, label))
    alpha._solve_level = level
    try:
        start = cpu()
        result = alpha.solve_alpha(image, trimap, settings)
        total = cpu() - start
    finally:
        for owner, name, function in originals:
            setattr(owner, name, function)
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
                      f"iterations) {row['products']:4d} CG products, {row['cpu']:.2f} s CPU: "
                      + ", ".join(f"{part} {seconds:.2f}" for part, seconds in row["parts"].items())
                      + f", other {row['cpu'] - sum(row['parts'].values()):.2f}")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
