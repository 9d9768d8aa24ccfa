"""Wire buffers <-> the engine convention: scaling, colourspaces, premultiplication, trimap quantisation."""
from __future__ import annotations

import numpy as np
import pytest

from mattebox.codec import decode_request, encode_result, quantise_trimap
from mattebox.colour import linear_to_srgb, srgb_to_linear
from mattebox.contract import MatteResult
from mattebox_plugin.protocol import Buffer, ProtocolError


def test_srgb_transfer_functions_are_inverse_and_match_the_standard():
    x = np.linspace(0, 1, 1001, dtype=np.float32)
    np.testing.assert_allclose(linear_to_srgb(srgb_to_linear(x)), x, atol=2e-6)
    # IEC 61966-2-1 reference points
    assert abs(float(srgb_to_linear(np.float32(0.5))) - 0.21404114) < 1e-6
    assert abs(float(srgb_to_linear(np.float32(0.04045))) - 0.04045 / 12.92) < 1e-7


def test_trimap_quantisation_maps_common_encodings():
    values = np.array([0, 0.1, 0.3, 128 / 255, 0.7, 0.9, 1.0], np.float32)
    np.testing.assert_array_equal(quantise_trimap(values), [0, 0, 0.5, 0.5, 0.5, 1, 1])


def test_decode_uint8_srgb_image_and_uint8_trimap():
    img = np.array([[[0, 128, 255]]], np.uint8)
    tri = np.array([[128]], np.uint8)
    req = decode_request({"image": Buffer.from_array("image", img, "srgb"),
                          "trimap": Buffer.from_array("trimap", tri, "data")}, {})
    np.testing.assert_allclose(req.image[0, 0], srgb_to_linear(img[0, 0] / 255.0), atol=1e-6)
    np.testing.assert_allclose(req.image_srgb[0, 0], img[0, 0] / 255.0, atol=1e-6)
    assert req.trimap[0, 0] == 0.5


def test_an_srgb_image_reaches_the_engines_as_sent_not_through_linear_and_back():
    img = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    req = decode_request({"image": Buffer.from_array("image", img, "srgb")}, {})
    np.testing.assert_array_equal(req.image_srgb, img.astype(np.float32) * np.float32(1 / 255))
    # the 8-bit table gives exactly the transfer function of the scaled values
    np.testing.assert_array_equal(req.image, srgb_to_linear(img.astype(np.float32) * np.float32(1 / 255)))


def test_decode_premultiplied_rgba_float16():
    rgba = np.array([[[0.2, 0.1, 0.05, 0.5]]], np.float16)
    req = decode_request({"image": Buffer.from_array("image", rgba, "linear", premultiplied=True)}, {})
    np.testing.assert_allclose(req.image[0, 0], [0.4, 0.2, 0.1], rtol=2e-3)


def test_decode_rejects_infinite_values_naming_the_buffer():
    img = np.zeros((2, 2, 3), np.float32)
    second = img.copy()
    second[1, 1, 2] = np.inf
    with pytest.raises(ProtocolError) as err:
        decode_request({"image": Buffer.from_array("image", img), "second": Buffer.from_array("second", second)}, {})
    assert err.value.code == "bad_pixels" and err.value.field == "buffers.1"


def test_encode_result_converts_foreground_to_the_image_colourspace():
    fg = np.full((2, 3, 3), 0.21404114, np.float32)
    alpha = np.full((2, 3), 0.5, np.float32)
    result = MatteResult(alpha=alpha, foreground=fg, trimap=np.full((2, 3), 0.5, np.float32))
    descs, frames = encode_result(result, ["alpha", "foreground", "premultiplied"], "srgb")
    assert [d["name"] for d in descs] == ["alpha", "foreground", "premultiplied"]
    out = {d["name"]: Buffer(d["name"], f, d["shape"], d["dtype"]).to_array() for d, f in zip(descs, frames)}
    np.testing.assert_allclose(out["foreground"], 0.5, atol=1e-5)
    np.testing.assert_allclose(out["premultiplied"][..., :3], 0.25, atol=1e-5)
    assert descs[1]["colorspace"] == "srgb" and descs[2]["premultiplied"] is True


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_all_finite_finds_one_bad_value_anywhere(bad):
    from mattebox.contract import all_finite

    frame = np.random.default_rng(0).random((37, 53, 3), dtype=np.float32) * 1e30  # huge but finite
    assert all_finite(frame)
    for index in (0, 1023, 1024, frame.size // 2, frame.size - 1):  # row edges of the product, and the tail
        broken = frame.copy().reshape(-1)
        broken[index] = bad
        assert not all_finite(broken.reshape(frame.shape)), index
        assert not all_finite(broken.reshape(frame.shape).transpose(1, 0, 2))  # a non-contiguous view
        assert not all_finite(broken.astype(np.float64))
    assert all_finite(np.zeros((3, 3), np.float32))  # smaller than one product row
