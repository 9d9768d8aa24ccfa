"""Wire buffers <-> the engine working convention (contract.py), both directions.

Decoding: integer dtypes are scaled to [0, 1] (uint8 /255, uint16 /65535), float16 widened; colour inputs are
converted to linear light and unpremultiplied by their own alpha channel when marked premultiplied (otherwise an
input's alpha channel is ignored); masks are clipped to [0, 1]; trimaps are quantised to {0, 0.5, 1} with the
thresholds 1/4 and 3/4, which maps 0/128/255 and soft painted edges alike. Non-finite pixels are rejected with
``bad_pixels`` naming the buffer.

Encoding: outputs are float32; colour outputs are converted back to the image's colourspace.
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

import numpy as np

from mattebox_plugin.protocol import Buffer, ProtocolError

from .colour import from_colorspace, srgb_to_linear, to_colorspace, unpremultiply
from .contract import MatteRequest, MatteResult, all_finite

_SCALE = {"uint8": 255.0, "uint16": 65535.0}


def to_float(buf: Buffer, field: str) -> np.ndarray:
    """A buffer as float32 (H×W×C, C kept; a read-only view when already float32), scaled to [0, 1] for
    integer dtypes; rejects NaN/inf."""
    array = buf.to_array()
    if buf.dtype in _SCALE:
        out = array.astype(np.float32) * np.float32(1.0 / _SCALE[buf.dtype])
    else:
        out = array if buf.dtype == "float32" else array.astype(np.float32)  # float32: a view, no copy
        if not all_finite(out):  # one pass, no temporary
            bad = int(out.size - np.count_nonzero(np.isfinite(out)))
            raise ProtocolError("bad_pixels", f"{buf.name} has {bad} NaN or infinite values", field=field,
                                hint="clamp or fix the input (e.g. a Clamp/Expression node before Mattebox)")
    if out.ndim == 2:
        out = out[:, :, None]
    return out


#: 8-bit code value -> float32 in [0, 1], exactly what :func:`to_float` gives
_UINT8_TO_UNIT = np.arange(256, dtype=np.float32) * np.float32(1.0 / _SCALE["uint8"])
#: 8-bit sRGB code value -> linear float32, exactly what scaling then :func:`srgb_to_linear` give
_SRGB8_TO_LINEAR = srgb_to_linear(_UINT8_TO_UNIT)


def _rgb8_through(buf: Buffer, table: np.ndarray) -> np.ndarray:
    """The RGB channels of an 8-bit buffer mapped through a 256-entry float32 table: OpenCV's LUT, 0.03 s for a
    3840×2160 plate where numpy's fancy index took 0.07-0.27 s and astype + scale + clip 0.3 s."""
    import cv2  # the engines' dependency, loaded by then; kept off this module's import

    rgb = np.ascontiguousarray(buf.to_array()[:, :, :3])
    return cv2.LUT(rgb, table).reshape(rgb.shape)  # (OpenCV drops a single channel's axis)


def decode_colour(buf: Buffer, field: str) -> np.ndarray:
    """A colour buffer -> H×W×3 float32 linear, straight."""
    if buf.dtype == "uint8" and buf.colorspace == "srgb" and not buf.premultiplied:  # the common plate: a table
        return _rgb8_through(buf, _SRGB8_TO_LINEAR)
    pixels = to_float(buf, field)
    rgb = pixels[:, :, :3]
    if buf.premultiplied and pixels.shape[2] == 4:
        rgb = unpremultiply(rgb, pixels[:, :, 3])
    return np.ascontiguousarray(from_colorspace(rgb, buf.colorspace))


def quantise_trimap(values: np.ndarray) -> np.ndarray:
    """Map any [0, 1] trimap encoding to exactly {0, 0.5, 1} (thresholds 0.25 / 0.75)."""
    out = np.full(values.shape, 0.5, dtype=np.float32)
    out[values < 0.25] = 0.0
    out[values > 0.75] = 1.0
    return out


def decode_request(buffers: Dict[str, Buffer], params: Dict[str, Any]) -> MatteRequest:
    """Validated wire buffers (protocol.validate_buffers) + params -> MatteRequest."""
    fields = {name: f"buffers.{index}" for index, name in enumerate(buffers)}
    image = buffers["image"]
    request = MatteRequest(image=decode_colour(image, fields["image"]), params=dict(params))
    if image.colorspace == "srgb" and not image.premultiplied:  # sRGB on the wire: the engines' copy as sent
        request.keep_srgb("image", _rgb8_through(image, _UINT8_TO_UNIT) if image.dtype == "uint8" else
                          np.clip(to_float(image, fields["image"])[:, :, :3], 0.0, 1.0))
    for name in ("second", "background"):
        if name in buffers:
            setattr(request, name, decode_colour(buffers[name], fields[name]))
    if "mask" in buffers:
        mask = to_float(buffers["mask"], fields["mask"])[:, :, 0]
        in_range = mask.min() >= 0.0 and mask.max() <= 1.0  # then no clipped copy (the common case)
        request.mask = mask if in_range else np.clip(mask, 0.0, 1.0)
    if "trimap" in buffers:
        request.trimap = quantise_trimap(to_float(buffers["trimap"], fields["trimap"])[:, :, 0])
    return request


def encode_result(result: MatteResult, outputs: List[str], colorspace: str) -> Tuple[List[Dict], List[Any]]:
    """MatteResult -> (buffer descriptions, frames) for the outputs asked for, colour in ``colorspace``."""
    descs, frames = [], []
    foreground = None
    for name in outputs:
        if name == "alpha":
            array, space = result.alpha, "data"
        elif name == "trimap":
            array, space = result.trimap, "data"
        elif name == "foreground":
            foreground = foreground if foreground is not None else to_colorspace(result.foreground, colorspace)
            array, space = foreground, colorspace
        elif name == "premultiplied":
            foreground = foreground if foreground is not None else to_colorspace(result.foreground, colorspace)
            array = np.concatenate([foreground * result.alpha[:, :, None], result.alpha[:, :, None]], axis=2)
            space = colorspace
        else:  # validate_params already restricts names
            raise ValueError(name)
        buf = Buffer.from_array(name, np.ascontiguousarray(array, dtype=np.float32), space,
                                premultiplied=name == "premultiplied")
        descs.append(buf.describe())
        frames.append(buf.data)
    return descs, frames
