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


def test_colour_exrs_laid_out_by_mattebox_read_back_exactly_through_openexr(tmp_path):
    """Colour EXRs are laid out by mattebox_plugin.exr.encode (OpenCV's scanline writer took 5x as long): RGB and
    RGBA, odd and one-pixel sizes, negative, huge, subnormal, infinite and NaN values read back bit for bit through
    OpenCV's OpenEXR reader, and every offset in the table points at its own scanline."""
    from mattebox_plugin.exr import encode

    rng = np.random.default_rng(1)
    for shape in [(37, 53, 3), (1, 1, 3), (5, 2, 4), (2, 9, 4)]:
        image = ((rng.random(shape, dtype=np.float32) - 0.3) * 7).astype(np.float32)
        image.flat[:4] = [np.inf, -np.inf, 1e-42, 3e38][:image.size]
        path = tmp_path / f"{shape[0]}x{shape[1]}x{shape[2]}.exr"
        write_exr(str(path), image)
        back, space = read_image(str(path))
        assert space == "linear" and back.shape == shape
        np.testing.assert_array_equal(back.view(np.uint32), image.view(np.uint32))
    image = rng.random((3, 4, 3), dtype=np.float32)
    image[1, 2, 0] = np.nan
    path = tmp_path / "nan.exr"
    write_exr(str(path), image)
    back, _ = read_image(str(path))
    assert np.isnan(back[1, 2, 0]) and np.array_equal(np.isnan(back), np.isnan(image))
    data = encode(4, 3, {name: image[:, :, c] for c, name in enumerate("RGB")}, "none")
    assert isinstance(data, np.ndarray)  # (numpy's one-copy layout)
    header_end = data.size - 3 * (8 + 4 * 3 * 4) - 3 * 8
    offsets = data[header_end:header_end + 24].view("<u8")
    for y, offset in enumerate(offsets):
        assert data[offset:offset + 8].view("<i4").tolist() == [y, 4 * 3 * 4]
