"""The Mattebox panel in the compositor's sidebar (N panel, tab "Mattebox")."""
from __future__ import annotations

import textwrap

import bpy

from . import blender_io, operators


def wrapped_label(layout, context, text: str, icon: str = "NONE") -> None:
    """``text`` as labels broken at words to the sidebar's width (Blender's labels do not wrap; about 7.5 px a
    character at UI scale 1)."""
    width = context.region.width if context.region is not None else 300
    chars = max(24, int(width / (7.5 * context.preferences.system.ui_scale)) - 4)
    column = layout.column(align=True)
    for number, line in enumerate(textwrap.wrap(text, chars, break_on_hyphens=False)):
        column.label(text=line, icon=icon if number == 0 else ("BLANK1" if icon != "NONE" else "NONE"))


class MATTEBOX_PT_matte(bpy.types.Panel):
    bl_label = "Mattebox Matte"
    bl_space_type = "NODE_EDITOR"
    bl_region_type = "UI"
    bl_category = "Mattebox"

    @classmethod
    def poll(cls, context):
        space = context.space_data
        return space is not None and getattr(space, "tree_type", "") == "CompositorNodeTree"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.mattebox
        status = context.window_manager.mattebox_status
        layout.use_property_split = True
        layout.prop(settings, "source")
        if settings.source == "IMAGE":
            layout.template_ID(settings, "image", open="image.open")
        elif settings.source == "CLIP":
            layout.template_ID(settings, "clip", open="clip.open")
        row = layout.row(heading="Second Frame")
        row.prop(settings, "use_second", text="")
        sub = row.row()
        sub.active = settings.use_second
        sub.prop(settings, "second_offset")
        layout.prop(settings, "mask")
        if settings.mask is not None:
            layout.prop(settings, "mask_channel")
        layout.prop(settings, "clean_plate")
        row = layout.row(align=True)
        row.prop(settings, "engine")
        row.operator("mattebox.check_server", text="", icon="FILE_REFRESH")
        layout.prop(settings, "quality")
        layout.prop(settings, "band_width")
        row = layout.row(heading="Frame Range")
        row.prop(settings, "use_range", text="")
        sub = row.row()
        sub.active = settings.use_range
        sub.prop(settings, "frames", text="")
        row = layout.row(heading="Shot")
        row.active = settings.use_range
        row.prop(settings, "use_shot", text="")
        sub = row.row()
        sub.active = settings.use_range and settings.use_shot
        sub.prop(settings, "key_frames", text="")
        layout.prop(settings, "output_dir")
        layout.prop(settings, "name")
        layout.use_property_split = False
        if blender_io.unsaved_output(settings):
            wrapped_label(layout, context, f"Unsaved .blend: results go to {blender_io.output_directory(settings)}",
                          icon="INFO")
        if status.text and operators.active_run() is None:
            wrapped_label(layout, context, status.text)  # how the last run ended
        if operators.active_run() is not None:
            layout.progress(factor=status.progress, type="BAR", text=status.text or "Mattebox")
            layout.operator("mattebox.cancel", icon="CANCEL")
        else:
            layout.operator("mattebox.matte", icon="NODE_COMPOSITING")


CLASSES = (MATTEBOX_PT_matte,)
