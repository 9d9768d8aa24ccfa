"""A small OpenEXR reader/writer in pure Python (+ zlib), using numpy when the host's Python has it.

Why it exists: Nuke's Python can neither hand pixels to Python nor build an image from Python, so the Mattebox
node renders its inputs with internal Write nodes and loads its result through an internal Read (docs/hosts/nuke.md).
Nuke's Python ships without OpenEXR bindings or cv2, and numpy is not something a plug-in can count on in every
Nuke build, so this module reads and writes the EXR subset those Write/Read nodes need:

* single-part **scanline** files (not tiled, deep or multi-part: those raise :class:`ExrError`);
* pixel types FLOAT and HALF (read), UINT (read), FLOAT (write) — Nuke's Write knob ``datatype`` "32 bit float";
* compression NONE, ZIPS (one scanline per chunk) and ZIP (16 scanlines) — the Write knob ``compression``
  values "none", "Zip (1 scanline)" and "Zip (16 scanlines)". Other codecs (PIZ, DWAA, ...) raise ExrError naming
  the Write knob to change.

It lives in the host-neutral package because it is one EXR writer for every side: the server writes its colour
EXRs (`mattebox matte`'s foreground, renders) through :func:`encode` too, whose numpy layout of an uncompressed
file is a fifth of OpenCV's writer's time.

The layout follows the OpenEXR file-format spec ("The OpenEXR File Layout", openexr.com): magic 20000630, version
2, a header of ``name\\0 type\\0 size value`` attributes, a table of uint64 chunk offsets, then chunks of
``int32 y, int32 size, data``; inside a chunk each scanline stores every channel (sorted by name) in turn. ZIP
data is the zlib stream of the bytes split into even/odd halves then delta-coded (+128), as in OpenEXR's
ImfZip.cpp; a chunk whose compressed form would not be smaller is stored raw, which readers detect by its size.

Planes are float32, row-major, top row first (EXR's y grows downwards), sized to the display window: pixels outside
the data window read as 0 (Nuke's black outside the bounding box). A plane is a numpy ``(H, W)`` float32 array
when numpy imports, else an ``array.array('f')`` of ``H*W`` values; both are accepted on write.
"""
from __future__ import annotations

import array
import os
import struct
import sys
import zlib
from typing import Any, Dict, List, Sequence, Tuple

try:  # numpy is optional in host Pythons; every path below has a pure-Python fallback
    import numpy as np
except ImportError:  # pragma: no cover - exercised by tests that hide numpy
    np = None

MAGIC = 20000630
VERSION = 2
TILED_FLAG, LONG_NAMES_FLAG, DEEP_FLAG, MULTIPART_FLAG = 0x200, 0x400, 0x800, 0x1000
UINT, HALF, FLOAT = 0, 1, 2
PIXEL_BYTES = {UINT: 4, HALF: 2, FLOAT: 4}
PIXEL_CODES = {UINT: "I", HALF: "e", FLOAT: "f"}
COMPRESSIONS = {"none": 0, "rle": 1, "zips": 2, "zip": 3, "piz": 4, "pxr24": 5, "b44": 6, "b44a": 7,
                "dwaa": 8, "dwab": 9}
SUPPORTED_COMPRESSIONS = {0: 1, 2: 1, 3: 16}  #: compression code -> scanlines per chunk
LITTLE = sys.byteorder == "little"


class ExrError(ValueError):
    """The file is not an EXR this module handles; the message names what and how to fix it."""


# ------------------------------------------------------------------------------------------- helpers
def have_numpy() -> bool:
    return np is not None


def plane_bytes(plane: Any, height: int, width: int) -> bytes:
    """Little-endian float32 bytes of a plane (numpy array, array.array('f') or bytes-like of H*W floats)."""
    if np is not None and isinstance(plane, np.ndarray):
        if plane.shape != (height, width):
            raise ExrError(f"plane shape {plane.shape} does not match {height}x{width}")
        return np.ascontiguousarray(plane, dtype="<f4").tobytes()
    if isinstance(plane, array.array):
        if plane.typecode != "f" or len(plane) != height * width:
            raise ExrError(f"array plane must be typecode 'f' with {height * width} values")
        if not LITTLE:  # pragma: no cover
            plane = array.array("f", plane)
            plane.byteswap()
        return plane.tobytes()
    data = bytes(memoryview(plane).cast("B"))
    if len(data) != height * width * 4:
        raise ExrError(f"plane has {len(data)} bytes, expected {height * width * 4}")
    return data


def _plane_from_bytes(data: bytes, height: int, width: int):
    if np is not None:
        return np.frombuffer(data, dtype="<f4").reshape(height, width).copy()
    plane = array.array("f")
    plane.frombytes(data)
    if not LITTLE:  # pragma: no cover
        plane.byteswap()
    return plane


def interleave(planes: Sequence[Any], height: int, width: int) -> bytes:
    """Planes (one per channel) -> H×W×C float32 little-endian bytes (what protocol.Buffer carries)."""
    if np is not None:
        stack = np.stack([np.frombuffer(plane_bytes(p, height, width), "<f4").reshape(height, width)
                          for p in planes], axis=-1)
        return stack.tobytes()
    count = len(planes)
    out = array.array("f", bytes(4 * height * width * count))
    for c, p in enumerate(planes):
        src = array.array("f")
        src.frombytes(plane_bytes(p, height, width))
        out[c::count] = src  # strided slice assignment runs in C
    return out.tobytes()


def deinterleave(data: Any, height: int, width: int, count: int) -> List[Any]:
    """H×W×C float32 bytes (or a numpy array) -> list of C planes."""
    if np is not None:
        arr = np.frombuffer(memoryview(data).cast("B"), dtype="<f4").reshape(height, width, count)
        return [np.ascontiguousarray(arr[..., c], dtype=np.float32) for c in range(count)]
    src = array.array("f")
    src.frombytes(bytes(memoryview(data).cast("B")))
    if len(src) != height * width * count:
        raise ExrError(f"buffer has {len(src)} values, expected {height}x{width}x{count}")
    return [src[c::count] for c in range(count)]


# ------------------------------------------------------------------------------------- ZIP predictor
def _zip_decode(raw: bytes) -> bytes:
    """Undo OpenEXR's ZIP pre-processing: delta decode (+128 bias), then merge even/odd halves."""
    n = len(raw)
    half = (n + 1) // 2
    if np is not None:
        t = np.frombuffer(raw, np.uint8).copy()
        t[1:] -= np.uint8(128)  # wraps modulo 256, as the C code's unsigned char arithmetic
        t = np.cumsum(t, dtype=np.uint8)
        out = np.empty(n, np.uint8)
        out[0::2] = t[:half]
        out[1::2] = t[half:]
        return out.tobytes()
    t = bytearray(n)
    acc = 0
    for i, b in enumerate(raw):  # pure-Python fallback: slow, used only for ZIP files without numpy
        acc = b if i == 0 else (acc + b - 128) & 0xFF
        t[i] = acc
    out = bytearray(n)
    out[0::2] = t[:half]
    out[1::2] = t[half:]
    return bytes(out)


def _zip_encode(data: bytes) -> bytes:
    """OpenEXR's ZIP pre-processing: split even/odd bytes into two halves, then delta code with +128 bias."""
    n = len(data)
    if np is not None:
        src = np.frombuffer(data, np.uint8)
        t = np.concatenate([src[0::2], src[1::2]])
        d = t.copy()
        d[1:] = t[1:] - t[:-1] + np.uint8(128)
        return d.tobytes()
    t = bytes(data[0::2]) + bytes(data[1::2])
    d = bytearray(n)
    prev = 0
    for i, b in enumerate(t):
        d[i] = b if i == 0 else (b - prev + 128) & 0xFF
        prev = b
    return bytes(d)


# -------------------------------------------------------------------------------------------- header
class _Reader:
    def __init__(self, data: bytes, path: str):
        self.data, self.pos, self.path = data, 0, path

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ExrError(f"{self.path}: file is truncated (wanted {n} bytes at offset {self.pos})")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def cstring(self) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise ExrError(f"{self.path}: unterminated string in header")
        out = self.data[self.pos:end].decode("latin-1")
        self.pos = end + 1
        return out


def _parse_channels(value: bytes, path: str) -> List[Tuple[str, int]]:
    channels = []
    r = _Reader(value, path)
    while True:
        name = r.cstring()
        if not name:
            break
        pixel_type, _linear, xs, ys = struct.unpack("<iB3xii", r.take(16))
        if pixel_type not in PIXEL_BYTES:
            raise ExrError(f"{path}: channel {name!r} has unknown pixel type {pixel_type}")
        if xs != 1 or ys != 1:
            raise ExrError(f"{path}: channel {name!r} is subsampled ({xs}x{ys}); only full-resolution "
                           "channels are supported")
        channels.append((name, pixel_type))
    return channels


def read_header(data: bytes, path: str = "<exr>") -> Tuple[Dict[str, Any], int]:
    """Parse the header; returns (attributes, offset of the chunk offset table)."""
    r = _Reader(data, path)
    magic, version = struct.unpack("<ii", r.take(8))
    if magic != MAGIC:
        raise ExrError(f"{path}: not an OpenEXR file (magic {magic}, expected {MAGIC})")
    if version & 0xFF != VERSION:
        raise ExrError(f"{path}: OpenEXR version {version & 0xFF} is not supported (expected 2)")
    for flag, what in ((TILED_FLAG, "tiled"), (DEEP_FLAG, "deep"), (MULTIPART_FLAG, "multi-part")):
        if version & flag:
            raise ExrError(f"{path}: {what} EXR files are not supported; write scanline EXR (the Write node's "
                           "default) with compression 'none' or 'Zip (1 scanline)'")
    header: Dict[str, Any] = {}
    while True:
        name = r.cstring()
        if not name:
            break
        kind = r.cstring()
        (size,) = struct.unpack("<i", r.take(4))
        value = r.take(size)
        if kind == "chlist":
            header[name] = _parse_channels(value, path)
        elif kind == "compression" or kind == "lineOrder":
            header[name] = value[0]
        elif kind == "box2i":
            header[name] = struct.unpack("<4i", value)
        elif kind == "float":
            header[name] = struct.unpack("<f", value)[0]
        elif kind == "int":
            header[name] = struct.unpack("<i", value)[0]
        elif kind == "v2f":
            header[name] = struct.unpack("<2f", value)
        elif kind == "string":
            header[name] = value.decode("utf-8", "replace")
        else:
            header[name] = (kind, value)  # kept raw: metadata we do not interpret
    for required in ("channels", "compression", "dataWindow", "displayWindow"):
        if required not in header:
            raise ExrError(f"{path}: header lacks the required attribute {required!r}")
    return header, r.pos


# ---------------------------------------------------------------------------------------------- read
class ExrImage:
    """A decoded EXR: ``width``/``height`` of the display window, ``planes`` name -> float32 plane."""

    def __init__(self, width: int, height: int, planes: Dict[str, Any], header: Dict[str, Any]):
        self.width, self.height, self.planes, self.header = width, height, planes, header

    def plane(self, name: str):
        if name not in self.planes:
            raise ExrError(f"channel {name!r} is not in the EXR (it has {', '.join(self.planes)})")
        return self.planes[name]


def read(path: str) -> ExrImage:
    """Read a scanline EXR into float32 planes sized to its display window."""
    with open(path, "rb") as fh:
        data = fh.read()
    header, pos = read_header(data, path)
    compression = header["compression"]
    if compression not in SUPPORTED_COMPRESSIONS:
        name = next((k for k, v in COMPRESSIONS.items() if v == compression), str(compression))
        raise ExrError(f"{path}: compression {name!r} is not supported; set the Write node's compression knob to "
                       "'none' or 'Zip (1 scanline)'")
    lines_per_chunk = SUPPORTED_COMPRESSIONS[compression]
    channels = sorted(header["channels"])  # the file stores channels sorted by name
    dx0, dy0, dx1, dy1 = header["dataWindow"]
    wx0, wy0, wx1, wy1 = header["displayWindow"]
    width, height = wx1 - wx0 + 1, wy1 - wy0 + 1
    dw, dh = dx1 - dx0 + 1, dy1 - dy0 + 1
    if width < 1 or height < 1:
        raise ExrError(f"{path}: empty display window {header['displayWindow']}")
    chunks = (dh + lines_per_chunk - 1) // lines_per_chunk if dw > 0 and dh > 0 else 0
    if pos + 8 * chunks > len(data):
        raise ExrError(f"{path}: file is truncated (chunk offset table)")
    offsets = struct.unpack(f"<{chunks}Q", data[pos:pos + 8 * chunks]) if chunks else ()
    # decode the data window: numpy planes when available, else row-major float32 byte strings per channel
    rows: Dict[str, List[bytes]] = {name: [b""] * dh for name, _ in channels}
    blocks = {name: np.zeros((max(dh, 0), max(dw, 0)), np.float32) for name, _ in channels} if np is not None else {}
    for offset in offsets:
        if offset + 8 > len(data):
            raise ExrError(f"{path}: file is truncated (chunk at offset {offset})")
        y, size = struct.unpack("<ii", data[offset:offset + 8])
        if not dy0 <= y <= dy1:
            raise ExrError(f"{path}: chunk at offset {offset} claims line {y}, outside the data window")
        payload = data[offset + 8:offset + 8 + size]
        if len(payload) != size:
            raise ExrError(f"{path}: chunk at offset {offset} is truncated")
        lines = min(lines_per_chunk, dy1 - y + 1)
        raw_size = lines * dw * sum(PIXEL_BYTES[t] for _, t in channels)
        if compression != 0 and size < raw_size:
            payload = _zip_decode(zlib.decompress(payload))
        if len(payload) != raw_size:
            raise ExrError(f"{path}: chunk for line {y} has {len(payload)} bytes, expected {raw_size}")
        if np is not None:  # each line is [channel 0 samples | channel 1 samples | ...]: slice columns
            block = np.frombuffer(payload, np.uint8).reshape(lines, -1)
            col = 0
            for name, ptype in channels:
                n = dw * PIXEL_BYTES[ptype]
                kind = {FLOAT: "<f4", HALF: "<f2", UINT: "<u4"}[ptype]
                blocks[name][y - dy0:y - dy0 + lines] = block[:, col:col + n].copy().view(kind)
                col += n
            continue
        at = 0
        for line in range(lines):
            for name, ptype in channels:
                n = dw * PIXEL_BYTES[ptype]
                rows[name][y - dy0 + line] = _to_float32_bytes(payload[at:at + n], ptype)
                at += n
    planes = {}
    for name, _ in channels:
        if np is not None:
            planes[name] = _place_array(blocks[name], (dx0, dy0), (wx0, wy0, width, height))
        else:
            planes[name] = _place(rows[name], (dx0, dy0, dw, dh), (wx0, wy0, width, height))
    return ExrImage(width, height, planes, header)


def _place_array(block, data_origin, display_win):
    """numpy version of :func:`_place`: the data-window block inside a zeroed display-window plane."""
    dx0, dy0 = data_origin
    wx0, wy0, width, height = display_win
    dh, dw = block.shape
    if (dx0, dy0, dw, dh) == (wx0, wy0, width, height):
        return block
    out = np.zeros((height, width), np.float32)
    x0, x1 = max(dx0, wx0), min(dx0 + dw, wx0 + width)
    y0, y1 = max(dy0, wy0), min(dy0 + dh, wy0 + height)
    if x0 < x1 and y0 < y1:
        out[y0 - wy0:y1 - wy0, x0 - wx0:x1 - wx0] = block[y0 - dy0:y1 - dy0, x0 - dx0:x1 - dx0]
    return out


def _to_float32_bytes(chunk: bytes, ptype: int) -> bytes:
    if ptype == FLOAT:
        return chunk
    if np is not None:
        src = np.frombuffer(chunk, "<f2" if ptype == HALF else "<u4")
        return src.astype("<f4").tobytes()
    count = len(chunk) // PIXEL_BYTES[ptype]
    values = struct.unpack(f"<{count}{PIXEL_CODES[ptype]}", chunk)
    return struct.pack(f"<{count}f", *values)


def _place(rows: List[bytes], data_win, display_win):
    """Put data-window rows into a zeroed display-window plane (cropping what lies outside)."""
    dx0, dy0, dw, dh = data_win
    wx0, wy0, width, height = display_win
    if (dx0, dy0, dw, dh) == (wx0, wy0, width, height):
        return _plane_from_bytes(b"".join(rows), height, width)
    out = bytearray(4 * width * height)
    x_from, x_to = max(dx0, wx0), min(dx0 + dw, wx0 + width)
    if x_from < x_to:
        for i, row in enumerate(rows):
            y = dy0 + i - wy0
            if 0 <= y < height and row:
                src = row[4 * (x_from - dx0):4 * (x_to - dx0)]
                start = 4 * (y * width + x_from - wx0)
                out[start:start + len(src)] = src
    return _plane_from_bytes(bytes(out), height, width)


# --------------------------------------------------------------------------------------------- write
def _attr(name: str, kind: str, value: bytes) -> bytes:
    return name.encode() + b"\0" + kind.encode() + b"\0" + struct.pack("<i", len(value)) + value


def encode(width: int, height: int, planes: Dict[str, Any], compression: str = "zips",
           pixel_aspect: float = 1.0):
    """The bytes of a scanline EXR of FLOAT planes (name -> plane): bytes, or with numpy and no compression a
    uint8 array laid out in one copy of the pixels (a 1080p RGB frame ~12 ms; OpenCV's writer took 50-60 ms).
    ``compression`` is 'none', 'zips' or 'zip'; ``pixel_aspect`` the pixelAspectRatio attribute (pixel width /
    height: 2.0 for 2:1 anamorphic). Channel names follow EXR/Nuke conventions: ``R``, ``G``, ``B``, ``A`` load
    into Nuke's rgba layer, ``layer.channel`` (e.g. ``mattebox.trimap``) into a layer of that name."""
    if compression not in ("none", "zips", "zip"):
        raise ExrError(f"compression must be 'none', 'zips' or 'zip', got {compression!r}")
    if width < 1 or height < 1:
        raise ExrError(f"image size must be positive, got {width}x{height}")
    if not planes:
        raise ExrError("at least one channel is needed")
    code = COMPRESSIONS[compression]
    lines_per_chunk = SUPPORTED_COMPRESSIONS[code]
    names = sorted(planes)
    chlist = b"".join(n.encode() + b"\0" + struct.pack("<iB3xii", FLOAT, 0, 1, 1) for n in names) + b"\0"
    window = struct.pack("<4i", 0, 0, width - 1, height - 1)
    header = b"".join([
        struct.pack("<ii", MAGIC, VERSION),
        _attr("channels", "chlist", chlist),
        _attr("compression", "compression", bytes([code])),
        _attr("dataWindow", "box2i", window),
        _attr("displayWindow", "box2i", window),
        _attr("lineOrder", "lineOrder", b"\0"),
        _attr("pixelAspectRatio", "float", struct.pack("<f", pixel_aspect)),
        _attr("screenWindowCenter", "v2f", struct.pack("<2f", 0.0, 0.0)),
        _attr("screenWindowWidth", "float", struct.pack("<f", 1.0)),
        b"\0",
    ])
    if code == 0 and np is not None and all(isinstance(planes[n], np.ndarray) for n in names):
        return _uncompressed(header, width, height, [planes[n] for n in names])
    data = {name: plane_bytes(planes[name], height, width) for name in names}
    row_bytes = 4 * width
    chunks = []
    for y in range(0, height, lines_per_chunk):
        lines = min(lines_per_chunk, height - y)
        raw = b"".join(data[name][(y + i) * row_bytes:(y + i + 1) * row_bytes]
                       for i in range(lines) for name in names)
        if code != 0:
            packed = zlib.compress(_zip_encode(raw), 4)
            if len(packed) < len(raw):  # as OpenEXR: keep the raw bytes when compression does not help
                raw = packed
        chunks.append(struct.pack("<ii", y, len(raw)) + raw)
    table_at = len(header)
    offsets, at = [], table_at + 8 * len(chunks)
    for chunk in chunks:
        offsets.append(at)
        at += len(chunk)
    return b"".join([header, struct.pack(f"<{len(offsets)}Q", *offsets)] + chunks)


def _uncompressed(header: bytes, width: int, height: int, planes: List[Any]):
    """An uncompressed file (one scanline per chunk) as one uint8 array: the header, the offset table, then each
    scanline's y, byte count and the planes' rows (in the channel list's order), filled by whole-array copies."""
    for plane in planes:
        if plane.shape != (height, width):
            raise ExrError(f"plane shape {plane.shape} does not match {height}x{width}")
    line = 8 + 4 * len(planes) * width
    start = len(header) + 8 * height
    out = np.empty(start + line * height, np.uint8)
    out[:len(header)] = np.frombuffer(header, np.uint8)
    out[len(header):start].view("<u8")[:] = start + line * np.arange(height, dtype=np.uint64)
    lines = out[start:].reshape(height, line)
    lines[:, :8].view("<i4")[:] = np.column_stack([np.arange(height), np.full(height, line - 8)]).astype("<i4")
    rows = lines[:, 8:].view("<f4").reshape(height, len(planes), width)
    for k, plane in enumerate(planes):
        rows[:, k, :] = plane
    return out


def write(path: str, width: int, height: int, planes: Dict[str, Any], compression: str = "zips",
          pixel_aspect: float = 1.0) -> None:
    """Write FLOAT planes (name -> plane) as a scanline EXR (:func:`encode`), through a temporary file renamed over
    ``path``."""
    data = encode(width, height, planes, compression, pixel_aspect)
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)  # readers never see a half-written frame
