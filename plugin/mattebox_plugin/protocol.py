"""mattebox wire protocol v1 — the one source of truth for both sides.

Every message is a ZeroMQ multipart message::

    [MAGIC, header, *buffers]

``MAGIC`` is ``b"MBX"``; ``header`` is a msgpack map with at least ``v`` (protocol version), ``op`` and, for job
messages, ``id``; each raw pixel buffer travels as its own frame, described (in the same order) by the header's
``buffers`` list. Nothing is ever pickled. docs/protocol.md documents every op and field below; a test checks
that it names them all.

This module is imported by host plug-ins (Python 3.9+ inside Nuke, Blender, GIMP), so it uses the standard
library and msgpack only; msgpack only to encode and decode, so hosts build their menus from the parameters'
choices before their vendored wheels are importable. numpy is optional and only touched by :class:`Buffer`
conversions.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

try:
    import msgpack
except ImportError:  # a host registering its menus; encode/decode say what is missing
    msgpack = None

PROTOCOL_VERSION = 1
MAGIC = b"MBX"

# ---------------------------------------------------------------------------------------------- ops
HELLO = "hello"  #: both ways: handshake (versions, engines, limits, device)
MATTE = "matte"  #: client -> server: submit a job
ACCEPTED = "accepted"  #: server -> client: the job is queued
PROGRESS = "progress"  #: server -> client: stage, done, total, message
RESULT = "result"  #: server -> client: the job's outputs
CANCEL = "cancel"  #: client -> server: stop a job at its next stage boundary
ATTACH = "attach"  #: client -> server: route a job's messages to this connection and report its state
RELEASE = "release"  #: client -> server: the client has the result; free it
STATUS = "status"  #: both ways: server health, queue, memory
ERROR = "error"  #: server -> client: code, message, field, hint
NEED = "need"  #: server -> client: a shot job asks for one frame's inputs (id, frame)
FRAME = "frame"  #: client -> server: one frame's inputs for a shot job (id, frame, buffers), answering ``need``

CLIENT_OPS = (HELLO, MATTE, CANCEL, ATTACH, RELEASE, STATUS, FRAME)
SERVER_OPS = (HELLO, ACCEPTED, PROGRESS, RESULT, ERROR, STATUS, CANCEL, RELEASE, NEED)

# --------------------------------------------------------------------------------------- job states
#: a job's ``state`` in progress events, attach and cancel replies, status and the job store
QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
JOB_STATES = (QUEUED, RUNNING, DONE, FAILED, CANCELLED)


@dataclass(frozen=True)
class ProgressEvent:
    """A ``progress`` message: the engine's ``stage``, ``done`` of ``total`` steps within it (total 0: no count),
    a ``message`` and the job's ``state``. The client delivers the header's map; hosts read it through this."""

    stage: str = ""
    done: int = 0
    total: int = 0
    message: str = ""
    state: str = ""

    @classmethod
    def from_header(cls, header: Dict[str, Any]) -> "ProgressEvent":
        """From a progress header (or the client's event map); missing or null fields take their defaults."""
        def number(name: str) -> int:
            value = header.get(name)
            return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0

        return cls(str(header.get("stage") or ""), number("done"), number("total"), str(header.get("message") or ""),
                   str(header.get("state") or ""))

    @property
    def fraction(self) -> Optional[float]:
        """The share of the stage done, in [0, 1]; None when the stage has no count (show a pulse instead)."""
        if self.total <= 0:
            return None
        return max(0.0, min(1.0, self.done / self.total))

    def text(self) -> str:
        """The event as one line: the stage, its count and the message, those there are."""
        text = self.stage or "working"
        if self.total > 0:
            text += f" {self.done}/{self.total}"
        return text + (f" — {self.message}" if self.message else "")


# ---------------------------------------------------------------------------------------- info keys
#: keys of a result's ``info`` map that clients read (docs/protocol.md, ``result``)
INFO_ENGINE = "engine"  #: the engine that ran (``auto`` resolved)
INFO_SECONDS = "seconds"  #: time the engine took
INFO_FRAME = "frame"  #: the frame of a shot or a host's frame run
INFO_GUIDANCE = "guidance"  #: ``trimap``, ``mask``, ``auto:<method>``, ``plate:<method>``
INFO_FOREGROUND_METHOD = "foreground_method"  #: the estimator; ``+plate`` when the clean plate took part
INFO_IGNORED_INPUTS = "ignored_inputs"  #: inputs the engine accepted but does not use
INFO_PAIR_USABLE = "pair_usable"  #: whether the second frame was used
INFO_PAIR_WHY = "pair_why"  #: why it was not
INFO_WARNINGS = "warnings"  #: sentences saying when the result cannot be trusted

# ------------------------------------------------------------------------------------------- errors
#: error code -> what it means. Every error message carries ``code``, ``message`` and, where one field is to
#: blame, ``field`` (a dotted path such as ``buffers.1.shape``) and a ``hint``.
ERROR_CODES = {
    "bad_message": "the multipart framing or the header could not be decoded",
    "bad_version": "the header's protocol version is not one the server speaks",
    "unknown_op": "the header's op is not a client op",
    "bad_field": "a header field is missing, of the wrong type or out of range",
    "bad_buffer": "a pixel buffer does not match its description (size, dtype, shape)",
    "bad_pixels": "pixel values are not finite (NaN or infinity)",
    "shape_mismatch": "an input's height and width differ from the image's",
    "too_large": "the message or image is over a server limit",
    "queue_full": "this client (owner) or the whole server already has the maximum number of unfinished jobs",
    "unknown_job": "no job with this id is known (never submitted, released, expired, or lost by a server "
                   "restart without a job store)",
    "duplicate_job": "a job with this id already exists",
    "unknown_engine": "the requested engine or model is not registered",
    "engine_unavailable": "the engine exists but cannot run here (missing weights or device)",
    "engine_failed": "the engine raised an error while running the job",
    "cancelled": "the job was cancelled",
    "server_busy": "the server is shutting down or cannot take work",
    "job_lost": "the server restarted and could not recover the job (interrupted again after one rerun, or its "
                "stored inputs or result are missing or corrupt); submit it again",
    "over_budget": "the server or this owner has too many bytes of unfinished jobs in memory (max_bytes_per_client, "
                   "max_bytes_in_flight); retry when earlier jobs have finished",
    "result_evicted": "the finished result was dropped from a memory-only server to stay within max_result_bytes "
                      "(oldest first) before it was fetched; submit the job again",
    "frame_timeout": "a shot job waited longer than shot_timeout_s for a frame it asked for, with no word from its "
                     "client meanwhile, or its waits for frames added up to shot_max_wait_s; the job failed and its "
                     "memory was freed",
}


class ProtocolError(Exception):
    """A protocol-level error with a code from :data:`ERROR_CODES` and the field to blame."""

    def __init__(self, code: str, message: str, field: Optional[str] = None, hint: Optional[str] = None):
        if code not in ERROR_CODES:
            raise ValueError(f"unknown error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.hint = hint

    def to_header(self, job_id: Optional[str] = None) -> Dict[str, Any]:
        header = {"v": PROTOCOL_VERSION, "op": ERROR, "code": self.code, "message": self.message}
        if job_id is not None:
            header["id"] = job_id
        if self.field is not None:
            header["field"] = self.field
        if self.hint is not None:
            header["hint"] = self.hint
        return header

    @classmethod
    def from_header(cls, header: Dict[str, Any]) -> "ProtocolError":
        code = header.get("code", "bad_message")
        if code not in ERROR_CODES:
            code = "bad_message"
        return cls(code, str(header.get("message", "")), header.get("field"), header.get("hint"))

    def __str__(self) -> str:
        text = f"[{self.code}] {self.message}"
        if self.field:
            text += f" (field: {self.field})"
        if self.hint:
            text += f" — {self.hint}"
        return text


# ------------------------------------------------------------------------------------------ buffers
#: dtype name -> (struct code, bytes per element). Little-endian on the wire.
DTYPES = {"float32": ("f", 4), "float16": ("e", 2), "uint8": ("B", 1), "uint16": ("H", 2)}
COLORSPACES = ("linear", "srgb", "data")
#: input buffer name -> (required, allowed channel counts, description)
INPUTS = {
    "image": (True, (3, 4), "the plate to matte, RGB or RGBA"),
    "second": (False, (3, 4), "a second frame of the same shot with slight camera motion (parallax partner)"),
    "mask": (False, (1,), "coarse foreground mask in [0, 1]"),
    "trimap": (False, (1,), "trimap: 0 background, 0.5 unknown, 1 foreground (or 0/128/255 as uint8)"),
    "background": (False, (3, 4), "clean plate of the background"),
}
#: output name -> description
OUTPUTS = {
    "alpha": "H×W float32 alpha in [0, 1]",
    "foreground": "H×W×3 float32 straight (unpremultiplied) decontaminated foreground, in the image's colourspace",
    "trimap": "H×W float32 trimap the engine used (0, 0.5, 1)",
    "premultiplied": "H×W×4 float32 RGBA: foreground × alpha, alpha",
}
DEFAULT_OUTPUTS = ("alpha", "foreground")


def _field_spec(kind, default, doc, check=None, choices=None, bounds=None):
    """A parameter: its type, default and doc, and what values it takes: ``choices`` (the allowed values, in the
    order a menu lists them), ``bounds`` (inclusive (low, high) for numbers) or, for anything else, ``check``."""
    if choices is not None:
        check = choices.__contains__
    elif bounds is not None:
        check = lambda v, low=bounds[0], high=bounds[1]: low <= v <= high  # noqa: E731
    return {"type": kind, "default": default, "doc": doc, "check": check, "choices": choices, "bounds": bounds}


#: ``params`` of a matte request: name -> spec. The server fills defaults; unknown names are rejected.
MATTE_PARAMS = {
    "engine": _field_spec(str, "auto", "engine or model name from hello's engines; 'auto' picks the best available"),
    "band_width": _field_spec((int, float), 0, "unknown-band width in pixels for mask→trimap; 0 scales with size",
                              bounds=(0, 2000)),
    "quality": _field_spec(str, "balanced", "preset: 'fast', 'balanced' or 'best'",
                           choices=("fast", "balanced", "best")),
    "foreground_method": _field_spec(str, "auto", "foreground estimator: 'auto', 'multilevel' or 'blur_fusion'",
                                     choices=("auto", "multilevel", "blur_fusion")),
    "segmenter": _field_spec(str, "auto", "automatic guidance and rough masks: 'auto' (U^2-Net-p when installed, "
                             "else GrabCut) or 'grabcut' (no network)", choices=("auto", "grabcut")),
    "outputs": _field_spec(list, list(DEFAULT_OUTPUTS), "outputs wanted, names from OUTPUTS",
                           lambda v: len(v) > 0 and all(o in OUTPUTS for o in v)),
    "tile": _field_spec(int, 0, "learned engines: tile size in pixels; 0 chooses from free memory; -1 runs the "
                        "whole frame untiled (padded to a multiple of 32, as the model's reference code does)",
                        lambda v: v in (0, -1) or 64 <= v <= 4096),
    "weights": _field_spec(str, "", "learned engines: which installed weights to use, a name from `mattebox "
                           "models` (e.g. vitmatte-base-composition-1k); '' takes the first installed"),
    "tile_overlap": _field_spec(int, -1, "learned engines: tile overlap in pixels, below the tile size; -1 means "
                                "half the tile", lambda v: v >= -1),
    "tile_batch": _field_spec(int, 0, "learned engines: tiles per forward pass; 0 chooses from free memory",
                              bounds=(0, 256)),
    "roi": _field_spec(list, None, "[x, y, width, height] region to solve, inside the image (checked against its "
                       "size by validate_buffers); outside it alpha comes from guidance",
                       lambda v: len(v) == 4 and all(_is_type(x, int) for x in v) and min(v[:2]) >= 0
                       and min(v[2:]) >= 1),
    "priority": _field_spec(int, 0, "higher runs first among queued jobs", bounds=(-10, 10)),
}


def param_choices(name: str, default_first: bool = False) -> Tuple[Any, ...]:
    """The values a parameter takes (for a host's menu), in declared order or with the default first (a Nuke
    Enumeration_Knob's first item is its default). KeyError names parameters without choices."""
    choices = MATTE_PARAMS[name]["choices"]
    if choices is None:
        raise KeyError(f"parameter '{name}' has no fixed choices")
    if default_first:
        default = MATTE_PARAMS[name]["default"]
        return (default,) + tuple(c for c in choices if c != default)
    return tuple(choices)


def param_bounds(name: str) -> Tuple[Any, Any]:
    """A numeric parameter's inclusive (low, high) (for a host's slider or field)."""
    bounds = MATTE_PARAMS[name]["bounds"]
    if bounds is None:
        raise KeyError(f"parameter '{name}' has no bounds")
    return bounds


def choice_label(value: str) -> str:
    """How a menu shows a choice: 'blur_fusion' -> 'Blur fusion'."""
    return value.replace("_", " ").capitalize()

#: buffer-description key for bytes in shared memory instead of a frame: ``{name: segment, offset: int, key}``
#: (same-host fast path, see mattebox_plugin.shm); a matte request's ``reply_shm`` ({name, offset, size, key})
#: is where the server writes the result's buffers, whose descriptions then carry ``shm`` too.
SHM = "shm"
REPLY_SHM = "reply_shm"
#: (shm value, nbytes) -> a bytes-like view; raises ValueError naming what is wrong
ShmResolver = Callable[[Any, int], Any]

#: a client's secret proof of job ownership (docs/protocol.md, *Ownership*): sent with matte, attach, cancel,
#: release and status; the server keeps only its SHA-256. Ignored over CURVE, where the client's key is the owner.
OWNER_KEY = "owner_key"

#: server limits announced in hello; clients check them before sending. The queue and byte limits count per
#: owner (the CURVE key, the owner_key, or the connection), never per the client-chosen ``client`` field.
DEFAULT_LIMITS = {
    "max_message_bytes": 1 << 30,  #: the buffer frames of one message, in total
    "max_header_bytes": 64 << 10,  #: the msgpack header frame (descriptions and parameters, never pixels)
    "max_pixels": 64_000_000,
    "max_side": 16384,
    "max_queued_jobs_per_client": 16,
    "max_bytes_per_client": 2 << 30,  #: input bytes of one owner's unfinished jobs
    "max_queued_jobs": 256,  #: unfinished jobs of all owners
    "max_bytes_in_flight": 4 << 30,  #: input bytes of all unfinished jobs
    "max_result_bytes": 1 << 30,  #: finished results a memory-only server holds; oldest evicted past it
    "shot_timeout_s": 120,  #: a shot job fails (frame_timeout) after this long without the frame it asked for
    #: and without any message from its client (a waiting client pings with ``attach`` every few seconds)
    "shot_max_wait_s": 3600,  #: seconds one shot may spend waiting for its client's frames in all (pings do not
    #: extend it): a client that trickles frames, or pings and never sends one, cannot hold a shot worker for ever
    "max_running_shots": 2,  #: shots solved at once, on workers of their own (single frames never wait for them)
}


#: header key of a shot job: a ``matte`` request carrying it has no buffers; the server asks for each frame with
#: ``need`` and the client answers with ``frame`` (docs/protocol.md, *Shots*).
SHOT = "shot"
#: fields of ``shot``: name -> (type, required, doc)
SHOT_FIELDS = {
    "first": (int, True, "first frame number of the shot"),
    "last": (int, True, "last frame number (>= first, on the step)"),
    "step": (int, False, "frame step, >= 1 (default 1)"),
    "keys": (list, False, "frames whose inputs carry guidance (a mask or a trimap); none: automatic guidance"),
    "outputs": (list, False, "frames to return, ascending (default: every frame of the shot)"),
    "radius": (int, False, "neighbours on each side that steady a frame, 0..8 (default 2)"),
}
MAX_SHOT_RADIUS = 8
MAX_SHOT_FRAMES = 100_000  #: frames in one shot (over an hour at 24 fps); longer ranges are split into shots


def validate_shot(header: Dict[str, Any]) -> Dict[str, Any]:
    """Check a shot job's ``shot`` map -> ``{frames, keys, outputs, radius}``. ``frames`` (and ``outputs`` by
    default) is a ``range``: a queued shot of 100,000 frames must cost bytes, not megabytes, as a list of ints
    would (256 queued shots held 2 GiB); ``keys`` and an explicit ``outputs`` are lists (at most msgpack's 4096)."""
    shot = require(header, SHOT, dict)
    for name in shot:
        if name not in SHOT_FIELDS:
            raise ProtocolError("bad_field", f"unknown shot field '{name}'", field=f"{SHOT}.{name}",
                                hint=f"shot fields: {', '.join(SHOT_FIELDS)}")
    for name, (kind, required, _) in SHOT_FIELDS.items():
        if required or name in shot:
            require(shot, name, kind, f"{SHOT}.")
    first, last, step = shot["first"], shot["last"], shot.get("step", 1)
    if step < 1:
        raise ProtocolError("bad_field", f"shot step must be 1 or more, got {step}", field=f"{SHOT}.step")
    if last < first or (last - first) % step:
        raise ProtocolError("bad_field", f"shot last frame {last} must be first ({first}) plus a whole number of "
                            f"steps ({step})", field=f"{SHOT}.last")
    count = (last - first) // step + 1  # arithmetic: len() of a range past 2**63 frames raises OverflowError
    if count > MAX_SHOT_FRAMES:
        raise ProtocolError("too_large", f"a shot of {count} frames is over {MAX_SHOT_FRAMES}",
                            field=f"{SHOT}.last", hint="render the range as several shots")
    frames = range(first, last + 1, step)
    lists = {}
    for name in ("keys", "outputs"):
        values = shot.get(name, [] if name == "keys" else None)
        if values is None:
            continue
        for index, value in enumerate(values):
            if not _is_type(value, int) or value not in frames:
                raise ProtocolError("bad_field", f"shot {name}[{index}] = {value!r} is not a frame of the shot "
                                    f"{first}-{last} (step {step})", field=f"{SHOT}.{name}.{index}")
        if any(b <= a for a, b in zip(values, values[1:])):
            raise ProtocolError("bad_field", f"shot {name} must be ascending without repeats",
                                field=f"{SHOT}.{name}")
        lists[name] = list(values)
    radius = shot.get("radius", 2)
    if not 0 <= radius <= MAX_SHOT_RADIUS:
        raise ProtocolError("bad_field", f"shot radius must be 0..{MAX_SHOT_RADIUS}, got {radius}",
                            field=f"{SHOT}.radius")
    outputs = lists.get("outputs", frames)
    if not outputs:
        raise ProtocolError("bad_field", "shot outputs is empty: nothing to render", field=f"{SHOT}.outputs")
    return {"frames": frames, "keys": lists["keys"], "outputs": outputs, "radius": radius}


def validate_frame_number(header: Dict[str, Any]) -> int:
    """The ``frame`` field of a ``frame`` message (an integer)."""
    return require(header, "frame", int)


class Buffer:
    """One raw pixel buffer with its description. ``data`` is any bytes-like object (zero-copy for numpy)."""

    __slots__ = ("name", "data", "shape", "dtype", "colorspace", "premultiplied")

    def __init__(self, name: str, data: Any, shape: Sequence[int], dtype: str = "float32",
                 colorspace: str = "linear", premultiplied: bool = False):
        self.name = name
        self.data = data
        self.shape = tuple(int(s) for s in shape)
        self.dtype = dtype
        self.colorspace = colorspace
        self.premultiplied = bool(premultiplied)

    @classmethod
    def from_array(cls, name: str, array: Any, colorspace: str = "linear", premultiplied: bool = False) -> "Buffer":
        """Wrap a numpy array (C-contiguous copy made only when needed)."""
        import numpy as np

        array = np.asarray(array)
        dtype = array.dtype.name
        if dtype not in DTYPES:
            if dtype in ("float64", "bool") or array.dtype.kind in "iu":
                array = array.astype(np.float32)
                dtype = "float32"
            else:
                raise ProtocolError("bad_buffer", f"{name}: dtype {dtype} is not one of {sorted(DTYPES)}",
                                    field=f"{name}.dtype")
        array = np.ascontiguousarray(array.astype(array.dtype.newbyteorder("<"), copy=False))
        return cls(name, array, array.shape, dtype, colorspace, premultiplied)

    def to_array(self):
        """The buffer as a numpy array (a view of the frame's bytes, read-only when they are)."""
        import numpy as np

        return np.frombuffer(self.data, dtype=np.dtype(self.dtype).newbyteorder("<")).reshape(self.shape)

    @property
    def nbytes(self) -> int:
        return expected_nbytes(self.shape, self.dtype)

    def describe(self) -> Dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype,
                "colorspace": self.colorspace, "premultiplied": self.premultiplied}


def input_buffers(inputs: Dict[str, Any], colorspace: str = "linear", premultiplied: bool = False) -> List[Buffer]:
    """Request buffers from inputs by name (numpy arrays or :class:`Buffer`), in :data:`INPUTS` order: colour
    inputs take ``colorspace`` and ``premultiplied``, masks and trimaps are data."""
    buffers = []
    for name in INPUTS:
        value = inputs.get(name)
        if value is None:
            continue
        if not isinstance(value, Buffer):
            colour = INPUTS[name][1] != (1,)
            value = Buffer.from_array(name, value, colorspace if colour else "data", premultiplied and colour)
        value.name = name
        buffers.append(value)
    return buffers


def expected_nbytes(shape: Sequence[int], dtype: str) -> int:
    count = 1
    for s in shape:
        count *= int(s)
    return count * DTYPES[dtype][1]


# ------------------------------------------------------------------------------------ encode/decode
def _need_msgpack() -> None:
    if msgpack is None:
        raise ImportError("mattebox needs the msgpack package to talk to a server (pip install msgpack, or "
                          "reinstall the host plug-in with `mattebox install HOST`, which bundles it)")


def encode(header: Dict[str, Any], buffers: Sequence[Any] = ()) -> List[Any]:
    """Header map + raw frames -> the multipart list to send (frames stay zero-copy)."""
    _need_msgpack()
    header = dict(header)
    header.setdefault("v", PROTOCOL_VERSION)
    return [MAGIC, msgpack.packb(header, use_bin_type=True), *buffers]


def decode(frames: Sequence[Any], max_header_bytes: Optional[int] = None) -> Tuple[Dict[str, Any], List[Any]]:
    """Multipart frames (without any ROUTER identity) -> (header, buffer frames). Raises ProtocolError.

    A header over ``max_header_bytes`` (default: no limit) is refused before msgpack sees it; msgpack's own
    container limits bound what a header within it can expand to."""
    _need_msgpack()
    if len(frames) < 2:
        raise ProtocolError("bad_message", f"expected at least 2 frames (magic, header), got {len(frames)}",
                            hint="send [b'MBX', msgpack header, *buffers]")
    if bytes(frames[0]) != MAGIC:
        raise ProtocolError("bad_message", "first frame is not the mattebox magic b'MBX'",
                            hint="send [b'MBX', msgpack header, *buffers]")
    header_bytes = frame_nbytes(frames[1])
    if max_header_bytes is not None and header_bytes > max_header_bytes:
        raise ProtocolError("too_large", f"header is {header_bytes} bytes, over max_header_bytes {max_header_bytes}",
                            field="header", hint="the header holds descriptions, not pixels")
    try:
        header = msgpack.unpackb(bytes(frames[1]), raw=False, strict_map_key=True, max_bin_len=0,
                                 max_array_len=4096, max_map_len=4096, max_str_len=1 << 20, max_ext_len=0)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise ProtocolError("bad_message", f"header is not valid msgpack: {exc.__class__.__name__}: {exc}") from None
    if not isinstance(header, dict):
        raise ProtocolError("bad_message", f"header must be a msgpack map, got {type(header).__name__}")
    version = header.get("v")
    if version != PROTOCOL_VERSION:
        raise ProtocolError("bad_version", f"protocol version {version!r} is not supported; this side speaks "
                            f"v{PROTOCOL_VERSION}", field="v", hint="upgrade the older side so both match")
    op = header.get("op")
    if not isinstance(op, str):
        raise ProtocolError("bad_field", "header field 'op' must be a string", field="op")
    return header, list(frames[2:])


def require(header: Dict[str, Any], name: str, kind, where: str = "") -> Any:
    """Fetch a required header field of the given type, or raise bad_field naming it."""
    path = f"{where}{name}"
    if name not in header:
        raise ProtocolError("bad_field", f"missing field '{path}'", field=path)
    value = header[name]
    if not _is_type(value, kind):
        raise ProtocolError("bad_field", f"field '{path}' must be {_type_name(kind)}, got {type(value).__name__}",
                            field=path)
    return value


def _is_type(value, kind) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        return False
    if isinstance(value, float) and float in kinds and not math.isfinite(value):
        return False
    return isinstance(value, kinds)


def _type_name(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "a string", int: "an integer", float: "a number", list: "a list", dict: "a map", bool: "a boolean"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def validate_job_id(header: Dict[str, Any]) -> str:
    job_id = require(header, "id", str)
    if not (1 <= len(job_id) <= 128) or not all(c.isalnum() or c in "-_." for c in job_id):
        raise ProtocolError("bad_field", "field 'id' must be 1-128 characters of letters, digits, '-', '_', '.'",
                            field="id")
    return job_id


def validate_owner_key(header: Dict[str, Any]) -> Optional[str]:
    """The request's ``owner_key`` (32-128 characters of letters, digits, '-', '_': at least 128 bits as hex), or
    None when it has none."""
    key = header.get(OWNER_KEY)
    if key is None:
        return None
    if not isinstance(key, str) or not (32 <= len(key) <= 128) or not all(c.isalnum() or c in "-_" for c in key):
        raise ProtocolError("bad_field", f"field '{OWNER_KEY}' must be 32-128 characters of letters, digits, '-' "
                            f"or '_' (a random secret of at least 128 bits)", field=OWNER_KEY)
    return key


def validate_params(params: Any) -> Dict[str, Any]:
    """Check a matte request's ``params`` map and return it with defaults filled."""
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ProtocolError("bad_field", "field 'params' must be a map", field="params")
    out = {}
    for name, value in params.items():
        if name not in MATTE_PARAMS:
            raise ProtocolError("bad_field", f"unknown parameter '{name}'", field=f"params.{name}",
                                hint=f"known parameters: {', '.join(sorted(MATTE_PARAMS))}")
        spec = MATTE_PARAMS[name]
        if value is None and spec["default"] is None:
            continue
        if not _is_type(value, spec["type"]):
            raise ProtocolError("bad_field", f"parameter '{name}' must be {_type_name(spec['type'])}, "
                                f"got {type(value).__name__}", field=f"params.{name}")
        if spec["check"] is not None and not spec["check"](value):
            raise ProtocolError("bad_field", f"parameter '{name}' has an invalid value {value!r}: "
                                f"{_allowed(spec)}", field=f"params.{name}")
        out[name] = value
    for name, spec in MATTE_PARAMS.items():
        if name not in out:
            default = spec["default"]
            out[name] = list(default) if isinstance(default, list) else default
    return out


def _allowed(spec: Dict[str, Any]) -> str:
    """What a parameter accepts, for its error: the choices or bounds (from the data the check is made from)."""
    if spec["choices"] is not None:
        return "expected one of " + ", ".join(repr(c) for c in spec["choices"])
    if spec["bounds"] is not None:
        return f"expected {spec['bounds'][0]} to {spec['bounds'][1]}"
    return spec["doc"]


def _inline_count(descs: Sequence[Any]) -> int:
    """How many descriptions expect a frame (the others carry ``shm``: their bytes are in shared memory)."""
    return sum(1 for d in descs if not (isinstance(d, dict) and SHM in d))


def _shm_bytes(desc: Dict[str, Any], nbytes: int, shm: Optional[ShmResolver], where: str) -> Any:
    if shm is None:
        raise ProtocolError("bad_field", "a shared-memory buffer was sent, but shared memory is not in use on "
                            "this connection", field=where + SHM, hint="send hello with an shm probe first, or "
                            "send the bytes as a frame")
    try:
        return shm(desc[SHM], nbytes)
    except ValueError as exc:
        raise ProtocolError("bad_buffer", f"{desc.get('name')}: {exc}", field=where + SHM) from None


def validate_buffers(header: Dict[str, Any], frames: Sequence[Any], limits: Dict[str, int],
                     shm: Optional[ShmResolver] = None) -> Dict[str, Buffer]:
    """Check every buffer description against its frame and the limits; return name -> Buffer.

    Checks, in order: descriptions are a list matching the frame count (descriptions carrying ``shm`` have no
    frame; ``shm(value, nbytes)`` maps their bytes); each has a known input name (once), a
    known dtype and colourspace, a 2-D or 3-D shape with an allowed channel count and a size within the limits,
    and a frame of exactly the described byte size; every input has the image's height and width, and the
    header's ``params.roi`` lies inside the image. Pixel values
    (NaN/inf) are checked by the server after decoding, where numpy is at hand.
    """
    descs = require(header, "buffers", list)
    if _inline_count(descs) != len(frames):
        raise ProtocolError("bad_buffer", f"header describes {_inline_count(descs)} frame buffers but {len(frames)} "
                            f"frames arrived", field="buffers",
                            hint="send one frame per buffer description without 'shm', in the same order")
    out: Dict[str, Buffer] = {}
    frame_iter = iter(frames)
    for index, desc in enumerate(descs):
        where = f"buffers.{index}."
        if not isinstance(desc, dict):
            raise ProtocolError("bad_field", f"buffer description {index} must be a map", field=f"buffers.{index}")
        name = require(desc, "name", str, where)
        if name not in INPUTS:
            raise ProtocolError("bad_field", f"unknown input '{name}'", field=where + "name",
                                hint=f"inputs are {', '.join(INPUTS)}")
        if name in out:
            raise ProtocolError("bad_field", f"input '{name}' given twice", field=where + "name")
        dtype = require(desc, "dtype", str, where)
        if dtype not in DTYPES:
            raise ProtocolError("bad_buffer", f"{name}: dtype '{dtype}' is not one of {', '.join(DTYPES)}",
                                field=where + "dtype")
        colorspace = desc.get("colorspace", "linear")
        if colorspace not in COLORSPACES:
            raise ProtocolError("bad_field", f"{name}: colorspace '{colorspace}' is not one of "
                                f"{', '.join(COLORSPACES)}", field=where + "colorspace")
        premultiplied = desc.get("premultiplied", False)
        if not isinstance(premultiplied, bool):
            raise ProtocolError("bad_field", f"{name}: premultiplied must be a boolean", field=where + "premultiplied")
        shape = require(desc, "shape", list, where)
        _check_shape(name, shape, where + "shape", limits)
        want = expected_nbytes(shape, dtype)
        frame = _shm_bytes(desc, want, shm, where) if SHM in desc else next(frame_iter)
        size = frame_nbytes(frame)
        if size != want:
            raise ProtocolError("bad_buffer", f"{name}: frame has {size} bytes but shape {shape} of {dtype} needs "
                                f"{want}", field=where + "shape")
        out[name] = Buffer(name, frame, shape, dtype, colorspace, premultiplied)
    if "image" not in out:
        raise ProtocolError("bad_field", "the required input 'image' is missing", field="buffers",
                            hint="describe a buffer named 'image'")
    height, width = out["image"].shape[:2]
    for name, buf in out.items():
        if buf.shape[:2] != (height, width):
            index = [d.get("name") for d in descs].index(name)
            raise ProtocolError("shape_mismatch", f"{name} is {buf.shape[1]}×{buf.shape[0]} but image is "
                                f"{width}×{height}", field=f"buffers.{index}.shape",
                                hint="resample every input to the image's size")
    _check_roi(header.get("params"), width, height)
    return out


def _check_roi(params: Any, width: int, height: int) -> None:
    """A matte request's ``params.roi`` (already checked by validate_params) must lie inside the image."""
    roi = params.get("roi") if isinstance(params, dict) else None
    if isinstance(roi, list) and len(roi) == 4 and all(_is_type(v, int) for v in roi):
        x, y, w, h = roi
        if x + w > width or y + h > height:
            raise ProtocolError("bad_field", f"roi [{x}, {y}, {w}, {h}] reaches ({x + w}, {y + h}), outside the "
                                f"{width}×{height} image", field="params.roi",
                                hint="x + width <= image width and y + height <= image height")


def _check_shape(name: str, shape: List[Any], field: str, limits: Dict[str, int]) -> None:
    if not (2 <= len(shape) <= 3) or not all(isinstance(s, int) and not isinstance(s, bool) for s in shape):
        raise ProtocolError("bad_field", f"{name}: shape must be [height, width] or [height, width, channels] "
                            f"of integers, got {shape!r}", field=field)
    height, width = shape[0], shape[1]
    channels = shape[2] if len(shape) == 3 else 1
    allowed = INPUTS[name][1]
    if channels not in allowed:
        raise ProtocolError("bad_field", f"{name}: {channels} channels, expected {' or '.join(map(str, allowed))}",
                            field=field)
    if height < 1 or width < 1:
        raise ProtocolError("bad_field", f"{name}: height and width must be positive, got {height}×{width}",
                            field=field)
    max_side = limits.get("max_side", DEFAULT_LIMITS["max_side"])
    max_pixels = limits.get("max_pixels", DEFAULT_LIMITS["max_pixels"])
    if height > max_side or width > max_side or height * width > max_pixels:
        raise ProtocolError("too_large", f"{name}: {width}×{height} is over the server limit (max side "
                            f"{max_side}, max {max_pixels} pixels)", field=field,
                            hint="send a smaller image, or raise the server's --max-pixels")


def frame_nbytes(frame: Any) -> int:
    """Byte size of any frame object (bytes, memoryview, zmq buffer, numpy array)."""
    return memoryview(frame).nbytes


def message_nbytes(frames: Sequence[Any]) -> int:
    return sum(frame_nbytes(f) for f in frames)


def validate_result_buffers(header: Dict[str, Any], frames: Sequence[Any],
                            shm: Optional[ShmResolver] = None) -> Dict[str, Buffer]:
    """Client side: check a result's buffer descriptions against its frames (or shared memory); name -> Buffer."""
    descs = require(header, "buffers", list)
    if _inline_count(descs) != len(frames):
        raise ProtocolError("bad_buffer", f"result describes {_inline_count(descs)} frame buffers but {len(frames)} "
                            f"frames arrived", field="buffers")
    out = {}
    frame_iter = iter(frames)
    for index, desc in enumerate(descs):
        where = f"buffers.{index}."
        if not isinstance(desc, dict):
            raise ProtocolError("bad_field", f"result buffer description {index} must be a map", field=where[:-1])
        name = require(desc, "name", str, where)
        dtype = require(desc, "dtype", str, where)
        shape = require(desc, "shape", list, where)
        if dtype not in DTYPES or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise ProtocolError("bad_buffer", f"result buffer {name} has a bad dtype or shape", field=where + "shape")
        frame = _shm_bytes(desc, expected_nbytes(shape, dtype), shm, where) if SHM in desc else next(frame_iter)
        if frame_nbytes(frame) != expected_nbytes(shape, dtype):
            raise ProtocolError("bad_buffer", f"result buffer {name} does not match its description",
                                field=where + "shape")
        out[name] = Buffer(name, frame, shape, dtype, desc.get("colorspace", "data"), desc.get("premultiplied", False))
    return out
