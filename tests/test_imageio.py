"""mattebox.imageio's EXR writer: lossless round trips, with the compression each kind of plane pays for."""
from __future__ import annotations

import numpy as np

from mattebox.imageio import read_gray, read_image, write_exr


def _exr_compression(path) -> int:
    """The header's compression attribute (0 none, 1 RLE, 2 ZIPS, 3 ZIP, 4 PIZ): OpenEXR's layout, name NUL
    type NUL int32 size, then the value (one byte)."""
    data = path.read_bytes()
    at = data.index(b"compression\x00compression\x00") + len(b"compression\x00compression\x00")
    assert int.from_bytes(data[at:at + 4], "little") == 1
    return data[at + 4]


def test_a_matte_is_rle_compressed_and_colour_is_written_uncompressed_both_lossless(tmp_path):
    rng = np.random.default_rng(0)
    alpha = np.zeros((64, 96), np.float32)
    alpha[16:48, 24:72] = 1.0
    alpha[15, 24:72] = rng.random(48, dtype=np.float32)
    foreground = rng.random((64, 96, 3), dtype=np.float32)
    write_exr(str(tmp_path / "alpha.exr"), alpha)
    write_exr(str(tmp_path / "fg.exr"), foreground)
    assert _exr_compression(tmp_path / "alpha.exr") == 1  # runs of 0 and 1 shrink
    assert _exr_compression(tmp_path / "fg.exr") == 0  # float noise does not: RLE only cost time
    assert (tmp_path / "alpha.exr").stat().st_size < alpha.nbytes / 2
    np.testing.assert_array_equal(read_gray(str(tmp_path / "alpha.exr")), alpha)
    back, space = read_image(str(tmp_path / "fg.exr"))
    assert space == "linear"
    np.testing.assert_array_equal(back, foreground)
