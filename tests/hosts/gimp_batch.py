"""Runs inside gimp-console (python-fu-eval): build an image from a spec, call plug-in-mattebox, dump what came out.

Driven by ``spec.json`` in the folder given as ``MATTEBOX_BATCH_DIR``; writes ``out.json`` and the new layers'
pixels (``matte.raw``: the matte layer's mask as ``Y float``; ``foreground.raw``: the foreground layer in the
spec's RGBA format) there. Kept to what a batch user would write: look the procedure up, fill its config, run it.
"""
import json
import os
import time
import traceback

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp  # noqa: E402

folder = os.environ["MATTEBOX_BATCH_DIR"]
spec = json.load(open(os.path.join(folder, "spec.json")))
out = {}
try:
    width, height = spec["width"], spec["height"]
    base = getattr(Gimp.ImageBaseType, spec["base"])
    image = Gimp.Image.new_with_precision(width, height, base, getattr(Gimp.Precision, spec["precision"]))
    layer_type = {"RGB": Gimp.ImageType.RGB_IMAGE, "GRAY": Gimp.ImageType.GRAY_IMAGE,
                  "INDEXED": Gimp.ImageType.INDEXED_IMAGE}[spec["base"]]

    def raw(name):
        return open(os.path.join(folder, name), "rb").read()

    def fill(drawable, fmt, name):
        buffer = drawable.get_buffer()
        buffer.set(Gegl.Rectangle.new(0, 0, drawable.get_width(), drawable.get_height()), fmt, raw(name))
        buffer.flush()

    objects = {}
    # extra layers below the source: the parallax partner and the clean plate (the shot without the subject)
    for key, name, raw_name in (("second_rect", "second", "second.raw"),
                                ("clean_plate_rect", "clean plate", "clean_plate.raw")):
        if spec.get(key):
            x, y, w, h = spec[key]
            extra = Gimp.Layer.new(image, name, w, h, layer_type, 100.0, Gimp.LayerMode.NORMAL)
            image.insert_layer(extra, None, 0)
            extra.set_offsets(x, y)
            fill(extra, spec["image_format"], raw_name)
            objects[name] = extra
    x, y, w, h = spec.get("layer_rect") or [0, 0, width, height]
    layer = Gimp.Layer.new(image, "plate", w, h, layer_type, 100.0, Gimp.LayerMode.NORMAL)
    image.insert_layer(layer, None, 0)
    layer.set_offsets(x, y)
    objects["plate"] = layer  # the source itself, for tests of a layer argument that names it
    rect = Gegl.Rectangle.new(0, 0, w, h)
    if spec.get("image_format"):
        fill(layer, spec["image_format"], "image.raw")
    if spec.get("layer_mask"):
        mask = layer.create_mask(Gimp.AddMaskType.WHITE)
        layer.add_mask(mask)
        fill(mask, "Y float", "layer_mask.raw")
    if spec.get("channel"):
        channel = Gimp.Channel.new(image, "guide", width, height, 50.0, Gegl.Color.new("red"))
        image.insert_channel(channel, None, 0)
        fill(channel, "Y float", "channel.raw")
        objects["channel"] = channel
    if spec.get("select_rectangle"):
        image.select_rectangle(Gimp.ChannelOps.REPLACE, *spec["select_rectangle"])

    procedure = Gimp.get_pdb().lookup_procedure("plug-in-mattebox")
    out["registered"] = procedure is not None
    out["menu_paths"] = list(procedure.get_menu_paths())
    out["menu_label"] = procedure.get_menu_label()
    config = procedure.create_config()
    config.set_property("run-mode", getattr(Gimp.RunMode, spec.get("run_mode", "NONINTERACTIVE")))
    config.set_property("image", image)
    config.set_core_object_array("drawables", [layer])
    for name, value in spec.get("args", {}).items():
        config.set_property(name, value)
    for name, key in spec.get("object_args", {}).items():
        config.set_property(name, objects[key])
    if spec.get("select_polygon"):  # a loose lasso: [[x, y], ...]
        image.select_polygon(Gimp.ChannelOps.REPLACE, [float(v) for point in spec["select_polygon"] for v in point])
    out["all_seconds"] = []
    values = None
    for _ in range(spec.get("repeat", 1)):  # benchmarks repeat the call; a rerun replaces the earlier run's group
        started = time.monotonic()
        values = procedure.run(config)
        out["all_seconds"].append(time.monotonic() - started)
        if values.index(0) != Gimp.PDBStatusType.SUCCESS:
            break
    out["seconds"] = out["all_seconds"][0]
    status = values.index(0)
    out["status"] = status.value_nick
    if status == Gimp.PDBStatusType.SUCCESS:
        matte, cutout = values.index(1), values.index(2)
        out["matte_name"], out["foreground_name"] = matte.get_name(), cutout.get_name()
        out["matte_has_mask"] = matte.get_mask() is not None
        out["foreground_offsets"] = list(cutout.get_offsets()[1:])
        out["visible"] = {item.get_name(): item.get_visible() for item in (matte, cutout, layer)}
        with open(os.path.join(folder, "matte.raw"), "wb") as fh:
            fh.write(matte.get_mask().get_buffer().get(rect, 1.0, "Y float", Gegl.AbyssPolicy.CLAMP))
        with open(os.path.join(folder, "foreground.raw"), "wb") as fh:
            fh.write(cutout.get_buffer().get(rect, 1.0, spec["result_format"], Gegl.AbyssPolicy.CLAMP))
    else:
        out["error"] = values.index(1) if values.length() > 1 else None


    def names(items, prefix=""):  # the layer tree as paths: "group/child"
        for item in items:
            yield prefix + item.get_name()
            if item.is_group():
                yield from names(item.get_children(), prefix + item.get_name() + "/")

    out["layers"] = list(names(image.get_layers()))
except Exception:
    out["exception"] = traceback.format_exc()
with open(os.path.join(folder, "out.json"), "w") as fh:
    json.dump(out, fh, indent=1)
