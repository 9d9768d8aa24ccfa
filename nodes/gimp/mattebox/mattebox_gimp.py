"""The GIMP plug-in's logic that needs no GIMP: pixel formats, byte layouts, arguments -> request, progress.

The plug-in (``mattebox.py``) keeps only the GIMP calls; everything here is plain Python (standard library plus
the client's ``protocol`` module) so it is unit-tested outside GIMP. numpy is not required: GIMP's Python has no
guarantee of it, so byte layouts are converted with :mod:`array` (C-speed strided slices, exact); numpy, when
present, is only a faster path for the same conversion.

Pixels travel as little-endian float32 (``protocol.Buffer`` over raw GEGL bytes). GEGL's float formats are
native-endian, so :func:`check_native_endian` refuses big-endian machines rather than sending swapped floats.
"""
from __future__ import annotations

import sys
from array import array
from typing import TYPE_CHECKING, Any, Dict, List, NamedTuple, Optional, Tuple

from mattebox_plugin import protocol  # parameter data only: needs neither pyzmq nor msgpack

if TYPE_CHECKING:  # the client is imported when used, so the plug-in registers even without pyzmq/msgpack
    from mattebox_plugin.protocol import Buffer


PROCEDURE_NAME = "plug-in-mattebox"
MENU_PATH = "<Image>/Filters/Matting"
MENU_LABEL = "_Mattebox..."

#: mask-source choice: nick -> (label, help)
MASK_SOURCES = {
    "auto": ("Auto", "the selection if there is one, else the source layer's layer mask, else none "
                     "(the server guesses the foreground)"),
    "none": ("None", "no guidance: the server guesses the foreground"),
    "selection": ("Selection", "the image's selection"),
    "layer-mask": ("Layer mask", "the source layer's layer mask"),
    "channel": ("Channel", "the channel given as mask-channel"),
}
#: how the guide is read: nick -> (label, help)
GUIDE_KINDS = {
    "mask": ("Coarse mask", "a rough foreground mask in [0, 1]; the server builds the unknown band around its edge"),
    "trimap": ("Trimap", "0 background, 0.5 unknown, 1 foreground"),
}
#: quality presets: nick -> (label, help), from the protocol's data (mattebox_plugin.protocol.MATTE_PARAMS)
QUALITIES = {value: (protocol.choice_label(value), "") for value in protocol.param_choices("quality")}
DEFAULT_QUALITY = protocol.MATTE_PARAMS["quality"]["default"]
BAND_WIDTH_MIN, BAND_WIDTH_MAX = protocol.param_bounds("band_width")
#: optional layers read over the source layer's area and sent as colour inputs: argument -> (wire buffer, what
#: to pick instead when the argument names the source layer itself)
LAYER_INPUTS = {
    "second-layer": ("second", "pick the other frame of the pair"),
    "clean-plate-layer": ("background", "pick a layer of the same shot without the subject"),
}

#: GIMP base types the plug-in handles (INDEXED is refused with UnsupportedImage)
SUPPORTED_BASE_TYPES = ("RGB", "GRAY")
#: guides (masks, selections, channels) are read in GIMP's linear mask format: stored values are used as is
GUIDE_FORMAT = "Y float"


class UnsupportedImage(ValueError):
    """The image cannot be matted as it is; the message says what to change."""


class PixelFormats:
    """Babl format names for one image precision, and the wire colourspace they hold."""

    __slots__ = ("rgb", "rgba", "colorspace")

    def __init__(self, rgb: str, rgba: str, colorspace: str):
        self.rgb = rgb
        self.rgba = rgba
        self.colorspace = colorspace

    def __repr__(self) -> str:
        return f"PixelFormats({self.rgb!r}, {self.rgba!r}, {self.colorspace!r})"


LINEAR = PixelFormats("RGB float", "RGBA float", "linear")
NON_LINEAR = PixelFormats("R'G'B' float", "R'G'B'A float", "srgb")


def formats_for_precision(precision: str) -> PixelFormats:
    """Float formats that keep an image's linearity: ``"FLOAT_LINEAR"`` -> ``RGB float`` / wire ``linear``.

    ``precision`` is a ``Gimp.Precision`` value name (``U8_NON_LINEAR``, ``HALF_LINEAR``, ``FLOAT_PERCEPTUAL``,
    ...). Non-linear and perceptual precisions use the sRGB transfer curve in GIMP, so their pixels are read
    as ``R'G'B' float`` and sent as ``srgb``: no conversion of the stored values, only widening to float.
    """
    name = precision.upper()
    if name.startswith("GIMP_PRECISION_"):
        name = name[len("GIMP_PRECISION_"):]
    if name.endswith("_NON_LINEAR") or name.endswith("_PERCEPTUAL"):
        return NON_LINEAR
    if name.endswith("_LINEAR"):
        return LINEAR
    raise UnsupportedImage(f"unknown GIMP precision {precision!r}: expected a name ending in _LINEAR, "
                           f"_NON_LINEAR or _PERCEPTUAL")


def check_base_type(base_type: str) -> None:
    """Refuse image modes the plug-in cannot matte, saying how to convert."""
    name = base_type.upper()
    if name.startswith("GIMP_"):
        name = name[len("GIMP_"):]
    if name == "INDEXED":
        raise UnsupportedImage("Mattebox cannot matte indexed images: convert the image with Image > Mode > RGB "
                               "(or Grayscale) first, then run Filters > Matting > Mattebox again")
    if name not in SUPPORTED_BASE_TYPES:
        raise UnsupportedImage(f"Mattebox supports RGB and grayscale images, not {base_type}")


def check_native_endian() -> None:
    if sys.byteorder != "little":
        raise UnsupportedImage("Mattebox's GIMP plug-in needs a little-endian machine (GEGL floats are native-endian)")


def float_count(data: Any) -> int:
    return len(memoryview(data).cast("B")) // 4


def image_buffer(data: bytes, width: int, height: int, formats: PixelFormats, name: str = "image") -> "Buffer":
    """Raw ``formats.rgb`` bytes of a width×height region -> a wire Buffer (H×W×3 float32)."""
    from mattebox_plugin.protocol import Buffer

    expected = width * height * 3
    if float_count(data) != expected:
        raise ValueError(f"{name}: got {float_count(data)} floats from GEGL, expected {expected} "
                         f"({width}×{height}×3)")
    return Buffer(name, data, (height, width, 3), "float32", formats.colorspace)


def guide_buffer(data: bytes, width: int, height: int, kind: str) -> "Buffer":
    """Raw ``Y float`` bytes of a guide (mask, trimap) -> a wire Buffer named after ``kind`` (H×W float32)."""
    from mattebox_plugin.protocol import Buffer

    if kind not in GUIDE_KINDS:
        raise ValueError(f"guide-kind must be one of {', '.join(GUIDE_KINDS)}, got {kind!r}")
    if float_count(data) != width * height:
        raise ValueError(f"{kind}: got {float_count(data)} floats from GEGL, expected {width * height}")
    return Buffer(kind, data, (height, width), "float32", "data")


def region_in(source_offsets: Tuple[int, int], size: Tuple[int, int],
              other_offsets: Tuple[int, int]) -> Tuple[int, int, int, int]:
    """The source layer's area in another drawable's coordinates: (x, y, width, height).

    GIMP layers have their own offsets and sizes; selections and channels are image-sized (offsets 0, 0). A
    layer input (second layer, clean plate) or a guide is read over exactly the source's pixels; outside the other
    drawable GEGL's abyss fills in (zeros for guides, edge pixels for layer inputs).
    """
    (sx, sy), (w, h), (ox, oy) = source_offsets, size, other_offsets
    return sx - ox, sy - oy, w, h


def check_layer_input(argument: str, layer_id: int, source_id: int) -> str:
    """The wire buffer a layer argument (``second-layer``, ``clean-plate-layer``) is sent as; ValueError when it
    names the source layer itself (the server would get the subject as its own partner or plate)."""
    if argument not in LAYER_INPUTS:
        raise ValueError(f"unknown layer argument {argument!r}: expected one of {', '.join(LAYER_INPUTS)}")
    buffer_name, instead = LAYER_INPUTS[argument]
    if layer_id == source_id:
        raise ValueError(f"{argument} is the source layer itself: {instead}")
    return buffer_name


def _numpy():
    """numpy when GIMP's Python has it (a fast path, ~10x quicker on big layers), else None."""
    try:
        import numpy
    except ImportError:
        return None
    return numpy


def _floats(data: Any) -> array:
    values = array("f")
    values.frombytes(bytes(memoryview(data).cast("B")))
    return values


def interleave_rgba(rgb: Any, alpha: Any, use_numpy: bool = True) -> bytes:
    """H×W×3 float32 colour bytes + H×W float32 alpha bytes -> H×W×4 float32 RGBA bytes (straight alpha)."""
    np = _numpy() if use_numpy else None
    if np is not None:
        colour = np.frombuffer(rgb, dtype=np.float32)
        matte = np.frombuffer(alpha, dtype=np.float32)
    else:
        colour, matte = _floats(rgb), _floats(alpha)
    pixels = len(matte)
    if len(colour) != 3 * pixels:
        raise ValueError(f"foreground has {len(colour)} floats but alpha has {pixels} pixels (expected "
                         f"{3 * pixels})")
    if np is not None:
        out = np.empty((pixels, 4), np.float32)
        out[:, :3] = colour.reshape(pixels, 3)
        out[:, 3] = matte
        return out.tobytes()
    out = array("f", bytes(16 * pixels))
    for channel in range(3):
        out[channel::4] = colour[channel::3]
    out[3::4] = matte
    return out.tobytes()


def split_rgba(rgba: Any) -> Tuple[bytes, bytes]:
    """H×W×4 float32 RGBA bytes -> (H×W×3 colour bytes, H×W alpha bytes). The inverse of :func:`interleave_rgba`."""
    values = _floats(rgba)
    if len(values) % 4:
        raise ValueError(f"RGBA data has {len(values)} floats, not a multiple of 4")
    pixels = len(values) // 4
    colour = array("f", bytes(12 * pixels))
    for channel in range(3):
        colour[channel::3] = values[channel::4]
    return colour.tobytes(), values[3::4].tobytes()


def output_bytes(result_buffer: "Buffer", height: int, width: int, channels: int) -> bytes:
    """A result Buffer's raw float32 bytes, checked against the size the layer needs."""
    shape = (height, width) if channels == 1 else (height, width, channels)
    if tuple(result_buffer.shape) != shape or result_buffer.dtype != "float32":
        raise ValueError(f"server output '{result_buffer.name}' is {result_buffer.dtype} {list(result_buffer.shape)}"
                         f", expected float32 {list(shape)}")
    return bytes(memoryview(result_buffer.data).cast("B"))


def request_params(engine: str, band_width: int, quality: str) -> Dict[str, Any]:
    """The matte request's params from the procedure's arguments (checked like the server checks them)."""
    from mattebox_plugin import protocol

    params = {"engine": engine.strip() or "auto", "band_width": int(band_width), "quality": quality,
              "outputs": ["alpha", "foreground"]}
    return protocol.validate_params(params)


def choose_mask_source(requested: str, has_selection: bool, has_layer_mask: bool, has_channel: bool) -> str:
    """Resolve the mask-source argument to what will be read: 'none', 'selection', 'layer-mask' or 'channel'.

    Raises ValueError when the requested source does not exist (an empty selection, no layer mask, no channel).
    """
    if requested not in MASK_SOURCES:
        raise ValueError(f"mask-source must be one of {', '.join(MASK_SOURCES)}, got {requested!r}")
    if requested == "auto":
        return "selection" if has_selection else ("layer-mask" if has_layer_mask else "none")
    missing = {"selection": (has_selection, "the selection is empty: select the foreground roughly first"),
               "layer-mask": (has_layer_mask, "the source layer has no layer mask"),
               "channel": (has_channel, "mask-source is 'channel' but no mask-channel was given")}
    if requested in missing and not missing[requested][0]:
        raise ValueError(f"mask-source '{requested}': {missing[requested][1]}")
    return requested


class EngineChoice(NamedTuple):
    """One entry of the dialog's engine list: a short ``label`` (the name and whether it can run) and the
    ``detail`` (description, and for one that cannot run the reason or the install command) shown as the entry's
    tooltip and on a wrapped line under the list."""
    name: str
    label: str
    detail: str
    available: bool


def engine_choices(hello: Optional[Dict[str, Any]]) -> List[EngineChoice]:
    """The dialog's engine list, 'auto' first; only 'auto' when hello is missing. Labels stay short (a long entry
    made the dialog wider than the screen); a learned engine without weights says the command that installs them
    in its detail."""
    choices = [EngineChoice("auto", "auto — best available", "the server picks the best engine it has", True)]
    engines = (hello or {}).get("engines", [])
    if engines:  # a hello came through the client, so it imports
        from mattebox_plugin.client import engine_note
    for engine in engines:
        name = engine.get("name", "")
        if not name:
            continue
        available = bool(engine.get("available", False))
        state = "installed" if available else ("not installed" if engine.get("get") else "unavailable")
        note = engine_note(engine)
        detail = "; ".join(part for part in (engine.get("description") or "", note) if part)
        choices.append(EngineChoice(name, f"{name} — {state}", detail, available))
    return choices


#: the dialog's rows: argument -> (label with its mnemonic, help). Labels end in a colon like GIMP's own, and no
#: two rows nor a row and a dialog button share a mnemonic (tests/test_gimp_logic.py checks both)
ARGUMENTS = {
    "second-layer": ("Parallax _partner layer:", "Parallax partner: the same shot with slight camera motion "
                                                 "(optional)"),
    "clean-plate-layer": ("C_lean plate layer:", "Clean plate: the same shot without the subject (optional); the "
                                                 "server uses it as the known background"),
    "mask-source": ("_Mask from:", "Where the guide comes from"),
    "mask-channel": ("Mas_k channel:", "Channel to use when mask-source is 'channel'"),
    "guide-kind": ("_Guide is a:", "How the guide's values are read"),
    "band-width": ("_Band width:", "Unknown-band width in pixels around the mask's edge; 0 scales with the image"),
    "quality": ("_Quality:", "Speed/accuracy preset"),
    "engine": ("_Engine / model:", "Engine or model name from the server, or 'auto'"),
    "time-limit": ("_Time limit:", "Cancel the job after this many seconds (0: no limit)"),
}
#: the arguments the dialog shows, in order (time-limit is for batch callers)
DIALOG_ARGUMENTS = ("second-layer", "clean-plate-layer", "mask-source", "mask-channel", "guide-kind", "band-width",
                    "quality", "engine")
#: the buttons GIMP's procedure dialog adds (GIMP 3.0), whose mnemonics the rows must not reuse
DIALOG_BUTTONS = ("_Help", "_Reset", "_OK", "_Cancel")
#: what an empty layer or channel picker shows
NONE_LABEL = "(none)"


def mnemonic(label: str) -> Optional[str]:
    """The lower-case letter after the first underscore of a GTK label, or None."""
    index = label.find("_")
    return label[index + 1].lower() if 0 <= index < len(label) - 1 else None


def picker_choices(items: List[Tuple[int, str]], exclude: Optional[int] = None) -> List[Tuple[str, str]]:
    """(id, label) rows of a layer or channel picker from (item id, name) pairs: "(none)" first (id ""), then the
    items except ``exclude`` (the source layer, which cannot be its own partner or plate)."""
    return [("", NONE_LABEL)] + [(str(item), name) for item, name in items if item != exclude]


def layer_names(source_name: str) -> Tuple[str, str]:
    """Names of the new layers: the masked copy and the decontaminated foreground."""
    return f"{source_name} (matte)", f"{source_name} (foreground)"


def run_group_name(source_name: str) -> str:
    """The layer group a run's layers go into, named after the source; a rerun on the same layer replaces it."""
    return f"{source_name} (Mattebox)"


def success_message(source_name: str, info: Dict[str, Any], seconds: float, notes: List[str]) -> str:
    """The line GIMP shows after a run: that it worked, with which engine and how long it took, what became of the
    source layer, and the server's notes (second frame, clean plate, guidance warnings)."""
    engine = info.get("engine") or "?"
    text = (f"Mattebox: matted '{source_name}' with {engine} in {seconds:.1f} s into the group "
            f"'{run_group_name(source_name)}'; the input layers are hidden so the cut-out shows")
    return text + "".join(f"; {note}" for note in notes)
