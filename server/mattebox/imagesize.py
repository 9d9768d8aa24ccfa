"""An image file's width and height from its header bytes, before anything is decoded (standard library only).

So a small file that declares a huge frame (a 1.1 MB PNG saying 20000×20000) is refused by its header instead of
after OpenCV has allocated the pixels. Formats and where the size lives:

- PNG: the IHDR chunk, which must come first (PNG spec, 11.2.2).
- JPEG: the first start-of-frame segment SOF0–SOF15 but DHT/JPG/DAC (ITU-T T.81, B.2.2).
- TIFF and BigTIFF: tags 256 ImageWidth and 257 ImageLength of the first IFD (TIFF 6.0, section 2 and 8).
- OpenEXR: the ``dataWindow`` box2i attribute of the (first) header (OpenEXR file layout, "Header Attributes").

:func:`dimensions` returns None for anything else or a header it cannot follow; OpenCV's own
``OPENCV_IO_MAX_IMAGE_PIXELS`` (set in ``mattebox/__init__.py``) is the backstop for those.
"""
from __future__ import annotations

import struct
from typing import BinaryIO, Optional, Tuple

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EXR_MAGIC = b"\x76\x2f\x31\x01"
#: JPEG SOFn markers: C0–CF except C4 (DHT), C8 (JPG extension) and CC (DAC)
JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
#: how far into a file to follow JPEG segments or EXR attributes before giving up (metadata can be long)
MAX_HEADER_SCAN = 16 << 20


def dimensions(path: str) -> Optional[Tuple[int, int]]:
    """(width, height) declared by the file's header, or None when the format or header is not understood."""
    with open(path, "rb") as f:
        start = f.read(8)
        f.seek(0)
        try:
            if start.startswith(PNG_SIGNATURE):
                return _png(f)
            if start.startswith(b"\xff\xd8"):
                return _jpeg(f)
            if start[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
                return _tiff(f)
            if start.startswith(EXR_MAGIC):
                return _exr(f)
        except (struct.error, ValueError):  # truncated or inconsistent: let the decoder report it
            return None
    return None


def _png(f: BinaryIO) -> Optional[Tuple[int, int]]:
    data = f.read(24)
    if data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


def _jpeg(f: BinaryIO) -> Optional[Tuple[int, int]]:
    f.seek(2)
    while f.tell() < MAX_HEADER_SCAN:
        byte = f.read(1)
        if not byte:
            return None
        if byte != b"\xff":
            continue  # not a marker (stray bytes between segments)
        marker = f.read(1)
        while marker == b"\xff":  # fill bytes
            marker = f.read(1)
        if not marker:
            return None
        code = marker[0]
        if code == 0x01 or 0xD0 <= code <= 0xD8:
            continue  # markers without a length
        if code == 0xDA:  # start of scan: no frame header before the data
            return None
        (length,) = struct.unpack(">H", f.read(2))
        if code in JPEG_SOF:
            _precision, height, width = struct.unpack(">BHH", f.read(5))
            return (width, height) if height else None  # height 0: defined later by a DNL segment
        f.seek(length - 2, 1)
    return None


def _tiff(f: BinaryIO) -> Optional[Tuple[int, int]]:
    head = f.read(16)
    order = "<" if head[:2] == b"II" else ">"
    (version,) = struct.unpack(order + "H", head[2:4])
    if version == 42:  # classic TIFF: 32-bit offsets, 12-byte entries
        (offset,) = struct.unpack(order + "I", head[4:8])
        count_format, entry_size, entry_format = "H", 12, "HHI4s"
    else:  # BigTIFF: 64-bit offsets, 20-byte entries
        (offset,) = struct.unpack(order + "Q", head[8:16])
        count_format, entry_size, entry_format = "Q", 20, "HHQ8s"
    f.seek(offset)
    (count,) = struct.unpack(order + count_format, f.read(struct.calcsize(count_format)))
    entries = f.read(min(count, 4096) * entry_size)
    found = {}
    for index in range(len(entries) // entry_size):
        tag, kind, _n, value = struct.unpack(order + entry_format, entries[index * entry_size:(index + 1) * entry_size])
        if tag in (256, 257):
            value_format = {3: "H", 4: "I", 16: "Q"}.get(kind)  # SHORT, LONG, LONG8
            if value_format is None:
                return None
            found[tag] = struct.unpack(order + value_format, value[:struct.calcsize(value_format)])[0]
    if 256 in found and 257 in found:
        return found[256], found[257]
    return None


def _exr(f: BinaryIO) -> Optional[Tuple[int, int]]:
    f.seek(8)  # magic, then version and flags
    while f.tell() < MAX_HEADER_SCAN:
        name = _c_string(f)
        if not name:
            return None  # end of the header without a dataWindow
        kind = _c_string(f)
        (size,) = struct.unpack("<i", f.read(4))
        if size < 0:
            return None
        if name == b"dataWindow" and kind == b"box2i" and size == 16:
            x_min, y_min, x_max, y_max = struct.unpack("<4i", f.read(16))
            return x_max - x_min + 1, y_max - y_min + 1
        f.seek(size, 1)
    return None


def _c_string(f: BinaryIO, limit: int = 256) -> bytes:
    """A NUL-terminated name of at most ``limit`` bytes (EXR attribute names and types are at most 255)."""
    out = bytearray()
    while len(out) < limit:
        char = f.read(1)
        if not char or char == b"\0":
            return bytes(out)
        out += char
    raise ValueError("attribute name too long")
