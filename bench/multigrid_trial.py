"""Does a multigrid V-cycle preconditioner beat Jacobi-preconditioned CG on the classical alpha solve? (issue #21)

For one alphamatting-dev image, the full-resolution level's system exactly as ``mattebox.matting.alpha._solve_level``
builds it (expanded trimap, colour prior, Laplacian restricted to the unknown pixels plus λC, over the crop):

1. Each preconditioner as a stationary iteration x += M⁻¹(b − Ax) on a smooth random error (Gaussian-blurred noise
   on the unknown pixels): the energy norm of the error after 1-4 steps, relative to the start. Damped Jacobi
   alone; a V(1,1)-cycle with **re-discretised** coarse operators (the matting Laplacian of each level's
   INTER_AREA-downsampled image, as the coarse-to-fine solve builds them; restriction 4 × area mean,
   prolongation bilinear); and the V(1,1)-cycle with **Galerkin** aggregation operators
   (:class:`mattebox.matting.multigrid.VCycle`).
2. From the engine's start (the half-resolution problem solved coarse to fine, carried up by Levin's affine
   model), the engine's Jacobi-CG against flexible CG with the Galerkin V-cycle, alternating in one process:
   CPU seconds, fine-level products, relative residual ‖b − Ax‖/‖b‖ and the SAD of α (levels remap applied)
   against the ground truth, every 10th (Jacobi) or every (multigrid) iteration.

``--dataset`` instead runs the whole pipeline (``solve_alpha``) on the 16 alphamatting-dev cases with today's
settings (60 iterations per intermediate level, 15 at full resolution), Jacobi-CG with fewer (40/15, 50/15,
60/10) and twice the iterations, the ``best`` preset, and the multigrid preconditioner at 1/5, 1/4
and all of the iterations, alternating per case: mean SAD and summed CPU seconds of each.

Run (MATTEBOX_THREADS=1 for one-thread costs):

    MATTEBOX_ALPHAMATTING=/work/shared/data/alphamatting-dev PYTHONPATH=plugin:server:installers \\
        python bench/multigrid_trial.py GT04 trimap1      # or: --dataset
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from mattebox.matting import alpha as A
from mattebox.matting import kernels
from mattebox.matting.laplacian import CropOperator, affine_upsample
from mattebox.matting.multigrid import VCycle, flexible_cg
from mattebox.matting.sampling import alpha_prior


def load(name: str, trimap: str):
    root = Path(os.environ["MATTEBOX_ALPHAMATTING"])

    def read(folder, grey):
        data = cv2.imread(str(root / folder / f"{name}.png"), cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR)
        return data.astype(np.float32) / 255.0 if grey else data[:, :, ::-1].astype(np.float32) / 255.0

    return read("image", False), read(trimap, True), read("alpha", True)


class Level:
    """One level's system (L_uu + λC) x = b over the whole crop (CropOperator), as _solve_level builds it."""

    def __init__(self, image, trimap, prior, weight, settings):
        self.unknown = trimap == A.UNKNOWN
        self.op = CropOperator(image, self.unknown, settings.eps, settings.radius, packed=False)
        self.mask = self.unknown.astype(np.uint8)
        self.data = settings.data_weight * weight.astype(np.float64) * self.mask
        self.b = self.data * prior - self.mask * self.op.apply_crop(np.where(self.unknown, 0.0, trimap)
                                                                   .astype(np.float32))
        self.dinv = np.where(self.mask > 0, 1.0 / np.maximum(self.op.diagonal() + self.data, 1e-2), 0.0)
        self.product = np.zeros(trimap.shape)  # (products write the unknown pixels only)
        self.products = 0

    def apply(self, v):
        self.products += 1
        out = self.op.apply(v, out=self.product)
        kernels.restrict_and_shift(out.reshape(-1), self.mask.reshape(-1), self.data.reshape(-1), v.reshape(-1))
        return out


def hierarchy(image, trimap, prior, weight, settings):
    """The engine's levels (same downsampling of image, trimap, prior and weight as _solve_level)."""
    levels = []
    while True:
        levels.append(Level(image, trimap, prior, weight, settings))
        h, w = trimap.shape
        if levels[-1].unknown.sum() <= settings.coarse_unknowns or min(h, w) < 2 * settings.coarse_min_side:
            return levels
        size = ((w + 1) // 2, (h + 1) // 2)
        small_weight = cv2.resize(weight, size, interpolation=cv2.INTER_AREA)
        prior = cv2.resize(weight * prior, size, interpolation=cv2.INTER_AREA) / np.maximum(small_weight, 1e-6)
        image, trimap, weight = (cv2.resize(image, size, interpolation=cv2.INTER_AREA),
                                 A._coarse_trimap(trimap, size), small_weight)


def rediscretised_cycle(levels, k, r, nu=1, omega=0.7):
    """A V(nu, nu)-cycle for A_k e = r from e = 0 over re-discretised levels (the failed variant)."""
    level = levels[k]
    if k == len(levels) - 1:
        return A._cg(level.apply, r.copy(), np.zeros_like(r), level.dinv, 100, 1e-8, lambda *a: None)
    e = omega * level.dinv * r
    coarse = levels[k + 1]
    h, w = coarse.mask.shape
    rc = 4.0 * cv2.resize(r - level.apply(e), (w, h), interpolation=cv2.INTER_AREA) * coarse.mask
    e += cv2.resize(rediscretised_cycle(levels, k + 1, rc, nu, omega), level.mask.shape[::-1],
                    interpolation=cv2.INTER_LINEAR) * level.mask
    for _ in range(nu):
        e += omega * level.dinv * (r - level.apply(e))
    return e


def trace_solve(method, fine, start, cycle):
    """[(CPU s, fine products, x)] along one solve from ``start``: the engine's Jacobi-CG recorded at its progress
    reports (every 10th iteration), or flexible CG with the V-cycle re-run for 1, 3, … 11 iterations."""
    trace = []
    if method == "jacobi-cg":
        fine.products, t0, x = 0, time.process_time(), start.copy()

        def record(it, total):
            trace.append((time.process_time() - t0, fine.products, x.copy()))
        A._cg(fine.apply, fine.b.copy(), x, fine.dinv, 61, 0.0, record)
        return trace
    for n in range(1, 13, 2):
        fine.products, t0 = 0, time.process_time()
        x = flexible_cg(fine.apply, fine.b.copy(), start.copy(), cycle, n, 0.0, lambda *a: None)
        trace.append((time.process_time() - t0, fine.products, x))
    return trace


def dataset() -> int:
    from mattebox import evaluation as ev

    data = Path(os.environ["MATTEBOX_ALPHAMATTING"])
    variants = {"jacobi (today)": A.SolverSettings(),
                "jacobi, 2x iterations": A.SolverSettings(fine_iterations=120, finest_iterations=30),
                "jacobi, best preset": A.PRESETS["best"],
                "jacobi, 40/15 iterations": A.SolverSettings(fine_iterations=40),
                "jacobi, 50/15 iterations": A.SolverSettings(fine_iterations=50),
                "jacobi, 60/10 iterations": A.SolverSettings(finest_iterations=10)}
    for cost in (5, 4, 1):
        variants[f"multigrid, 1/{cost} iterations"] = A.SolverSettings(preconditioner="multigrid",
                                                                        multigrid_cost=cost)
    sads, seconds = {k: [] for k in variants}, dict.fromkeys(variants, 0.0)
    for which in ("trimap1", "trimap2"):
        for name in sorted(p.stem for p in (data / "image").glob("*.png")):
            image, truth, trimap = ev.load_sample(data, name, which)
            image = image.astype(np.float32) / 255.0
            line = f"{name} {which}"
            for label, settings in variants.items():
                t0 = time.process_time()
                result = A.solve_alpha(image, trimap, settings)
                seconds[label] += time.process_time() - t0
                sads[label].append(ev.sad(np.clip(result, 0, 1), truth, trimap == A.UNKNOWN))
                line += f" | {label} {sads[label][-1]:.2f}"
            print(line, flush=True)
    for label in variants:
        print(f"{label:28s} mean SAD {np.mean(sads[label]):.3f}, solve_alpha CPU {seconds[label]:.1f} s")
    return 0


def main(argv) -> int:
    if argv[:1] == ["--dataset"]:
        return dataset()
    name, which = (argv + ["GT04", "trimap1"])[:2]
    settings = A.SolverSettings()
    image, trimap, truth = load(name, which)
    trimap = np.where(trimap < 0.1, 0.0, np.where(trimap > 0.9, 1.0, 0.5)).astype(np.float32)
    trimap = A.expand_known(image, trimap, settings.expand_radius, settings.expand_colour)
    ys, xs = np.nonzero(trimap == A.UNKNOWN)
    y0, y1 = max(ys.min() - 2, 0), min(ys.max() + 3, trimap.shape[0])
    x0, x1 = max(xs.min() - 2, 0), min(xs.max() + 3, trimap.shape[1])
    crop = (slice(y0, y1), slice(x0, x1))
    prior, weight = (np.ascontiguousarray(v[crop]) for v in alpha_prior(image, trimap, sigma=settings.prior_sigma))
    image_c, trimap_c = np.ascontiguousarray(image[crop]), trimap[crop].copy()
    levels = hierarchy(image_c, trimap_c, prior, weight, settings)
    fine = levels[0]
    t0 = time.process_time()
    cycle = VCycle(fine.op.laplacian, fine.mask, fine.data, fine.apply)
    print(f"{name} {which}: crop {trimap_c.shape}, unknowns per level {[int(lv.unknown.sum()) for lv in levels]}; "
          f"Galerkin set-up {time.process_time() - t0:.2f} s CPU, {len(cycle.levels)} coarse levels")

    rng = np.random.default_rng(0)
    truth_e = cv2.GaussianBlur(rng.standard_normal(fine.mask.shape), (0, 0), 4) * fine.mask
    b = fine.apply(truth_e).copy()

    def energy(e):
        return np.sqrt(np.vdot(e, fine.apply(e)))

    for label, precondition in (("damped Jacobi", lambda r: 0.7 * fine.dinv * r),
                                ("V-cycle, re-discretised", lambda r: rediscretised_cycle(levels, 0, r)),
                                ("V-cycle, Galerkin", cycle)):
        x, ratios = np.zeros_like(b), []
        for _ in range(4):
            x += precondition(b - fine.apply(x))
            ratios.append(energy(truth_e - x) / energy(truth_e))
        print(f"  stationary {label:24s} energy error after 1-4 steps: " + " ".join(f"{v:.3g}" for v in ratios))

    h, w = trimap_c.shape
    size = ((w + 1) // 2, (h + 1) // 2)
    small = cv2.resize(image_c, size, interpolation=cv2.INTER_AREA)
    sw = cv2.resize(weight, size, interpolation=cv2.INTER_AREA)
    sp = cv2.resize(weight * prior, size, interpolation=cv2.INTER_AREA) / np.maximum(sw, 1e-6)
    coarse = A._solve_level(small, A._coarse_trimap(trimap_c, size), sp, sw, settings, lambda *a: None, 1)
    start = np.where(fine.unknown, np.clip(affine_upsample(coarse, small, image_c, 1, settings.upsample_eps),
                                           0, 1), 0.0).astype(np.float64)
    norm_b = np.linalg.norm(fine.b)

    def sad(x):
        out = trimap.copy()
        out[crop] = np.where(fine.unknown, x, trimap_c)
        out = np.clip((np.clip(out, 0, 1) - settings.snap) / (1 - 2 * settings.snap), 0, 1)
        return np.abs(out - truth).sum() / 1000.0

    print(f"  start: residual {np.linalg.norm(fine.b - fine.apply(start)) / norm_b:.2e}, SAD {sad(start):.3f}")
    for rnd in range(2):  # alternate, so machine load hits both alike
        for method in ("jacobi-cg", "multigrid-fcg"):
            for seconds, products, x in trace_solve(method, fine, start, cycle):
                res = np.linalg.norm(fine.b - fine.apply(x)) / norm_b
                print(f"  round {rnd} {method:14s} cpu {seconds:6.2f} s  fine products {products:4d}  "
                      f"residual {res:.2e}  SAD {sad(x):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
