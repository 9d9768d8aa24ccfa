#!/usr/bin/env python3
"""Mattebox for GIMP 3: Filters > Matting > Mattebox ("plug-in-mattebox").

Sends the active layer (plus an optional parallax partner layer, an optional clean-plate layer and a guide from the
selection, the layer's mask or a channel) to a mattebox server and adds, in one undo group, a layer group named
after the source (a rerun replaces it): the decontaminated foreground (straight colour, alpha = matte) over a
hidden copy of the source whose layer mask holds the matte's alpha; the input layers are hidden so the cut-out
shows, and a message says which engine ran and how long it took. Pixels are read and written through GEGL as
float in the image's own linearity (``RGB float`` for linear precisions, ``R'G'B' float`` otherwise, sent as
``linear``/``srgb``), so float images round-trip exactly.

Runs interactively (a procedure dialog, then a progress window with the one Cancel) and non-interactively (batch mode,
other plug-ins and scripts pass arguments; errors come back as the procedure's error). All GIMP-free logic lives in
``mattebox_gimp.py`` beside this file; matting itself is the server's job (``mattebox serve``).
"""
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
# The installer puts the client package beside this file and, when GIMP's Python lacks them, pyzmq and msgpack
# in vendor/. Both come first so a stale system copy cannot shadow them.
for _path in (HERE, os.path.join(HERE, "vendor")):
    if os.path.isdir(_path) and _path not in sys.path:
        sys.path.insert(0, _path)

import gi  # noqa: E402

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, GLib, GObject  # noqa: E402

import mattebox_gimp as logic  # noqa: E402  (standard library only: safe before the client is importable)
from mattebox_gimp import PROCEDURE_NAME  # noqa: E402

#: seconds between polls of the server while a job runs (also how often the UI is refreshed)
POLL_SECONDS = 0.05


def _client_modules():
    """The client, its config and launcher; ImportError names what is missing (pyzmq/msgpack)."""
    from mattebox_plugin import config as client_config
    from mattebox_plugin import client, launcher

    return client, client_config, launcher


def _choice(entries):
    choice = Gimp.Choice.new()
    for index, (nick, (label, help_text)) in enumerate(entries.items()):
        choice.add(nick, index, label, help_text)
    return choice


def _error(procedure, message, status=Gimp.PDBStatusType.EXECUTION_ERROR):
    """Return the error to the caller. GIMP's core shows a returned error through its message system (a dialog or
    the error console; gimp-console prints it), so it is not also sent with Gimp.message, which would show it
    twice."""
    return procedure.new_return_values(status, GLib.Error(message))


class _ProgressWindow:
    """A small modal window with a progress bar and Cancel, for interactive runs (GIMP's own status-bar cancel
    kills a plug-in outright, which would leave the server job running)."""

    def __init__(self, title):
        gi.require_version("Gtk", "3.0")
        from gi.repository import Gtk

        self.Gtk = Gtk
        self.cancelled = False
        self.window = Gtk.Dialog(title=title, modal=True)
        self.window.add_button("_Cancel", Gtk.ResponseType.CANCEL)
        self.window.connect("response", self._on_response)
        self.window.connect("delete-event", self._on_delete)
        self.bar = Gtk.ProgressBar(show_text=True)
        self.bar.set_size_request(360, -1)
        box = self.window.get_content_area()
        box.set_border_width(12)
        box.pack_start(self.bar, True, True, 6)
        self.window.show_all()

    def _on_response(self, _dialog, _response):
        self.cancelled = True

    def _on_delete(self, *_args):
        self.cancelled = True
        return True

    def update(self, text, fraction):
        self.bar.set_text(text)
        if fraction is None:
            self.bar.pulse()
        else:
            self.bar.set_fraction(fraction)

    def pump(self):
        while self.Gtk.events_pending():
            self.Gtk.main_iteration_do(False)

    def close(self):
        self.window.destroy()
        self.pump()


def _wrapped_label(Gtk, text, width_chars):
    """A selectable label wrapped at ``width_chars`` (Pango breaks a word longer than that, such as a path in a
    log line, so the dialog keeps its width; tests/test_gimp_host.py checks it). It also asks for that width:
    GTK sizes a wrapped label's height for its minimum width, which would make the dialog far too tall."""
    return Gtk.Label(label=text, xalign=0.0, wrap=True, width_chars=width_chars, max_width_chars=width_chars,
                     selectable=True)


class _Field:
    """One dialog field: ``widget`` (what the grid holds), ``focus`` (what its label's mnemonic focuses),
    ``read()`` -> the config value on OK, ``write(value)`` shows a config value (GIMP's Reset and Load Saved
    Settings change the config while the dialog is open)."""

    def __init__(self, widget, read, write, focus=None):
        self.widget, self.read, self.write, self.focus = widget, read, write, focus or widget


def _dialog_fields(Gtk, config, image, layer, hello):
    """The fields of ``logic.DIALOG_ARGUMENTS`` by argument, showing ``config``'s values. Layer and channel
    pickers say "(none)"; engine entries are short, their detail a tooltip and a wrapped line under the list."""
    layers = list(_plain_layers(image.get_layers()))
    items = {item.get_id(): item for item in layers + list(image.get_channels())}

    def combo(entries):
        box = Gtk.ComboBoxText()
        for key, text in entries:
            box.append(key, text)
        box.set_active(0)
        return box

    def picker(candidates, exclude=None):
        box = combo(logic.picker_choices([(item.get_id(), item.get_name()) for item in candidates], exclude))
        return _Field(box, lambda: items.get(int(box.get_active_id())) if box.get_active_id() else None,
                      lambda item: box.set_active_id(str(item.get_id()) if item else ""))

    def choice(table):
        box = combo([(nick, label) for nick, (label, _help) in table.items()])
        return _Field(box, box.get_active_id, box.set_active_id)

    band = Gtk.SpinButton.new_with_range(0, 2000, 1)
    engines = logic.engine_choices(hello)
    engine = combo([(entry.name, entry.label) for entry in engines])
    detail = _wrapped_label(Gtk, "", 50)

    def show_engine(name):
        if not engine.set_active_id(name or "auto"):  # a name the server does not offer (a saved setting)
            engines.append(logic.EngineChoice(name, name, "not offered by the server", False))
            engine.append(name, name)
            engine.set_active_id(name)

    def show_detail(*_args):
        text = {entry.name: entry.detail for entry in engines}.get(engine.get_active_id(), "")
        detail.set_text(text)
        engine.set_tooltip_text(text or logic.ARGUMENTS["engine"][1])

    engine.connect("changed", show_detail)
    engine_box = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=4)
    engine_box.pack_start(engine, False, False, 0)
    engine_box.pack_start(detail, False, False, 0)
    fields = {
        "second-layer": picker(layers, layer.get_id()),
        "clean-plate-layer": picker(layers, layer.get_id()),
        "mask-source": choice(logic.MASK_SOURCES),
        "mask-channel": picker(image.get_channels()),
        "guide-kind": choice(logic.GUIDE_KINDS),
        "band-width": _Field(band, band.get_value_as_int, band.set_value),
        "quality": choice(logic.QUALITIES),
        "engine": _Field(engine_box, lambda: engine.get_active_id() or "auto", show_engine, focus=engine),
    }
    for argument, field in fields.items():
        field.write(config.get_property(argument))
    show_detail()
    return fields


def _run_dialog(procedure, config, image, layer, hello, endpoint_note):
    """The procedure dialog (GIMP's, for its OK/Cancel/Reset/Help and saved settings) with the fields laid out in
    one grid, labels with colons on the left; the note says why the server is not reachable. Writes the fields
    into ``config`` on OK; False on Cancel."""
    gi.require_version("GimpUi", "3.0")
    gi.require_version("Gtk", "3.0")
    from gi.repository import GimpUi, Gtk

    GimpUi.init(PROCEDURE_NAME)
    dialog = GimpUi.ProcedureDialog(procedure=procedure, config=config, title="Mattebox")
    grid = Gtk.Grid(row_spacing=6, column_spacing=12, border_width=12)
    fields = _dialog_fields(Gtk, config, image, layer, hello)
    handlers = []
    for row, argument in enumerate(logic.DIALOG_ARGUMENTS):
        field = fields[argument]
        label_text, help_text = logic.ARGUMENTS[argument]
        label = Gtk.Label.new_with_mnemonic(label_text)
        label.set_xalign(0.0)
        label.set_yalign(0.5 if field.widget is field.focus else 0.0)
        label.set_mnemonic_widget(field.focus)
        if not field.focus.get_tooltip_text():
            field.focus.set_tooltip_text(help_text)
        field.widget.set_hexpand(True)
        grid.attach(label, 0, row, 1, 1)
        grid.attach(field.widget, 1, row, 1, 1)
        handlers.append(config.connect(f"notify::{argument}", lambda cfg, _spec, name=argument, shown=field:
                                       shown.write(cfg.get_property(name))))
    if endpoint_note:
        note = _wrapped_label(Gtk, endpoint_note, 90)
        grid.attach(note, 0, len(fields), 2, 1)
    dialog.get_content_area().pack_start(grid, True, True, 0)
    grid.show_all()
    accepted = dialog.run()
    for handler in handlers:
        config.disconnect(handler)
    if accepted:
        for argument, field in fields.items():
            config.set_property(argument, field.read())
    dialog.destroy()
    return accepted


def _plain_layers(items):
    """Every layer that holds pixels, inside groups too (a group cannot be a partner or a plate)."""
    for item in items:
        if item.is_group():
            yield from _plain_layers(item.get_children())
        else:
            yield item


def _read(drawable, rect, fmt, abyss):
    return drawable.get_buffer().get(rect, 1.0, fmt, abyss)


def _source_layer(drawables):
    if len(drawables) != 1:
        raise ValueError(f"select exactly one layer to matte ({len(drawables)} drawables are selected)")
    drawable = drawables[0]
    if isinstance(drawable, Gimp.LayerMask):
        return Gimp.Layer.from_mask(drawable)
    if not isinstance(drawable, Gimp.Layer):
        raise ValueError("the selected drawable is a channel, not a layer: select the layer to matte")
    return drawable


def _gather_inputs(image, layer, config, formats):
    """Read the source, the optional second layer and clean plate, and the guide as wire Buffers (all over the
    source's area)."""
    width, height = layer.get_width(), layer.get_height()
    _, x, y = layer.get_offsets()
    here = Gegl.Rectangle.new(0, 0, width, height)
    inputs = {"image": logic.image_buffer(_read(layer, here, formats.rgb, Gegl.AbyssPolicy.CLAMP),
                                          width, height, formats)}
    for argument in logic.LAYER_INPUTS:  # the second frame and the clean plate, each in the source's linearity
        other = config.get_property(argument)
        if other is None:
            continue
        name = logic.check_layer_input(argument, other.get_id(), layer.get_id())
        _, ox, oy = other.get_offsets()
        rect = Gegl.Rectangle.new(*logic.region_in((x, y), (width, height), (ox, oy)))
        inputs[name] = logic.image_buffer(_read(other, rect, formats.rgb, Gegl.AbyssPolicy.CLAMP),
                                          width, height, formats, name=name)
    channel = config.get_property("mask-channel")
    source = logic.choose_mask_source(config.get_property("mask-source"),
                                      has_selection=not Gimp.Selection.is_empty(image),
                                      has_layer_mask=layer.get_mask() is not None,
                                      has_channel=channel is not None)
    guide = None
    if source == "layer-mask":
        guide = _read(layer.get_mask(), here, logic.GUIDE_FORMAT, Gegl.AbyssPolicy.NONE)
    elif source in ("selection", "channel"):  # image-sized: read over the layer's area
        drawable = image.get_selection() if source == "selection" else channel
        rect = Gegl.Rectangle.new(*logic.region_in((x, y), (width, height), (0, 0)))
        guide = _read(drawable, rect, logic.GUIDE_FORMAT, Gegl.AbyssPolicy.NONE)
    if guide is not None:
        kind = config.get_property("guide-kind")
        inputs[kind] = logic.guide_buffer(guide, width, height, kind)
    return inputs, source


def _wait(job, time_limit, window):
    """Poll the job, showing progress and cancelling on request or past the limit. Interactive runs show it in the
    progress window alone (GIMP's status bar would add a second Cancel, which kills the plug-in and leaves the
    server job running); batch runs use GIMP's progress (``Gimp.progress_*``).

    Returns the Result, or None when the job was cancelled (the server confirmed or the result was discarded).
    """
    from mattebox_plugin.client import JobFailed
    from mattebox_plugin.protocol import ProgressEvent

    started = time.monotonic()
    cancel_sent = False
    if window is None:
        Gimp.progress_init("Mattebox: matting")
    try:
        while not job.done:
            for event in job.poll(POLL_SECONDS):
                progress = ProgressEvent.from_header(event)
                fraction, text = progress.fraction, f"Mattebox: {progress.text()}"
                if window is not None:
                    window.update(text, fraction)
                    continue
                Gimp.progress_set_text(text)
                if fraction is None:
                    Gimp.progress_pulse()
                else:
                    Gimp.progress_update(fraction)
            if window is not None:
                window.pump()
            over_limit = time_limit > 0 and time.monotonic() - started > time_limit
            if not cancel_sent and (over_limit or (window is not None and window.cancelled)):
                job.cancel()
                cancel_sent = True
                if window is not None:
                    window.update("Mattebox: cancelling", None)
                else:
                    Gimp.progress_set_text("Mattebox: cancelling")
    finally:
        if window is None:
            Gimp.progress_end()
    try:
        result = job.result()
    except JobFailed as exc:
        if exc.code == "cancelled":
            return None
        raise
    return None if cancel_sent else result


def _write_outputs(image, layer, result, formats, inputs):
    """Put the run's layers in a layer group named after the source, at the top of the source's level: the
    decontaminated foreground (alpha = matte) and, hidden under it, a copy of the source whose layer mask is the
    matte. A rerun on the same layer replaces the previous group; the source and the other input layers are
    hidden so the cut-out shows on the canvas. One undo group; nothing is left behind when a step fails."""
    width, height = layer.get_width(), layer.get_height()
    _, x, y = layer.get_offsets()
    alpha = logic.output_bytes(result.buffers["alpha"], height, width, 1)
    foreground = logic.output_bytes(result.buffers["foreground"], height, width, 3)
    rgba = logic.interleave_rgba(foreground, alpha)
    matte_name, foreground_name = logic.layer_names(layer.get_name())
    group_name = logic.run_group_name(layer.get_name())
    rect = Gegl.Rectangle.new(0, 0, width, height)
    parent = layer.get_parent()
    siblings = parent.get_children() if parent is not None else image.get_layers()
    image.undo_group_start()
    group = None
    try:
        for old in siblings:  # the previous run on this layer
            if old.is_group() and old.get_name() == group_name:
                image.remove_layer(old)
        group = Gimp.GroupLayer.new(image, group_name)
        image.insert_layer(group, parent, 0)

        matte = layer.copy()
        matte.set_name(matte_name)
        image.insert_layer(matte, group, 0)
        matte.set_visible(False)  # the foreground above shows the same alpha with decontaminated colour
        if matte.get_mask() is not None:
            matte.remove_mask(Gimp.MaskApplyMode.DISCARD)
        if not matte.has_alpha():
            matte.add_alpha()
        mask = matte.create_mask(Gimp.AddMaskType.WHITE)
        matte.add_mask(mask)
        buffer = mask.get_buffer()
        buffer.set(rect, logic.GUIDE_FORMAT, alpha)
        buffer.flush()
        mask.update(0, 0, width, height)

        kind = Gimp.ImageType.GRAYA_IMAGE if image.get_base_type() == Gimp.ImageBaseType.GRAY \
            else Gimp.ImageType.RGBA_IMAGE
        cutout = Gimp.Layer.new(image, foreground_name, width, height, kind, 100.0, Gimp.LayerMode.NORMAL)
        image.insert_layer(cutout, group, 0)
        cutout.set_offsets(x, y)
        buffer = cutout.get_buffer()
        buffer.set(rect, formats.rgba, rgba)
        buffer.flush()
        cutout.update(0, 0, width, height)
        for shown in [layer] + inputs:
            shown.set_visible(False)
    except Exception:
        if group is not None:
            image.remove_layer(group)
        raise
    finally:
        image.undo_group_end()
    Gimp.displays_flush()
    return matte, cutout


def run(procedure, run_mode, image, drawables, config, run_data):
    try:
        client_module, client_config, launcher = _client_modules()
    except ImportError as exc:
        return _error(procedure, f"Mattebox cannot load its client ({exc}); reinstall it with "
                                 f"`mattebox install gimp`")
    endpoint = "?"
    client = None
    try:
        logic.check_native_endian()
        logic.check_base_type(image.get_base_type().value_name)
        formats = logic.formats_for_precision(image.get_precision().value_name)
        layer = _source_layer(drawables)
        cfg = client_config.load()
        endpoint = cfg["endpoint"]

        if run_mode == Gimp.RunMode.INTERACTIVE:
            hello, note = None, ""
            try:
                endpoint = launcher.ensure_server(cfg)
                probe = client_module.Client(**dict(client_config.client_kwargs(cfg), endpoint=endpoint,
                                                    timeout=3.0))
                try:
                    hello = probe.hello()
                finally:
                    probe.close()
            except (client_module.ServerUnavailable, OSError) as exc:
                from mattebox_plugin.errors import describe_error

                note = f"The mattebox server is not reachable: {describe_error(exc, endpoint)}; only 'auto' is listed."
            if not _run_dialog(procedure, config, image, layer, hello, note):
                return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())

        params = logic.request_params(config.get_property("engine"), config.get_property("band-width"),
                                      config.get_property("quality"))
        inputs, _guide = _gather_inputs(image, layer, config, formats)
        endpoint = launcher.ensure_server(cfg)  # ServerNotStarted says why a started server did not answer
        started = time.monotonic()
        client = client_module.Client(**dict(client_config.client_kwargs(cfg), endpoint=endpoint))
        job = client.submit(params=params, **inputs)
        window = _ProgressWindow("Mattebox: matting") if run_mode == Gimp.RunMode.INTERACTIVE else None
        try:
            result = _wait(job, config.get_property("time-limit"), window)
        finally:
            if window is not None:
                window.close()
        if result is None:  # the user pressed Cancel or a batch time-limit ran out
            return _error(procedure, "Mattebox: cancelled; the image is unchanged", Gimp.PDBStatusType.CANCEL)
        used = [config.get_property(argument) for argument in logic.LAYER_INPUTS]
        matte, cutout = _write_outputs(image, layer, result, formats, [item for item in used if item is not None])
        # GIMP's message system shows it (the status bar or a message window; gimp-console prints it)
        Gimp.message(logic.success_message(layer.get_name(), result.info, time.monotonic() - started,
                                           client_module.result_notes([result.info])))
    except Exception as exc:  # every failure becomes one clear message, never a traceback dialog
        expected = (ValueError, client_module.ServerUnavailable, client_module.ProtocolError)
        if not isinstance(exc, expected):
            traceback.print_exc()  # an unexpected error: keep the details on GIMP's console for a bug report
        from mattebox_plugin.errors import error_line

        return _error(procedure, error_line(exc, endpoint))
    finally:
        if client is not None:
            client.close()
    return Gimp.ValueArray.new_from_values([
        GObject.Value(Gimp.PDBStatusType, Gimp.PDBStatusType.SUCCESS),
        GObject.Value(Gimp.Layer, matte),
        GObject.Value(Gimp.Layer, cutout),
    ])


class Mattebox(Gimp.PlugIn):
    def do_query_procedures(self):
        return [PROCEDURE_NAME]

    def do_set_i18n(self, name):
        return False

    def do_create_procedure(self, name):
        Gegl.init(None)
        procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, run, None)
        procedure.set_image_types("RGB*, GRAY*")
        procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
        procedure.set_menu_label(logic.MENU_LABEL)
        procedure.add_menu_path(logic.MENU_PATH)
        procedure.set_documentation(
            "Pull a matte with a mattebox server",
            "Adds a layer group named after the layer (a rerun replaces it) holding a decontaminated foreground "
            "layer and a hidden copy of the layer whose layer mask holds the matte's alpha, in one undo group; "
            "the input layers are hidden so the cut-out shows. The guide comes from the selection, the layer's "
            "mask or a channel; a second layer (another frame with slight camera motion) helps the parallax "
            "engines; a clean-plate layer (the shot without the subject) gives the server the background, and a "
            "guide when there is none. Needs a running `mattebox serve` (or an installed server_command).",
            name)
        procedure.set_attribution("mattebox", "mattebox", "2026")
        rw = GObject.ParamFlags.READWRITE

        def text(argument):  # the label without its colon (GIMP adds none) and the help, both from the logic
            label, help_text = logic.ARGUMENTS[argument]
            return argument, label.rstrip(":"), help_text

        procedure.add_layer_argument(*text("second-layer"), True, rw)
        procedure.add_layer_argument(*text("clean-plate-layer"), True, rw)
        procedure.add_choice_argument(*text("mask-source"), _choice(logic.MASK_SOURCES), "auto", rw)
        procedure.add_channel_argument(*text("mask-channel"), True, rw)
        procedure.add_choice_argument(*text("guide-kind"), _choice(logic.GUIDE_KINDS), "mask", rw)
        procedure.add_int_argument(*text("band-width"), logic.BAND_WIDTH_MIN, logic.BAND_WIDTH_MAX, 0, rw)
        procedure.add_choice_argument(*text("quality"), _choice(logic.QUALITIES), logic.DEFAULT_QUALITY, rw)
        procedure.add_string_argument(*text("engine"), "auto", rw)
        procedure.add_double_argument(*text("time-limit"), 0.0, 86400.0, 0.0, rw)
        procedure.add_layer_return_value("matte-layer", "Matte layer", "Copy of the source with alpha as its "
                                         "layer mask (hidden, in the run's layer group)", False, rw)
        procedure.add_layer_return_value("foreground-layer", "Foreground layer", "Decontaminated foreground, "
                                         "alpha = matte", False, rw)
        return procedure


if __name__ == "__main__":
    Gimp.main(Mattebox.__gtype__, sys.argv)
