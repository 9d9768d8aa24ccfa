"""Frame ranges as artists type them, one grammar for every host and `mattebox render`.

    1001-1100       every frame from 1001 to 1100
    1001-1100x2     every second frame
    1,5,9           a list
    1-10,20-30x5    ranges and lists together
    -5--1, -2-3     negative frames (a leading minus belongs to the number)

:func:`parse_frames` returns a :class:`FrameSet`: the frames sorted and unique, held as a few ``range`` objects, so
``1-300000000`` costs no memory until someone iterates it (and is refused over ``max_frames``). Standard library
only: hosts import it before their vendored dependencies are on the path.
"""
from __future__ import annotations

import bisect
import re
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple, Union

#: most frames one range may hold unless the caller says otherwise (over 11 hours at 24 fps): a typo such as
#: 1-300000000 is refused instead of queueing a week of work
MAX_FRAMES = 1_000_000
EXAMPLES = "e.g. 1001-1100, 1001-1100x2, 1,5,9 or 1-10,20-30x5"

_PART = re.compile(r"^\s*(-?\d+)\s*(?:-\s*(-?\d+)\s*(?:x\s*(\d+)\s*)?)?$")


class FrameSet(Sequence[int]):
    """Sorted unique frame numbers stored as disjoint ascending ``range`` objects (:attr:`ranges`)."""

    __slots__ = ("ranges", "_starts")

    def __init__(self, ranges: Iterable[range] = ()):
        self.ranges: Tuple[range, ...] = _normalise([r for r in ranges if len(r)])
        self._starts: List[int] = []  # index of each range's first frame in the whole sequence
        at = 0
        for r in self.ranges:
            self._starts.append(at)
            at += len(r)

    def __len__(self) -> int:
        return self._starts[-1] + len(self.ranges[-1]) if self.ranges else 0

    def __iter__(self) -> Iterator[int]:
        for r in self.ranges:
            yield from r

    def __contains__(self, frame: object) -> bool:
        return any(frame in r for r in self.ranges)

    def __getitem__(self, index: Union[int, slice]):
        if isinstance(index, slice):
            positions = range(len(self))[index]
            if positions.step != 1:
                return FrameSet(range(f, f + 1) for f in (self[i] for i in positions))
            return FrameSet(self._slice(positions.start, positions.stop))
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"frame index {index} out of range for {len(self)} frames")
        which = bisect.bisect_right(self._starts, index) - 1
        return self.ranges[which][index - self._starts[which]]

    def _slice(self, start: int, stop: int) -> Iterator[range]:
        for r, at in zip(self.ranges, self._starts):
            low, high = max(start - at, 0), min(stop - at, len(r))
            if low < high:
                yield r[low:high]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrameSet):
            return self.ranges == other.ranges
        if isinstance(other, (list, tuple, range)):
            return len(other) == len(self) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrameSet({format_frames(self)!r})"

    @property
    def step(self) -> Optional[int]:
        """The one step between consecutive frames (1 for a single frame), or None when the steps differ: a shot
        needs one step."""
        if len(self.ranges) == 1:
            return self.ranges[0].step if len(self.ranges[0]) > 1 else 1
        return None


def _normalise(ranges: List[range]) -> Tuple[range, ...]:
    """Sorted, unique, disjoint ranges. Ranges whose spans do not meet stay as they are (no frame is listed);
    a range whose frames another already holds is dropped; other overlaps are merged frame by frame (bounded by
    the caller's max_frames, which :func:`parse_frames` checks on each range first)."""
    ranges = sorted(ranges, key=lambda r: (r.start, -len(r)))
    out: List[range] = []
    group: List[range] = []
    for r in ranges:
        if group and r.start > max(g[-1] for g in group):
            out.extend(_merge(group))
            group = []
        if not any(_holds(g, r) for g in group):
            group.append(r)
    out.extend(_merge(group))
    return tuple(_coalesce(out))


def _coalesce(ranges: List[range]) -> List[range]:
    """Join neighbouring disjoint ranges that continue one another with the same step (1,2,3 -> 1-3)."""
    out: List[range] = []
    for r in ranges:
        if out:
            prev = out[-1]
            step = prev.step if len(prev) > 1 else r[0] - prev[0]
            if r[0] == prev[-1] + step and (len(r) == 1 or r.step == step):
                out[-1] = range(prev[0], r[-1] + step, step)
                continue
        out.append(r)
    return out


def _holds(outer: range, inner: range) -> bool:
    """Whether every frame of ``inner`` is a frame of ``outer`` (both ascending, non-empty)."""
    if len(inner) == 1:
        return inner[0] in outer
    return inner[0] in outer and inner[-1] in outer and inner.step % outer.step == 0


def _merge(group: List[range]) -> List[range]:
    """Overlapping ranges -> their union as the fewest ascending runs of one step each."""
    if len(group) <= 1:
        return list(group)
    frames = sorted(set().union(*group))
    runs: List[range] = []
    start = 0
    while start < len(frames):
        end = start + 1
        if end < len(frames):
            step = frames[end] - frames[start]
            while end + 1 < len(frames) and frames[end + 1] - frames[end] == step:
                end += 1
            runs.append(range(frames[start], frames[end] + 1, step))
        else:
            runs.append(range(frames[start], frames[start] + 1))
        start = end + 1
    return runs


def parse_frames(text: str, max_frames: Optional[int] = MAX_FRAMES) -> FrameSet:
    """Read a frame specification (module docstring) -> a :class:`FrameSet`; ValueError naming the part that is
    wrong. ``max_frames`` (None: no limit) bounds how many frames the whole specification may select."""
    if not isinstance(text, str):
        raise ValueError(f"frames: expected text such as {EXAMPLES}, got {type(text).__name__}")
    ranges = []
    for part in text.split(","):
        if not part.strip():
            continue
        match = _PART.match(part)
        if not match:
            raise ValueError(f"frames: cannot read {part.strip()!r}; use {EXAMPLES}")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        step = int(match.group(3) or 1)
        if last < first or step < 1:
            raise ValueError(f"frames: {part.strip()!r} is empty (the end is before the start, or the step is "
                             f"below 1)")
        frames = range(first, last + 1, step)
        if max_frames is not None and len(frames) > max_frames:
            raise ValueError(f"frames: {part.strip()!r} is {len(frames)} frames, over the limit of {max_frames}; "
                             f"split the range")
        ranges.append(frames)
    if not ranges:
        raise ValueError(f"frames: no frame given; use {EXAMPLES}")
    result = FrameSet(ranges)
    if max_frames is not None and len(result) > max_frames:
        raise ValueError(f"frames: {text.strip()!r} is {len(result)} frames, over the limit of {max_frames}; "
                         f"split the range")
    return result


def format_frames(frames: Iterable[int]) -> str:
    """The shortest text :func:`parse_frames` reads back as ``frames`` (e.g. for a status line or a farm job)."""
    parts = []
    for r in _ranges(frames):
        if len(r) == 1:
            parts.append(str(r[0]))
        elif len(r) == 2 and r.step > 1:
            parts.append(f"{r[0]},{r[1]}")
        else:
            parts.append(f"{r[0]}-{r[-1]}" + (f"x{r.step}" if r.step != 1 else ""))
    return ",".join(parts)


def contiguous_spans(frames: Iterable[int]) -> List[Tuple[int, int, int]]:
    """``(first, last, step)`` triples covering ``frames`` in order, as render calls such as Nuke's
    ``executeMultiple`` take them."""
    return [(r[0], r[-1], r.step) for r in _ranges(frames)]


def _ranges(frames: Iterable[int]) -> Tuple[range, ...]:
    """``frames`` (a FrameSet or any frame numbers) as a FrameSet's sorted, disjoint ranges."""
    return frames.ranges if isinstance(frames, FrameSet) else FrameSet(range(f, f + 1) for f in frames).ranges
