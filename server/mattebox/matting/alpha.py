"""Alpha from a trimap: closed-form matting (Levin et al. 2008) solved matrix-free over the unknown band.

Pipeline (each step's parameter is documented in docs/classical.md):

1. Known-region expansion (Gastal & Oliveira, "Shared Sampling for Real-Time Alpha Matting", 2010, §4.1):
   an unknown pixel within ``expand_radius`` px of a known pixel whose colour differs by at most
   ``expand_colour`` becomes known with that pixel's label. Fewer unknowns, and no solver error there.
2. The solve is restricted to the bounding box of the unknown pixels plus a margin of one window, so only that
   crop is ever filtered (the Laplacian's windows outside it do not touch unknown pixels).
3. A colour-sampling prior α̂ with confidence c (Robust Matting, Wang & Cohen 2007; :mod:`.sampling`).
4. The problem  min αᵀLα + λ Σ c_i (α_i − α̂_i)²  s.t. α = α_known on known pixels  is the linear system
   (L_uu + λC) α_u = −L_uk α_k + λCα̂ (Levin eq. 14 with hard constraints, Robust Matting eq. 8), solved by
   Jacobi-preconditioned conjugate gradients with :class:`MattingLaplacian` (no matrix is built).
   Coarse-to-fine: while a level has many unknowns, the half-resolution problem is solved first (recursively)
   and carried up by Levin's affine model (PAMI 2008 §6), so each finer level needs only a few dozen iterations.
5. α is clipped to [0, 1] through a continuous levels remap, [snap, 1 − snap] -> [0, 1]: it removes the faint
   haze the quadratic solve leaves near 0 and 1 without the jump a hard threshold would put into soft edges.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Optional, Tuple

import cv2
import numpy as np

from .. import heap
from ..contract import no_progress
from . import compiled, multigrid
from .laplacian import BandOperator, CropOperator, affine_upsample
from .sampling import alpha_prior, nearest_known

UNKNOWN = 0.5
#: bytes per crop pixel of a kept finest-level operator: Δ_k (48), colour planes (12), masks (3), the spread
#: direction (8), diag(L) and L·α_known (at most 16: at the unknown pixels), the settled trimap (4)
#: (:class:`KeptOperator`)
OPERATOR_BYTES_PER_PIXEL = 91
PRECONDITIONERS = ("jacobi", "multigrid")  #: SolverSettings.preconditioner's choices (docs/classical.md "Speed")


@dataclass
class SolverSettings:
    eps: float = 1e-7  #: Levin's ε (window covariance regulariser), the paper's value
    radius: int = 1  #: window radius r: (2r+1)² windows (Levin: 3×3)
    max_iterations: int = 400  #: CG iterations at the coarsest level (the whole problem)
    fine_iterations: int = 60  #: CG iterations at each intermediate level (started from the upsampled solution)
    #: … and at the full-resolution level, 4× dearer per iteration than the next: a better start from more work
    #: below beats more work here (alphamatting-dev SAD 4.54 vs 4.65 with 40/40, in ~3/4 of the time)
    finest_iterations: int = 15
    tolerance: float = 1e-6  #: relative residual ‖r‖/‖b‖ to stop CG
    coarse_unknowns: int = 2000  #: solve a half-resolution level first while a level has more unknowns
    coarse_min_side: int = 32  #: ... and its short side is at least 2× this
    upsample_eps: float = 1e-4  #: regulariser of the affine model fitted to carry α up a level
    tile: int = 32  #: tile side of the band-only operator (:class:`BandOperator`)
    #: use the band-only operator when its tiles cover less than this share of the crop. Since the crop's operator
    #: works at the unknown pixels only, the tiles (whose halos are gathered at every product) pay only in memory,
    #: for very thin bands in big crops: crop vs tiles, 1080p roto bands of 4-32 px (tiles 57-65 % of the crop)
    #: 0.47-0.51 vs 0.66-0.73 s, 4K 4 / 16 px (45-48 %) 1.67 / 2.07 vs 3.25 / 3.05 s, alphamatting-dev's 16 solves
    #: 3.35 vs 3.9-4.4 s (13 levels on tiles at 0.6, the old default), the same mattes
    band_fraction: float = 0.1
    huge_unknowns: int = 2_000_000  #: a level with more unknowns than this is mostly left to the local affine model…
    huge_iterations: int = 12  #: … and gets only this many CG iterations (4K frames with very wide bands)
    data_weight: float = 0.005  #: λ of the sampling data term (Robust Matting eq. 8 uses γ = 0.1 with its own
    #: Laplacian scaling; 0.005 is the best mean SAD on alphamatting-dev over 0.1/0.02/0.01/0.005); 0 disables it
    prior_sigma: float = 0.1  #: σ of the sample confidence exp(−R²/σ²) (Robust Matting eq. 6: 0.1)
    expand_radius: int = 10  #: known-region expansion search radius in px (Gastal & Oliveira: 10)
    expand_colour: float = 5.0 / 256.0  #: max colour distance for expansion (Gastal & Oliveira: 5/256)
    #: "jacobi": Jacobi-preconditioned CG; "multigrid": flexible CG with a Galerkin aggregation V-cycle
    #: (:mod:`.multigrid`) on levels of more than ``multigrid_unknowns`` unknowns over the whole crop, where each
    #: iteration costs ~5 Jacobi ones and ``iterations // multigrid_cost`` are run. Measured not to pay (SAD 4.67
    #: vs 4.538 on alphamatting-dev, no faster: docs/classical.md "Speed"), so off
    preconditioner: str = "jacobi"
    multigrid_unknowns: int = 20_000
    multigrid_cost: int = 5
    snap: float = 0.03  #: levels remap [snap, 1 − snap] -> [0, 1] (removes solver haze; chosen on alphamatting-dev)
    #: the full-resolution level solves only where the coarse solution is not flat: an unknown pixel whose 5×5
    #: neighbourhood the upsampled coarse α leaves all within ``settle`` of 0 (or of 1) is fixed there (0: off).
    #: ``snap``'s value: what the levels remap sends to 0 or 1 anyway (alphamatting-dev SAD 4.5382 → 4.5357, the
    #: 1080p roto's 10.410 → 10.399 with 30 % of its finest unknowns fixed; 0.01 / 0.02 left 4.538)
    settle: float = 0.03

    def __post_init__(self):
        if self.preconditioner not in PRECONDITIONERS:
            raise ValueError(f"preconditioner: expected one of {', '.join(PRECONDITIONERS)}, "
                             f"got {self.preconditioner!r}")


PRESETS = {
    "fast": SolverSettings(max_iterations=200, fine_iterations=20, finest_iterations=6, tolerance=1e-4,
                           huge_iterations=5),
    "balanced": SolverSettings(),
    "best": SolverSettings(max_iterations=1000, fine_iterations=150, finest_iterations=60, tolerance=1e-7,
                           huge_unknowns=10 ** 12, settle=0.0),
}


def expand_known(image: np.ndarray, trimap: np.ndarray, radius: int, colour: float) -> np.ndarray:
    """Known-region expansion (Gastal & Oliveira 2010 §4.1), using each unknown pixel's nearest known pixel of
    each label: it becomes known when that pixel is within ``radius`` and its colour within ``colour``
    (Euclidean RGB); pixels that qualify for both labels stay unknown."""
    unknown = trimap == UNKNOWN
    if not unknown.any() or radius <= 0:
        return trimap
    out = np.array(trimap, np.float32)  # a copy, which the compiled passes change in place
    pixels = np.ascontiguousarray(image, np.float32).reshape(-1, 3)
    at = np.flatnonzero(unknown)  # flat indices: gathers by them are ~4x faster than by boolean masks
    expand = compiled.in_blocks(at.size, "expand_label")
    # each label's nearest known pixels (a distance transform each) at once on big frames; the passes in order
    both = (lambda: nearest_known(trimap, 0.0, at), lambda: nearest_known(trimap, 1.0, at))
    nearest = compiled.run_tasks(trimap.size, *both)
    for label, near in zip((0.0, 1.0), nearest):
        if near is not None:
            expand(pixels, at, near[0], near[1], radius, colour, np.float32(label), out.reshape(-1), 0, at.size)
    return out


def _cg(apply_a, b, x, precond, max_iterations, tolerance, report):
    """Preconditioned conjugate gradients on the unknown pixels (arrays are masked vectors, float64 like the
    operator: see mattebox.matting.laplacian on why float32 is not enough at ε = 1e-7). The vector
    updates and dot products are compiled loops (:mod:`.kernels`), one pass each and no BLAS. ``b`` is overwritten
    by the residual (one vector less at the peak); ``apply_a(v)`` returns (A v, vᵀA v), the product and its
    curvature from one pass, and may return the same buffer every time."""
    def flat(a):
        return a.reshape(-1)  # a view: the arrays here are contiguous

    dot = compiled.in_blocks(b.size, "dot")  # (both cores on big levels: the same sums)
    update = compiled.in_blocks(b.size, "cg_update")
    direction = compiled.in_blocks(b.size, "cg_direction")
    norm_b = np.sqrt(dot(flat(b), flat(b))) or 1.0
    r = b
    r -= apply_a(x)[0]
    p = precond * r  # z = M⁻¹r, the first direction
    rz, rr = dot(flat(r), flat(p)), dot(flat(r), flat(r))
    for it in range(max_iterations):
        if np.sqrt(rr) / norm_b < tolerance:
            break
        ap, curvature = apply_a(p)
        if not np.isfinite(curvature) or curvature <= 0:
            break  # numerical breakdown (not seen with the float64 operator): keep the last iterate
        rz_new, rr = update(flat(x), flat(r), flat(p), flat(ap), flat(precond), rz / curvature)
        direction(flat(p), flat(r), flat(precond), rz_new / max(rz, 1e-30), 0, p.size)
        rz = rz_new
        if it % 10 == 0:
            report(it, max_iterations)
    return x


def _coarse_trimap(trimap: np.ndarray, size) -> np.ndarray:
    """Half-resolution trimap: a coarse pixel is known only when every fine pixel under it has that label."""
    area = cv2.resize(trimap, size, interpolation=cv2.INTER_AREA)
    out = np.full(area.shape, UNKNOWN, np.float32)
    out[area < 1e-4] = 0.0
    out[area > 1.0 - 1e-4] = 1.0
    return out


def _settle(initial: np.ndarray, trimap: np.ndarray, unknown: np.ndarray, margin: float) -> np.ndarray:
    """Fix the unknown pixels where the upsampled coarse solution ``initial`` is flat at 0 or 1 — every pixel of
    the 5×5 neighbourhood (known pixels at their values) within ``margin`` of it — to that value, in ``trimap`` and
    ``initial``; returns the unknown pixels left. The finest level then refines only near edges, where the coarse
    level's affine model can err (#21: "refined at full resolution only near edges"); a 1080p roto's band loses
    30 % of its unknowns there at ``settle`` 0.03. Values within the levels remap's ``snap`` of 0 or 1 end there
    anyway."""
    window = np.ones((5, 5), np.uint8)
    low = cv2.dilate(initial, window) <= margin
    high = cv2.erode(initial, window) >= 1.0 - margin
    zero, one = unknown & low, unknown & high
    trimap[zero] = initial[zero] = 0.0
    trimap[one] = initial[one] = 1.0
    return trimap == UNKNOWN


def _solve_level(image: np.ndarray, trimap: np.ndarray, prior: np.ndarray, weight: np.ndarray,
                 settings: SolverSettings, report, level: int = 0, start: Optional[np.ndarray] = None,
                 kept: Optional["KeptOperator"] = None):
    """Solve one crop (all arrays cropped) coarse-to-fine; returns α for the crop. ``start``: a good first guess
    (pre-remap α of the crop): the coarse levels are skipped and ``finest_iterations`` polish it. ``kept``: where
    this (finest) level's operator is kept for, or taken from, another solve of the same crop (:class:`Prepared`).

    While the level has more than ``coarse_unknowns`` unknown pixels, the half-resolution problem is solved first
    and carried up by Levin's affine model (:func:`affine_upsample`); the fine level then only has to remove
    high-frequency error, which Jacobi-preconditioned CG does in a few dozen iterations.
    """
    unknown = trimap == UNKNOWN
    h, w = trimap.shape
    guess = 0.5  # CG's start on the unknown pixels (clipped to [0, 1]): a constant, or a crop-sized α
    iterations = settings.max_iterations
    upsampled = False
    if start is not None:
        guess = np.clip(start, 0.0, 1.0)
        iterations = settings.finest_iterations
    elif unknown.sum() > settings.coarse_unknowns and min(h, w) >= 2 * settings.coarse_min_side:
        size = ((w + 1) // 2, (h + 1) // 2)
        small_image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        small_weight = cv2.resize(weight, size, interpolation=cv2.INTER_AREA)
        small_prior = cv2.resize(weight * prior, size, interpolation=cv2.INTER_AREA) / np.maximum(small_weight, 1e-6)
        coarse = _solve_level(small_image, _coarse_trimap(trimap, size), small_prior, small_weight, settings,
                              lambda *a: None, level + 1)
        del small_prior, small_weight  # (the finest level's CG is the peak of memory: nothing spare kept)
        guess = affine_upsample(coarse, small_image, image, settings.radius, settings.upsample_eps)
        np.clip(guess, 0.0, 1.0, out=guess)
        del small_image, coarse
        iterations = settings.fine_iterations if level > 0 else settings.finest_iterations
        upsampled = True
        if unknown.sum() > settings.huge_unknowns:  # cheaper local solve: Levin's affine model plus a short polish
            iterations = settings.huge_iterations
    initial = np.where(unknown, guess, trimap).astype(np.float32, copy=False)
    del guess
    if upsampled and level == 0 and settings.settle > 0:
        unknown = _settle(initial, trimap, unknown, settings.settle)
        if not unknown.any():  # the coarse solution was flat everywhere: nothing left to solve
            return trimap.astype(np.float32)
    reuse = kept is not None and kept.operator is not None and kept.shape == (h, w)
    if reuse:  # the solve that kept the operator settled these pixels: they stay so, its operator has the rest
        trimap = kept.trimap.copy()
        unknown = trimap == UNKNOWN
        initial = np.where(unknown, initial, trimap).astype(np.float32)
    if iterations == 0:  # the upsampled coarse solution as it is (a shot polishes it later): no operator to build
        return np.where(unknown, initial, trimap).astype(np.float32)
    cycles = settings.preconditioner == "multigrid" and unknown.sum() > settings.multigrid_unknowns
    if reuse:
        op, b, precond = kept.operator[0], kept.operator[1].copy(), kept.operator[2].copy()
    else:
        tiles = len(BandOperator.active_tiles(unknown, settings.tile))
        if tiles * (settings.tile + 4 * settings.radius) ** 2 < settings.band_fraction * h * w:
            # thin band in a big crop: work on the band's tiles only (compact layout)
            op = BandOperator(image, unknown, settings.eps, settings.radius, settings.tile)
        else:  # vectors of the unknown pixels only (the multigrid cycle works on the whole crop's)
            op = CropOperator(image, unknown, settings.eps, settings.radius, packed=not cycles)
        b = op.apply_crop(np.where(unknown, 0.0, trimap).astype(np.float32))  # L α_known, becomes the right-hand side
        precond = op.diagonal()  # diag(L), becomes the Jacobi preconditioner
        if kept is not None and OPERATOR_BYTES_PER_PIXEL * h * w <= kept.max_bytes:
            kept.shape, kept.operator, kept.trimap = (h, w), (op, b.copy(), precond.copy()), trimap.copy()
    del image  # the operator holds its own colour planes: the crop's copy can go before CG's vectors (peak memory)
    # float64 vectors (CG's arithmetic, see _cg); the 0/1 mask of unknown pixels as bytes
    mask = op.mask(unknown)
    cycles = cycles and isinstance(op, CropOperator)  # (on the band's tiles: Jacobi)
    data, x = np.empty_like(b), np.empty_like(b)
    # λC, the right-hand side, the preconditioner and CG's start in one pass (compiled.solve_terms)
    compiled.in_blocks(b.size, "solve_terms")(
        *(np.ascontiguousarray(v).reshape(-1) for v in (mask, op.compact(weight), op.compact(prior),
                                                        op.compact(initial))),
        settings.data_weight, data.reshape(-1), b.reshape(-1), precond.reshape(-1), x.reshape(-1), 0, b.size)
    # the operator sees only CG vectors, which are zero on known pixels (CG keeps them so)

    # every product goes here (no fresh pages per iteration); zero where products leave it alone (known pixels of
    # a whole-crop layout)
    product = np.zeros_like(x)
    restrict = compiled.in_blocks(x.size, "restrict_and_shift")

    def apply_a(v):  # ((L_uu + λC) v, vᵀ(L_uu + λC) v) for v zero on known pixels (one pass over L v)
        out = op.apply(v, out=product)
        return out, restrict(out.reshape(-1), mask.reshape(-1), data.reshape(-1), v.reshape(-1))

    heap.trim()  # the set-up's temporaries are gone: CG's vectors grow from here, the finest level's to the peak
    if cycles:
        def product_only(v):
            return apply_a(v)[0]

        cycle = multigrid.VCycle(op.laplacian, mask, data, product_only)
        x = multigrid.flexible_cg(product_only, b, x, cycle, max(1, iterations // settings.multigrid_cost),
                                  settings.tolerance, report)
    else:
        x = _cg(apply_a, b, x, precond, iterations, settings.tolerance, report)  # b becomes the residual
    x = op.full(x, fill=initial)
    return np.where(unknown, x, trimap).astype(np.float32)


@dataclass
class KeptOperator:
    """The finest level's operator of one solve with its set-up, L·α_known and diag(L) (both float64 in the
    operator's layout), kept for a second solve of the same crop (the same image, expanded trimap, ε, radius and
    tile settings); only when it takes at most ``max_bytes`` (:data:`OPERATOR_BYTES_PER_PIXEL` per crop pixel).
    With it the crop's trimap after settling (``SolverSettings.settle``): the second solve keeps the first's settled
    pixels as they were and polishes the others, the unknown pixels of the operator."""
    max_bytes: int
    shape: Optional[Tuple[int, int]] = None
    operator: Optional[tuple] = None
    trimap: Optional[np.ndarray] = None

    def release(self) -> None:
        self.shape = self.operator = self.trimap = None


@dataclass(frozen=True)
class Prepared:
    """What a solve derives from its image and trimap before the linear system (steps 1 and 3 above): the trimap
    after known-region expansion and the colour-sampling prior (α̂, confidence), both whole-frame H×W float32.
    A second solve of the same frame with the same settings (a shot's steadied solve, mattebox.shots) passes it
    back instead of deriving it again, and with ``kept`` (see :func:`prepare`) also reuses the first solve's
    finest-level operator (its window inverses and diag(L): ~a quarter of a 10-iteration solve)."""
    trimap: np.ndarray
    samples: Optional[Tuple[np.ndarray, np.ndarray]]  #: None when the settings use no sampling prior
    kept: Optional[KeptOperator] = field(default=None, compare=False)


def prepare(image_srgb: np.ndarray, trimap: np.ndarray, settings: SolverSettings,
            keep_operator_bytes: int = 0) -> Prepared:
    """:class:`Prepared` for :func:`solve_alpha` of ``image_srgb`` and ``trimap`` with ``settings``;
    ``keep_operator_bytes`` > 0: the first solve given it keeps its finest-level operator up to that size for the
    next (release it with ``prepared.kept.release()``)."""
    trimap = expand_known(image_srgb, trimap.astype(np.float32), settings.expand_radius, settings.expand_colour)
    kept = KeptOperator(keep_operator_bytes) if keep_operator_bytes > 0 else None
    tiny = min(trimap.shape) < 2 * settings.radius + 1
    if not (trimap == UNKNOWN).any() or not (settings.data_weight > 0 or tiny):
        return Prepared(trimap, None, kept)
    return Prepared(trimap, alpha_prior(image_srgb, trimap, sigma=settings.prior_sigma), kept)


def solve_alpha(image_srgb: np.ndarray, trimap: np.ndarray, settings: Optional[SolverSettings] = None,
                progress: Callable = no_progress, prior=None, initial: Optional[np.ndarray] = None,
                prepared: Optional[Prepared] = None) -> np.ndarray:
    """α (H×W float32 in [0, 1]) for an sRGB image in [0, 1] and a trimap in {0, 0.5, 1}.

    ``prior``: an optional extra data term (values α̂, weights λ ≥ 0), both H×W, added to the colour-sampling
    prior: the system becomes (L_uu + Λ) α_u = −L_uk α_k + Λ α̂ with Λ the summed weights (the two-frame solver
    passes the alpha implied by revealed background here).
    ``initial``: an H×W α close to the answer (a shot's neighbours agree on it, mattebox.shots): CG starts there at
    full resolution for ``finest_iterations`` instead of solving coarse to fine.
    ``prepared``: :func:`prepare` of this image, trimap and settings, from an earlier solve of the same frame.
    """
    settings = settings or SolverSettings()
    reused = prepared is not None
    prepared = prepared or prepare(image_srgb, trimap, settings)
    # the expanded trimap becomes α (outside the crop below, α is its 0 and 1): a copy when the caller keeps it
    trimap = prepared.trimap.copy() if reused else prepared.trimap
    unknown = trimap == UNKNOWN
    if not unknown.any():
        return trimap
    if min(trimap.shape) < 2 * settings.radius + 1:  # smaller than one window: no Laplacian; use the colour prior
        trimap[unknown] = prepared.samples[0][unknown]
        return trimap
    ys, xs = np.flatnonzero(unknown.any(axis=1)), np.flatnonzero(unknown.any(axis=0))  # rows, columns with any
    del unknown
    margin = settings.radius + 1
    y0, y1 = max(ys[0] - margin, 0), min(ys[-1] + margin + 1, trimap.shape[0])
    x0, x1 = max(xs[0] - margin, 0), min(xs[-1] + margin + 1, trimap.shape[1])
    crop = (slice(y0, y1), slice(x0, x1))
    if settings.data_weight > 0:  # sampled from the whole frame: the nearest known colours may lie outside the crop
        values, weight = (np.ascontiguousarray(x[crop]) for x in prepared.samples)
    else:
        values = weight = np.zeros((y1 - y0, x1 - x0), np.float32)
    if prior is not None:  # combine both data terms in absolute λ units: Σλ·α̂ / Σλ
        extra_values, extra_weight = (np.ascontiguousarray(x[crop], dtype=np.float32) for x in prior)
        weight = settings.data_weight * weight
        total = weight + extra_weight
        values = np.where(total > 0, (weight * values + extra_weight * extra_values) / np.maximum(total, 1e-12),
                          0.0).astype(np.float32)
        weight = total.astype(np.float32)
        settings = replace(settings, data_weight=1.0)
    prior = values
    start = None
    if initial is not None:  # in the solver's units, before the levels remap below
        start = np.ascontiguousarray(initial[crop], np.float32) * (1.0 - 2.0 * settings.snap) + settings.snap
    solved = _solve_level(np.ascontiguousarray(image_srgb[crop]), trimap[crop].copy(), prior, weight, settings,
                          lambda done, total: progress("alpha", done, total), start=start, kept=prepared.kept)
    alpha = trimap  # (allocated no earlier: the finest level's CG is the peak of memory)
    alpha[crop] = solved
    alpha = np.clip(alpha, 0.0, 1.0)
    if settings.snap > 0:  # continuous levels remap: [snap, 1 − snap] -> [0, 1], no jump at the thresholds
        alpha = np.clip((alpha - settings.snap) / (1.0 - 2.0 * settings.snap), 0.0, 1.0)
    return alpha
