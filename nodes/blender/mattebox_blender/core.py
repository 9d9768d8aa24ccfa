"""The Blender extension's logic that needs no Blender: pixel layout, colour, requests, the output folder's index.

Blender stores an image as a flat RGBA float list, rows bottom-up (``Image.pixels``); mattebox speaks H×W×C
arrays with rows top-down. Everything here is plain numpy so it is tested outside Blender.
"""
from __future__ import annotations

import json
import os
import zlib
from typing import Any, Callable, Dict, Iterable, List, Optional

import numpy as np

from .connection import plugin_module

#: how a result is stored on disk and named in bpy.data: output name -> (file prefix, Blender colourspace)
RESULT_KINDS = {
    "alpha": ("alpha", "Non-Color"),
    "foreground": ("foreground", "Linear Rec.709"),
    "trimap": ("trimap", "Non-Color"),
}
#: layout of the output folder's index file; the keys in it are mattebox_plugin.run.content_key's
INDEX_VERSION = 2


# ------------------------------------------------------------------------------------------- pixels
def from_blender_pixels(flat: np.ndarray, width: int, height: int, channels: int = 4) -> np.ndarray:
    """Blender's flat bottom-up pixel list -> an H×W×C top-down float32 array (a copy, C-contiguous)."""
    flat = np.asarray(flat, dtype=np.float32)
    expected = width * height * channels
    if flat.size != expected:
        raise ValueError(f"pixels: expected {width}x{height}x{channels} = {expected} values, got {flat.size}")
    return np.ascontiguousarray(flat.reshape(height, width, channels)[::-1])


def to_blender_pixels(array: np.ndarray) -> np.ndarray:
    """An H×W, H×W×3 or H×W×4 top-down array -> Blender's flat bottom-up RGBA float32 list.

    Single-channel data (alpha, trimap) is replicated into R, G, B and A so any channel reads back the value
    (the extension's images use alpha mode CHANNEL_PACKED, so Blender never premultiplies it); RGB gets A = 1.
    """
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 2:
        rgba = np.repeat(array[:, :, None], 4, axis=2)
    elif array.ndim == 3 and array.shape[2] == 3:
        rgba = np.empty(array.shape[:2] + (4,), np.float32)
        rgba[:, :, :3] = array
        rgba[:, :, 3] = 1.0
    elif array.ndim == 3 and array.shape[2] == 4:
        rgba = array
    else:
        raise ValueError(f"result: expected H×W, H×W×3 or H×W×4, got shape {array.shape}")
    return np.ascontiguousarray(rgba[::-1]).ravel()


#: byte-image colourspaces whose stored values are already linear (or data)
LINEAR_BYTE_COLORSPACES = ("Non-Color", "Linear Rec.709", "scene_linear", "Linear", "Raw")


def linearise(rgba: np.ndarray, is_float: bool, colorspace: str) -> np.ndarray:
    """Make an H×W×4 array read from ``Image.pixels`` scene-linear.

    Blender converts float images to scene linear when it loads them; 8-bit images come back in their file's
    encoding, so sRGB is decoded here (alpha is never touched) and any other encoding is refused by name.
    """
    if is_float or colorspace in LINEAR_BYTE_COLORSPACES:
        return rgba
    if colorspace == "sRGB":
        out = rgba.copy()
        out[:, :, :3] = plugin_module("colour").srgb_to_linear(rgba[:, :, :3])
        return out
    raise ValueError(f"image colourspace {colorspace!r}: 8-bit images must be sRGB, linear or Non-Color; "
                     f"convert it to a float image (e.g. save as EXR) first")


def mask_channel(rgba: np.ndarray, channel: str = "LUMINANCE") -> np.ndarray:
    """A coarse [0, 1] mask from an RGBA mask image: Rec.709 luminance, or its red or alpha channel."""
    if channel == "LUMINANCE":
        mask = rgba[:, :, 0] * 0.2126 + rgba[:, :, 1] * 0.7152 + rgba[:, :, 2] * 0.0722
    elif channel == "RED":
        mask = rgba[:, :, 0]
    elif channel == "ALPHA":
        mask = rgba[:, :, 3]
    else:
        raise ValueError(f"mask channel: expected LUMINANCE, RED or ALPHA, got {channel!r}")
    return np.clip(mask, 0.0, 1.0).astype(np.float32)


def check_same_size(named: Dict[str, Optional[np.ndarray]]) -> None:
    """Every given input must be as large as the image; the error names the first that is not (by the key given,
    e.g. ``clean plate``: the name the artist sees)."""
    image = named["image"]
    for name, array in named.items():
        if array is not None and array.shape[:2] != image.shape[:2]:
            raise ValueError(f"{name}: {array.shape[1]}x{array.shape[0]} pixels, but the image is "
                             f"{image.shape[1]}x{image.shape[0]}; every input must have the image's size")


# ----------------------------------------------------------------------------------------- requests
def build_request(image: np.ndarray, second: Optional[np.ndarray], mask: Optional[np.ndarray],
                  params: Dict[str, Any], background: Optional[np.ndarray] = None) -> Dict[str, Any]:
    """Keyword arguments for ``Client.submit``: linear straight RGBA inputs (image, second frame, clean plate as
    ``background``), the mask as data."""
    check_same_size({"image": image, "second": second, "mask": mask, "clean plate": background})
    return {"image": image, "second": second, "mask": mask, "background": background, "params": dict(params),
            "colorspace": "linear", "premultiplied": False}


# ------------------------------------------------------------------------------------------- frames
def result_path(directory: str, kind: str, frame: int) -> str:
    """``<dir>/<kind>_<frame:04d>.exr``: Blender reads the numbered files as an image sequence."""
    prefix = RESULT_KINDS[kind][0]
    return os.path.join(directory, f"{prefix}_{frame:04d}.exr")


class FrameIndex:
    """Which content key produced each frame's files in an output folder (``mattebox_index.json``): the cache of
    a :class:`mattebox_plugin.run.FrameRun`. A frame whose inputs hash to the recorded key and whose files exist
    is not sent again. The index also keeps the server hello each frame was made under (``made_under``), so the
    key can be computed again, and the frame reused, when no server answers."""

    NAME = "mattebox_index.json"

    def __init__(self, directory: str):
        self.directory = directory
        self.path = os.path.join(directory, self.NAME)
        self.frames: Dict[str, Dict[str, Any]] = {}
        data: Any = None
        if os.path.isfile(self.path):
            try:
                with open(self.path, encoding="utf-8") as fh:
                    data = json.load(fh)
                if data.get("version") == INDEX_VERSION:
                    self.frames = dict(data.get("frames", {}))
            except (OSError, ValueError, AttributeError):
                self.frames, data = {}, None  # a damaged index only costs a recompute
        self.hellos = plugin_module("run").RememberedHellos(data.get("made_under") if self.frames else None)

    def reuse(self, frame: int, key: str, outputs: Iterable[str]) -> bool:
        """Whether the frame's files for every one of ``outputs`` (RESULT_KINDS names) exist and were made from
        ``key``: the files in place are then the frame's result."""
        entry = self.frames.get(str(frame))
        if not entry or entry.get("key") != key:
            return False
        return all(os.path.isfile(result_path(self.directory, kind, frame)) for kind in outputs)

    def record(self, frame: int, key: str, info: Optional[Dict[str, Any]] = None,
               hello: Optional[Dict[str, Any]] = None) -> None:
        """The frame's files were made from ``key`` under ``hello``; no key (a shot frame): they match none."""
        if key is None:
            self.frames.pop(str(frame), None)
        else:
            self.frames[str(frame)] = {"key": key, "engine": (info or {}).get("engine")}
        self.hellos.remember(frame, hello)
        self.save()

    def made_under(self, frame: int) -> Optional[Dict[str, Any]]:
        """The server hello (its content-key part) the frame's files were made under, or None."""
        return self.hellos.get(frame) if str(frame) in self.frames else None

    def save(self) -> None:
        os.makedirs(self.directory, exist_ok=True)
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"version": INDEX_VERSION, "frames": self.frames, "made_under": self.hellos.to_json()}, fh,
                      indent=1, sort_keys=True)
        os.replace(tmp, self.path)


def split_command(text: str) -> Optional[List[str]]:
    """A server command typed in the preferences (shell words) -> argv, or None when empty."""
    import shlex

    words = shlex.split(text, posix=os.name != "nt")
    return words or None


#: engines the panel offers before any server has answered: those every server has (learned engines, which
#: need weights, are listed once a server's hello names them)
FALLBACK_ENGINES = ("classical", "classical-pair", "passthrough")


def enum_number(identifier: str) -> int:
    """A stable number for a menu item: Blender stores an enum whose items come from a function as the item's
    number, so it must not shift when a server lists its engines in another order ('auto' is 0)."""
    return 0 if identifier == "auto" else (zlib.crc32(identifier.encode()) & 0x7FFFFFFF) or 1


def engine_menu(engines: Optional[List[Dict[str, Any]]], note: Callable[[Dict[str, Any]], str]) -> List[tuple]:
    """Blender enum items (identifier, label, description, number) for the Engine menu: 'auto', then the engines
    of the server's hello, or :data:`FALLBACK_ENGINES` when no server has answered yet. An engine that cannot run
    keeps its place with "(not installed)"/"(unavailable)" and ``note`` (mattebox_plugin.client.engine_note: the
    command that installs its weights, or why) in the description."""
    items = [("auto", "Auto", "The best engine the server has (the server decides)", 0)]
    for engine in engines if engines else [{"name": name, "available": True} for name in FALLBACK_ENGINES]:
        name = engine.get("name")
        if not name or name == "auto":
            continue
        description = engine.get("description") or name
        label = name
        if not engine.get("available", False):
            label += " (not installed)" if engine.get("get") else " (unavailable)"
            description += ". " + note(engine)
        items.append((name, label, description, enum_number(name)))
    return items


def engines_summary(engines: List[Dict[str, Any]], note: Callable[[Dict[str, Any]], str]) -> str:
    """The Check Server report's engine part: the engines that can run, then each one that cannot with ``note``
    (mattebox_plugin.client.engine_note: the command that installs missing weights, or why)."""
    ready = ", ".join(e["name"] for e in engines if e.get("available"))
    missing = "; ".join(f"{e['name']} {note(e)}" for e in engines if not e.get("available"))
    return ready + (f" | {missing}" if missing else "")
