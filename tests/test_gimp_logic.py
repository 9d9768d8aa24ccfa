"""The GIMP plug-in's GIMP-free helpers (nodes/gimp/mattebox/mattebox_gimp.py), without GIMP."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from mattebox_plugin import protocol
from mattebox_plugin.protocol import Buffer, ProtocolError
from tests.conftest import ROOT, tree_env

PLUGIN_DIR = ROOT / "nodes" / "gimp" / "mattebox"
sys.path.insert(0, str(PLUGIN_DIR))
import mattebox_gimp as mg  # noqa: E402

sys.path.remove(str(PLUGIN_DIR))

PRECISIONS = [f"{depth}_{trc}" for depth in ("U8", "U16", "U32", "HALF", "FLOAT", "DOUBLE")
              for trc in ("LINEAR", "NON_LINEAR", "PERCEPTUAL")]


@pytest.mark.parametrize("precision", PRECISIONS)
def test_formats_keep_the_images_linearity(precision):
    formats = mg.formats_for_precision(precision)
    assert formats is mg.formats_for_precision("GIMP_PRECISION_" + precision)
    if precision.endswith("_LINEAR") and not precision.endswith("NON_LINEAR"):
        assert (formats.rgb, formats.rgba, formats.colorspace) == ("RGB float", "RGBA float", "linear")
    else:
        assert (formats.rgb, formats.rgba, formats.colorspace) == ("R'G'B' float", "R'G'B'A float", "srgb")
    assert formats.colorspace in protocol.COLORSPACES


def test_unknown_precision_names_what_was_expected():
    with pytest.raises(mg.UnsupportedImage, match="_LINEAR, _NON_LINEAR or _PERCEPTUAL"):
        mg.formats_for_precision("U8_GAMMA")


@pytest.mark.parametrize("base", ["RGB", "GRAY", "GIMP_RGB", "GIMP_GRAY"])
def test_rgb_and_gray_are_supported(base):
    mg.check_base_type(base)


@pytest.mark.parametrize("base", ["INDEXED", "GIMP_INDEXED"])
def test_indexed_is_refused_with_how_to_convert(base):
    with pytest.raises(mg.UnsupportedImage, match=r"indexed.*Image > Mode > RGB"):
        mg.check_base_type(base)


@pytest.mark.parametrize("use_numpy", [True, False])
def test_interleave_and_split_are_exact_inverses(use_numpy):
    rng = np.random.default_rng(0)
    rgb = rng.normal(size=(5, 7, 3)).astype(np.float32)  # out-of-range and negative values survive too
    alpha = rng.random((5, 7), dtype=np.float32)
    rgba = mg.interleave_rgba(rgb.tobytes(), alpha.tobytes(), use_numpy=use_numpy)
    rgba = np.frombuffer(rgba, np.float32).reshape(5, 7, 4)
    np.testing.assert_array_equal(rgba[..., :3], rgb)
    np.testing.assert_array_equal(rgba[..., 3], alpha)
    colour, matte = mg.split_rgba(rgba.tobytes())
    assert colour == rgb.tobytes() and matte == alpha.tobytes()


@pytest.mark.parametrize("use_numpy", [True, False])
def test_interleave_accepts_result_frames_and_checks_sizes(use_numpy):
    rgb = np.ones((2, 2, 3), np.float32)
    alpha = np.zeros((2, 2), np.float32)
    assert len(mg.interleave_rgba(memoryview(rgb), memoryview(alpha), use_numpy)) == 2 * 2 * 4 * 4
    with pytest.raises(ValueError, match="foreground has 12 floats but alpha has 3 pixels"):
        mg.interleave_rgba(rgb.tobytes(), alpha.tobytes()[:12], use_numpy)
    with pytest.raises(ValueError, match="multiple of 4"):
        mg.split_rgba(b"\0" * 12)


def test_image_and_guide_buffers_describe_gegl_bytes_for_the_wire():
    rgb = np.random.default_rng(1).random((3, 4, 3), dtype=np.float32)
    image = mg.image_buffer(rgb.tobytes(), 4, 3, mg.NON_LINEAR)
    assert image.describe() == {"name": "image", "shape": [3, 4, 3], "dtype": "float32", "colorspace": "srgb",
                                "premultiplied": False}
    guide = mg.guide_buffer(np.ones((3, 4), np.float32).tobytes(), 4, 3, "trimap")
    assert (guide.name, guide.shape, guide.colorspace) == ("trimap", (3, 4), "data")
    header = {"buffers": [image.describe(), guide.describe()]}
    checked = protocol.validate_buffers(header, [image.data, guide.data], protocol.DEFAULT_LIMITS)
    np.testing.assert_array_equal(checked["image"].to_array(), rgb)


def test_buffers_of_the_wrong_size_name_the_input():
    with pytest.raises(ValueError, match=r"second: got 6 floats from GEGL, expected 36 \(4×3×3\)"):
        mg.image_buffer(b"\0" * 24, 4, 3, mg.LINEAR, name="second")
    with pytest.raises(ValueError, match="guide-kind must be one of mask, trimap"):
        mg.guide_buffer(b"\0" * 48, 4, 3, "matte")


def test_layer_inputs_are_the_protocols_colour_inputs():
    """second-layer -> `second`, clean-plate-layer -> `background`: both colour buffers the server accepts, sent in
    the source's colourspace like the image."""
    assert {arg: name for arg, (name, _) in mg.LAYER_INPUTS.items()} == {"second-layer": "second",
                                                                         "clean-plate-layer": "background"}
    rgb = np.random.default_rng(2).random((3, 4, 3), dtype=np.float32)
    image = mg.image_buffer(rgb.tobytes(), 4, 3, mg.LINEAR)
    buffers = [image] + [mg.image_buffer(rgb.tobytes(), 4, 3, mg.LINEAR, name=name)
                         for name, _ in mg.LAYER_INPUTS.values()]
    header = {"buffers": [b.describe() for b in buffers]}
    checked = protocol.validate_buffers(header, [b.data for b in buffers], protocol.DEFAULT_LIMITS)
    assert checked["background"].colorspace == checked["second"].colorspace == "linear"
    np.testing.assert_array_equal(checked["background"].to_array(), rgb)


def test_a_layer_input_that_is_the_source_layer_is_refused_by_name():
    assert mg.check_layer_input("clean-plate-layer", 7, 3) == "background"
    assert mg.check_layer_input("second-layer", 7, 3) == "second"
    with pytest.raises(ValueError, match="clean-plate-layer is the source layer itself: pick a layer of the same "
                                         "shot without the subject"):
        mg.check_layer_input("clean-plate-layer", 3, 3)
    with pytest.raises(ValueError, match="second-layer is the source layer itself: pick the other frame"):
        mg.check_layer_input("second-layer", 3, 3)
    with pytest.raises(ValueError, match="unknown layer argument 'plate': expected one of second-layer, "
                                         "clean-plate-layer"):
        mg.check_layer_input("plate", 7, 3)


def test_region_in_maps_the_layer_area_into_another_drawable():
    assert mg.region_in((10, 5), (40, 30), (0, 0)) == (10, 5, 40, 30)  # image-sized selection/channel
    assert mg.region_in((10, 5), (40, 30), (12, 1)) == (-2, 4, 40, 30)  # another layer with its own offsets


def test_output_bytes_checks_shape_and_dtype():
    alpha = Buffer("alpha", np.zeros((3, 4), np.float32).tobytes(), (3, 4), "float32", "data")
    assert len(mg.output_bytes(alpha, 3, 4, 1)) == 48
    with pytest.raises(ValueError, match=r"'alpha' is float32 \[3, 4\], expected float32 \[4, 3\]"):
        mg.output_bytes(alpha, 4, 3, 1)


def test_request_params_are_checked_like_the_server_does():
    params = mg.request_params("  ", 12, "best")
    assert params["engine"] == "auto" and params["band_width"] == 12 and params["outputs"] == ["alpha", "foreground"]
    with pytest.raises(ProtocolError) as info:
        mg.request_params("auto", 5000, "best")
    assert info.value.field == "params.band_width"


@pytest.mark.parametrize("requested,has,expected", [
    ("auto", (True, True, True), "selection"),
    ("auto", (False, True, False), "layer-mask"),
    ("auto", (False, False, True), "none"),  # auto never picks a channel: the user names it
    ("none", (True, True, True), "none"),
    ("channel", (False, False, True), "channel"),
])
def test_mask_source_resolution(requested, has, expected):
    assert mg.choose_mask_source(requested, *has) == expected


@pytest.mark.parametrize("requested,message", [
    ("selection", "the selection is empty"), ("layer-mask", "no layer mask"), ("channel", "no mask-channel"),
    ("lasso", "mask-source must be one of auto, none"),
])
def test_missing_mask_sources_say_what_is_missing(requested, message):
    with pytest.raises(ValueError, match=message):
        mg.choose_mask_source(requested, False, False, False)


def test_engine_choices_list_auto_first_and_say_why_unavailable():
    hello = {"engines": [{"name": "classical", "description": "closed-form", "available": True},
                         {"name": "vitmatte", "description": "", "available": False, "why": "no weights"}]}
    choices = mg.engine_choices(hello)
    assert [c.name for c in choices] == ["auto", "classical", "vitmatte"]
    assert choices[1] == mg.EngineChoice("classical", "classical — installed", "closed-form", True)
    assert choices[2] == mg.EngineChoice("vitmatte", "vitmatte — unavailable", "unavailable: no weights", False)
    assert [c.name for c in mg.engine_choices(None)] == ["auto"]


def test_engine_choices_keep_labels_short_and_the_install_command_in_the_detail():
    """A label with the install command made the dialog 1651 px wide: the label is the name and its state, the
    command goes to the detail (tooltip and the wrapped line under the list)."""
    command = "mattebox models pull vitmatte-small-composition-1k"
    hello = {"engines": [{"name": "vitmatte", "description": "ViTMatte", "available": False,
                          "why": "weights not installed; run ...", "get": command}]}
    choice = mg.engine_choices(hello)[1]
    assert choice.label == "vitmatte — not installed"
    assert choice.detail.startswith("ViTMatte; not installed: run `" + command + "`")
    assert not choice.available
    assert max(len(c.label) for c in mg.engine_choices(hello)) < 30


def test_dialog_labels_end_in_a_colon_and_mnemonics_are_unique():
    labels = [mg.ARGUMENTS[argument][0] for argument in mg.DIALOG_ARGUMENTS]
    assert all(label.endswith(":") for label in labels)
    keys = [mg.mnemonic(label) for label in labels] + [mg.mnemonic(button) for button in mg.DIALOG_BUTTONS]
    assert None not in keys
    assert len(keys) == len(set(keys)), keys  # e.g. "_Clean plate" once clashed with "_Cancel"
    assert mg.mnemonic("C_lean plate layer:") == "l" and mg.mnemonic("no mnemonic") is None


def test_pickers_offer_none_first_and_leave_out_the_source():
    rows = mg.picker_choices([(3, "plate"), (4, "clean"), (5, "second")], exclude=3)
    assert rows == [("", "(none)"), ("4", "clean"), ("5", "second")]
    assert mg.picker_choices([]) == [("", "(none)")]


def test_success_message_names_engine_time_group_and_notes():
    text = mg.success_message("portrait", {"engine": "classical"}, 2.345, ["clean plate used on 1 frame(s)"])
    assert text.startswith("Mattebox: matted 'portrait' with classical in 2.3 s into the group "
                           "'portrait (Mattebox)'")
    assert text.endswith("; clean plate used on 1 frame(s)")
    assert mg.run_group_name("portrait") == "portrait (Mattebox)"


def test_helpers_and_client_work_without_numpy(server_process, monkeypatch):
    """GIMP's Python may lack numpy: build the request from raw bytes and read the result as Buffers."""
    monkeypatch.setenv("MATTEBOX_ENGINES", "test-echo=tests.hosts.echo_engine:EchoEngine")
    endpoint = server_process().endpoint
    script = textwrap.dedent(f"""
        import sys, struct
        sys.modules["numpy"] = None  # any import of numpy now fails
        sys.path.insert(0, {str(PLUGIN_DIR)!r})
        import mattebox_gimp as mg
        from mattebox_plugin.client import Client
        w, h = 8, 6
        pixels = struct.pack("<%df" % (w * h * 3), *[(i % 17) / 16 for i in range(w * h * 3)])
        mask = struct.pack("<%df" % (w * h), *[1.0 if i % w < 4 else 0.0 for i in range(w * h)])
        client = Client({endpoint!r}, timeout=30)
        job = client.submit(image=mg.image_buffer(pixels, w, h, mg.NON_LINEAR),
                            mask=mg.guide_buffer(mask, w, h, "mask"), params=mg.request_params("test-echo", 2, "fast"))
        result = job.result(timeout=120)
        alpha = mg.output_bytes(result.buffers["alpha"], h, w, 1)
        rgba = mg.interleave_rgba(mg.output_bytes(result.buffers["foreground"], h, w, 3), alpha)
        assert type(result.alpha).__name__ == "Buffer"
        assert alpha == mask  # the echo engine returns the guide as alpha: bytes in, same bytes out
        print(len(rgba), result.info.get("engine"))
        client.close()
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=tree_env(),
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[0] == str(8 * 6 * 4 * 4)


def test_plugin_file_compiles_and_names_every_helper_it_uses():
    source = (PLUGIN_DIR / "mattebox.py").read_text()
    compile(source, "mattebox.py", "exec")
    import re

    used = set(re.findall(r"logic\.([a-zA-Z_]+)", source))
    missing = [name for name in used if not hasattr(mg, name)]
    assert not missing, f"mattebox.py calls helpers that mattebox_gimp lacks: {missing}"
    assert f'"{mg.PROCEDURE_NAME}"' in source
    for argument in mg.LAYER_INPUTS:  # each layer input is a procedure argument and shown in the dialog
        assert f'add_layer_argument(*text("{argument}")' in source
        assert argument in mg.DIALOG_ARGUMENTS
    for argument in mg.DIALOG_ARGUMENTS:  # the dialog builds a field for each
        assert f'"{argument}": ' in source


def test_plugin_folder_holds_only_what_the_installer_copies():
    names = sorted(p.name for p in Path(PLUGIN_DIR).iterdir() if p.name != "__pycache__")
    assert names == ["mattebox.py", "mattebox_gimp.py"]
