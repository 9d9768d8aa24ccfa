"""One frame of the Mattebox node, without Nuke: input EXRs -> server -> result EXR, with a content-hash cache.

Everything here is plain Python (safe in a worker thread: it never touches Nuke's API). The node's Nuke side
(:mod:`mattebox_nuke.node`) renders the inputs to EXR files and loads the result file through its Read.

Cache: a result is stored once under ``<cache>/store/<key>.exr``, where ``key`` is the SHA-256 of the input
pixels and every setting that changes the result; ``<cache>/<node>/result.<frame>.exr`` is a hard link (or copy)
of it. Re-matting a frame whose inputs and settings did not change costs a render and a hash, no server call.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from typing import Any, Callable, Dict, List

from . import exr

#: bump when the result file layout changes, so old cache entries are not reused
CACHE_VERSION = 1
#: the node's inputs: (Input node name, protocol input name or None for the guide, what it is)
NODE_INPUTS = (
    ("plate", "image", "the plate to matte"),
    ("second", "second", "a second frame of the shot with slight camera motion (parallax partner)"),
    ("guide", None, "a coarse mask or a trimap, read from its alpha (or red) channel"),
    ("clean", "background", "a clean plate of the background"),
)
OUTPUT_CHOICES = {"alpha, foreground, trimap": ["alpha", "foreground", "trimap"],
                  "alpha, foreground": ["alpha", "foreground"], "alpha": ["alpha"]}
TRIMAP_CHANNEL = "mattebox.trimap"


class MatteboxError(RuntimeError):
    """A failure to show on the node: ``message`` says what and ``hint`` what to do."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message + (f" ({hint})" if hint else ""))
        self.message = message
        self.hint = hint


class Settings:
    """The node's knob values, read once on the main thread and then used from the worker."""

    def __init__(self, node_name: str, cache_dir: str, endpoint: str = "", engine: str = "auto",
                 band_width: float = 0.0, outputs: str = "alpha, foreground, trimap", guide: str = "mask",
                 guide_channel: str = "alpha", premultiply: bool = False, quality: str = "balanced"):
        if outputs not in OUTPUT_CHOICES:
            raise MatteboxError(f"outputs {outputs!r} is not one of {list(OUTPUT_CHOICES)}")
        if guide not in ("mask", "trimap"):
            raise MatteboxError(f"guide must be 'mask' or 'trimap', got {guide!r}")
        if guide_channel not in ("alpha", "red"):
            raise MatteboxError(f"guide channel must be 'alpha' or 'red', got {guide_channel!r}")
        if not cache_dir:
            raise MatteboxError("the cache folder is empty", "set the node's cache folder knob")
        self.node_name = node_name
        self.cache_dir = cache_dir
        self.endpoint = endpoint
        self.engine = engine or "auto"
        self.band_width = float(band_width)
        self.outputs = list(OUTPUT_CHOICES[outputs])
        self.guide = guide
        self.guide_channel = guide_channel
        self.premultiply = bool(premultiply)
        self.quality = quality
        self.server_version = ""  #: set from the server's hello: a new server does not reuse old results

    def params(self) -> Dict[str, Any]:
        """The matte request's ``params`` (protocol.MATTE_PARAMS)."""
        band = int(self.band_width) if float(self.band_width).is_integer() else self.band_width
        return {"engine": self.engine, "band_width": band, "outputs": list(self.outputs), "quality": self.quality}

    # ---------------------------------------------------------------------------------------- paths
    def node_dir(self) -> str:
        return os.path.join(self.cache_dir, self.node_name)

    def input_pattern(self, name: str) -> str:
        """Frame pattern of an input's internal Write (Nuke's printf-style %04d)."""
        return os.path.join(self.node_dir(), "in", f"{name}.%04d.exr").replace("\\", "/")

    def input_path(self, name: str, frame: int) -> str:
        return self.input_pattern(name) % frame

    def result_pattern(self) -> str:
        return os.path.join(self.node_dir(), "result.%04d.exr").replace("\\", "/")

    def result_path(self, frame: int) -> str:
        return self.result_pattern() % frame

    def store_path(self, key: str) -> str:
        return os.path.join(self.cache_dir, "store", f"{key}.exr")


# ------------------------------------------------------------------------------------------- inputs
class FrameInputs:
    """The decoded inputs of one frame: protocol buffers plus the plate's RGB planes (for the output)."""

    def __init__(self, buffers: Dict[str, Any], width: int, height: int, plate_rgb: List[Any]):
        self.buffers, self.width, self.height, self.plate_rgb = buffers, width, height, plate_rgb


def load_inputs(settings: Settings, frame: int, connected: Dict[str, bool]) -> FrameInputs:
    """Read the frame's rendered input EXRs into protocol Buffers; check they share the plate's size."""
    from mattebox_plugin.protocol import Buffer

    if not connected.get("plate"):
        raise MatteboxError("the plate input is not connected", "connect the image to matte to input 'plate'")
    buffers: Dict[str, Any] = {}
    width = height = 0
    plate_rgb: List[Any] = []
    for node_input, protocol_name, _ in NODE_INPUTS:
        if not connected.get(node_input):
            continue
        path = settings.input_path(node_input, frame)
        try:
            image = exr.read(path)
        except FileNotFoundError:
            raise MatteboxError(f"input {node_input!r} was not rendered for frame {frame} ({path} is missing)",
                                "check the input's frame range") from None
        if node_input == "plate":
            width, height = image.width, image.height
        elif (image.width, image.height) != (width, height):
            raise MatteboxError(f"input {node_input!r} is {image.width}x{image.height} but the plate is "
                                f"{width}x{height}", f"Reformat {node_input!r} to the plate's format")
        if protocol_name is None:  # the guide: one channel, sent as mask or trimap
            channel = "A" if settings.guide_channel == "alpha" else "R"
            plane = image.planes.get(channel)
            if plane is None:
                raise MatteboxError(f"the guide input has no {settings.guide_channel} channel",
                                    "pick the guide channel that holds the mask")
            name = settings.guide
            buffers[name] = Buffer(name, exr.plane_bytes(plane, height, width), (height, width), "float32", "data")
            continue
        rgb = [image.planes.get(c) for c in "RGB"]
        if any(p is None for p in rgb):
            raise MatteboxError(f"input {node_input!r} has no rgb channels", "feed it a colour image")
        if node_input == "plate":
            plate_rgb = rgb
        buffers[protocol_name] = Buffer(protocol_name, exr.interleave(rgb, height, width), (height, width, 3),
                                        "float32", "linear", False)
    return FrameInputs(buffers, width, height, plate_rgb)


def cache_key(settings: Settings, inputs: FrameInputs) -> str:
    """SHA-256 over the input pixels and everything that changes the result file (settings, server version)."""
    digest = hashlib.sha256()
    recipe = {"v": CACHE_VERSION, "server": settings.server_version, "params": settings.params(),
              "premultiply": settings.premultiply,
              "inputs": {n: [list(b.shape), b.dtype] for n, b in sorted(inputs.buffers.items())}}
    digest.update(json.dumps(recipe, sort_keys=True).encode())
    for name in sorted(inputs.buffers):
        digest.update(name.encode())
        digest.update(memoryview(inputs.buffers[name].data).cast("B"))
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------- result
def _buffer_planes(buf: Any) -> List[Any]:
    """A result Buffer (H×W or H×W×C float32) -> its planes."""
    shape = buf.shape
    height, width = shape[0], shape[1]
    count = shape[2] if len(shape) == 3 else 1
    if buf.dtype != "float32":
        raise MatteboxError(f"server returned {buf.name} as {buf.dtype}, expected float32")
    return exr.deinterleave(buf.data, height, width, count)


def _multiply(a: Any, b: Any):
    if exr.have_numpy():
        return (a * b).astype("float32")
    import array
    import operator

    return array.array("f", map(operator.mul, a, b))


def write_result(path: str, result: Any, inputs: FrameInputs, settings: Settings) -> None:
    """Result EXR: rgb = decontaminated foreground (straight, or × alpha when premultiply is on; the plate when
    no foreground was asked for), A = alpha, ``mattebox.trimap`` = the trimap the engine used."""
    h, w = inputs.height, inputs.width
    buffers = result.buffers
    if "alpha" not in buffers:
        raise MatteboxError("the server's result has no alpha")
    alpha = _buffer_planes(buffers["alpha"])[0]
    rgb = _buffer_planes(buffers["foreground"]) if "foreground" in buffers else list(inputs.plate_rgb)
    if settings.premultiply:
        rgb = [_multiply(p, alpha) for p in rgb]
    planes = {"R": rgb[0], "G": rgb[1], "B": rgb[2], "A": alpha}
    if "trimap" in buffers:
        planes[TRIMAP_CHANNEL] = _buffer_planes(buffers["trimap"])[0]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # uncompressed: zlib shrinks float32 pixels by only 1-7% (bench/nuke_exr.py) but costs ~230 ms per 1080p plane
    exr.write(path, w, h, planes, compression="none")


def _publish(store: str, target: str) -> None:
    """Make ``target`` (the Read's frame file) hold the stored result: hard link, else copy; atomically."""
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if os.path.exists(target) and os.path.samefile(store, target):
        return  # already this result
    tmp = f"{target}.tmp{os.getpid()}"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    try:
        os.link(store, tmp)
    except OSError:
        shutil.copyfile(store, tmp)
    os.replace(tmp, target)
    if os.path.lexists(tmp):  # POSIX rename() between two links of one file does nothing and keeps both
        os.unlink(tmp)


class FrameOutcome:
    def __init__(self, frame: int, path: str, cached: bool, info: Dict[str, Any], seconds: float):
        self.frame, self.path, self.cached, self.info, self.seconds = frame, path, cached, info, seconds


def matte_frame(client: Any, settings: Settings, frame: int, connected: Dict[str, bool],
                on_progress: Callable[[Dict[str, Any]], None] = lambda event: None,
                cancelled: Callable[[], bool] = lambda: False) -> FrameOutcome:
    """Matte one frame whose inputs are rendered; reuse the stored result when the key matches."""
    from mattebox_plugin.client import JobFailed

    start = time.monotonic()
    inputs = load_inputs(settings, frame, connected)
    key = cache_key(settings, inputs)
    store = settings.store_path(key)
    target = settings.result_path(frame)
    if os.path.isfile(store):
        _publish(store, target)
        return FrameOutcome(frame, target, True, {"cache": key}, time.monotonic() - start)
    b = inputs.buffers
    job = client.submit(image=b["image"], second=b.get("second"), mask=b.get("mask"), trimap=b.get("trimap"),
                        background=b.get("background"), params=settings.params())
    cancel_sent = False
    while not job.done:
        if not cancel_sent and cancelled():
            job.cancel()
            cancel_sent = True
        for event in job.poll(0.2):
            on_progress(event)
    try:
        result = job.result()
    except JobFailed as exc:
        if exc.code == "cancelled":
            raise MatteboxError("cancelled") from None
        raise
    write_result(store, result, inputs, settings)
    _publish(store, target)
    info = dict(result.info, cache=key)
    return FrameOutcome(frame, target, False, info, time.monotonic() - start)


def result_frames(settings: Settings) -> List[int]:
    """Frames that have a result file for this node."""
    folder = settings.node_dir()
    frames = []
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            parts = name.split(".")
            if len(parts) == 3 and parts[0] == "result" and parts[2] == "exr" and parts[1].lstrip("-").isdigit():
                frames.append(int(parts[1]))
    return sorted(frames)
