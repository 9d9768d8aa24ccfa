"""The Mattebox gizmo's knob panel, drawn from the node definition: Nuke cannot run here, so
``nodes/nuke/mattebox_nuke/node.py``'s ``build()`` runs against the fake ``nuke`` (tests/fakes/nuke) and every
knob it adds is drawn with Pillow the way Nuke's properties panel lays it out: tabs, labels right-aligned before
the widget, each knob's type as its widget (text field, file field, menu, number and slider, checkbox, button,
static text) with its value as the fake records it. Hidden knobs (INVISIBLE) are left out, as Nuke does, and so
are the knobs every node has (name, label, disable...), which Nuke shows on its own Node tab.

``make screenshots`` (tests/hosts/screenshots.py) calls :func:`take`; docs/hosts/nuke.md shows the picture.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "nuke-knobs.png"

# Nuke's dark panel palette
BACKGROUND, FIELD, BUTTON, TEXT, DIM, ACCENT, EDGE = ((50, 50, 50), (36, 36, 36), (78, 78, 78), (220, 220, 220),
                                                       (150, 150, 150), (247, 147, 30), (24, 24, 24))
WIDTH, ROW, LABEL_COLUMN, PAD = 580, 30, 200, 12


def unavailable_reason() -> Optional[str]:
    try:
        import PIL  # noqa: F401
    except ImportError:
        return "Pillow is not installed"
    return None


def knob_rows() -> Tuple[str, List[Tuple[str, str, str, object, List[str]]]]:
    """Build the node in a fresh fake session; returns (node name, [(knob class, name, label, value, items)])
    for the visible knobs, in the order build() adds them."""
    for path in (str(ROOT / "nodes" / "nuke"), str(ROOT / "tests" / "fakes")):
        if path not in sys.path:
            sys.path.insert(0, path)
    import nuke
    from mattebox_nuke import node

    saved = {key: os.environ.get(key) for key in ("MATTEBOX_CONFIG", "MATTEBOX_ENDPOINT")}
    with tempfile.TemporaryDirectory() as folder:
        os.environ["MATTEBOX_CONFIG"] = os.path.join(folder, "client.json")  # the default endpoint, no user config
        os.environ.pop("MATTEBOX_ENDPOINT", None)
        try:
            nuke.fake.reset(gui=True)
            group = nuke.nodes.Group(name="Mattebox1")
            own = set(group.knobs())  # every node's knobs (name, label, ...): Nuke shows them on its Node tab
            node.build(group)
            rows = []
            for knob in group.allKnobs():
                if knob.name() in own or knob.getFlag(nuke.INVISIBLE) or not knob.visible():
                    continue
                items = knob.values() if hasattr(knob, "values") else []
                rows.append((type(knob).__name__, knob.name(), knob.label(), knob.value(), items))
            name = group.name()
        finally:
            nuke.fake.reset(gui=False)
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    return name, rows


def draw(name: str, rows):
    """The properties panel of node ``name`` with ``rows`` (from :func:`knob_rows`)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(13)
    bold = ImageFont.load_default(15)
    tabs = [label for kind, _name, label, _value, _items in rows if kind == "Tab_Knob"]
    body = [row for row in rows if row[0] != "Tab_Knob"]
    height = 2 * PAD + 34 + 30 + ROW * len(body) + 16
    image = Image.new("RGB", (WIDTH, height), BACKGROUND)
    pen = ImageDraw.Draw(image)
    pen.rectangle([0, 0, WIDTH, 34], fill=(64, 64, 64))
    pen.text((PAD, 9), name, font=bold, fill=TEXT)
    x = PAD
    for index, tab in enumerate(tabs + ["Node"]):  # Nuke adds its own "Node" tab after the node's tabs
        w = int(pen.textlength(tab, font=font)) + 24
        pen.rectangle([x, 40, x + w, 62], fill=BACKGROUND if index == 0 else (40, 40, 40), outline=EDGE)
        pen.text((x + 12, 44), tab, font=font, fill=TEXT if index == 0 else DIM)
        x += w + 2
    y = 40 + 30
    right = WIDTH - PAD
    for kind, _knob, label, value, items in body:
        middle = y + ROW // 2
        field = [LABEL_COLUMN + 8, y + 4, right, y + ROW - 4]
        if kind not in ("Boolean_Knob", "PyScript_Knob"):  # those carry their label themselves
            pen.text((LABEL_COLUMN, middle), label, font=font, fill=TEXT, anchor="rm")
        if kind in ("String_Knob", "File_Knob"):
            if kind == "File_Knob":
                field[2] = right - 30
                pen.rectangle([right - 26, y + 4, right, y + ROW - 4], fill=BUTTON, outline=EDGE)
                pen.text((right - 13, middle), "...", font=font, fill=TEXT, anchor="mm")
            pen.rectangle(field, fill=FIELD, outline=EDGE)
            pen.text((field[0] + 6, middle), str(value), font=font, fill=TEXT, anchor="lm")
        elif kind == "Enumeration_Knob":
            field[2] = min(right, field[0] + 12 + max(int(pen.textlength(i, font=font)) for i in items or [""]) + 30)
            pen.rectangle(field, fill=BUTTON, outline=EDGE)
            pen.text((field[0] + 6, middle), str(value), font=font, fill=TEXT, anchor="lm")
            pen.polygon([(field[2] - 16, middle - 3), (field[2] - 8, middle - 3), (field[2] - 12, middle + 3)],
                        fill=TEXT)
        elif kind in ("Int_Knob", "Double_Knob"):
            box = [field[0], y + 4, field[0] + 70, y + ROW - 4]
            pen.rectangle(box, fill=FIELD, outline=EDGE)
            text = f"{value:g}" if isinstance(value, float) else str(value)
            pen.text((box[2] - 6, middle), text, font=font, fill=TEXT, anchor="rm")
            if kind == "Double_Knob":  # Nuke draws a slider beside a floating-point knob
                pen.line([box[2] + 12, middle, right, middle], fill=DIM, width=2)
                pen.rectangle([box[2] + 10, middle - 6, box[2] + 16, middle + 6], fill=ACCENT)
        elif kind == "Boolean_Knob":
            box = [LABEL_COLUMN + 8, middle - 7, LABEL_COLUMN + 22, middle + 7]
            pen.rectangle(box, fill=FIELD, outline=EDGE)
            if value:
                pen.line([box[0] + 3, middle, box[0] + 6, box[3] - 3, box[2] - 3, box[1] + 3], fill=ACCENT, width=2)
            pen.text((box[2] + 8, middle), label, font=font, fill=TEXT, anchor="lm")
        elif kind == "PyScript_Knob":
            w = int(pen.textlength(label, font=font)) + 28
            pen.rectangle([field[0], y + 3, field[0] + w, y + ROW - 3], fill=BUTTON, outline=EDGE)
            pen.text((field[0] + w // 2, middle), label, font=font, fill=TEXT, anchor="mm")
        else:  # Text_Knob and anything else: the value as static text
            pen.text((field[0], middle), str(value), font=font, fill=DIM, anchor="lm")
        y += ROW
    pen.text((PAD, height - PAD - 4), "drawn from mattebox_nuke.node.build() with the fake nuke module",
             font=ImageFont.load_default(11), fill=DIM, anchor="lm")
    return image


def take(images: Path) -> list:
    """Write docs/images/nuke-knobs.png; returns the paths written."""
    path = images / IMAGE
    draw(*knob_rows()).save(path, optimize=True)
    return [path]
