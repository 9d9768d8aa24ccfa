"""Runs inside the GIMP GUI (``gimp-3.0 -b``, python-fu-eval): build the sample image from the raw pixels the
host wrote, put the loose lasso selection on it and show it in a display, as if a person had opened a photo and
lassoed the subject roughly. Reads ``sample.json`` and ``sample.raw`` from ``$MATTEBOX_SAMPLE_DIR``."""
import json
import os

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp  # noqa: E402

folder = os.environ["MATTEBOX_SAMPLE_DIR"]
spec = json.load(open(os.path.join(folder, "sample.json")))
width, height = spec["width"], spec["height"]
image = Gimp.Image.new_with_precision(width, height, Gimp.ImageBaseType.RGB, Gimp.Precision.U8_NON_LINEAR)
layer = Gimp.Layer.new(image, spec["layer"], width, height, Gimp.ImageType.RGB_IMAGE, 100.0,
                       Gimp.LayerMode.NORMAL)
image.insert_layer(layer, None, 0)
buffer = layer.get_buffer()
buffer.set(Gegl.Rectangle.new(0, 0, width, height), "R'G'B' float",
           open(os.path.join(folder, "sample.raw"), "rb").read())
buffer.flush()
image.select_polygon(Gimp.ChannelOps.REPLACE, [float(v) for point in spec["lasso"] for v in point])
image.clean_all()
Gimp.Display.new(image)
Gimp.displays_flush()
