"""The Nuke node's pure-Python EXR reader/writer, checked against OpenCV's and the official OpenEXR bindings."""
from __future__ import annotations

import array
import os
import struct

os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")  # must be set before cv2 is first imported

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tests.support.fake_nuke import NODE_DIR  # noqa: E402

import sys  # noqa: E402

sys.path.insert(0, str(NODE_DIR)) if str(NODE_DIR) not in sys.path else None
from mattebox_plugin import exr  # noqa: E402

OpenEXR = pytest.importorskip("OpenEXR", reason="the official OpenEXR bindings (dev extra) cross-check layers")


def _planes(h=37, w=53, seed=0):
    rng = np.random.default_rng(seed)
    planes = {c: (rng.standard_normal((h, w)) * 100).astype(np.float32) for c in "RGBA"}
    planes["R"][0, 0] = np.float32(1e-42)  # a denormal, bit for bit too
    planes["G"][0, 1] = -0.0
    planes["mattebox.trimap"] = rng.choice([0.0, 0.5, 1.0], (h, w)).astype(np.float32)
    return planes


@pytest.mark.parametrize("compression", ["none", "zips", "zip"])
def test_round_trip_is_bit_exact(tmp_path, compression):
    planes = _planes()
    path = str(tmp_path / "x.exr")
    exr.write(path, 53, 37, planes, compression)
    image = exr.read(path)
    assert (image.width, image.height) == (53, 37)
    assert sorted(image.planes) == sorted(planes)
    for name, plane in planes.items():
        assert image.planes[name].tobytes() == plane.tobytes(), name


@pytest.mark.parametrize("compression", ["none", "zips", "zip"])
def test_opencv_reads_what_we_write(tmp_path, compression):
    planes = {c: p for c, p in _planes(20, 30, 1).items() if c in "RGBA"}
    path = str(tmp_path / "x.exr")
    exr.write(path, 30, 20, planes, compression)
    bgra = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    assert bgra.dtype == np.float32 and bgra.shape == (20, 30, 4)
    for index, channel in enumerate("BGRA"):
        assert np.array_equal(bgra[..., index], planes[channel]), channel


@pytest.mark.parametrize("compression", [0, 2, 3])  # NO, ZIPS, ZIP
@pytest.mark.parametrize("half", [False, True])
def test_we_read_what_opencv_writes(tmp_path, half, compression):
    rng = np.random.default_rng(2)
    bgr = (rng.random((25, 41, 3)) * 4).astype(np.float32)
    path = str(tmp_path / "cv.exr")
    params = [cv2.IMWRITE_EXR_TYPE, cv2.IMWRITE_EXR_TYPE_HALF if half else cv2.IMWRITE_EXR_TYPE_FLOAT,
              cv2.IMWRITE_EXR_COMPRESSION, compression]
    assert cv2.imwrite(path, bgr, params)
    image = exr.read(path)
    expected = bgr.astype(np.float16).astype(np.float32) if half else bgr
    for index, channel in enumerate("BGR"):
        assert np.array_equal(image.planes[channel], expected[..., index]), channel


def test_layers_and_data_window_against_openexr(tmp_path):
    """Nuke writes a bounding box (data window) inside the format (display window): outside it is black."""
    rng = np.random.default_rng(3)
    data = {"R": rng.random((10, 12)).astype(np.float32), "mattebox.trimap": rng.random((10, 12)).astype(np.float32)}
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage,
              "dataWindow": (np.array([5, 3], np.int32), np.array([16, 12], np.int32)),
              "displayWindow": (np.array([0, 0], np.int32), np.array([19, 15], np.int32))}
    path = str(tmp_path / "bbox.exr")
    with OpenEXR.File(header, dict(data)) as f:  # the bindings turn the dict's values into Channel objects
        f.write(path)
    image = exr.read(path)
    assert (image.width, image.height) == (20, 16)
    for name, plane in data.items():
        expected = np.zeros((16, 20), np.float32)
        expected[3:13, 5:17] = plane
        assert np.array_equal(image.planes[name], expected), name
    # and OpenEXR reads our layered output with the layer name intact
    ours = str(tmp_path / "ours.exr")
    exr.write(ours, 12, 10, data, "zips")
    with OpenEXR.File(ours, separate_channels=True) as f:
        channels = f.channels()
        assert np.array_equal(channels["mattebox.trimap"].pixels, data["mattebox.trimap"])


def test_pure_python_path_without_numpy(tmp_path, monkeypatch):
    """Nuke builds without numpy: array.array planes, same bytes on disk and back."""
    planes = _planes(9, 11, 4)
    path_np = str(tmp_path / "np.exr")
    exr.write(path_np, 11, 9, planes, "zips")
    monkeypatch.setattr(exr, "np", None)
    as_arrays = {}
    for name, plane in planes.items():
        values = array.array("f")
        values.frombytes(plane.tobytes())
        as_arrays[name] = values
    for compression in ("none", "zips", "zip"):
        path = str(tmp_path / f"py-{compression}.exr")
        exr.write(path, 11, 9, as_arrays, compression)
        image = exr.read(path)
        assert isinstance(image.planes["R"], array.array)
        for name in planes:
            assert image.planes[name].tobytes() == planes[name].tobytes()
    assert open(str(tmp_path / "py-zips.exr"), "rb").read() == open(path_np, "rb").read()
    image = exr.read(path_np)  # written with numpy, read without
    rgb = exr.interleave([image.planes[c] for c in "RGB"], 9, 11)
    expected = np.stack([planes[c] for c in "RGB"], -1).tobytes()
    assert rgb == expected
    back = exr.deinterleave(rgb, 9, 11, 3)
    assert [p.tobytes() for p in back] == [planes[c].tobytes() for c in "RGB"]


def test_unsupported_files_are_named(tmp_path):
    piz = str(tmp_path / "piz.exr")
    with OpenEXR.File({"compression": OpenEXR.PIZ_COMPRESSION, "type": OpenEXR.scanlineimage},
                      {"R": np.zeros((4, 4), np.float32)}) as f:
        f.write(piz)
    with pytest.raises(exr.ExrError, match="compression 'piz'.*'Zip \\(1 scanline\\)'"):
        exr.read(piz)
    tiled = str(tmp_path / "tiled.exr")
    with OpenEXR.File({"type": OpenEXR.tiledimage, "tiles": OpenEXR.TileDescription()},
                      {"R": np.zeros((4, 4), np.float32)}) as f:
        f.write(tiled)
    with pytest.raises(exr.ExrError, match="tiled"):
        exr.read(tiled)
    junk = tmp_path / "junk.exr"
    junk.write_bytes(b"not an exr at all")
    with pytest.raises(exr.ExrError, match="not an OpenEXR file"):
        exr.read(str(junk))
    good = str(tmp_path / "good.exr")
    exr.write(good, 8, 8, {"R": np.ones((8, 8), np.float32)}, "none")
    data = open(good, "rb").read()
    (tmp_path / "cut.exr").write_bytes(data[: len(data) - 40])
    with pytest.raises(exr.ExrError, match="truncated|bytes"):
        exr.read(str(tmp_path / "cut.exr"))
    with pytest.raises(exr.ExrError, match="compression must be"):
        exr.write(good, 8, 8, {"R": np.ones((8, 8), np.float32)}, "piz")
    with pytest.raises(exr.ExrError, match="shape"):
        exr.write(good, 8, 8, {"R": np.ones((4, 8), np.float32)})
    with pytest.raises(exr.ExrError, match="channel 'A' is not in the EXR"):
        exr.read(good).plane("A")
    assert struct.unpack("<i", data[:4])[0] == exr.MAGIC
