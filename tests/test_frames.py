"""mattebox_plugin.frames: the one frame-range grammar of Blender, Nuke (GUI and farm) and `mattebox render`."""
from __future__ import annotations

import pytest

from mattebox_plugin.frames import MAX_FRAMES, FrameSet, contiguous_spans, format_frames, parse_frames


@pytest.mark.parametrize("text, frames", [
    ("1001-1005", [1001, 1002, 1003, 1004, 1005]),
    ("1001-1009x4", [1001, 1005, 1009]),
    ("1,5,9", [1, 5, 9]),
    ("1-3,20-30x5", [1, 2, 3, 20, 25, 30]),
    ("1-3, 5,10-20x5", [1, 2, 3, 5, 10, 15, 20]),
    ("7", [7]),
    ("3-3,3", [3]),
    ("1-9x4,2", [1, 2, 5, 9]),
    ("-2-1", [-2, -1, 0, 1]),
    ("-5--3", [-5, -4, -3]),
    ("9,1,5", [1, 5, 9]),
    ("1-10,2-20x2", list(range(1, 11)) + [12, 14, 16, 18, 20]),
])
def test_the_grammar_gives_sorted_unique_frames(text, frames):
    parsed = parse_frames(text)
    assert list(parsed) == frames and parsed == frames and len(parsed) == len(frames)
    assert parse_frames(format_frames(parsed)) == parsed  # the short text reads back the same
    assert [parsed[i] for i in range(-len(frames), len(frames))] == frames + frames


@pytest.mark.parametrize("text, message", [
    ("", "no frame given"), (" , ", "no frame given"), ("a-b", "cannot read 'a-b'"), ("1-5,x", "cannot read 'x'"),
    ("5-1", "'5-1' is empty"), ("1-4x0", "'1-4x0' is empty"), ("1..5", "cannot read '1..5'"),
])
def test_errors_name_the_part_that_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        parse_frames(text)


def test_huge_ranges_stay_ranges_and_the_cap_is_a_parameter():
    """`1-300000000` is never a list: it is refused over the cap, and held as one range without it."""
    with pytest.raises(ValueError, match=r"300000000 frames, over the limit of 1000000"):
        parse_frames("1-300000000")
    with pytest.raises(ValueError, match=r"1200000 frames, over the limit of 1000000"):
        parse_frames("1-600000,600001-1200000")  # each part under the cap, the whole over it
    huge = parse_frames("1-300000000,5,17", max_frames=None)
    assert huge.ranges == (range(1, 300000001),) and len(huge) == 300_000_000 and huge[-1] == 300_000_000
    assert parse_frames(f"1-{MAX_FRAMES}", max_frames=MAX_FRAMES).ranges == (range(1, MAX_FRAMES + 1),)


def test_slices_steps_and_spans():
    frames = parse_frames("1-10,20-30x5")
    assert frames.ranges == (range(1, 11), range(20, 31, 5))
    assert frames[8:11] == [9, 10, 20] and isinstance(frames[8:11], FrameSet)
    assert frames[::4] == [1, 5, 9, 30]
    assert contiguous_spans(frames) == [(1, 10, 1), (20, 30, 5)]
    assert contiguous_spans([4, 1, 2, 3, 9]) == [(1, 4, 1), (9, 9, 1)]
    assert frames.step is None and parse_frames("1001-1100x2").step == 2 and parse_frames("7").step == 1
    assert 25 in frames and 26 not in frames
    assert format_frames(frames) == "1-10,20-30x5" and format_frames([3, 1, 2]) == "1-3"
