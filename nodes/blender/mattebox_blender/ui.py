"""The Mattebox panel in the compositor's sidebar (N panel, tab "Mattebox")."""
from __future__ import annotations

import bpy

from . import operators


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
        layout.prop(settings, "engine")
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
        if operators.active_run() is not None:
            layout.progress(factor=status.progress, type="BAR", text=status.text or "Mattebox")
            layout.operator("mattebox.cancel", icon="CANCEL")
        else:
            layout.operator("mattebox.matte", icon="NODE_COMPOSITING")


CLASSES = (MATTEBOX_PT_matte,)
