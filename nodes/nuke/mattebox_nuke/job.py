"""The Mattebox node's files, without Nuke: input EXRs -> a matte request, a result -> EXR, the result store.

Everything here is plain Python (safe in a worker thread: it never touches Nuke's API). The node's Nuke side
(:mod:`mattebox_nuke.node`) renders the inputs to EXR files, runs a :class:`mattebox_plugin.run.FrameRun` with
:func:`read_request` and a :class:`ResultStore`, and loads the result files through its Read.

Cache: a result is stored once under ``<cache>/store/<key>.exr``, where ``key`` is the run's content key (input
pixels, settings, server and engine); ``<cache>/<node>/result.<frame>.exr`` is a hard link (or copy) of it.
Re-matting a frame whose inputs and settings did not change costs a render and a hash, no server call.
``<cache>/<node>/made_under.json`` keeps the server hello each frame's result was made under, so such a frame is
found (and the run says the server is down) also when no server can be reached.
"""
from __future__ import annotations

import json
import os
import shutil
from typing import Any, Dict, List, Optional

from mattebox_plugin import exr
from mattebox_plugin.frames import parse_frames
from mattebox_plugin.run import RememberedHellos, Shot

#: the result file's layout, part of every content key (bump when it changes, so old files are not reused)
RESULT_LAYOUT = 2  # 2: results carry the plate's pixel aspect
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
                 guide_channel: str = "alpha", premultiply: bool = False, quality: str = "balanced",
                 shot: bool = False, key_frames: str = ""):
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
        self.shot = bool(shot)
        self.key_frames = key_frames.strip()
        #: the plate's pixel aspect, which the result files carry (set from the rendered plate by the node)
        self.pixel_aspect = 1.0
        if self.shot and self.key_frames:
            try:
                parse_frames(self.key_frames)
            except ValueError as exc:
                raise MatteboxError(f"key {exc}", "list the frames whose guide input guides the shot") from None

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

    def shot_run(self) -> Optional[Shot]:
        """The FrameRun's shot (its frames matted as one) when the shot knob is on, else None."""
        if not self.shot:
            return None
        return Shot(keys=parse_frames(self.key_frames) if self.key_frames else (), params=self.params())

    def key_extra(self) -> Dict[str, Any]:
        """What besides the request changes the result file (FrameRun's ``key_extra``)."""
        return {"layout": RESULT_LAYOUT, "premultiply": self.premultiply, "pixel_aspect": self.pixel_aspect}


# ------------------------------------------------------------------------------------------- inputs
def read_request(settings: Settings, frame: int, connected: Dict[str, bool]) -> Dict[str, Any]:
    """The frame's matte request (``Client.submit`` keyword arguments) from its rendered input EXRs."""
    return dict(load_inputs(settings, frame, connected), params=settings.params())


def plate_pixel_aspect(settings: Settings, frame: int) -> float:
    """The pixel aspect (width / height of a pixel) of the frame's rendered plate: 2.0 for a 2:1 anamorphic."""
    return float(exr.read(settings.input_path("plate", frame)).header.get("pixelAspectRatio", 1.0))


def load_inputs(settings: Settings, frame: int, connected: Dict[str, bool]) -> Dict[str, Any]:
    """Read the frame's rendered input EXRs into protocol Buffers by input name; check they share the plate's
    size."""
    from mattebox_plugin.protocol import Buffer

    if not connected.get("plate"):
        raise MatteboxError("the plate input is not connected", "connect the image to matte to input 'plate'")
    buffers: Dict[str, Any] = {}
    width = height = 0
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
        buffers[protocol_name] = Buffer(protocol_name, exr.interleave(rgb, height, width), (height, width, 3),
                                        "float32", "linear", False)
    return buffers


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


def write_result(path: str, result: Any, plate: Any, settings: Settings) -> None:
    """Result EXR: rgb = decontaminated foreground (straight, or × alpha when premultiply is on; the ``plate``
    Buffer sent as the image when no foreground was asked for), A = alpha, ``mattebox.trimap`` = the trimap the
    engine used."""
    h, w = plate.shape[0], plate.shape[1]
    buffers = result.buffers
    if "alpha" not in buffers:
        raise MatteboxError("the server's result has no alpha")
    alpha = _buffer_planes(buffers["alpha"])[0]
    rgb = _buffer_planes(buffers["foreground"] if "foreground" in buffers else plate)
    if settings.premultiply:
        rgb = [_multiply(p, alpha) for p in rgb]
    planes = {"R": rgb[0], "G": rgb[1], "B": rgb[2], "A": alpha}
    if "trimap" in buffers:
        planes[TRIMAP_CHANNEL] = _buffer_planes(buffers["trimap"])[0]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # uncompressed: zlib shrinks float32 pixels by only 1-7% (bench/nuke_exr.py) but costs ~230 ms per 1080p plane
    exr.write(path, w, h, planes, compression="none", pixel_aspect=settings.pixel_aspect)


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


class ResultStore:
    """The node's results for a FrameRun: its cache (``reuse``, ``record``, ``made_under``) and its writer
    (``write``)."""

    #: in the node's folder: the hello each frame's result was made under (mattebox_plugin.run.RememberedHellos)
    MADE_UNDER = "made_under.json"

    def __init__(self, settings: Settings):
        self.settings = settings
        self.path = os.path.join(settings.node_dir(), self.MADE_UNDER)
        data = None
        try:
            with open(self.path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError):
            pass  # none yet, or damaged: offline re-mattes find nothing until frames are matted again
        self.hellos = RememberedHellos(data)

    def reuse(self, frame: int, key: str, outputs: Any) -> bool:
        """Publish the stored result for ``key`` as the frame's file, if there is one (the key covers outputs)."""
        store = self.settings.store_path(key)
        if not os.path.isfile(store):
            return False
        _publish(store, self.settings.result_path(frame))
        return True

    def record(self, frame: int, key: str, info: Dict[str, Any], hello: Optional[Dict[str, Any]] = None) -> None:
        """Remember the hello the frame was made under (the stored file named by its key is the rest). A shot
        frame (no key) changes nothing: the store still holds what each key made."""
        if key is None:
            return
        self.hellos.remember(frame, hello)
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        tmp = f"{self.path}.tmp{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(self.hellos.to_json(), fh, indent=1, sort_keys=True)
        os.replace(tmp, self.path)

    def made_under(self, frame: int) -> Optional[Dict[str, Any]]:
        """The server hello (its content-key part) the frame's current result was made under, or None."""
        return self.hellos.get(frame)

    def write(self, work: Any, result: Any) -> None:
        """Store a computed frame (``work``: mattebox_plugin.run.Work) and publish it as the frame's file. A shot
        frame (no content key: it depends on its neighbours) replaces the frame's file directly, never the store
        file a previous result may be a hard link of."""
        target = self.settings.result_path(work.frame)
        if work.key is None:
            tmp = f"{target}.tmp{os.getpid()}"
            write_result(tmp, result, work.request["image"], self.settings)
            os.replace(tmp, target)
            return
        store = self.settings.store_path(work.key)
        write_result(store, result, work.request["image"], self.settings)
        _publish(store, target)


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
