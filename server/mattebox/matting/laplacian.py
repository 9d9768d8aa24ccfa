"""Matrix-free matting Laplacian (Levin, Lischinski, Weiss, "A Closed-Form Solution to Natural Image Matting",
PAMI 2008), applied with box filters as in He, Sun, Tang, "Fast Matting Using Large Kernel Matting Laplacian
Matrices", CVPR 2010, eqs. 11-13.

For windows w_k of (2r+1)² pixels with colour mean μ_k and covariance Σ_k, Levin's eq. 12 is

    L_ij = Σ_{k | i,j ∈ w_k} ( δ_ij − 1/|w| · (1 + (I_i − μ_k)ᵀ (Σ_k + ε/|w|·U)⁻¹ (I_j − μ_k)) ).

Expanding the sum gives, for any vector p (He et al.):

    a_k = Δ_k (mean_{w_k}(I p) − μ_k p̄_k),   b_k = p̄_k − a_kᵀ μ_k,   Δ_k = (Σ_k + ε/|w| U)⁻¹
    (L p)_i = n_i p_i − (Σ_{k ∋ i} a_k)ᵀ I_i − Σ_{k ∋ i} b_k

with n_i the number of windows containing i. Only windows lying fully inside the image are used, so the operator
is exactly Levin's L (symmetric positive semi-definite). No matrix is ever stored: Δ_k (its 6 distinct entries) is
computed once, and each application is one compiled sweep down the rows (:mod:`.kernels`), μ_k and (a_k, b_k)
recomputed on the way — I (float32, as the engines hold it) and 6 float64 images of Δ_k, no temporaries per
application.

**float64 throughout.** With Levin's ε = 1e-7, Δ_k reaches 9/ε ≈ 1e8 in flat windows, and both
mean(I p) − μ_k p̄_k and the final sum n_i p_i − Σ a_kᵀ I_i − Σ b_k cancel large terms. In float32 the computed
L p was not positive semi-definite: conjugate gradients met p·Lp < 0 with a residual 150× ‖b‖ on a hair
composite, and the "solution" depended on rounding — an image perturbed by N(0, 1e-5), far below one 8-bit code
value, moved its SAD between 2.4 and 11.6. In float64 the same solve converges and gives SAD 1.77 for every
perturbation (tests/test_classical_solver.py holds a perturbation test).

The same (a_k, b_k) are Levin's affine model α ≈ a_kᵀ I + b_k (eq. 3); :func:`affine_upsample` uses them to carry
a coarse solution to a finer image (Levin §6: "compute the linear coefficients on the coarse image and interpolate
them"), which keeps the fine image's edges instead of blurring the coarse alpha.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Optional, Tuple

import cv2
import numpy as np

from . import compiled


def _box_means(planes, r: int) -> np.ndarray:
    """The mean over the (2r+1)² window centred at each pixel (edges reflected: OpenCV's BORDER_REFLECT) of each
    H×W float64 plane, as the rows of one k×H×W array (no stacking copy)."""
    planes = list(planes)
    out = np.empty((len(planes),) + planes[0].shape, np.float64)
    for plane, mean in zip(planes, out):
        cv2.blur(plane, (2 * r + 1, 2 * r + 1), dst=mean, borderType=cv2.BORDER_REFLECT)
    return out


def _row_runs(active: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Each row's runs of ``active`` pixels as (starts, runs): row y's runs are ``runs[starts[y]:starts[y + 1]]``,
    each [first, last + 1) column (int64, (H+1,) and (n, 2))."""
    h, w = active.shape
    padded = np.zeros((h, w + 2), np.int8)
    padded[:, 1:-1] = active
    ys, xs = np.nonzero(np.diff(padded, axis=1))  # in raster order, a run's first column then one past its last
    runs = np.ascontiguousarray(xs.reshape(-1, 2), np.int64)
    starts = np.searchsorted(ys[::2], np.arange(h + 1)).astype(np.int64)
    return starts, runs


@dataclass(frozen=True)
class ProductRegion:
    """Where :class:`MattingLaplacian` works: the pixels whose L p a product computes, as each row's runs of
    columns, and the windows they lie in (``windows``: the pixels dilated by a window, H×W uint8; as each row's
    runs of window centres in columns −r … W + r − 1, the kernel's padded ring), as ``compiled.laplacian_rows``
    takes them. A solve needs L p only at its unknown pixels: around a roto's band about half of the crop, where
    each row's first-to-last span was 70 %. The windows are the only ones L_ij between two region pixels sums
    over, so Δ_k is needed only there.

    ``out_runs`` rows are (first column, last column + 1, index of the first in the output): a product's output is
    H×W (index y·W + first), or with ``packed`` a vector of the region's pixels in raster order."""
    out_starts: np.ndarray
    out_runs: np.ndarray
    window_starts: np.ndarray
    window_runs: np.ndarray
    out_shape: Tuple[int, ...]  #: a product's output: (H, W), or (pixels,) when packed
    windows: Optional[np.ndarray] = None  #: None: every window (:meth:`whole`)
    #: packed: (index in an H×W image, index in the packed vector, length) of each run, for
    #: :func:`.compiled.gather_runs` and ``scatter_runs`` between the two layouts (None otherwise)
    moves: Optional[np.ndarray] = None

    @cached_property
    def cost(self) -> np.ndarray:
        """The work before each row (H+1 values from 0): output pixels and window centres, halved (a whole
        product costs about one per pixel), for blocks of rows with equal work (:func:`.compiled.run_blocks`)."""
        work = np.zeros(len(self.out_starts), np.int64)
        for starts, runs in ((self.out_starts, self.out_runs), (self.window_starts, self.window_runs)):
            before = np.concatenate([[0], np.cumsum(runs[:, 1] - runs[:, 0])])
            work += before[starts]
        return work // 2

    @classmethod
    def around(cls, active: np.ndarray, r: int, packed: bool = False) -> "ProductRegion":
        """The region of the pixels ``active`` (H×W bool); ``packed``: products write a vector of them."""
        h, w = active.shape
        windows = cv2.dilate(active.view(np.uint8), np.ones((2 * r + 1, 2 * r + 1), np.uint8))
        window_starts, window_runs = _row_runs(windows)
        window_runs[window_runs[:, 0] == 0, 0] = -r  # (the padding beyond the crop's edges: windows not used, zero)
        window_runs[window_runs[:, 1] == w, 1] = w + r
        out_starts, runs = _row_runs(active)
        lengths = runs[:, 1] - runs[:, 0]
        in_image = np.repeat(np.arange(h), np.diff(out_starts)) * w + runs[:, 0]  # each run's first pixel's index
        at = np.cumsum(lengths) - lengths if packed else in_image
        out_runs = np.ascontiguousarray(np.column_stack([runs, at]), np.int64)
        out_shape = (int(lengths.sum()),) if packed else (h, w)
        moves = np.ascontiguousarray(np.column_stack([in_image, at, lengths]), np.int64) if packed else None
        return cls(out_starts, out_runs, window_starts, window_runs, out_shape, windows, moves)

    @classmethod
    def whole(cls, h: int, w: int, r: int) -> "ProductRegion":
        """Every pixel of an H×W image: one run per row."""
        starts = np.arange(h + 1, dtype=np.int64)
        rows = np.arange(h, dtype=np.int64)
        out_runs = np.column_stack([np.zeros(h, np.int64), np.full(h, w, np.int64), rows * w])
        return cls(starts, out_runs, starts, np.tile(np.array([-r, w + r], np.int64), (h, 1)), (h, w))


class MattingLaplacian:
    """The matting Laplacian of an H×W×3 image (values in [0, 1]), applied matrix-free in float64.

    ``eps`` is Levin's ε (regularises window covariances; 1e-7 in the paper), ``r`` the window radius (r=1:
    3×3 windows, as in the paper, and the only radius the compiled kernels take). ``valid`` marks the window
    centres to use (default: windows fully inside the image). ``region``: where products are computed (default:
    every pixel); only its windows are set up, and elsewhere :meth:`apply` leaves its output as it was and
    :meth:`diagonal` holds only those windows' terms. Δ_k is computed once; each product is one compiled sweep
    (:mod:`.kernels`), in ``blocks`` blocks of rows with equal work at once (default: one per thread for large
    regions, :func:`.compiled.row_blocks`).
    """

    def __init__(self, image: np.ndarray, eps: float = 1e-7, r: int = 1, valid: Optional[np.ndarray] = None,
                 blocks: Optional[int] = None, region: Optional[ProductRegion] = None):
        h, w = image.shape[:2]
        if r != compiled.RADIUS:
            raise ValueError(f"radius: the compiled matting Laplacian uses Levin's 3x3 windows "
                             f"(r = {compiled.RADIUS}), got r = {r}")
        if h < 2 * r + 1 or w < 2 * r + 1:
            raise ValueError(f"image {w}x{h} is smaller than one {2 * r + 1}x{2 * r + 1} window")
        self.region = ProductRegion.whole(h, w, r) if region is None else region
        if valid is None:  # windows fully inside the image (BandOperator passes its own)
            valid = np.zeros((h, w), np.uint8)
            valid[r:h - r, r:w - r] = 1
        if self.region.windows is not None:
            valid = valid & self.region.windows
        self.valid = np.ascontiguousarray(valid, np.uint8)
        used = np.zeros((h, w), np.uint8)  # the windows the product uses: valid and inside the image
        used[r:h - r, r:w - r] = self.valid[r:h - r, r:w - r]
        #: n_i, the number of used windows holding pixel i (at most (2r+1)² = 9: exact in uint8)
        self.count = cv2.boxFilter(used, -1, (2 * r + 1, 2 * r + 1), normalize=False, borderType=cv2.BORDER_CONSTANT)
        del used
        # colour planes (3×H×W), the engines' precision (sums are float64); planes let the kernels vectorise
        self.image = np.ascontiguousarray(np.moveaxis(image[:, :, :3], 2, 0), np.float32)
        # Δ_k's distinct entries 00 01 02 11 12 22, as planes: set at the region's windows only (all that is read)
        self.inv_cov = np.empty((6, h, w), np.float64)
        self.blocks = None if blocks is None else max(1, min(blocks, h))
        self._in_blocks(compiled.window_inverse, compiled.PRODUCT_PIXELS, self.image, self.valid,
                        eps / float((2 * r + 1) ** 2), self.inv_cov, self.region.window_starts,
                        self.region.window_runs)
        self._ring = self._sums = np.empty((0,))  # the product's scratch per block (:meth:`_scratch`)

    def _blocks(self, per_block: int) -> int:
        """How many blocks of rows (of equal work in the region) a kernel runs in: the ``blocks`` asked for, else as
        many as :func:`.compiled.row_blocks` gives for ``per_block``."""
        return self.blocks or compiled.row_blocks(int(self.region.cost[-1]), per_block)

    def _in_blocks(self, kernel: Callable, per_block: int, *args) -> None:
        """``kernel(*args, y0, y1)`` over all rows, in :meth:`_blocks` blocks at once."""
        cost = self.region.cost
        compiled.run_blocks(lambda _, y0, y1: kernel(*args, y0, y1), self._blocks(per_block), 0, len(cost) - 1,
                            cost)

    def _scratch(self, blocks: int) -> None:
        """Per block of rows (run at once; the result does not depend on their number), the product's window rows
        (``_ring``) and scratch (``_sums``): made once for as many blocks as a product has used."""
        if len(self._ring) < blocks:
            r, w = compiled.RADIUS, self.valid.shape[1]
            self._ring = np.empty((blocks, 2 * r + 1, 4, w + 2 * r), np.float64)
            self._sums = np.empty((blocks, 7, w + 2 * r), np.float64)

    def apply(self, p: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
        """L p (float64) for an H×W vector p at the region's pixels, into ``out`` when given (contiguous float64 of
        the region's ``out_shape``: left as it was elsewhere)."""
        region = self.region
        out = np.empty(region.out_shape, np.float64) if out is None else out
        p = np.ascontiguousarray(p, np.float64)
        flat = out.reshape(-1)  # (a view)
        cost = region.cost
        blocks = self._blocks(compiled.PRODUCT_PIXELS)
        self._scratch(blocks)
        compiled.run_blocks(lambda block, y0, y1: compiled.laplacian_rows(
            self.image, self.inv_cov, self.valid, self.count, p, self._ring[block], self._sums[block], flat, y0, y1,
            region.out_starts, region.out_runs, region.window_starts, region.window_runs), blocks, 0, len(p), cost)
        return out

    def diagonal(self) -> np.ndarray:
        """diag(L) (for the Jacobi preconditioner)."""
        out = np.empty(self.valid.shape, np.float64)
        self._in_blocks(compiled.laplacian_diagonal, compiled.PRODUCT_PIXELS, self.image, self.inv_cov, self.valid,
                        out)
        return out


class BandOperator:
    """The same L applied only over the tiles that hold unknown pixels (the band), for thin bands in big crops.

    The crop is cut into ``tile``×``tile`` tiles; the tiles holding unknown pixels, each with a halo of 2r pixels
    (what one application of L reads around a pixel), are stacked into one tall mosaic image on which
    :class:`MattingLaplacian` runs unchanged, with the window-validity mask of the full crop. Vectors live in a
    compact layout (the tiles' interiors); each application gathers the halos from neighbouring tiles (zero where
    a neighbour holds no unknowns, as the masked CG vectors are there). Cost ∝ band area instead of crop area.
    """

    @staticmethod
    def active_tiles(active: np.ndarray, tile: int) -> np.ndarray:
        """(n, 2) tile rows/columns of the tiles holding an active pixel."""
        h, w = active.shape
        th, tw = -(-h // tile), -(-w // tile)
        grid = np.zeros((th * tile, tw * tile), bool)
        grid[:h, :w] = active
        return np.argwhere(grid.reshape(th, tile, tw, tile).any(axis=(1, 3)))

    def __init__(self, image: np.ndarray, active: np.ndarray, eps: float, r: int, tile: int):
        h, w = active.shape
        pad = 2 * r
        th, tw = -(-h // tile), -(-w // tile)
        hp, wp = th * tile + 2 * pad, tw * tile + 2 * pad  # padded, extended to whole tiles
        image_pad = np.zeros((hp, wp, 3), np.float32)
        image_pad[pad:pad + h, pad:pad + w] = image
        valid_pad = np.zeros((hp, wp), np.uint8)
        valid_pad[pad + r:pad + h - r, pad + r:pad + w - r] = 1  # windows fully inside the crop, as in the crop
        tiles = self.active_tiles(active, tile)
        self.count, self.tile, self.pad, self.shape = len(tiles), tile, pad, (h, w)
        side = tile + 2 * pad
        offsets = np.arange(side)
        rows = tiles[:, 0, None] * tile + offsets  # padded coordinates of each block's rows, (n, side)
        cols = tiles[:, 1, None] * tile + offsets
        block = rows[:, :, None] * wp + cols[:, None, :]  # (n, side, side) flat indices into the padded crop
        inner = block[:, pad:pad + tile, pad:pad + tile]  # (n, tile, tile)
        self.inner = inner.reshape(-1)
        lookup = np.full(hp * wp, self.inner.size, np.int64)  # padded pixel -> compact index (or the zero slot)
        lookup[self.inner] = np.arange(self.inner.size)
        self.halo_source = lookup[block].reshape(-1, side)  # (n·side, side)
        self.padded_shape = (hp, wp)
        self.block = block.reshape(-1, side)  # (n·side, side)
        mosaic = image_pad.reshape(-1, 3)[block.reshape(-1)].reshape(-1, side, 3)
        self.laplacian = MattingLaplacian(mosaic, eps, r, valid=valid_pad.reshape(-1)[block.reshape(-1)]
                                          .reshape(-1, side))

    def compact(self, x: np.ndarray) -> np.ndarray:
        """Crop layout (H×W) -> compact layout (n·tile² vector)."""
        padded = np.zeros(self.padded_shape, np.float64)
        padded[self.pad:self.pad + self.shape[0], self.pad:self.pad + self.shape[1]] = x
        return padded.reshape(-1)[self.inner]

    def full(self, v: np.ndarray, fill: np.ndarray) -> np.ndarray:
        """Compact layout -> crop layout, pixels outside the tiles taken from ``fill``."""
        padded = np.zeros(self.padded_shape, np.float64)
        padded[self.pad:self.pad + self.shape[0], self.pad:self.pad + self.shape[1]] = fill
        padded.reshape(-1)[self.inner] = v
        return padded[self.pad:self.pad + self.shape[0], self.pad:self.pad + self.shape[1]].copy()

    def _interiors(self, mosaic: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
        pad, tile, side = self.pad, self.tile, self.tile + 2 * self.pad
        interiors = mosaic.reshape(self.count, side, side)[:, pad:pad + tile, pad:pad + tile]
        if out is None:
            return interiors.reshape(-1)
        np.copyto(out.reshape(self.count, tile, tile), interiors)
        return out

    def apply(self, v: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
        """L v in compact layout, for v zero outside the tiles' unknown pixels (into ``out`` when given)."""
        return self._interiors(self.laplacian.apply(np.append(v, 0.0)[self.halo_source]), out)

    def apply_crop(self, x: np.ndarray) -> np.ndarray:
        """L x in compact layout for any crop-layout x (e.g. the known values)."""
        padded = np.zeros(self.padded_shape, np.float64)
        padded[self.pad:self.pad + self.shape[0], self.pad:self.pad + self.shape[1]] = x
        return self._interiors(self.laplacian.apply(padded.reshape(-1)[self.block]))

    def diagonal(self) -> np.ndarray:
        """diag(L) in compact layout."""
        return self._interiors(self.laplacian.diagonal())

    def mask(self, unknown: np.ndarray) -> np.ndarray:
        """The unknown pixels in compact layout (uint8)."""
        return (self.compact(unknown.astype(np.float64)) > 0).astype(np.uint8)


class CropOperator:
    """:class:`MattingLaplacian` of the crop behind :class:`BandOperator`'s interface, working at the crop's
    ``unknown`` pixels (its :class:`ProductRegion`): L_uu and L_uk exactly, in about half the work of the whole
    crop around a roto's band. Vectors hold the unknown pixels only, in raster order (``packed``: CG's vector
    updates and sums then stream half the memory), or the whole crop (the multigrid preconditioner's layout), where
    :meth:`apply` leaves the known pixels as they were."""

    def __init__(self, image: np.ndarray, unknown: np.ndarray, eps: float, r: int, packed: bool = True):
        self.region = ProductRegion.around(unknown, r, packed)
        self.packed = packed
        self.laplacian = MattingLaplacian(image, eps, r, region=self.region)
        self._p = np.zeros(unknown.shape, np.float64) if packed else None  # a packed vector spread out (apply)

    def _moves(self, kernel: str, source: np.ndarray, out: np.ndarray) -> np.ndarray:
        moves = self.region.moves
        compiled.in_blocks(self.region.out_shape[0], kernel)(source.reshape(-1), moves, out.reshape(-1), 0,
                                                             len(moves))
        return out

    def compact(self, x: np.ndarray) -> np.ndarray:
        """Crop layout (H×W) -> the operator's layout (float64)."""
        if not self.packed:
            return x
        return self._moves("gather_runs", np.ascontiguousarray(x), np.empty(self.region.out_shape, np.float64))

    def full(self, v: np.ndarray, fill: np.ndarray) -> np.ndarray:
        """The operator's layout -> crop layout, the known pixels taken from ``fill``."""
        if not self.packed:
            return v
        return self._moves("scatter_runs", v, np.array(fill, np.float64))

    def apply(self, v: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
        """L v at the unknown pixels for v in the operator's layout (zero at known pixels)."""
        if self.packed:
            v = self._moves("scatter_runs", v, self._p)  # (its known pixels stay zero)
        return self.laplacian.apply(v, out=out)

    def apply_crop(self, x: np.ndarray) -> np.ndarray:
        """L x at the unknown pixels for any crop-layout x (e.g. the known values), in the operator's layout (zero
        at the known pixels of the crop layout)."""
        return self.laplacian.apply(x, out=np.zeros(self.region.out_shape, np.float64))

    def diagonal(self) -> np.ndarray:
        """diag(L) at the unknown pixels, in the operator's layout."""
        return self.compact(self.laplacian.diagonal())

    def mask(self, unknown: np.ndarray) -> np.ndarray:
        """The unknown pixels in the operator's layout (uint8)."""
        return np.ones(self.region.out_shape, np.uint8) if self.packed else unknown.view(np.uint8)


def linear_taps(source: int, size: int) -> Tuple[np.ndarray, np.ndarray]:
    """Bilinear resampling of ``source`` pixels to ``size`` along one axis as OpenCV's INTER_LINEAR does it
    (half-pixel centres, x_src = (x + ½)·source/size − ½, clamped at both ends): (taps, weights), each (size, 2):
    the two source indices (int64) and their float64 weights for each output pixel."""
    position = (np.arange(size) + 0.5) * (source / size) - 0.5
    first = np.floor(position)
    fraction = position - first
    first = first.astype(np.int64)
    fraction[(first < 0) | (first >= source - 1)] = 0.0  # beyond the end pixels' centres: the end pixel
    first = np.clip(first, 0, source - 1)
    taps = np.stack([first, np.minimum(first + 1, source - 1)], axis=1)
    return taps, np.stack([1.0 - fraction, fraction], axis=1)


def affine_upsample(alpha_coarse: np.ndarray, image_coarse: np.ndarray, image_fine: np.ndarray,
                    r: int = 1, eps: float = 1e-4) -> np.ndarray:
    """Carry a coarse α to a finer image through Levin's local affine model (PAMI 2008 eq. 3 and §6).

    Fits α ≈ a_kᵀ I + b_k in every coarse window (guided-filter least squares with regulariser ``eps``; He, Sun,
    Tang, "Guided Image Filtering", ECCV 2010, eqs. 5-6), averages the coefficients over the windows covering each
    pixel, interpolates them bilinearly and evaluates them on the fine image. Returns H×W float32 (not clipped).
    """
    if r != compiled.RADIUS:
        raise ValueError(f"radius: the compiled affine fit uses Levin's 3x3 windows (r = {compiled.RADIUS}), "
                         f"got r = {r}")
    h, w = image_fine.shape[:2]
    coeffs = np.empty((4,) + alpha_coarse.shape, np.float64)
    compiled.in_blocks(alpha_coarse.size, "affine_coefficients", compiled.PRODUCT_PIXELS)(
        np.ascontiguousarray(image_coarse[:, :, :3], np.float32), np.ascontiguousarray(alpha_coarse, np.float32),
        eps / float((2 * r + 1) ** 2), coeffs, 0, len(alpha_coarse))
    # averaged over the windows covering each coarse pixel, then interpolated and evaluated in one compiled pass
    coeffs = _box_means(coeffs, r)
    out = np.empty((h, w), np.float32)
    compiled.in_blocks(h * w, "affine_upsample_evaluate")(
        coeffs, *linear_taps(alpha_coarse.shape[0], h), *linear_taps(alpha_coarse.shape[1], w), image_fine, out,
        0, h)
    return out
