"""The Nuke node's pure-Python EXR reader/writer: exact float round trips, and agreement with OpenCV's OpenEXR."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "nodes" / "nuke"))
from mattebox_nuke import exr  # noqa: E402

os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")  # before cv2 is first imported
cv2 = pytest.importorskip("cv2")


@pytest.mark.parametrize("compression", [exr.NO_COMPRESSION, exr.ZIPS_COMPRESSION, exr.ZIP_COMPRESSION])
def test_round_trip_is_bit_exact_and_opencv_agrees(tmp_path, compression):
    rng = np.random.default_rng(compression)
    h, w = 37, 53
    channels = {name: rng.random(h * w, dtype=np.float32) for name in ("R", "G", "B", "A", "mattebox.trimap")}
    path = str(tmp_path / "t.exr")
    exr.write(path, w, h, channels, compression)
    image = exr.read(path)
    assert (image.width, image.height) == (w, h)
    for name, values in channels.items():
        np.testing.assert_array_equal(np.frombuffer(image.channel(name), np.float32), values)
    theirs = cv2.imread(path, cv2.IMREAD_UNCHANGED)  # BGRA: OpenCV reads R, G, B, A only
    np.testing.assert_array_equal(theirs[..., 2].ravel(), channels["R"])
    np.testing.assert_array_equal(theirs[..., 3].ravel(), channels["A"])


@pytest.mark.parametrize("kind", ["float", "half"])
@pytest.mark.parametrize("compression", [0, 2, 3])
def test_reads_files_written_by_openexr(tmp_path, kind, compression):
    rng = np.random.default_rng(1)
    array = (rng.random((40, 30, 3), dtype=np.float32) * 4).astype(np.float32)
    path = str(tmp_path / "c.exr")
    exr_type = cv2.IMWRITE_EXR_TYPE_FLOAT if kind == "float" else cv2.IMWRITE_EXR_TYPE_HALF
    cv2.imwrite(path, array, [cv2.IMWRITE_EXR_TYPE, exr_type, cv2.IMWRITE_EXR_COMPRESSION, compression])
    image = exr.read(path)
    blue = np.frombuffer(image.channel("B"), np.float32).reshape(40, 30)
    expected = array[..., 0] if kind == "float" else array[..., 0].astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(blue, expected)


def test_missing_channel_is_named(tmp_path):
    path = str(tmp_path / "t.exr")
    exr.write(path, 2, 2, {"R": [0.0] * 4})
    with pytest.raises(exr.ExrError, match="'A'"):
        exr.read(path).channel("A")
