"""A small OpenEXR reader/writer for scanline float images, in plain Python (numpy optional).

Nuke's Python cannot hand pixels to Python directly, so the Mattebox node renders its inputs with a Write node
and reads the files here; results go back the same way through a Read node. Nuke's Python is not guaranteed to
have numpy or OpenEXR bindings, so this module needs only the standard library (``struct``, ``zlib``,
``array``). It handles what our own Write nodes produce and what we write: single-part scanline files with
``HALF``/``FLOAT`` channels and compression ``NO``, ``ZIPS`` (one line per block) or ``ZIP`` (16 lines).

Layout (OpenEXR file-layout spec): magic 20000630, version 2 (single-part scanline), header attributes
(name\\0 type\\0 size value) ending with \\0, a table of uint64 block offsets, then blocks of
``int32 y, int32 size, data`` where data holds, per line, each channel's samples in alphabetical channel order.
ZIP compression stores zlib of the data after a byte interleave (even bytes then odd bytes) and a delta
predictor.
"""
from __future__ import annotations

import array
import struct
import sys
import zlib
from typing import Dict, List, Tuple

MAGIC = 20000630
NO_COMPRESSION, ZIPS_COMPRESSION, ZIP_COMPRESSION = 0, 2, 3
LINES_PER_BLOCK = {NO_COMPRESSION: 1, ZIPS_COMPRESSION: 1, ZIP_COMPRESSION: 16}
HALF, FLOAT = 1, 2
_SAMPLE_BYTES = {HALF: 2, FLOAT: 4}


class ExrError(ValueError):
    pass


class Image:
    """Channels by name (e.g. 'R', 'G', 'B', 'A', 'mattebox.trimap'), each a flat list-like of floats in row
    order (top row first), plus width and height."""

    def __init__(self, width: int, height: int, channels: Dict[str, "array.array"]):
        self.width = width
        self.height = height
        self.channels = channels

    def channel(self, name: str):
        if name not in self.channels:
            raise ExrError(f"channel {name!r} not in the file (has {sorted(self.channels)})")
        return self.channels[name]


# ---------------------------------------------------------------------------------------------- write
def _attribute(name: str, kind: str, payload: bytes) -> bytes:
    return name.encode() + b"\0" + kind.encode() + b"\0" + struct.pack("<i", len(payload)) + payload


def _chlist(names: List[str]) -> bytes:
    out = b""
    for name in names:
        out += name.encode() + b"\0" + struct.pack("<iB3xii", FLOAT, 0, 1, 1)
    return out + b"\0"


try:  # numpy is optional: it only speeds up the ZIP filters
    import numpy as _np
except ImportError:  # pragma: no cover - exercised inside hosts without numpy
    _np = None


def _predict_and_interleave(raw: bytes) -> bytes:
    """OpenEXR's ZIP pre-filter: split even/odd bytes, then delta-encode (inverse of :func:`_undo_filter`)."""
    interleaved = raw[0::2] + raw[1::2]
    if _np is not None:
        values = _np.frombuffer(interleaved, _np.uint8).astype(_np.int16)
        deltas = (_np.diff(values) + 128) & 0xFF
        return interleaved[:1] + deltas.astype(_np.uint8).tobytes()
    out = bytearray(interleaved[:1])  # the first byte is stored as is
    for i in range(1, len(interleaved)):
        out.append((interleaved[i] - interleaved[i - 1] + 128) & 0xFF)
    return bytes(out)


def write(path: str, width: int, height: int, channels: Dict[str, object], compression: int = NO_COMPRESSION):
    """Write float32 channels (each a flat sequence of width*height floats, top row first) to a scanline EXR."""
    names = sorted(channels)
    planes = []
    for name in names:
        values = channels[name]
        plane = values if isinstance(values, array.array) and values.typecode == "f" else array.array("f", values)
        if len(plane) != width * height:
            raise ExrError(f"channel {name} has {len(plane)} samples, expected {width * height}")
        if sys.byteorder != "little":
            plane = array.array("f", plane)
            plane.byteswap()
        planes.append(plane)
    header = struct.pack("<ii", MAGIC, 2)
    box = struct.pack("<iiii", 0, 0, width - 1, height - 1)
    header += _attribute("channels", "chlist", _chlist(names))
    header += _attribute("compression", "compression", bytes([compression]))
    header += _attribute("dataWindow", "box2i", box)
    header += _attribute("displayWindow", "box2i", box)
    header += _attribute("lineOrder", "lineOrder", b"\0")
    header += _attribute("pixelAspectRatio", "float", struct.pack("<f", 1.0))
    header += _attribute("screenWindowCenter", "v2f", struct.pack("<ff", 0.0, 0.0))
    header += _attribute("screenWindowWidth", "float", struct.pack("<f", 1.0)) + b"\0"
    lines = LINES_PER_BLOCK[compression]
    blocks = []
    row_bytes = width * 4
    byte_planes = [p.tobytes() for p in planes]
    for y0 in range(0, height, lines):
        y1 = min(height, y0 + lines)
        raw = b"".join(plane[y * row_bytes:(y + 1) * row_bytes] for y in range(y0, y1) for plane in byte_planes)
        if compression != NO_COMPRESSION:
            packed = zlib.compress(_predict_and_interleave(raw), 4)
            data = packed if len(packed) < len(raw) else raw  # the spec allows raw storage when it is smaller
        else:
            data = raw
        blocks.append(struct.pack("<ii", y0, len(data)) + data)
    offset = len(header) + 8 * len(blocks)
    table = b""
    for block in blocks:
        table += struct.pack("<Q", offset)
        offset += len(block)
    with open(path, "wb") as fh:
        fh.write(header + table + b"".join(blocks))


# ----------------------------------------------------------------------------------------------- read
def _undo_filter(data: bytes) -> bytes:
    if _np is not None:
        deltas = _np.frombuffer(data, _np.uint8).astype(_np.int64) - 128
        deltas[0] += 128  # the first byte is stored as is
        decoded = bytearray((_np.cumsum(deltas) & 0xFF).astype(_np.uint8).tobytes())
    else:
        decoded = bytearray(data[:1])
        for value in data[1:]:
            decoded.append((decoded[-1] + value - 128) & 0xFF)
    half = (len(decoded) + 1) // 2
    out = bytearray(len(decoded))
    out[0::2] = decoded[:half]
    out[1::2] = decoded[half:]
    return bytes(out)


def _half_to_float(raw: bytes) -> "array.array":
    return array.array("f", struct.unpack(f"<{len(raw) // 2}e", raw))


def read(path: str) -> Image:
    """Read a single-part scanline EXR written by Nuke's Write (or :func:`write`) into float32 channels."""
    with open(path, "rb") as fh:
        data = fh.read()
    magic, version = struct.unpack_from("<ii", data, 0)
    if magic != MAGIC:
        raise ExrError(f"{path}: not an OpenEXR file")
    if version & 0x200 or version & 0x1000:
        raise ExrError(f"{path}: tiled or multi-part EXR is not supported; set the Write node to scanline")
    pos, attrs = 8, {}
    while data[pos] != 0:
        name_end = data.index(b"\0", pos)
        kind_end = data.index(b"\0", name_end + 1)
        name, kind = data[pos:name_end].decode(), data[name_end + 1:kind_end].decode()
        (size,) = struct.unpack_from("<i", data, kind_end + 1)
        attrs[name] = (kind, data[kind_end + 5:kind_end + 5 + size])
        pos = kind_end + 5 + size
    pos += 1
    channels: List[Tuple[str, int]] = []
    chlist = attrs["channels"][1]
    cpos = 0
    while chlist[cpos] != 0:
        end = chlist.index(b"\0", cpos)
        (pixel_type,) = struct.unpack_from("<i", chlist, end + 1)
        channels.append((chlist[cpos:end].decode(), pixel_type))
        cpos = end + 17
    compression = attrs["compression"][1][0]
    if compression not in LINES_PER_BLOCK:
        raise ExrError(f"{path}: compression {compression} is not supported; use none, Zip (1 scanline) or Zip")
    if any(t not in _SAMPLE_BYTES for _, t in channels):
        raise ExrError(f"{path}: only half and float channels are supported")
    x0, y0, x1, y1 = struct.unpack("<iiii", attrs["dataWindow"][1])
    width, height = x1 - x0 + 1, y1 - y0 + 1
    lines = LINES_PER_BLOCK[compression]
    count = (height + lines - 1) // lines
    offsets = struct.unpack_from(f"<{count}Q", data, pos)
    planes = {name: bytearray() for name, _ in channels}
    for offset in offsets:
        y, size = struct.unpack_from("<ii", data, offset)
        block = data[offset + 8:offset + 8 + size]
        n_lines = min(lines, y1 + 1 - y)
        expected = n_lines * width * sum(_SAMPLE_BYTES[t] for _, t in channels)
        if compression != NO_COMPRESSION and size < expected:
            block = _undo_filter(zlib.decompress(block))
        cursor = 0
        for _line in range(n_lines):
            for name, pixel_type in channels:
                step = width * _SAMPLE_BYTES[pixel_type]
                planes[name] += block[cursor:cursor + step]
                cursor += step
    out = {}
    for name, pixel_type in channels:
        raw = bytes(planes[name])
        if pixel_type == HALF:
            out[name] = _half_to_float(raw)
        else:
            plane = array.array("f")
            plane.frombytes(raw)
            if sys.byteorder != "little":
                plane.byteswap()
            out[name] = plane
    return Image(width, height, out)
