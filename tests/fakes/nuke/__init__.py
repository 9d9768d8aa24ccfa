"""A fake ``nuke`` module: the slice of Nuke's Python API that the Mattebox node uses, behaving as Nuke does.

Nuke cannot be installed on this machine (it has no installable build), so host tests put ``tests/fakes`` first on
``sys.path`` and run the node's real code against this module. Each piece documents the real behaviour it mimics,
with the page of Foundry's Python developer guide / API reference
(learn.foundry.com/nuke/developers/<version>/pythondevguide/...) it was checked against. Pixels are real: source
nodes hold numpy planes, ``Write`` nodes really write OpenEXR files and ``Read`` nodes really read them, both
through the official OpenEXR Python bindings (the same library Nuke's exrReader/exrWriter are built on), so the
node's own EXR code is checked against an independent one.

What it does not model: TCL (knob expressions, .nk parsing — ``scriptOpen`` runs a *Python* comp script instead),
proxies, views, colour management beyond ``raw``, bounding boxes smaller than the format, the Qt event loop (the
main-thread queue is drained explicitly by :func:`fake.process_main_thread`, what Nuke's event loop does).
Test-only helpers live in the ``fake`` namespace: :data:`fake`.
"""
from __future__ import annotations

import os
import re
import sys
import threading
import types
from typing import Any, Callable, Dict, List, Optional

import numpy as np

# --------------------------------------------------------------------------------------- environment
#: ``nuke.env`` — a dict-like of facts about the session. ``env['gui']`` is False under ``nuke -t`` and ``nuke -x``
#: (terminal/render modes) and True in the interactive application (dev guide: "Getting Information on the NUKE
#: Environment You Are Running"). The fake reads FAKE_NUKE_GUI=1 to start in GUI mode.
env: Dict[str, Any] = {
    "gui": os.environ.get("FAKE_NUKE_GUI") == "1",
    "NukeVersionMajor": 15, "NukeVersionMinor": 1, "NukeVersionString": "15.1v1 (fake)",
    "ExecutablePath": "/usr/local/Nuke15.1v1/Nuke15.1", "threads": 2,
}
NUKE_VERSION_MAJOR = env["NukeVersionMajor"]
EXE_PATH = env["ExecutablePath"]
STARTLINE, INVISIBLE, DISABLED = 0x1000, 0x400, 0x80

_thread_local = threading.local()
_MAIN_THREAD = threading.main_thread()


class CancelledError(RuntimeError):
    pass


# ------------------------------------------------------------------------------------------------ knobs
class Knob:
    """nuke.Knob: ``name()``, ``label()``, ``value()``, ``setValue()``, ``getValue()``, flags, enabled/visible.

    Real knobs are attached with ``node.addKnob(k)`` and read as ``node[name]`` / ``node.knob(name)``
    (API reference: nuke.Knob, nuke.Node.addKnob).
    """

    default: Any = ""

    def __init__(self, name: str, label: Optional[str] = None, value: Any = None):
        self._name = name
        self._label = label if label is not None else name
        self._value = self.default if value is None else value
        self._flags = 0
        self._enabled = True
        self._visible = True
        self.node: Optional["Node"] = None
        self._tooltip = ""

    def name(self) -> str:
        return self._name

    def label(self) -> str:
        return self._label

    def setLabel(self, label: str) -> None:
        self._label = label

    def value(self) -> Any:
        return self._value

    def getValue(self) -> Any:
        return self._value

    def setValue(self, value: Any) -> bool:
        self._value = self._coerce(value)
        if self.node is not None:
            self.node._knob_changed(self)
        return True

    def _coerce(self, value: Any) -> Any:
        return value

    def setFlag(self, flag: int) -> None:
        self._flags |= flag

    def clearFlag(self, flag: int) -> None:
        self._flags &= ~flag

    def getFlag(self, flag: int) -> bool:
        return bool(self._flags & flag)

    def setEnabled(self, enabled: bool) -> None:
        self._enabled = bool(enabled)

    def enabled(self) -> bool:
        return self._enabled

    def setVisible(self, visible: bool) -> None:
        self._visible = bool(visible)

    def visible(self) -> bool:
        return self._visible

    def setTooltip(self, text: str) -> None:
        self._tooltip = text

    def tooltip(self) -> str:
        return self._tooltip

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._name}={self._value!r}>"


class String_Knob(Knob):
    default = ""

    def _coerce(self, value):
        return str(value)


class File_Knob(String_Knob):
    """nuke.File_Knob: a path; Nuke stores it with forward slashes."""

    def _coerce(self, value):
        return str(value).replace("\\", "/")


class Multiline_Eval_String_Knob(String_Knob):
    pass


class Text_Knob(Knob):
    """nuke.Text_Knob(name, label, text): static text in the panel; ``value()``/``setValue()`` are its text."""

    def __init__(self, name: str, label: Optional[str] = None, text: str = ""):
        super().__init__(name, label, text)


class Tab_Knob(Knob):
    pass


class Int_Knob(Knob):
    default = 0

    def _coerce(self, value):
        return int(value)


class Double_Knob(Knob):
    default = 0.0

    def _coerce(self, value):
        return float(value)

    def setRange(self, lo: float, hi: float) -> None:
        self._range = (lo, hi)


class Boolean_Knob(Knob):
    default = False

    def _coerce(self, value):
        return bool(value)


class Enumeration_Knob(Knob):
    """nuke.Enumeration_Knob(name, label, items): ``value()`` is the item string, ``getValue()`` its index,
    ``setValue`` takes either; ``values()``/``setValues(items)`` read/replace the items (API reference:
    nuke.Enumeration_Knob). Setting a string that is not an item raises ValueError, as Nuke does."""

    def __init__(self, name: str, label: Optional[str] = None, items: Optional[List[str]] = None):
        super().__init__(name, label, 0)
        self._items = [str(i) for i in (items or [])]

    def values(self) -> List[str]:
        return list(self._items)

    def setValues(self, items: List[str]) -> None:
        current = self.value()
        self._items = [str(i) for i in items]
        self._value = self._items.index(current) if current in self._items else 0

    def value(self) -> str:
        return self._items[self._value] if self._items else ""

    def getValue(self) -> float:
        return float(self._value)

    def _coerce(self, value):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not 0 <= int(value) < len(self._items):
                raise ValueError(f"{self._name}: index {value} out of range")
            return int(value)
        if str(value) not in self._items:
            raise ValueError(f"{self._name}: {value!r} is not one of {self._items}")
        return self._items.index(str(value))


class PyScript_Knob(Knob):
    """nuke.PyScript_Knob(name, label, command): a button; pressing it (or ``execute()``) runs the Python text
    with ``nuke.thisNode()`` / ``nuke.thisKnob()`` set to its node and knob (API reference: nuke.PyScript_Knob)."""

    def __init__(self, name: str, label: Optional[str] = None, command: str = ""):
        super().__init__(name, label, command)

    def execute(self) -> None:
        _push_this(self.node, self)
        try:
            exec(compile(self._value, f"<{self._name} knob>", "exec"), {"nuke": sys.modules[__name__]})
        finally:
            _pop_this()


def _push_this(node, knob=None) -> None:
    stack = getattr(_thread_local, "this", None)
    if stack is None:
        stack = _thread_local.this = []
    stack.append((node, knob))


def _pop_this() -> None:
    _thread_local.this.pop()


def thisNode() -> "Node":
    """The node whose knob/callback is running (API reference: nuke.thisNode)."""
    stack = getattr(_thread_local, "this", None)
    if not stack:
        raise RuntimeError("thisNode() called outside a node callback")
    return stack[-1][0]


def thisKnob():
    stack = getattr(_thread_local, "this", None)
    return stack[-1][1] if stack else None


# ------------------------------------------------------------------------------------------------ nodes
class Format:
    def __init__(self, width: int, height: int, name: str = ""):
        self._w, self._h, self._name = width, height, name

    def width(self) -> int:
        return self._w

    def height(self) -> int:
        return self._h

    def name(self) -> str:
        return self._name


class Node:
    """nuke.Node: knobs by name (``node['file']``), inputs (``setInput``, ``input``, ``inputs``), ``name()``,
    ``fullName()`` (dotted through groups), ``Class()``, ``firstFrame()``/``lastFrame()``, ``channels()``,
    ``error()``/``hasError()``. Every node has ``name``, ``label`` and ``disable`` knobs, as in Nuke."""

    klass = "Node"
    max_inputs = 1

    def __init__(self, **knobs: Any):
        self._knobs: Dict[str, Knob] = {}
        self._inputs: Dict[int, Node] = {}
        self.parent: Optional[Group] = None
        self._selected = False
        self._error: Optional[str] = None
        self.addKnob(String_Knob("name", "name"))
        self.addKnob(Multiline_Eval_String_Knob("label", "label"))
        self.addKnob(Boolean_Knob("disable", "disable"))
        self._add_class_knobs()
        group = _current_group()
        group._adopt(self, knobs.pop("name", None))
        inputs = knobs.pop("inputs", None)
        for key, value in knobs.items():
            if key not in self._knobs:
                raise TypeError(f"{self.klass} has no knob named {key!r}")  # nuke.nodes.X(bad=1) fails too
            self._knobs[key].setValue(value)
        for i, node in enumerate(inputs or []):
            self.setInput(i, node)

    def _add_class_knobs(self) -> None:
        pass

    # knobs
    def addKnob(self, knob: Knob) -> None:
        if knob.name() in self._knobs:
            raise RuntimeError(f"{knob.name()} already exists on {self.klass}")
        knob.node = self
        self._knobs[knob.name()] = knob

    def removeKnob(self, knob: Knob) -> None:
        self._knobs.pop(knob.name(), None)

    def knob(self, name: str) -> Optional[Knob]:
        return self._knobs.get(name)

    def knobs(self) -> Dict[str, Knob]:
        return dict(self._knobs)

    def allKnobs(self) -> List[Knob]:
        return list(self._knobs.values())

    def __getitem__(self, name: str) -> Knob:
        if name not in self._knobs:
            raise NameError(f"knob {name} does not exist")  # Nuke raises NameError for node['missing']
        return self._knobs[name]

    def _knob_changed(self, knob: Knob) -> None:
        if knob.name() == "name" and self.parent is not None:
            self.parent._rename(self, knob.value())

    # identity
    def name(self) -> str:
        return self._knobs["name"].value()

    def fullName(self) -> str:
        if self.parent is None or self.parent is _root:
            return self.name()
        return f"{self.parent.fullName()}.{self.name()}"

    def Class(self) -> str:
        return self.klass

    def setSelected(self, selected: bool) -> None:
        self._selected = bool(selected)

    def isSelected(self) -> bool:
        return self._selected

    # inputs
    def setInput(self, i: int, node: Optional["Node"]) -> bool:
        if node is None:
            self._inputs.pop(i, None)
        else:
            self._inputs[i] = node
        return True

    def input(self, i: int) -> Optional["Node"]:
        return self._inputs.get(i)

    def inputs(self) -> int:
        return (max(self._inputs) + 1) if self._inputs else 0

    def maxInputs(self) -> int:
        return self.max_inputs

    def dependent(self) -> List["Node"]:
        return [n for n in allNodes(recurseGroups=True) if self in n._inputs.values()]

    # errors
    def error(self) -> bool:
        return self._error is not None

    hasError = error

    # frames and pixels
    def firstFrame(self) -> int:
        up = self.input(0)
        return up.firstFrame() if up is not None else int(_root["first_frame"].value())

    def lastFrame(self) -> int:
        up = self.input(0)
        return up.lastFrame() if up is not None else int(_root["last_frame"].value())

    def channels(self) -> List[str]:
        return sorted(self._render(int(frame())).keys())

    def format(self) -> Format:
        planes = self._render(int(frame()))
        h, w = next(iter(planes.values())).shape
        return Format(w, h)

    def width(self) -> int:
        return self.format().width()

    def height(self) -> int:
        return self.format().height()

    def sample(self, channel: str, x: float, y: float) -> float:
        """Pixel value at (x, y) in Nuke's coordinates: y=0 is the *bottom* row (API reference: Node.sample)."""
        plane = self._render(int(frame())).get(channel)
        if plane is None:
            return 0.0
        h = plane.shape[0]
        return float(plane[h - 1 - int(y), int(x)])

    def _render(self, frame_: int) -> Dict[str, np.ndarray]:
        """Channel name ('rgba.red', 'mattebox.trimap') -> (H, W) float32, top row first."""
        if self._knobs["disable"].value():
            up = self.input(0)
            return up._render(frame_) if up is not None else _black()
        return self._compute(frame_)

    def _compute(self, frame_: int) -> Dict[str, np.ndarray]:
        up = self.input(0)
        return up._render(frame_) if up is not None else _black()

    def __repr__(self) -> str:
        return f"<{self.klass} {self.fullName()}>"


def _black() -> Dict[str, np.ndarray]:
    fmt = _root["format"].value()
    z = np.zeros((fmt.height(), fmt.width()), np.float32)
    return {c: z.copy() for c in RGBA}


RGBA = ("rgba.red", "rgba.green", "rgba.blue", "rgba.alpha")
_EXR_TO_NUKE = {"R": "rgba.red", "G": "rgba.green", "B": "rgba.blue", "A": "rgba.alpha"}
_NUKE_TO_EXR = {v: k for k, v in _EXR_TO_NUKE.items()}
#: Write ``channels`` knob value -> Nuke channels (the layer names of the Write node's channel menu)
_LAYERS = {"rgb": RGBA[:3], "rgba": RGBA, "alpha": ("rgba.alpha",)}


class FakeSource(Node):
    """Test stand-in for any generator (Read of a plate, Roto, Constant): holds numpy pixels.

    ``frames``: {frame: {channel: (H, W) array}} or a callable frame -> that dict, with Nuke channel names.
    Outside ``first``..``last`` it holds the nearest end frame, as Nuke's Read does by default ('hold').
    """

    klass = "FakeSource"
    max_inputs = 0

    def __init__(self, frames: Any = None, first: int = 1, last: int = 1, **knobs: Any):
        self.frames = frames
        self._first, self._last = first, last
        super().__init__(**knobs)

    def firstFrame(self) -> int:
        return self._first

    def lastFrame(self) -> int:
        return self._last

    def _compute(self, frame_: int) -> Dict[str, np.ndarray]:
        f = min(max(frame_, self._first), self._last)
        planes = self.frames(f) if callable(self.frames) else self.frames[f]
        return {k: np.asarray(v, np.float32) for k, v in planes.items()}


def _frame_path(pattern: str, frame_: int) -> str:
    """Substitute a frame number into '####' or printf '%04d' patterns (dev guide: 'Marking Frame Numbers in
    File Names')."""
    path = re.sub(r"#+", lambda m: f"{frame_:0{len(m.group(0))}d}", pattern)
    return re.sub(r"%(0\d+)?d", lambda m: f"{frame_:{m.group(1) or ''}d}", path)


class Read(Node):
    """Read: loads ``file`` (frame pattern) for the frame; ``first``/``last`` bound the sequence (holds outside);
    ``on_error`` ("error", "black", "checkerboard", "nearest frame") picks what a missing frame does; ``raw`` skips
    colour conversion; the ``reload`` button re-reads files (Reference Guide: Read node). EXR channels named
    R, G, B, A become rgba.red/green/blue/alpha and ``layer.channel`` names become that layer (User Guide:
    'Working with Channels and Layers'). Pixels come from the OpenEXR bindings, as Nuke's exrReader."""

    klass = "Read"
    max_inputs = 0

    def _add_class_knobs(self) -> None:
        self.addKnob(File_Knob("file", "file"))
        self.addKnob(Int_Knob("first", "frame range", 1))
        self.addKnob(Int_Knob("last", "", 1))
        self.addKnob(Enumeration_Knob("on_error", "missing frames", ["error", "black", "checkerboard",
                                                                     "nearest frame"]))
        self.addKnob(Boolean_Knob("raw", "raw data"))
        self.addKnob(String_Knob("colorspace", "colorspace", "default"))
        self.addKnob(PyScript_Knob("reload", "reload", "nuke.thisNode()._cache.clear()"))
        self._cache: Dict[str, Dict[str, np.ndarray]] = {}
        self.reads = 0  # how many files were decoded (lets tests see the cache at work)

    def firstFrame(self) -> int:
        return int(self["first"].value())

    def lastFrame(self) -> int:
        return int(self["last"].value())

    def _compute(self, frame_: int) -> Dict[str, np.ndarray]:
        import OpenEXR

        f = min(max(frame_, self.firstFrame()), self.lastFrame())
        path = _frame_path(self["file"].value(), f)
        if not self["file"].value() or not os.path.isfile(path):
            mode = self["on_error"].value()
            if mode == "black":
                return _black()
            self._error = f"Read error: {path}: No such file or directory"
            raise RuntimeError(f"{self.name()}: {self._error}")
        stamp = f"{path}:{os.stat(path).st_mtime_ns}"
        if stamp not in self._cache:
            with OpenEXR.File(path, separate_channels=True) as exr_file:
                planes = {}
                for name, channel in exr_file.channels().items():
                    nuke_name = _EXR_TO_NUKE.get(name, name if "." in name else f"other.{name}")
                    planes[nuke_name] = np.asarray(channel.pixels, np.float32)
            self._cache[stamp] = planes
            self.reads += 1
        self._error = None
        return {k: v.copy() for k, v in self._cache[stamp].items()}


#: Write ``compression`` menu item -> OpenEXR compression (Reference Guide: Write node, exr file type)
_WRITE_COMPRESSION = {"none": "NO_COMPRESSION", "Zip (1 scanline)": "ZIPS_COMPRESSION",
                      "Zip (16 scanlines)": "ZIP_COMPRESSION", "PIZ Wavelet (32 scanlines)": "PIZ_COMPRESSION",
                      "RLE": "RLE_COMPRESSION", "DWAA": "DWAA_COMPRESSION", "DWAB": "DWAB_COMPRESSION"}


class Write(Node):
    """Write: renders its input to ``file`` when executed (``nuke.execute``); knobs ``file_type`` ("exr"),
    ``datatype`` ("16 bit half" | "32 bit float"), ``compression`` (exr menu), ``channels`` (rgb | rgba | alpha |
    all), ``raw`` (write the working-space values untouched), ``create_directories`` (Nuke 13+; without it a
    missing folder is an error). Default ``channels`` is rgb, as in Nuke (Reference Guide: Write node)."""

    klass = "Write"

    def _add_class_knobs(self) -> None:
        self.addKnob(File_Knob("file", "file"))
        self.addKnob(Enumeration_Knob("file_type", "file type", ["", "exr", "tiff", "png", "jpeg", "dpx"]))
        self.addKnob(Enumeration_Knob("datatype", "datatype", ["16 bit half", "32 bit float"]))
        self.addKnob(Enumeration_Knob("compression", "compression", list(_WRITE_COMPRESSION)))
        self["compression"].setValue("Zip (1 scanline)")
        self.addKnob(Enumeration_Knob("channels", "channels", ["rgb", "rgba", "alpha", "all"]))
        self.addKnob(Boolean_Knob("raw", "raw data"))
        self.addKnob(String_Knob("colorspace", "colorspace", "default"))
        self.addKnob(Boolean_Knob("create_directories", "create directories"))
        self.written: List[str] = []

    def _write_frame(self, frame_: int) -> str:
        import OpenEXR

        path = _frame_path(self["file"].value(), frame_)
        if not self["file"].value():
            raise RuntimeError(f"{self.name()}: no filename set")
        if self["file_type"].value() not in ("exr", "") or not path.lower().endswith(".exr"):
            raise NotImplementedError("the fake Write writes OpenEXR only")
        if self["datatype"].value() != "32 bit float":
            raise NotImplementedError("the fake Write writes 32 bit float only (the node's choice)")
        folder = os.path.dirname(path)
        if folder and not os.path.isdir(folder):
            if not self["create_directories"].value():
                raise RuntimeError(f"{self.name()}: Can't write {path}: No such file or directory")
            os.makedirs(folder, exist_ok=True)
        up = self.input(0)
        if up is None:
            raise RuntimeError(f"{self.name()}: input is not connected")  # Nuke: "Write1: ... no input"
        planes = up._render(frame_)
        wanted = self["channels"].value()
        names = sorted(planes) if wanted == "all" else list(_LAYERS[wanted])
        shape = next(iter(planes.values())).shape
        channels = {}
        for name in names:
            plane = planes.get(name)
            if plane is None:
                plane = np.zeros(shape, np.float32)  # a requested channel the input lacks is written black
            channels[_NUKE_TO_EXR.get(name, name)] = np.ascontiguousarray(plane, np.float32)
        compression = getattr(OpenEXR, _WRITE_COMPRESSION[self["compression"].value()])
        header = {"compression": compression, "type": OpenEXR.scanlineimage}
        with OpenEXR.File(header, channels) as exr_file:
            exr_file.write(path)
        self.written.append(path)
        return path


class Input(Node):
    """Input (inside a Group): an input arrow of the group; ``number`` orders the group's inputs, given in creation
    order, and the node's name labels the arrow (Reference Guide: Input node)."""

    klass = "Input"
    max_inputs = 0

    def _add_class_knobs(self) -> None:
        self.addKnob(Int_Knob("number", "inputs", 0))

    def _compute(self, frame_: int):
        group = self.parent
        up = group.input(int(self["number"].value())) if group is not None else None
        return up._render(frame_) if up is not None else _black()

    def firstFrame(self) -> int:
        up = self.parent.input(int(self["number"].value())) if self.parent is not None else None
        return up.firstFrame() if up is not None else int(_root["first_frame"].value())

    def lastFrame(self) -> int:
        up = self.parent.input(int(self["number"].value())) if self.parent is not None else None
        return up.lastFrame() if up is not None else int(_root["last_frame"].value())


class Output(Node):
    klass = "Output"


class Group(Node):
    """nuke.Group: a node holding a node graph. ``begin()``/``end()`` (or ``with group:``) make new nodes land
    inside it; ``nodes()``, ``node(name)``, ``output()``; its inputs are its Input nodes, its output its Output node
    (API reference: nuke.Group; gizmos are Groups loaded from a .gizmo file, nuke.Gizmo)."""

    klass = "Group"
    max_inputs = 99

    def __init__(self, **knobs: Any):
        self._children: List[Node] = []
        super().__init__(**knobs)

    def begin(self) -> "Group":
        _context_stack().append(self)
        return self

    def end(self) -> None:
        stack = _context_stack()
        if len(stack) > 1 and stack[-1] is self:
            stack.pop()

    def __enter__(self) -> "Group":
        return self.begin()

    def __exit__(self, *exc) -> None:
        self.end()

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        with self:
            return fn(*args)

    def nodes(self) -> List[Node]:
        return list(self._children)

    def numNodes(self) -> int:
        return len(self._children)

    def node(self, name: str) -> Optional[Node]:
        head, _, rest = name.partition(".")
        found = next((n for n in self._children if n.name() == head), None)
        if found is not None and rest:
            return found.node(rest) if isinstance(found, Group) else None
        return found

    def output(self) -> Optional[Node]:
        return next((n for n in self._children if isinstance(n, Output)), None)

    def _adopt(self, node: Node, name: Optional[str]) -> None:
        if isinstance(node, Input):
            node["number"].setValue(sum(isinstance(n, Input) for n in self._children))
        if name is None:
            index = 1
            while self.node(f"{node.klass}{index}") is not None:
                index += 1
            name = f"{node.klass}{index}"
        elif self.node(name) is not None:
            raise ValueError(f"a node named {name} already exists in {self.fullName() or 'root'}")
        node.parent = self
        self._children.append(node)
        node._knobs["name"]._value = name

    def _rename(self, node: Node, name: str) -> None:
        pass

    def _remove(self, node: Node) -> None:
        self._children.remove(node)
        node.parent = None

    def _compute(self, frame_: int):
        out = self.output()
        if out is None:
            return _black()
        return out._render(frame_)

    def firstFrame(self) -> int:
        out = self.output()
        return out.firstFrame() if out is not None else super().firstFrame()

    def lastFrame(self) -> int:
        out = self.output()
        return out.lastFrame() if out is not None else super().lastFrame()


class Gizmo(Group):
    klass = "Gizmo"


class Root(Group):
    """nuke.root(): the script; knobs ``first_frame``, ``last_frame``, ``frame`` (current), ``format``, ``name``
    (the script's path, '' until saved)."""

    klass = "Root"

    def __init__(self):
        self._children = []
        self._knobs = {}
        self._inputs = {}
        self.parent = None
        self._selected = False
        self._error = None
        self.addKnob(String_Knob("name", "name", ""))
        self.addKnob(Int_Knob("first_frame", "frame range", 1))
        self.addKnob(Int_Knob("last_frame", "", 100))
        self.addKnob(Int_Knob("frame", "frame", 1))
        self.addKnob(Knob("format", "full size format", Format(64, 48, "fake")))
        self.addKnob(Boolean_Knob("disable", "disable"))

    def name(self) -> str:  # the root's name is the script path
        return self._knobs["name"].value()

    def fullName(self) -> str:
        return ""


_root = Root()


def _context_stack() -> List[Group]:
    stack = getattr(_thread_local, "groups", None)
    if stack is None:
        stack = _thread_local.groups = [_root]
    return stack


def _current_group() -> Group:
    return _context_stack()[-1]


def root() -> Root:
    return _root


def thisGroup() -> Group:
    return _current_group()


def frame(f: Optional[int] = None) -> int:
    """nuke.frame(): the current frame; nuke.frame(f) sets it."""
    if f is not None:
        _root["frame"].setValue(int(f))
    return int(_root["frame"].value())


_CLASSES: Dict[str, type] = {c.klass: c for c in (Read, Write, Input, Output, Group, FakeSource)}
for _name in ("Shuffle", "Shuffle2", "Copy", "Premult", "Unpremult", "Dot", "NoOp", "Reformat", "Switch"):
    _CLASSES[_name] = type(_name, (Node,), {"klass": _name, "max_inputs": 2})


class _NodeFactory:
    """``nuke.nodes.Read(file=..., first=1)``: create a node in the current group with knob values, not
    connected to the selection and without opening its panel (dev guide: 'Creating a Node for Scripting')."""

    def __getattr__(self, klass: str) -> Callable[..., Node]:
        if klass not in _CLASSES:
            raise AttributeError(f"the fake nuke has no node class {klass!r}")
        return _CLASSES[klass]


nodes = _NodeFactory()


def createNode(klass: str, args: str = "", inpanel: bool = True) -> Node:
    """nuke.createNode(class, args, inpanel): create as the user would — connected below the selected node, and
    the new node becomes the selection ('Creating a Node in the User Interface'). ``args`` is a TCL
    'knob value ...' list; the fake accepts simple space-separated pairs."""
    selected = selectedNodes()
    node = getattr(nodes, klass)()
    pairs = args.split()
    for key, value in zip(pairs[0::2], pairs[1::2]):
        node[key].setValue(value)
    if selected and node.maxInputs() > 0:
        node.setInput(0, selected[0])
    for n in allNodes():
        n.setSelected(False)
    node.setSelected(True)
    return node


def allNodes(filter: Optional[str] = None, group: Optional[Group] = None, recurseGroups: bool = False) -> List[Node]:
    """nuke.allNodes(filter, group, recurseGroups): nodes of the current (or given) group, optionally one Class."""
    group = group or _current_group()
    out: List[Node] = []
    for node in group.nodes():
        if filter is None or node.Class() == filter:
            out.append(node)
        if recurseGroups and isinstance(node, Group):
            out.extend(allNodes(filter, node, True))
    return out


def toNode(name: str) -> Optional[Node]:
    """nuke.toNode('Group1.Write1'): a node by (dotted) name from the root, or None."""
    return _root.node(name)


def selectedNodes() -> List[Node]:
    return [n for n in allNodes() if n.isSelected()]


def selectedNode() -> Node:
    chosen = selectedNodes()
    if not chosen:
        raise ValueError("no node selected")
    return chosen[-1]


def delete(node: Node) -> None:
    if node.parent is not None:
        node.parent._remove(node)


# ---------------------------------------------------------------------------------------------- execute
class FrameRange:
    def __init__(self, first: int, last: int, incr: int = 1):
        self._f, self._l, self._i = first, last, incr

    def first(self) -> int:
        return self._f

    def last(self) -> int:
        return self._l

    def increment(self) -> int:
        return self._i


_executing = threading.local()


def execute(nameOrNode: Any, start: Optional[int] = None, end: Optional[int] = None, incr: int = 1,
            views: Any = None, continueOnError: bool = False) -> None:
    """nuke.execute(node, start, end, incr): render a Write over the frames (API reference: nuke.execute).

    Like Nuke: start/end default to the root range; the node must be executable (a Write); an execute nested inside
    another raises "I'm already executing something else"; a Write error raises RuntimeError. The current frame
    is restored afterwards.
    """
    node = toNode(nameOrNode) if isinstance(nameOrNode, str) else nameOrNode
    if node is None:
        raise ValueError(f"no node named {nameOrNode!r}")
    first = int(_root["first_frame"].value()) if start is None else int(start)
    last = int(_root["last_frame"].value()) if end is None else int(end)
    executeMultiple((node,), ((first, last, incr),), views, continueOnError)


def executeMultiple(nodes_: Any, ranges: Any = (), views: Any = None, continueOnError: bool = False) -> None:
    """nuke.executeMultiple(nodes, ranges): render several Writes, each range a (first, last, incr) triple."""
    if getattr(_executing, "busy", False):
        raise RuntimeError("I'm already executing something else")
    for node in nodes_:
        if not isinstance(node, Write):
            raise ValueError(f"{node.name()} cannot be executed (only Write nodes in the fake)")
        if node["disable"].value():
            raise RuntimeError(f"{node.name()} is disabled")
    _executing.busy = True
    saved = frame()
    try:
        for first, last, incr in ranges:
            for f in range(int(first), int(last) + 1, int(incr)):
                frame(f)
                for cb in _callbacks["beforeFrameRender"]:
                    cb()
                for node in nodes_:
                    try:
                        node._write_frame(f)
                    except Exception:
                        if not continueOnError:
                            raise
    finally:
        _executing.busy = False
        frame(saved)
        fake.executed.append([n.fullName() for n in nodes_])


# ------------------------------------------------------------------------------------- progress & threads
class ProgressTask:
    """nuke.ProgressTask(name): a progress bar for long Python work, usable from worker threads; ``setMessage``,
    ``setProgress`` (0-100), ``isCancelled`` (the user pressed cancel); it closes when the object is deleted
    (API reference: nuke.ProgressTask; dev guide 'Threading'). The fake records every update in
    ``fake.progress`` and reports cancelled once ``fake.cancel_requested`` is set."""

    def __init__(self, name: str = ""):
        self.name = name
        self.closed = False
        fake.progress.append(("start", name))

    def setMessage(self, message: str) -> None:
        fake.progress.append(("message", message))

    def setProgress(self, value: int) -> None:
        if not isinstance(value, int):
            raise TypeError("setProgress takes an integer")  # the real binding rejects floats
        fake.progress.append(("progress", value))

    def isCancelled(self) -> bool:
        return fake.cancel_requested.is_set()

    def __del__(self):
        try:
            fake.progress.append(("end", self.name))
        except Exception:  # interpreter shutdown
            pass


_main_queue: List[Any] = []
_main_lock = threading.Lock()


def executeInMainThread(call: Callable[..., Any], args: Any = (), kwargs: Optional[dict] = None) -> None:
    """Queue ``call(*args, **kwargs)`` to run in Nuke's main thread and return at once (nuke_internal/
    executeInMain.py: a non-tuple ``args`` becomes a 1-tuple). Nuke's event loop runs it; here
    :func:`fake.process_main_thread` does."""
    if not isinstance(args, tuple):
        args = (args,)
    with _main_lock:
        _main_queue.append((call, args, kwargs or {}, None))


def executeInMainThreadWithResult(call: Callable[..., Any], args: Any = (), kwargs: Optional[dict] = None) -> Any:
    """Run ``call`` in the main thread and wait for its result (from a worker thread). Called on the main thread
    it runs at once (the fake's choice: Nuke's would wait on its own event loop)."""
    if not isinstance(args, tuple):
        args = (args,)
    if threading.current_thread() is _MAIN_THREAD:
        return call(*args, **(kwargs or {}))
    done = threading.Event()
    box: Dict[str, Any] = {}
    with _main_lock:
        _main_queue.append((call, args, kwargs or {}, (done, box)))
    done.wait()
    return box.get("result")


# --------------------------------------------------------------------------------------- UI and messages
def message(text: str) -> None:
    """nuke.message: a modal info dialog in the GUI; printed in terminal mode."""
    fake.messages.append(("message", text))
    print(text)


def critical(text: str) -> None:
    fake.messages.append(("critical", text))
    print(text, file=sys.stderr)


def tprint(*values: Any) -> None:
    print(*values)


class MenuItem:
    def __init__(self, name: str, command: Any = None):
        self._name, self.command, self._items = name, command, []

    def name(self) -> str:
        return self._name


class Menu(MenuItem):
    """nuke.menu('Nodes') / nuke.toolbar('Nodes'): ``addMenu(name, icon=)`` returns a sub-menu,
    ``addCommand(name, command, shortcut, icon)`` an item; ``findItem(name)`` finds by '/'-separated path."""

    def addMenu(self, name: str, icon: str = "", **kwargs: Any) -> "Menu":
        found = self.findItem(name)
        if isinstance(found, Menu):
            return found
        menu = Menu(name)
        self._items.append(menu)
        return menu

    def addCommand(self, name: str, command: Any = None, shortcut: str = "", icon: str = "", **kwargs) -> MenuItem:
        head, _, rest = name.partition("/")
        if rest:
            return self.addMenu(head).addCommand(rest, command, shortcut, icon)
        existing = self.findItem(name)
        if existing is not None:
            self._items.remove(existing)  # re-adding replaces, as Nuke does
        item = MenuItem(name, command)
        self._items.append(item)
        return item

    def findItem(self, name: str) -> Optional[MenuItem]:
        head, _, rest = name.partition("/")
        item = next((i for i in self._items if i.name() == head), None)
        if rest:
            return item.findItem(rest) if isinstance(item, Menu) else None
        return item

    def items(self) -> List[MenuItem]:
        return list(self._items)


_menus: Dict[str, Menu] = {}


def menu(name: str) -> Menu:
    if not env["gui"]:
        return None  # nuke.menu() gives nothing in terminal mode: menu.py is not even run there
    return _menus.setdefault(name, Menu(name))


def toolbar(name: str, create: bool = True) -> Menu:
    return menu(name)


# --------------------------------------------------------------------------------------- plug-in path
_plugin_path: List[str] = []
_callbacks: Dict[str, List[Callable[[], Any]]] = {"beforeFrameRender": [], "onScriptLoad": []}


def pluginPath() -> List[str]:
    return list(_plugin_path)


def pluginAddPath(args: Any, addToSysPath: bool = True) -> None:
    """Prepend folders to the plug-in path (moving one already there to the front) and to sys.path; called from
    an init.py, it runs that folder's init.py at once, and its menu.py later with the others in GUI mode
    (API reference: nuke.pluginAddPath; dev guide 'Start-up Scripts')."""
    paths = [args] if isinstance(args, str) else list(args)
    for path in reversed(paths):
        path = os.path.expanduser(str(path))
        if path in _plugin_path:
            _plugin_path.remove(path)
        _plugin_path.insert(0, path)
        if addToSysPath and path not in sys.path:
            sys.path.insert(0, path)
        if fake.in_startup:
            fake._run_startup_file(os.path.join(path, "init.py"))
            fake.pending_menus.append(path)


def pluginAppendPath(args: Any, addToSysPath: bool = True) -> None:
    paths = [args] if isinstance(args, str) else list(args)
    for path in paths:
        if path not in _plugin_path:
            _plugin_path.append(path)
        if addToSysPath and path not in sys.path:
            sys.path.append(path)


def addBeforeFrameRender(call: Callable[[], Any], *args: Any, **kwargs: Any) -> None:
    _callbacks["beforeFrameRender"].append(call)


def addOnScriptLoad(call: Callable[[], Any], *args: Any, **kwargs: Any) -> None:
    _callbacks["onScriptLoad"].append(call)


def scriptOpen(path: str) -> None:
    """Open a comp script. Real Nuke parses TCL .nk files; the fake runs a *Python* comp script that builds the
    same graph (its nodes land in the root), then sets root.name and fires onScriptLoad callbacks."""
    with open(path, encoding="utf-8") as fh:
        code = compile(fh.read(), path, "exec")
    exec(code, {"nuke": sys.modules[__name__], "__file__": path, "__name__": "__nuke_script__"})
    _root["name"].setValue(os.path.abspath(path))
    for cb in _callbacks["onScriptLoad"]:
        cb()


def scriptName() -> str:
    if not _root.name():
        raise RuntimeError("no script name: the script has not been saved")
    return _root.name()


# ------------------------------------------------------------------------------------- test-only helpers
class _Fake(types.SimpleNamespace):
    """What tests drive: the main-thread queue, cancellation, recorded progress/messages, a simulated start-up."""

    def process_main_thread(self, until: Optional[Callable[[], bool]] = None, timeout: float = 30.0) -> int:
        """Run queued main-thread calls (Nuke's event loop), until ``until()`` is true or ``timeout`` s pass;
        returns how many ran."""
        import time

        deadline = time.monotonic() + timeout
        count = 0
        while True:
            with _main_lock:
                batch = list(_main_queue)
                _main_queue.clear()
            for call, args, kwargs, waiter in batch:
                try:
                    result = call(*args, **kwargs)
                except Exception:  # Nuke prints main-thread exceptions to the script editor
                    import traceback

                    traceback.print_exc()
                    result = None
                count += 1
                if waiter is not None:
                    waiter[1]["result"] = result
                    waiter[0].set()
            if until is None and not batch:
                return count
            if until is not None and until():
                with _main_lock:
                    if not _main_queue:
                        return count
            if time.monotonic() > deadline:
                raise TimeoutError("fake main loop: condition not met in time")
            time.sleep(0.01)

    def reset(self, gui: bool = False) -> None:
        """A fresh session: empty root, frame range 1-100, GUI or terminal mode."""
        _root._children.clear()
        _root["first_frame"].setValue(1)
        _root["last_frame"].setValue(100)
        _root["frame"].setValue(1)
        _root["name"].setValue("")
        _root["format"].setValue(Format(64, 48, "fake"))
        _thread_local.groups = [_root]
        env["gui"] = gui
        _menus.clear()
        _plugin_path.clear()
        for cbs in _callbacks.values():
            cbs.clear()
        with _main_lock:
            _main_queue.clear()
        self.progress.clear()
        self.messages.clear()
        self.executed.clear()
        self.cancel_requested.clear()

    def startup(self, nuke_dirs: List[str]) -> None:
        """Simulate Nuke's launch: the plug-in path is ~/.nuke then NUKE_PATH folders; init.py files run in
        reverse path order, then (GUI only) menu.py files (dev guide 'Start-up Scripts', User Guide 'Defining the
        Nuke Plug-in Path')."""
        for path in reversed(nuke_dirs):
            pluginAppendPath(path) if path not in _plugin_path else None
        self.in_startup = True
        self.pending_menus = []
        try:
            for path in reversed(nuke_dirs):
                self._run_startup_file(os.path.join(path, "init.py"))
        finally:
            self.in_startup = False
        if env["gui"]:
            for path in list(reversed(nuke_dirs)) + self.pending_menus:
                self._run_startup_file(os.path.join(path, "menu.py"))

    def _run_startup_file(self, path: str) -> None:
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as fh:
                code = compile(fh.read(), path, "exec")
            exec(code, {"nuke": sys.modules[__name__], "__file__": path, "__name__": "__nuke_startup__"})


fake = _Fake(progress=[], messages=[], executed=[], cancel_requested=threading.Event(), in_startup=False,
             pending_menus=[])
