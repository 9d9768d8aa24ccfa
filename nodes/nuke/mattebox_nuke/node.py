"""The Mattebox node in Nuke: a Python-built Group, its knobs, and the matte run (GUI thread or headless).

Why a Python-built Group rather than a .gizmo file: a Group is saved *whole* into the .nk script (inputs, internal
Write/Read nodes, knob values, the result file paths), so a script opened on a farm machine without this plug-in
still reads the cached results; a gizmo saves only its name and needs the .gizmo file on every machine. Building it
in Python also keeps one definition of the knobs, here, instead of a TCL text file that drifts from the code.

Inside the group::

    plate(0) ─ Write_plate      second(1) ─ Write_second      guide(2) ─ Write_guide      clean(3) ─ Write_clean
    Read_result ─ Output

Nuke's Python cannot hand pixels to Python, so ``matte`` executes the internal Writes for the frames (float
linear EXR, raw, compression none), sends the pixels to the server (:mod:`mattebox_nuke.job`), writes the result
EXR and points the internal Read at it. The internal Writes stay disabled except while we execute them, so
``nuke -x`` (which executes every Write) never renders them by itself.

Threads: in the GUI the server calls run in a worker thread with a ``nuke.ProgressTask``; everything that touches
nodes or knobs goes back through ``nuke.executeInMainThread`` (Nuke's API is not thread-safe: dev guide
'Threading'). In terminal mode (``nuke -t``/``-x``: ``nuke.env['gui']`` is False) the run is synchronous and a
failure raises, so a farm task fails loudly instead of rendering black.
"""
from __future__ import annotations

import os
import re
import sys
import threading
import time
import traceback
from typing import Any, Callable, Dict, List, Optional

import nuke

from mattebox_plugin.errors import Cancelled, ServerUnavailable, describe_error
from mattebox_plugin.frames import contiguous_spans, format_frames
from mattebox_plugin.protocol import INFO_ENGINE, ProtocolError, param_choices
from mattebox_plugin.run import FINISHED, FrameRun

from . import __version__
from .job import (NODE_INPUTS, OUTPUT_CHOICES, MatteboxError, ResultStore, Settings, plate_pixel_aspect,
                  read_request, result_frames)

MARKER_KNOB = "mattebox_version"
FRAME_MODES = ("current frame", "input range", "project range", "custom")
_running: Dict[str, "MatteRun"] = {}  # node full name -> run in progress (one at a time per node)
#: MatteboxError's arguments when the plate input is empty
NO_PLATE = ("the plate input is not connected", "connect the image to matte to input 'plate'")


# ------------------------------------------------------------------------------------------ building
def create() -> Any:
    """Toolbar command: a new Mattebox node below the selected node (its plate input).

    The plate is connected after ``build``: createNode cannot connect it, because a Group's input pipes are its
    Input nodes and a new Group has none yet."""
    selected = nuke.selectedNodes()
    group = nuke.createNode("Group", "", False)
    index = 1
    while nuke.toNode(f"Mattebox{index}") is not None:
        index += 1
    group["name"].setValue(f"Mattebox{index}")
    build(group)
    if selected:
        group.setInput(0, selected[-1])
    _try_refresh(group)
    return group


def _try_refresh(group: Any) -> None:
    """Fill the engine menu at creation when a server already answers; never start one or wait long here."""
    try:
        from mattebox_plugin.launcher import port_open

        if not port_open(_config_for(group["endpoint"].value())["endpoint"]):
            set_status(group, "server not reachable yet: Matte starts the configured local server")
            return
        from mattebox_plugin.client import Client
        from mattebox_plugin.config import client_kwargs

        client = Client(**dict(client_kwargs(_config_for(group["endpoint"].value())), timeout=2.0))
        try:
            set_engines(group, client.hello())
        finally:
            client.close()
    except Exception as exc:  # creation must not fail because of the server; Matte reports it properly
        set_status(group, f"engines not listed yet: {describe_error(exc)}")


def build(group: Any) -> Any:
    """Add the Mattebox knobs and internal graph to an empty Group."""
    k = nuke
    knobs = [
        k.Tab_Knob("mattebox_tab", "Mattebox"),
        k.String_Knob("endpoint", "server"),
        k.PyScript_Knob("refresh", "refresh engines", "import mattebox_nuke; mattebox_nuke.refresh_button()"),
        k.Enumeration_Knob("engine", "engine", ["auto"]),
        k.Enumeration_Knob("guide", "guide input is", ["mask", "trimap"]),
        k.Enumeration_Knob("guide_channel", "guide channel", ["alpha", "red"]),
        k.Double_Knob("band_width", "band width (px, 0 = auto)"),
        k.Enumeration_Knob("quality", "quality", list(param_choices("quality", default_first=True))),
        k.Enumeration_Knob("outputs", "outputs", list(OUTPUT_CHOICES)),
        k.Boolean_Knob("premultiply", "premultiply rgb by alpha"),
        k.Enumeration_Knob("frame_range", "frames", list(FRAME_MODES)),
        k.Int_Knob("first", "first"),
        k.Int_Knob("last", "last"),
        k.Boolean_Knob("shot", "matte as one shot"),
        k.String_Knob("key_frames", "key frames"),
        k.File_Knob("cache_dir", "cache folder"),
        k.PyScript_Knob("matte", "Matte", "import mattebox_nuke; mattebox_nuke.matte_button()"),
        k.Text_Knob("status", "status", "not matted yet"),
        k.String_Knob(MARKER_KNOB, "mattebox version"),
    ]
    for knob in knobs:
        group.addKnob(knob)
    group["endpoint"].setValue(_default_endpoint())
    group["endpoint"].setTooltip("the mattebox server (tcp://host:port); empty = the client config's endpoint")
    group["first"].setValue(int(nuke.root()["first_frame"].value()))
    group["last"].setValue(int(nuke.root()["last_frame"].value()))
    group["shot"].setTooltip("matte the frame range as one shot: the key frames' guide is carried through the "
                             "others and each frame is steadied by its neighbours (docs/shots.md)")
    group["key_frames"].setTooltip("frames whose guide input guides the shot, e.g. 1001,1013 or 1001-1100x12; "
                                   "empty: automatic guidance on every frame")
    group[MARKER_KNOB].setValue(__version__)
    group[MARKER_KNOB].setFlag(nuke.INVISIBLE)
    with group:
        for number, (name, _, what) in enumerate(NODE_INPUTS):
            node_input = nuke.nodes.Input(name=name)
            node_input["number"].setValue(number)
            node_input["label"].setValue(what)
            write = nuke.nodes.Write(name=f"Write_{name}", inputs=[node_input])
            write["file_type"].setValue("exr")
            write["datatype"].setValue("32 bit float")
            write["compression"].setValue("none")  # fastest to read back, also without numpy
            write["channels"].setValue("rgba")
            write["raw"].setValue(True)  # the working-space (linear) values, no view transform
            write["create_directories"].setValue(True)
            write["disable"].setValue(True)  # only enabled while Mattebox executes it
        read = nuke.nodes.Read(name="Read_result")
        read["on_error"].setValue("black")  # frames not matted yet are black, not an error
        read["raw"].setValue(True)
        nuke.nodes.Output(name="Output", inputs=[read])
    return group


def tcl_escape(path: str) -> str:
    """A path as a file knob must hold it: Nuke TCL-evaluates file knobs, so ``[``, ``]``, ``$`` and ``\\``
    are escaped with a backslash (else ``[x]`` runs command x and ``$x`` reads variable x)."""
    return re.sub(r"([\[\]$\\])", r"\\\1", path)


def _default_endpoint() -> str:
    try:
        from mattebox_plugin import config

        return config.load()["endpoint"]
    except Exception:  # a broken config must not stop node creation; the matte run reports it
        return ""


def is_mattebox(node: Any) -> bool:
    return node.knob(MARKER_KNOB) is not None


def mattebox_nodes() -> List[Any]:
    return [n for n in nuke.allNodes(recurseGroups=True) if is_mattebox(n)]


# --------------------------------------------------------------------------------------------- knobs
def _inner(group: Any, name: str) -> Any:
    node = group.node(name)
    if node is None:
        raise MatteboxError(f"the internal node {name!r} is missing from {group.name()}",
                            "recreate the Mattebox node from the toolbar")
    return node


def connected_inputs(group: Any) -> Dict[str, bool]:
    return {name: group.input(i) is not None for i, (name, _, _) in enumerate(NODE_INPUTS)}


def default_cache_dir() -> str:
    """$MATTEBOX_NUKE_CACHE, else mattebox_cache beside the saved script, else ~/.cache/mattebox/nuke."""
    if os.environ.get("MATTEBOX_NUKE_CACHE"):
        return os.environ["MATTEBOX_NUKE_CACHE"]
    script = nuke.root().name()
    if script and script != "Root":
        return os.path.join(os.path.dirname(os.path.abspath(script)), "mattebox_cache")
    return os.path.join(os.path.expanduser("~"), ".cache", "mattebox", "nuke")


def read_settings(group: Any) -> Settings:
    """The knob values (main thread only)."""
    if not group["cache_dir"].value():
        group["cache_dir"].setValue(tcl_escape(default_cache_dir().replace("\\", "/")))
    cache_dir = group["cache_dir"].evaluate()
    return Settings(node_name=group.name(), cache_dir=cache_dir, endpoint=group["endpoint"].value(),
                    engine=group["engine"].value(), band_width=group["band_width"].value(),
                    outputs=group["outputs"].value(), guide=group["guide"].value(),
                    guide_channel=group["guide_channel"].value(), premultiply=group["premultiply"].value(),
                    quality=group["quality"].value(), **_shot_knobs(group))


def _shot_knobs(group: Any) -> Dict[str, Any]:
    """The shot knobs' values; a node saved before they existed mattes frame by frame."""
    if group.knob("shot") is None:
        return {}
    return {"shot": bool(group["shot"].value()), "key_frames": group["key_frames"].value()}


def frames_to_matte(group: Any) -> List[int]:
    """The frames the frame-range knob selects."""
    mode = group["frame_range"].value()
    if mode == "current frame":
        return [int(nuke.frame())]
    if mode == "input range":
        plate = group.input(0)
        if plate is None:
            raise MatteboxError(*NO_PLATE)
        first, last = int(plate.firstFrame()), int(plate.lastFrame())
    elif mode == "project range":
        first, last = int(nuke.root()["first_frame"].value()), int(nuke.root()["last_frame"].value())
    else:
        first, last = int(group["first"].value()), int(group["last"].value())
    if last < first:
        raise MatteboxError(f"the frame range {first}-{last} is empty", "set last >= first")
    return list(range(first, last + 1))


def set_status(group: Any, text: str, error: bool = False) -> None:
    """Show the outcome on the node (status knob + label in the DAG) and in the script editor (stdout/stderr)."""
    group["status"].setValue(text)
    group["label"].setValue(("error: " if error else "") + (text if len(text) <= 60 else text[:57] + "..."))
    print(f"[mattebox] {group.name()}: {'ERROR ' if error else ''}{text}", file=sys.stderr if error else sys.stdout)


def set_engines(group: Any, hello: Dict[str, Any]) -> None:
    """Fill the engine menu from the server's hello (available engines; 'auto' first); keep the choice if known.
    The tooltip lists every engine; those without weights name the command that installs them."""
    names = ["auto"] + [e["name"] for e in hello.get("engines", []) if e.get("available") and e["name"] != "auto"]
    current = group["engine"].value()
    group["engine"].setValues(names)
    if current in names:
        group["engine"].setValue(current)
    from mattebox_plugin.client import engine_note

    described = []
    for e in hello.get("engines", []):
        note = engine_note(e)
        described.append(f"{e['name']}: {e.get('description', '')}" + (f" ({note})" if note else ""))
    group["engine"].setTooltip("\n".join(described))


# ------------------------------------------------------------------------------------------- server
def _config_for(endpoint: str) -> Dict[str, Any]:
    from mattebox_plugin import config

    cfg = config.load()
    if endpoint:
        cfg["endpoint"] = endpoint
    return cfg


def connect(endpoint: str) -> Any:
    """A Client for the node's endpoint, starting the configured local server when none answers."""
    from mattebox_plugin.client import Client
    from mattebox_plugin.config import client_kwargs
    from mattebox_plugin.launcher import ensure_server

    cfg = _config_for(endpoint)
    ensure_server(cfg)
    return Client(**client_kwargs(cfg))


def refresh_engines(group: Any) -> Dict[str, Any]:
    client = connect(group["endpoint"].value())
    try:
        hello = client.hello()
    finally:
        client.close()
    set_engines(group, hello)
    return hello


def refresh_button() -> None:
    group = nuke.thisNode()
    try:
        hello = refresh_engines(group)
        set_status(group, f"server {hello['server_version']} on {hello['device']}: "
                          f"{len(group['engine'].values()) - 1} engines")
    except Exception as exc:
        _report(group, exc)


# ---------------------------------------------------------------------------------------------- run
def _on_main(call: Callable[..., Any], *args: Any) -> None:
    """Run on Nuke's main thread: directly when already there, else queued with executeInMainThread."""
    if threading.current_thread() is threading.main_thread():
        call(*args)
    else:
        nuke.executeInMainThread(call, args)


def _report(group: Any, exc: BaseException, text: Optional[str] = None) -> None:
    """Show a failure on the node (and in a dialog in the GUI); only an unexpected one prints its traceback.
    ``text`` defaults to describe_error's."""
    text = text or describe_error(exc, group["endpoint"].value() or None)
    set_status(group, text, error=True)
    if not isinstance(exc, (MatteboxError, ServerUnavailable, ProtocolError, ValueError)):
        traceback.print_exception(type(exc), exc, exc.__traceback__)  # unexpected: full trace to the editor
    if nuke.env.get("gui"):
        nuke.message(f"Mattebox {group.name()}: {text}")


def render_inputs(group: Any, settings: Settings, frames: List[int]) -> Dict[str, bool]:
    """Execute the internal Writes of the connected inputs over ``frames`` (main thread: nuke.execute)."""
    connected = connected_inputs(group)
    if not connected["plate"]:
        raise MatteboxError(*NO_PLATE)
    writes = []
    for name, _, _ in NODE_INPUTS:
        write = _inner(group, f"Write_{name}")
        write["file"].setValue(tcl_escape(settings.input_pattern(name)))
        if connected[name]:
            writes.append(write)
    os.makedirs(os.path.dirname(settings.input_pattern("plate")), exist_ok=True)
    for write in writes:
        write["disable"].setValue(False)
    try:  # one view, the main one: the default (every view) would overwrite one file per view
        nuke.executeMultiple(tuple(writes), tuple(contiguous_spans(frames)), [nuke.views()[0]])
    except RuntimeError as exc:
        if str(exc).strip().lower() == "cancelled":  # the user cancelled Nuke's render progress bar
            raise MatteboxError("cancelled") from None
        raise
    finally:
        for write in writes:
            write["disable"].setValue(True)
    settings.pixel_aspect = plate_pixel_aspect(settings, frames[0])
    return connected


def load_results(group: Any, settings: Settings) -> None:
    """Point the internal Read at the result files and make it re-read them. ``fromUserText`` (what typing the
    path does; ``setValue`` sets only the text) also takes the Read's format from the file: the plate's size and
    pixel aspect, which the result EXR carries."""
    read = _inner(group, "Read_result")
    frames = result_frames(settings)
    pattern = tcl_escape(settings.result_pattern())
    if frames:
        read["file"].fromUserText(f"{pattern} {frames[0]}-{frames[-1]}")
    else:
        read["file"].setValue(pattern)
    read["reload"].execute()


class MatteRun:
    """One matte run of one node: a :class:`mattebox_plugin.run.FrameRun` stepped from a worker thread (GUI) or
    the main thread (terminal), with Nuke's progress bar. ``error`` holds what failed; ``outcomes`` the frames."""

    def __init__(self, group: Any, settings: Settings, frames: List[int], connected: Dict[str, bool]):
        self.group, self.settings, self.frames, self.connected = group, settings, frames, connected
        self.run: Optional[FrameRun] = None
        self.error: Optional[BaseException] = None
        self.finished = threading.Event()
        self.started = time.monotonic()
        self.thread: Optional[threading.Thread] = None

    @property
    def outcomes(self) -> List[Any]:
        return self.run.outcomes if self.run is not None else []

    def work(self) -> None:
        """The server part (worker thread in the GUI): no Nuke API calls except ProgressTask/executeInMainThread."""
        task = nuke.ProgressTask(f"Mattebox {self.settings.node_name}")
        store = ResultStore(self.settings)
        settings, connected = self.settings, self.connected

        def on_step(run: FrameRun) -> None:
            if task.isCancelled():
                run.cancel()
            task.setProgress(int(100 * run.fraction))  # never backwards (FrameRun.fraction)
            task.setMessage(run.status_text())

        try:
            task.setMessage("connecting to the mattebox server")
            self.run = FrameRun(self.frames, lambda: connect(settings.endpoint),
                                lambda frame: read_request(settings, frame, connected), store.write, cache=store,
                                outputs=settings.outputs, key_extra=settings.key_extra(),
                                on_connected=lambda hello: _on_main(set_engines, self.group, hello),
                                shot=settings.shot_run())
            if self.run.wait(on_step=on_step) != FINISHED:
                raise self.run.exception
        except BaseException as exc:  # reported on the node; re-raised by wait() in terminal mode
            self.error = MatteboxError("cancelled") if isinstance(exc, Cancelled) else exc
        finally:
            task = None  # dropping the last reference closes the progress bar
            _on_main(self._finish)

    def _finish(self) -> None:
        """Main thread: load what was matted (even after an error) and show the outcome."""
        _running.pop(self.group.fullName(), None)
        try:
            load_results(self.group, self.settings)
        except Exception as exc:  # pragma: no cover - only if the group was edited mid-run
            self.error = self.error or exc
        offline = self.run is not None and self.run.offline is not None
        span = f"{self.frames[0]}" if len(self.frames) == 1 else f"{self.frames[0]}-{self.frames[-1]}"
        if self.error is not None:  # offline, the run's own text names the frame that needed the server
            _report(self.group, self.error, self.run.error if offline else None)
        elif offline:  # served from the cache with no server: say so, not a plain success
            set_status(self.group, f"frame{'s' if len(self.frames) > 1 else ''} {span}: {self.run.offline_note()}")
        else:
            cached = sum(o.cached for o in self.outcomes)
            engines = sorted({o.info.get(INFO_ENGINE) for o in self.outcomes if o.info.get(INFO_ENGINE)})
            from mattebox_plugin.client import result_notes

            notes = "".join(f"; {note}" for note in result_notes(o.info for o in self.outcomes))
            set_status(self.group, f"matted frame{'s' if len(self.frames) > 1 else ''} {format_frames(self.frames)} "
                                   f"({cached} from cache) with {', '.join(engines) or 'cache'} in "
                                   f"{time.monotonic() - self.started:.1f} s{notes}")
        self.finished.set()

    def wait(self, timeout: Optional[float] = None) -> "MatteRun":
        """Join the worker thread (background runs) and raise what failed; ``finished`` is set once the outcome
        is on the node (main thread)."""
        if self.thread is not None:
            self.thread.join(timeout)
        if self.error is not None:
            raise self.error
        return self


def matte(group: Any, frames: Optional[List[int]] = None, background: Optional[bool] = None) -> MatteRun:
    """Matte ``frames`` (default: the frame-range knob) of a Mattebox node.

    ``background`` (default: GUI mode) runs the server calls in a worker thread and returns at once; otherwise
    the run is synchronous and raises on failure (headless renders must fail loudly).
    """
    if not is_mattebox(group):
        raise MatteboxError(f"{group.name()} is not a Mattebox node")
    background = bool(nuke.env.get("gui")) if background is None else background
    key = group.fullName()
    if key in _running:
        raise MatteboxError(f"{group.name()} is already matting", "wait for it or cancel its progress bar")
    try:
        settings = read_settings(group)
        frames = list(frames) if frames is not None else frames_to_matte(group)
        set_status(group, f"rendering inputs for {len(frames)} frame{'s' if len(frames) != 1 else ''}")
        connected = render_inputs(group, settings, frames)
    except Exception as exc:
        _report(group, exc)
        raise
    run = MatteRun(group, settings, frames, connected)
    _running[key] = run
    if background:
        run.thread = threading.Thread(target=run.work, name=f"mattebox-{settings.node_name}", daemon=True)
        run.thread.start()
        return run
    run.work()
    return run.wait()


def matte_button() -> None:
    """The Matte button: run on the button's node; errors are already on the node, so they stop here in the GUI."""
    group = nuke.thisNode()
    try:
        matte(group)
    except Exception:
        if not nuke.env.get("gui"):
            raise
