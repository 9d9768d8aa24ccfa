"""THE patch-inference utility for every engine: overlapping tiles merged with a Gaussian window.

Parallax Portrait Matting sec. 4.5: 448×448 patches, 224 px overlap between neighbours, predictions merged with a
Gaussian window function. The merge is a normalised weighted average, Σ w·p / Σ w, so a model that predicts a
constant returns that constant (to float rounding) and tile seams vanish: every pixel's weights sum to its
normaliser.

Numpy-level API (classical engines can use it too): :func:`plan_tiles`, :func:`gaussian_window`,
:class:`TileMerger`, :func:`tiled_apply`. Torch path: :func:`torch_tile_fn` wraps a model's forward as a batched
tile function (NCHW on the model's device, autocast fp16/bf16 on CUDA); :func:`choose_tile_and_batch` sizes tiles
and batches from free GPU memory. Torch is imported only inside those functions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

DEFAULT_TILE = 448
DEFAULT_OVERLAP = 224


@dataclass(frozen=True)
class Tile:
    y: int
    x: int
    size: int

    @property
    def slices(self) -> Tuple[slice, slice]:
        return slice(self.y, self.y + self.size), slice(self.x, self.x + self.size)


def tile_starts(length: int, tile: int, overlap: int) -> List[int]:
    """Starts of tiles covering [0, length) with stride tile − overlap; the last tile ends at ``length``."""
    if tile <= overlap or overlap < 0:
        raise ValueError(f"tile ({tile}) must exceed overlap ({overlap}) >= 0")
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def plan_tiles(shape: Tuple[int, int], tile: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP,
               needed: Optional[np.ndarray] = None) -> List[Tile]:
    """Tiles over an H×W image (already padded to at least tile×tile). With ``needed`` (H×W bool) only tiles that
    touch a needed pixel are kept: the paper extracts patches covering the trimap's uncertain region."""
    h, w = shape
    if h < tile or w < tile:
        raise ValueError(f"image {h}×{w} is smaller than the tile {tile}; pad it first (pad_to_tile)")
    tiles = [Tile(y, x, tile) for y in tile_starts(h, tile, overlap) for x in tile_starts(w, tile, overlap)]
    if needed is not None:
        tiles = [t for t in tiles if needed[t.slices].any()]
    return tiles


def gaussian_profile(size: int, sigma_fraction: float = 0.125, floor: float = 1e-6, flat_start: bool = False,
                     flat_end: bool = False) -> np.ndarray:
    """1-D Gaussian centred on the tile; ``flat_start``/``flat_end`` hold it at 1 on a side that touches the image
    border (nothing there to blend with, and two border tiles must not both fade out)."""
    centre = (size - 1) / 2.0
    index = np.arange(size)
    g = np.maximum(np.exp(-0.5 * ((index - centre) / (sigma_fraction * size)) ** 2), floor)
    if flat_start:
        g[index <= centre] = 1.0
    if flat_end:
        g[index >= centre] = 1.0
    return g


def gaussian_window(size: int, sigma_fraction: float = 0.125, floor: float = 1e-6) -> np.ndarray:
    """size×size separable Gaussian centred on the tile, σ = sigma_fraction·size. With σ = size/8 the weight at
    a tile's edge is e⁻⁸ ≈ 3e-4 of the centre's, so a neighbour's differing prediction enters smoothly (no seam);
    with the stride of half a tile every pixel lies within size/4 of some centre (weight ≥ e⁻² per axis). The
    floor keeps every weight positive. float64. (Tiles at the image border use :func:`gaussian_profile`'s flat
    sides, see :class:`TileMerger`.)"""
    g = gaussian_profile(size, sigma_fraction, floor)
    return np.outer(g, g)


def pad_to_tile(array: np.ndarray, tile: int) -> np.ndarray:
    """Reflect-pad H×W[×C] at the bottom/right to at least tile×tile (edge mode for 1-pixel-wide inputs)."""
    h, w = array.shape[:2]
    ph, pw = max(0, tile - h), max(0, tile - w)
    if not ph and not pw:
        return array
    pads = [(0, ph), (0, pw)] + [(0, 0)] * (array.ndim - 2)
    mode = "reflect" if h > ph and w > pw else "edge"
    return np.pad(array, pads, mode=mode)


class TileMerger:
    """Accumulates Σ w·p and Σ w per output; :meth:`result` divides (pixels no tile covered get ``fill``)."""

    def __init__(self, shape: Tuple[int, int], tile: int, sigma_fraction: float = 0.125):
        self.shape = shape
        self.tile = tile
        self.sigma_fraction = sigma_fraction
        self._windows: Dict[Tuple[bool, bool, bool, bool], np.ndarray] = {}
        self.weight = np.zeros(shape, np.float64)
        self.sums: Dict[str, np.ndarray] = {}

    def add(self, tile: Tile, outputs: Mapping[str, np.ndarray]) -> None:
        """outputs: name -> size×size×C predictions for this tile."""
        ys, xs = tile.slices
        window = self.window_for(tile)
        self.weight[ys, xs] += window
        for name, value in outputs.items():
            value = np.asarray(value)
            if value.ndim == 2:
                value = value[..., None]
            if name not in self.sums:
                self.sums[name] = np.zeros((*self.shape, value.shape[-1]), np.float64)
            self.sums[name][ys, xs] += window[..., None] * value

    def window_for(self, tile: Tile) -> np.ndarray:
        """The tile's Gaussian window, flat towards image borders it touches."""
        h, w = self.shape
        key = (tile.y == 0, tile.y + tile.size >= h, tile.x == 0, tile.x + tile.size >= w)
        if key not in self._windows:
            gy = gaussian_profile(tile.size, self.sigma_fraction, flat_start=key[0], flat_end=key[1])
            gx = gaussian_profile(tile.size, self.sigma_fraction, flat_start=key[2], flat_end=key[3])
            self._windows[key] = np.outer(gy, gx)
        return self._windows[key]

    @property
    def covered(self) -> np.ndarray:
        return self.weight > 0

    def result(self, fill: Optional[Mapping[str, np.ndarray]] = None) -> Dict[str, np.ndarray]:
        """name -> H×W×C float32 merged predictions; uncovered pixels take ``fill[name]`` (H×W×C) or 0."""
        covered = self.covered
        safe = np.where(covered, self.weight, 1.0)[..., None]
        out = {}
        for name, total in self.sums.items():
            merged = (total / safe).astype(np.float32)
            if fill is not None and name in fill and not covered.all():
                merged[~covered] = np.asarray(fill[name], np.float32).reshape(merged.shape)[~covered]
            out[name] = merged
        return out


#: fn(batch) -> outputs: batch maps input names to B×tile×tile×C arrays; outputs map names to the same layout
TileFn = Callable[[Dict[str, np.ndarray]], Dict[str, np.ndarray]]


def tiled_apply(inputs: Mapping[str, np.ndarray], fn: TileFn, tile: int = DEFAULT_TILE,
                overlap: int = DEFAULT_OVERLAP, batch_size: int = 1, needed: Optional[np.ndarray] = None,
                progress: Optional[Callable[[int, int], None]] = None,
                fill: Optional[Mapping[str, np.ndarray]] = None) -> Dict[str, np.ndarray]:
    """Run ``fn`` over Gaussian-merged tiles of same-sized H×W×C ``inputs``; returns H×W×C float32 outputs.

    Images smaller than a tile are reflect-padded and the result cropped back. ``progress(done, total)`` is
    called after every batch of tiles — it may raise (JobCancelled) to stop between tiles. ``needed`` limits the
    tiles to those touching needed pixels; uncovered pixels take ``fill``.
    """
    if not inputs:
        raise ValueError("tiled_apply needs at least one input array")
    shapes = {name: a.shape[:2] for name, a in inputs.items()}
    h, w = next(iter(shapes.values()))
    if any(s != (h, w) for s in shapes.values()):
        raise ValueError(f"tiled inputs must share height and width, got {shapes}")
    padded = {name: pad_to_tile(a if a.ndim == 3 else a[..., None], tile) for name, a in inputs.items()}
    ph, pw = next(iter(padded.values())).shape[:2]
    if needed is not None:
        needed = pad_to_tile(needed.astype(bool), tile)
        needed[h:, :] = False
        needed[:, w:] = False
    tiles = plan_tiles((ph, pw), tile, overlap, needed)
    merger = TileMerger((ph, pw), tile)
    total = len(tiles)
    for start in range(0, total, batch_size):
        chunk = tiles[start:start + batch_size]
        batch = {name: np.stack([a[t.slices] for t in chunk]) for name, a in padded.items()}
        outputs = fn(batch)
        for i, t in enumerate(chunk):
            merger.add(t, {name: value[i] for name, value in outputs.items()})
        if progress is not None:
            progress(start + len(chunk), total)
    if fill is not None:
        fill = {name: pad_to_tile(np.asarray(v, np.float32).reshape(h, w, -1), tile) for name, v in fill.items()}
    merged = merger.result(fill)
    if not merged and fill is not None:  # nothing needed a tile: everything comes from fill
        merged = {name: v for name, v in fill.items()}
    return {name: v[:h, :w] for name, v in merged.items()}


def whole_frame_apply(inputs: Mapping[str, np.ndarray], fn: TileFn, multiple: int = 32) -> Dict[str, np.ndarray]:
    """Run ``fn`` once over the whole frame (no tiles): inputs zero-padded at the bottom/right to a multiple of
    ``multiple`` and the outputs cropped back — what VitMatteImageProcessor (``do_pad``, ``size_divisor`` 32) and
    the post-processing of transformers' matting pipeline do. Engines use it for the request param ``tile: 0``."""
    if not inputs:
        raise ValueError("whole_frame_apply needs at least one input array")
    h, w = next(iter(inputs.values())).shape[:2]
    ph, pw = -h % multiple, -w % multiple
    batch = {}
    for name, a in inputs.items():
        a = a if a.ndim == 3 else a[..., None]
        if a.shape[:2] != (h, w):
            raise ValueError(f"inputs must share height and width, got {name} {a.shape[:2]} and {(h, w)}")
        batch[name] = np.pad(a, [(0, ph), (0, pw), (0, 0)])[None]
    return {name: value[0, :h, :w] for name, value in fn(batch).items()}


class TorchTileFn:
    """A model's forward as a batched :data:`TileFn` (see :func:`torch_tile_fn`) that survives running out of
    device memory: the batch is halved and retried (the memory estimate behind ``choose_tile_and_batch`` is an
    estimate, and a compositing app may take GPU memory between the estimate and the run); the halved size is kept
    for the following batches (``batch_limit``). When even one tile does not fit, a MemoryError names the tile
    size and the request's ``tile`` param."""

    def __init__(self, forward: Callable[..., Dict], device, autocast_dtype=None, outputs: Sequence[str] = ()):
        import torch

        self.forward, self.device = forward, torch.device(device)
        self.autocast_dtype, self.outputs = autocast_dtype, tuple(outputs)
        self.batch_limit: Optional[int] = None  #: set after an out-of-memory error: the batch size that is used

    def _run(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        import torch

        tensors = {name: torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2), dtype=np.float32))
                   .to(self.device) for name, a in batch.items()}
        use_amp = self.autocast_dtype is not None and self.device.type == "cuda"
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=use_amp):
            result = self.forward(**tensors)
        keep = self.outputs or list(result)
        return {name: result[name].float().permute(0, 2, 3, 1).cpu().numpy() for name in keep}

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        import torch

        count = len(next(iter(batch.values())))
        size = min(count, self.batch_limit or count)
        parts = []
        start = 0
        while start < count:
            chunk = {name: a[start:start + size] for name, a in batch.items()}
            try:
                parts.append(self._run(chunk))
            except torch.OutOfMemoryError:
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                if size == 1:
                    h, w = next(iter(batch.values())).shape[1:3]
                    raise MemoryError(f"one {h}×{w} tile does not fit in {self.device} memory; set the request's "
                                      "'tile' param to a smaller size (a multiple of 32, at least 224)") from None
                size = self.batch_limit = max(1, size // 2)
                continue  # retry this chunk smaller
            start += size
        return parts[0] if len(parts) == 1 else {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def torch_tile_fn(forward: Callable[..., Dict], device, autocast_dtype=None, outputs: Sequence[str] = ()
                  ) -> TorchTileFn:
    """Wrap ``forward(**tensors) -> dict of B×C×h×w tensors`` as a :data:`TileFn`: NHWC numpy -> NCHW tensors on
    ``device``, inference mode, autocast (``autocast_dtype`` torch.float16/bfloat16, CUDA only), back to NHWC
    float32 numpy. ``outputs`` selects which forward outputs to keep (all when empty). Out of device memory, it
    halves the batch and retries (:class:`TorchTileFn`)."""
    return TorchTileFn(forward, device, autocast_dtype, outputs)


def choose_tile_and_batch(free_bytes: Optional[int], bytes_per_pixel: float, tile: int = DEFAULT_TILE,
                          max_batch: int = 16, min_tile: int = 224, multiple: int = 32,
                          headroom: float = 0.7) -> Tuple[int, int]:
    """(tile, batch) fitting ``headroom`` of the free device memory, given the model's activation cost in bytes
    per input pixel at inference. Keeps the trained tile and batches as many as fit; only if one tile does not
    fit is the tile shrunk (to a multiple of ``multiple``, not below ``min_tile``). ``free_bytes`` None (CPU)
    -> (tile, 1)."""
    if free_bytes is None:
        return tile, 1
    budget = free_bytes * headroom
    per_tile = bytes_per_pixel * tile * tile
    if per_tile <= budget:
        return tile, int(max(1, min(max_batch, budget // per_tile)))
    side = int((budget / bytes_per_pixel) ** 0.5) // multiple * multiple
    return max(min_tile, side), 1


def cuda_free_bytes(device) -> Optional[int]:
    """Free memory on a CUDA device (torch.cuda.mem_get_info), None for other devices."""
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return int(free)
