"""Settings: per scene (what to matte, saved in the .blend) and per user (the extension's preferences)."""
from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

from . import core
from .connection import plugin_module

SOURCES = [
    ("IMAGE", "Image", "An image datablock: a still, an image sequence numbered by frame, or a movie"),
    ("RENDER", "Render", "Render the frame (compositing off) and matte the render result"),
    ("CLIP", "Movie Clip", "A movie clip (movie file or image sequence)"),
]
MASK_CHANNELS = [
    ("LUMINANCE", "Luminance", "Rec.709 luminance of the mask image"),
    ("RED", "Red", "The mask image's red channel"),
    ("ALPHA", "Alpha", "The mask image's alpha channel"),
]
#: Blender 5 warns about "//" in path properties unless they declare blend-relative support (4.x lacks the option)
PATH_OPTIONS = {"PATH_SUPPORTS_BLEND_RELATIVE"} if bpy.app.version >= (5, 0, 0) else set()
_protocol = plugin_module("protocol")
#: menus and ranges from the protocol's parameter data (mattebox_plugin.protocol.MATTE_PARAMS), never re-declared
QUALITIES = [(value, _protocol.choice_label(value), "") for value in _protocol.param_choices("quality")]
BAND_WIDTH_MIN, BAND_WIDTH_MAX = _protocol.param_bounds("band_width")
DEFAULT_ENDPOINT = plugin_module("config").DEFAULT_ENDPOINT
#: Blender shows the strings of function-made enum items only while Python keeps them alive
_ITEMS = {"engine": []}


def engine_items(self, context):
    """The Engine menu: the last server's engines (missing ones say how to get them), else the built-in ones."""
    from . import connection

    engines = connection.known_engines()
    note = plugin_module("client").engine_note if engines else None
    _ITEMS["engine"] = core.engine_menu(engines, note)
    return _ITEMS["engine"]


def _get_engine(self) -> int:
    return core.enum_number(self.engine_name)


def _set_engine(self, number: int) -> None:
    self.engine_name = next((item[0] for item in _ITEMS["engine"] if item[3] == number), "auto")


def preferences(context=None):
    """The extension's AddonPreferences (``__package__`` is the extension's module name once installed)."""
    context = context or bpy.context
    return context.preferences.addons[__package__].preferences


def _client_config() -> dict:
    """The shared client config (endpoint, the server command the installer recorded); {} when unreadable."""
    try:
        from .connection import client_package

        return client_package().config.load()
    except Exception:  # no client yet, or a broken config file: the preferences still draw
        return {}


def _default_endpoint() -> str:
    return _client_config().get("endpoint") or DEFAULT_ENDPOINT


def recorded_server_command() -> str:
    """The server command `mattebox install blender` recorded, as shell words ('' when none)."""
    import shlex

    command = _client_config().get("server_command")
    return shlex.join(command) if isinstance(command, list) else (command or "")


class MatteboxPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    endpoint: StringProperty(name="Endpoint", default="",
                             description=f"The mattebox server, e.g. {DEFAULT_ENDPOINT} (empty: the client config "
                                         f"file or $MATTEBOX_ENDPOINT)")
    timeout: FloatProperty(name="Timeout", default=30.0, min=1.0, max=3600.0, subtype="TIME_ABSOLUTE",
                           description="Seconds of silence from the server before a job is reported as failed")
    auto_start: BoolProperty(name="Start a local server", default=True,
                             description="When nothing answers at a local endpoint, start the installed server")
    server_command: StringProperty(name="Server command", default="",
                                   description="Command that starts a server (empty: the one `mattebox install "
                                               "blender` recorded in the client config)")

    def effective_endpoint(self) -> str:
        return self.endpoint.strip() or _default_endpoint()

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "endpoint", placeholder=_default_endpoint())
        layout.prop(self, "timeout")
        layout.prop(self, "auto_start")
        recorded = recorded_server_command()
        layout.prop(self, "server_command", placeholder=recorded or "none recorded: run mattebox install blender")
        if recorded and not self.server_command.strip():
            layout.label(text=f"Installer's command: {recorded}", icon="INFO")
        layout.operator("mattebox.check_server", icon="LINKED")


class MatteboxSettings(bpy.types.PropertyGroup):
    name: StringProperty(name="Name", default="Matte",
                         description="Names the result images '<name> Alpha' etc. and the group 'Mattebox <name>'")
    source: EnumProperty(name="Source", items=SOURCES, default="IMAGE")
    image: PointerProperty(name="Image", type=bpy.types.Image)
    clip: PointerProperty(name="Clip", type=bpy.types.MovieClip)
    use_second: BoolProperty(name="Second Frame", default=False,
                             description="Send a second frame of the same shot (parallax partner) to the server")
    second_offset: IntProperty(name="Offset", default=1, description="Frames from the matted frame to the second")
    mask: PointerProperty(name="Mask", type=bpy.types.Image,
                          description="Optional coarse foreground mask (white = foreground)")
    mask_channel: EnumProperty(name="Mask Channel", items=MASK_CHANNELS, default="LUMINANCE")
    clean_plate: PointerProperty(name="Clean Plate", type=bpy.types.Image,
                                 description="Optional clean plate: the shot without the subject, same size as the "
                                             "image (a still is used for every frame; a sequence or movie gives "
                                             "the matted frame's own frame)")
    #: the chosen engine's name, what is sent and saved: it survives a session whose menu does not list it yet
    #: (no server reached), where the menu itself would read as empty
    engine_name: StringProperty(name="Engine Name", default="auto", options={"HIDDEN"})
    engine: EnumProperty(name="Engine", items=engine_items, get=_get_engine, set=_set_engine,
                         description="Engine of the server (Check Server refreshes the list); Auto lets it choose")
    quality: EnumProperty(name="Quality", items=QUALITIES, default=_protocol.MATTE_PARAMS["quality"]["default"],
                          description="The server's speed/quality preset")
    band_width: IntProperty(name="Band Width", default=0, min=BAND_WIDTH_MIN, max=BAND_WIDTH_MAX,
                            description="Unknown band around the mask's edge, pixels (0: scaled to the image)")
    use_range: BoolProperty(name="Frame Range", default=False, description="Matte a range of frames")
    frames: StringProperty(name="Frames", default="1-10", description="e.g. 1-10, 1,5,9, 1-100x10 or 1-10,20-30x5")
    use_shot: BoolProperty(name="As One Shot", default=False,
                           description="Matte the frame range as one shot: the mask guides the key frames and is "
                                       "carried through the others, each frame steadied by its neighbours (a movie "
                                       "clip or image sequence; no second frame or clean plate)")
    key_frames: StringProperty(name="Key Frames", default="",
                               description="Frames whose mask guides the shot, e.g. 1,13 or 1-100x12 (empty: "
                                           "automatic guidance on every frame)")
    output_dir: StringProperty(name="Output", default="//mattebox/", subtype="DIR_PATH",
                               options=PATH_OPTIONS,
                               description="Folder for the result EXR files (// = next to the .blend file)")

    def params(self) -> dict:
        return {"engine": self.engine_name or "auto", "quality": self.quality or "balanced",
                "band_width": self.band_width}

    def shot(self):
        """The run's shot (mattebox_plugin.run.Shot) when 'As One Shot' is on, else None; ValueError names bad
        key frames."""
        if not self.use_shot:
            return None
        frames = plugin_module("frames")
        try:
            keys = frames.parse_frames(self.key_frames) if self.key_frames.strip() else ()
        except ValueError as exc:
            raise ValueError(f"key {exc}") from None
        return plugin_module("run").Shot(keys=keys, params=self.params())

    def frame_list(self, scene) -> list:
        return plugin_module("frames").parse_frames(self.frames) if self.use_range else [scene.frame_current]


class MatteboxStatus(bpy.types.PropertyGroup):
    """Run state shown in the panel (window manager: never saved)."""

    running: BoolProperty(default=False)
    progress: FloatProperty(default=0.0, min=0.0, max=1.0, subtype="FACTOR")
    text: StringProperty(default="")


CLASSES = (MatteboxPreferences, MatteboxSettings, MatteboxStatus)


def register_properties() -> None:
    bpy.types.Scene.mattebox = PointerProperty(type=MatteboxSettings)
    bpy.types.WindowManager.mattebox_status = PointerProperty(type=MatteboxStatus)


def unregister_properties() -> None:
    del bpy.types.WindowManager.mattebox_status
    del bpy.types.Scene.mattebox
