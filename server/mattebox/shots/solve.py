"""Matte a shot as a shot: key-frame guidance carried through it, and each frame's solve held steady by its
neighbours.

For every output frame t (docs/shots.md):

1. guidance — the frame's own mask/trimap if it is a key, else the keys carried by optical flow (:mod:`.guidance`);
   with no keys at all, each frame's automatic guidance (as the classical engine makes it);
2. an independent solve α⁰ of t and of its ``radius`` neighbours on each side (closed-form matting,
   :func:`~mattebox.matting.alpha.solve_alpha`);
3. the **temporal prior**: the neighbours' α⁰ warped onto t along the foreground layer's motion, averaged with
   weights w_s = the warp's forward-backward confidence (:mod:`.flow`) times its agreement with t's own α⁰
   (docs/shots.md); it joins the solve of t as a data term ``λ_T·w̄ (α − α̂)²`` (the same place as the
   colour-sampling prior: Robust Matting eq. 8's form), so where the picture is still or follows the flow the
   matte is pulled to what its neighbours agree on, and where the warp is unreliable (occlusion, fast motion) or
   a neighbour disagrees with t the frame keeps its own solve;
4. that solve starts from the neighbours' consensus and needs only the finest level's iterations, and reuses the
   independent solve's expanded trimap, colour samples and (up to ``operator_bytes``) its finest level's operator
   (:func:`~mattebox.matting.alpha.prepare`);
5. the decontaminated foreground from the steadied alpha (multilevel, linear light).

Every step is a pure function of the frames in a fixed window and the keys, so a shot rendered in chunks gives the
same mattes as one rendered whole; memory holds a window of frames and the flows between the keys around it, not
the shot.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..colour import linear_to_srgb
from ..contract import MatteRequest, Progress, no_progress
from ..matting.alpha import PRESETS, Prepared, prepare, solve_alpha
from ..matting.foreground import multilevel
from ..matting.motion import DISFlow, warp
from .flow import MIN_LAYER_PIXELS, ScaledFlow, ShotFlows, carry, interior, nearest_index
from .guidance import Key, PropagationSettings, trimap_for_frame
from .tasks import Task


@dataclass
class ShotSettings:
    quality: str = "balanced"  #: solver preset (fast / balanced / best), as for one frame
    radius: int = 2  #: neighbours on each side whose solves form the temporal prior
    temporal_weight: float = 1.0  #: λ_T of the temporal data term
    polish_iterations: int = 10  #: CG iterations of the steadied solve, started from the neighbours' consensus
    #: the steadied solve reuses the independent solve's finest-level operator (window inverses, diag(L)) when
    #: that takes at most this many bytes (~80 per pixel of the band's crop; radius + 1 frames' are held)
    operator_bytes: int = 64 << 20
    agreement_sigma: float = 0.15  #: σ_a: a warped neighbour that disagrees with α⁰_t by much more is misaligned
    foreground: bool = True  #: also solve the decontaminated foreground
    #: threads that run the independent solves (step 2) while the walk steadies an earlier frame: the compiled
    #: kernels and cv2 release the GIL, so on two cores a frame's solve overlaps the previous frame's prior, polish
    #: and foreground (the same mattes bit for bit); 0 solves every frame in the walk's own thread, on demand
    workers: int = 1
    #: frames beyond the temporal window whose independent solves start before the walk reaches them, so a worker has
    #: one to run while the walk steadies frame t and the walk one to take when it would wait (each is read, guided
    #: and held, with its kept operator, meanwhile)
    lookahead: int = 2
    band_width: float = 0  #: unknown band (px) for mask keys and automatic guidance (0: scaled to the image)
    #: the temporal prior's optical flow on frames resized by this: half resolution, a quarter of DIS's work (the
    #: layer motion within the window needs no more); keys are carried at ``propagation.flow_scale``, and where
    #: they are (between two frames not both keys) the prior reads the carriers' flows instead of a second DIS
    flow_scale: float = 0.5
    propagation: PropagationSettings = field(default_factory=PropagationSettings)


@dataclass
class ShotFrame:
    frame: int
    alpha: np.ndarray  #: H×W float32
    foreground: Optional[np.ndarray]  #: H×W×3 float32 linear, straight (None when not asked for)
    trimap: np.ndarray  #: the guidance the frame was solved with
    independent: np.ndarray  #: α⁰, the frame solved alone (what per-frame rendering would give)
    info: Dict[str, object]


class _Window:
    """Per-frame values (sRGB frames, trimaps, α⁰) kept while the walk needs them."""

    def __init__(self, compute: Callable[[int], object]):
        self.compute = compute
        self.values: Dict[int, object] = {}

    def __call__(self, frame: int):
        if frame not in self.values:
            self.values[frame] = self.compute(frame)
        return self.values[frame]

    def forget_before(self, frame: int) -> None:
        for old in [f for f in self.values if f < frame]:
            del self.values[old]


class _Ahead(_Window):
    """A :class:`_Window` whose values ``compute(*arguments(frame))`` are :class:`~.tasks.Task` s on ``pool``:
    ``arguments`` runs in the caller's thread, so reads and guidance keep the walk's order; :meth:`start` begins a
    frame's computation before the walk reads it, and reading waits for it (or runs it, if no worker has; while a
    worker runs it, this thread runs frames further ahead that wait in the queue)."""

    def __init__(self, compute: Callable, arguments: Callable[[int], tuple], pool: Optional[ThreadPoolExecutor]):
        super().__init__(lambda frame: Task(pool, compute, *arguments(frame)))

    def start(self, frame: int) -> None:
        super().__call__(frame)

    def __call__(self, frame: int):
        task = super().__call__(frame)
        later = sorted((f for f in self.values if f > frame), reverse=True)
        while not task.done() and any(self.values[f].steal() for f in later):
            pass  # a worker runs this frame's task: meanwhile, this thread runs the furthest one still queued
        return task.result()


def matte_shot(read: Callable[[int], np.ndarray], frames: Sequence[int], keys: Dict[int, Key],
               outputs: Optional[Sequence[int]] = None, settings: Optional[ShotSettings] = None,
               progress: Progress = no_progress) -> Iterator[ShotFrame]:
    """Yield a :class:`ShotFrame` for each frame of ``outputs`` (default: all ``frames``), in order.

    ``read(frame)``: the frame as H×W×3 float32 linear light. ``frames``: the whole shot, consecutive with a fixed
    step (neighbours never reach outside it). ``keys``: frame -> :class:`~.guidance.Key` (empty: automatic
    guidance on every frame)."""
    settings = settings or ShotSettings()
    if settings.quality not in PRESETS:
        raise ValueError(f"quality: expected one of {sorted(PRESETS)}, got {settings.quality!r}")
    for name in ("workers", "lookahead"):
        if not isinstance(getattr(settings, name), int) or getattr(settings, name) < 0:
            raise ValueError(f"{name}: expected a whole number >= 0, got {getattr(settings, name)!r}")
    frames = list(frames)
    if not frames:
        raise ValueError("frames: a shot needs at least one frame")
    step = frames[1] - frames[0] if len(frames) > 1 else 1
    if step < 1 or frames != list(range(frames[0], frames[0] + step * len(frames), step)):
        raise ValueError("frames: expected consecutive frame numbers with one step, ascending")
    outside = sorted(set(keys) - set(frames))
    if outside:
        raise ValueError(f"keys: frame {outside[0]} is not in the shot {frames[0]}-{frames[-1]}")
    outputs = list(outputs) if outputs is not None else frames
    missing = sorted(set(outputs) - set(frames))
    if missing:
        raise ValueError(f"outputs: frame {missing[0]} is not in the shot {frames[0]}-{frames[-1]}")
    shot = set(frames)
    solver = PRESETS[settings.quality]
    polish = replace(solver, finest_iterations=settings.polish_iterations)
    linear = _Window(read)
    srgb = _Window(lambda f: linear_to_srgb(np.clip(linear(f), 0.0, 1.0)))
    gaps = np.diff(sorted(keys)) // step if len(keys) > 1 else [0]

    # the independent solves of frames ahead and the flows of frame pairs run on worker threads (.tasks)
    pool = ThreadPoolExecutor(settings.workers, thread_name_prefix="shot-solve") if settings.workers > 0 else None
    ahead = settings.lookahead if pool else 0

    def shot_flows(scale: float, pairs: int, borrow=None) -> ShotFlows:
        return ShotFlows(srgb, step=step, cache_pairs=pairs, flow_model=ScaledFlow(DISFlow(), scale), borrow=borrow,
                         pool=pool)

    # flows are computed on demand: with a key on every frame the carriers compute none; they carry keys over
    # exactly the frame pairs not both keys, and the temporal prior (within the window) reads those from them
    carriers = shot_flows(settings.propagation.flow_scale,
                          int(max(gaps, default=0)) + 2 * settings.radius + 2 + settings.lookahead)
    carried_pair = (lambda lower: lower not in keys or lower + step not in keys) if keys else None
    flows = shot_flows(settings.flow_scale, 2 * settings.radius + 2, (carriers, carried_pair) if keys else None)

    def guidance(frame: int):
        if keys:
            return trimap_for_frame(carriers, frame, keys, settings.propagation)
        from ..engines.classical import ClassicalEngine

        request = MatteRequest(image=linear(frame), params={"band_width": settings.band_width})
        return ClassicalEngine.guidance(request)

    trimaps = _Window(guidance)

    def solve_alone(image: np.ndarray, trimap: np.ndarray) -> Tuple[np.ndarray, Prepared]:
        """(α⁰, the solve's :class:`~mattebox.matting.alpha.Prepared`, reused by the steadied solve)."""
        prepared = prepare(image, trimap, solver, keep_operator_bytes=settings.operator_bytes)
        return solve_alpha(image, trimap, solver, prepared=prepared), prepared

    alone = _Ahead(solve_alone, lambda frame: (srgb(frame), trimaps(frame)[0]), pool)

    def independent(frame: int) -> np.ndarray:
        return alone(frame)[0]

    try:
        for done, t in enumerate(outputs):
            progress("shot", done, len(outputs), f"frame {t}")
            for j in range(-settings.radius, settings.radius + ahead + 1):  # t's window and the frames ahead, in order
                if t + j * step in shot:
                    alone.start(t + j * step)
            neighbours = [t + j * step for j in range(-settings.radius, settings.radius + 1)
                          if j != 0 and t + j * step in shot]
            trimap, how = trimaps(t)
            prior, weight_sum, consensus = _temporal_prior(t, neighbours, independent, trimap, flows, settings)
            own, prepared = alone(t)
            mean_weight = weight_sum / (2 * settings.radius) if settings.radius else weight_sum
            alpha = own
            if neighbours:
                alpha = solve_alpha(srgb(t), trimap, polish, prior=(prior, settings.temporal_weight * mean_weight),
                                    initial=(own + consensus) / (1.0 + weight_sum), prepared=prepared)
            if prepared.kept is not None:
                prepared.kept.release()  # t's operator served its steadied solve
            foreground = multilevel(linear(t), alpha) if settings.foreground else None
            unknown = trimap == 0.5
            info = {"frame": t, "guidance": how, "neighbours": len(neighbours),
                    "temporal_weight": float(mean_weight[unknown].mean()) if neighbours and unknown.any() else 0.0}
            yield ShotFrame(frame=t, alpha=alpha, foreground=foreground, trimap=trimap, independent=own, info=info)
            floor = t - settings.radius * step
            for window in (linear, srgb, trimaps, alone):
                window.forget_before(floor)
            for shot_flow in (flows, carriers):
                shot_flow.forget(lambda target, source, floor=floor: target >= floor)
    finally:  # the shot ended, failed or was abandoned: wait for a solve under way (it holds the frame's memory)
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    progress("shot", len(outputs), len(outputs))


def _warp_sharp(alpha: np.ndarray, flow: np.ndarray, box) -> np.ndarray:
    """Backward-warp a matte onto ``box`` (the flow's extent) with bicubic interpolation, clipped to [0, 1]
    (bilinear halves a one-pixel strand at half-pixel offsets, and the blur would change from frame to frame with
    the sub-pixel phase of the motion)."""
    return np.clip(warp(alpha, flow, cv2.INTER_CUBIC, box), 0.0, 1.0)


class _Registration:
    """Neighbours' mattes warped onto one frame and shifted by the sub-pixel translation that best aligns each with
    the frame's own solve ``target`` over its unknown ``band`` (phase correlation, Kuglin & Hines 1975): a layer
    flow estimated from a weakly textured subject is biased by a fraction of a pixel, which is a strand's width.
    A shift is kept only if it lowers the band's mean disagreement. Everything is on ``box``, the band's bounding
    box (the only place the steadied solve reads the prior); the correlation's window is made once for all
    neighbours."""

    def __init__(self, target: np.ndarray, band: np.ndarray, box):
        self.target, self.band, self.box = target, band, box
        height, width = band.shape
        self.enough = band.sum() >= 64  # fewer pixels are too few to register
        self.window = cv2.createHanningWindow((width, height), cv2.CV_64F) if min(height, width) > 8 else None

    def __call__(self, alpha: np.ndarray, flow: np.ndarray) -> np.ndarray:
        """``alpha`` (a whole frame) warped with ``flow`` (on the box) and registered, on the box."""
        warped = _warp_sharp(alpha, flow, self.box)
        if not self.enough:
            return warped
        # warped(p) ≈ target(p − shift): sampling the source at p + d + shift lines it up with the target
        # (fresh float64 copies: with a window and no padding, cv2.phaseCorrelate multiplies its inputs in place)
        shift, _ = cv2.phaseCorrelate(self.target.astype(np.float64), warped.astype(np.float64), self.window)
        if max(abs(shift[0]), abs(shift[1])) > 2:  # not a sub-pixel bias: leave the flow alone
            return warped
        shifted_flow = flow.copy()  # (per channel: numpy's broadcast over a last axis of 2 is ~5x slower)
        shifted_flow[..., 0] += np.float32(shift[0])
        shifted_flow[..., 1] += np.float32(shift[1])
        shifted = _warp_sharp(alpha, shifted_flow, self.box)
        if np.abs(shifted - self.target)[self.band].mean() < np.abs(warped - self.target)[self.band].mean():
            return shifted
        return warped


def _temporal_prior(t: int, neighbours: List[int], independent: Callable[[int], np.ndarray], trimap: np.ndarray,
                    flows: ShotFlows, settings: ShotSettings):
    """(α̂, Σ_s w_s, Σ_s w_s·α⁰_s∘d_F): the neighbours' independent solves warped onto ``t`` and their weights,
    over the bounding box of t's unknown band (zero elsewhere: the steadied solve reads them only on unknowns).

    Alpha belongs to the foreground layer, so it is warped with the foreground's motion d_F: the flow of frame t's
    definite foreground's interior carried to every pixel from its nearest interior pixel (:func:`~.flow.carry`,
    one distance transform for all neighbours); a raw flow in the band mixes the foreground's and the background's
    motion and smears the matte. The weight is d_F's forward-backward confidence times the agreement with α⁰_t."""
    h, w = trimap.shape
    weighted = np.zeros((h, w), np.float32)
    weight_sum = np.zeros((h, w), np.float32)
    band = trimap == 0.5
    inner = interior(trimap == 1.0)
    # no band: nothing to steady; too small an interior: no foreground to follow, the neighbours say nothing
    if band.any() and inner.sum() >= MIN_LAYER_PIXELS:
        rows, columns = np.flatnonzero(band.any(axis=1)), np.flatnonzero(band.any(axis=0))
        box = (slice(rows[0], rows[-1] + 1), slice(columns[0], columns[-1] + 1))
        index = nearest_index(inner)[box]
        own = independent(t)[box]
        registered = _Registration(own, band[box], box)
        for s in neighbours:
            flow, weight = carry(*flows.span(t, s), index)
            warped = registered(independent(s), flow)
            if settings.agreement_sigma > 0:
                weight = weight * np.exp(-((warped - own) / settings.agreement_sigma) ** 2)
            weighted[box] += weight * warped
            weight_sum[box] += weight
    prior = np.where(weight_sum > 1e-6, weighted / np.maximum(weight_sum, 1e-6), 0.0).astype(np.float32)
    return prior, weight_sum, weighted
