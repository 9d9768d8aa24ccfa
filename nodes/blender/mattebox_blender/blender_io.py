"""Pixels in and out of Blender, and the compositor node group that exposes the results.

Inputs are read with ``Image.pixels.foreach_get`` as float32 (rows bottom-up, flipped by :mod:`.core`) and made
scene-linear; results are written as 32-bit float OpenEXR files (one per output and frame, Blender reads a
numbered run of them as an image sequence) and loaded into Image datablocks that a compositor node group
"Mattebox <name>" exposes as Alpha, Foreground and Trimap sockets. Blender 5 keeps the scene's compositor in
``scene.compositing_node_group``; Blender 4.2–4.5 in ``scene.node_tree`` behind ``scene.use_nodes``.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from typing import Dict, List, Optional

import bpy
import numpy as np

from . import core

RENDER_RESULT = "Render Result"


# ------------------------------------------------------------------------------------------ reading
def image_rgba(image: "bpy.types.Image", data: bool = False) -> np.ndarray:
    """An Image's pixels as H×W×4 float32, rows top-down; scene-linear unless ``data`` (masks)."""
    width, height = image.size
    if width == 0 or height == 0:
        raise ValueError(f"image {image.name!r} has no pixels (missing file {image.filepath!r}?)")
    channels = image.channels
    flat = np.empty(width * height * channels, np.float32)
    image.pixels.foreach_get(flat)
    pixels = core.from_blender_pixels(flat, width, height, channels)
    if channels != 4:
        rgba = np.ones((height, width, 4), np.float32)
        rgba[:, :, :min(channels, 3)] = pixels[:, :, :3] if channels >= 3 else pixels[:, :, :1]
        if channels < 3:
            rgba[:, :, 1:3] = rgba[:, :, :1]
        pixels = rgba
    if data:
        return pixels
    return core.linearise(pixels, image.is_float, image.colorspace_settings.name)


def numbered_path(path: str, number: int) -> str:
    """The file of frame ``number`` in the numbered run that ``path`` belongs to (same digit padding)."""
    head, tail = os.path.split(path)
    matches = list(re.finditer(r"\d+", tail))
    if not matches:
        raise ValueError(f"{path!r} has no frame number to vary")
    match = matches[-1]
    digits = match.group(0)
    return os.path.join(head, tail[:match.start()] + str(number).zfill(len(digits)) + tail[match.end():])


def _first_number(path: str) -> int:
    numbers = re.findall(r"\d+", os.path.basename(path))
    if not numbers:
        raise ValueError(f"{path!r} has no frame number")
    return int(numbers[-1])


def _load_file_rgba(path: str, data: bool = False, colorspace: Optional[str] = None) -> np.ndarray:
    """Read one image file through a temporary datablock (removed again)."""
    if not os.path.isfile(path):
        raise ValueError(f"missing file {path}")
    image = bpy.data.images.load(path, check_existing=False)
    try:
        if colorspace:
            image.colorspace_settings.name = colorspace
        return image_rgba(image, data=data)
    finally:
        bpy.data.images.remove(image)


def image_frame_rgba(image: "bpy.types.Image", frame: int, data: bool = False) -> np.ndarray:
    """An Image at a scene frame: still images are the same every frame; an image sequence's file is the one
    numbered ``frame`` (files numbered by scene frame, as renders are)."""
    if image.source == "SEQUENCE":
        path = numbered_path(bpy.path.abspath(image.filepath, library=image.library), frame)
        return _load_file_rgba(path, data=data, colorspace=image.colorspace_settings.name)
    if image.source == "MOVIE":
        if not 1 <= frame <= image.frame_duration:
            raise ValueError(f"movie {image.name!r} has no frame {frame} (it has 1..{image.frame_duration})")

        def image_node(tree):
            node = tree.nodes.new("CompositorNodeImage")
            node.image = image
            node.frame_start, node.frame_offset, node.frame_duration = 1, 0, image.frame_duration
            return node.outputs["Image"]

        return composite_frame(tuple(image.size), frame, image_node)
    if image.type == "RENDER_RESULT":
        raise ValueError("the Render Result cannot be read as an image; choose the source 'Render'")
    return image_rgba(image, data=data)


def clip_frame_rgba(clip: "bpy.types.MovieClip", frame: int) -> np.ndarray:
    """A movie clip's frame at a scene frame (the clip's start frame and offset honoured)."""
    clip_frame = frame - clip.frame_start + clip.frame_offset  # 0 at the clip's first frame
    if clip_frame < 0 or clip_frame >= clip.frame_duration:
        raise ValueError(f"movie clip {clip.name!r} has no frame at scene frame {frame} "
                         f"(it covers {clip.frame_start}..{clip.frame_start + clip.frame_duration - 1})")
    if clip.source == "SEQUENCE":
        path = bpy.path.abspath(clip.filepath, library=clip.library)
        return _load_file_rgba(numbered_path(path, _first_number(path) + clip_frame),
                               colorspace=clip.colorspace_settings.name)

    def clip_node(tree):
        node = tree.nodes.new("CompositorNodeMovieClip")
        node.clip = clip
        return node.outputs["Image"]

    return composite_frame(tuple(clip.size), frame, clip_node)


def composite_frame(size, frame: int, make_source) -> np.ndarray:
    """Decode one frame of a movie the way Blender itself does: render ``frame`` of a throw-away scene whose
    compositor is just ``make_source(tree) -> output`` to a 32-bit EXR and read it (Python has no API for a movie's
    frames). It is an animation render of one frame because a still render of a scene that is not the window's
    ignores that scene's frame. Needs no camera: the compositor uses no render layers."""
    scene = bpy.data.scenes.new("mattebox decode")
    directory = tempfile.mkdtemp(prefix="mattebox-decode-")
    group = None
    try:
        render = scene.render
        render.resolution_x, render.resolution_y = size
        render.resolution_percentage = 100
        render.use_compositing = True
        scene.view_settings.view_transform = "Standard"
        settings = render.image_settings
        settings.file_format, settings.color_depth, settings.color_mode = "OPEN_EXR", "32", "RGBA"
        render.filepath = os.path.join(directory, "frame_")
        scene.frame_start = scene.frame_end = frame
        if hasattr(scene, "compositing_node_group"):  # Blender 5
            group = tree = bpy.data.node_groups.new("mattebox decode", "CompositorNodeTree")
            _new_socket(tree, "Image", "NodeSocketColor")
            output = tree.nodes.new("NodeGroupOutput").inputs[0]
            scene.compositing_node_group = tree
        else:  # Blender 4.x
            scene.use_nodes = True
            tree = scene.node_tree
            tree.nodes.clear()
            output = tree.nodes.new("CompositorNodeComposite").inputs["Image"]
        tree.links.new(make_source(tree), output)
        bpy.ops.render.render(animation=True, scene=scene.name)
        return _load_file_rgba(render.frame_path(frame=frame))
    finally:
        bpy.data.scenes.remove(scene)
        if group is not None:
            bpy.data.node_groups.remove(group)
        shutil.rmtree(directory, ignore_errors=True)


def render_rgba(scene: "bpy.types.Scene", frame: int) -> np.ndarray:
    """Render ``frame`` with compositing off (the compositor may hold this very matte) and read the result."""
    render = scene.render
    saved = (scene.frame_current, render.use_compositing, render.image_settings.file_format,
             render.image_settings.color_depth, render.image_settings.color_mode)
    path = os.path.join(tempfile.mkdtemp(prefix="mattebox-render-"), "render.exr")
    try:
        scene.frame_set(frame)
        render.use_compositing = False
        bpy.ops.render.render(scene=scene.name)
        settings = render.image_settings
        settings.file_format = "OPEN_EXR"
        settings.color_depth = "32"
        settings.color_mode = "RGBA"
        bpy.data.images[RENDER_RESULT].save_render(path, scene=scene)
        return _load_file_rgba(path)
    finally:
        scene.frame_set(saved[0])
        render.use_compositing = saved[1]
        render.image_settings.file_format = saved[2]
        render.image_settings.color_depth = saved[3]
        render.image_settings.color_mode = saved[4]
        if os.path.exists(path):
            os.remove(path)
        os.rmdir(os.path.dirname(path))


def source_rgba(settings, scene: "bpy.types.Scene", frame: int) -> np.ndarray:
    """The plate chosen in the settings (Image, Render, Clip) at ``frame``, H×W×4 scene-linear."""
    if settings.source == "IMAGE":
        if settings.image is None:
            raise ValueError("image: choose an image to matte")
        return image_frame_rgba(settings.image, frame)
    if settings.source == "CLIP":
        if settings.clip is None:
            raise ValueError("clip: choose a movie clip to matte")
        return clip_frame_rgba(settings.clip, frame)
    if settings.source == "RENDER":
        return render_rgba(scene, frame)
    raise ValueError(f"source: unknown {settings.source!r}")


def read_request(settings, scene: "bpy.types.Scene", frame: int, params: Dict) -> Dict:
    """Everything a frame's matte request needs, read from Blender (main thread only)."""
    image = source_rgba(settings, scene, frame)
    second = source_rgba(settings, scene, frame + settings.second_offset) if settings.use_second else None
    mask = None
    if settings.mask is not None:
        mask = core.mask_channel(image_frame_rgba(settings.mask, frame, data=True), settings.mask_channel)
    background = None
    if settings.clean_plate is not None:  # read like the mask: a still for every frame, a sequence by frame
        background = image_frame_rgba(settings.clean_plate, frame)
    try:
        return core.build_request(image, second, mask, params, background=background)
    except ValueError as exc:
        raise ValueError(f"{exc} (frame {frame})") from None


# ------------------------------------------------------------------------------------------ writing
def write_exr(path: str, array: np.ndarray) -> None:
    """An H×W(×C) top-down float array -> a 32-bit float RGBA OpenEXR file, bit-exact.

    A fresh scratch Image per file: one reused after ``save()`` (it is file-backed then) wrote wrong pixels to the
    next file in Blender 5.0.1, which the exactness tests caught."""
    height, width = array.shape[:2]
    scratch = bpy.data.images.new("mattebox scratch", width, height, alpha=True, float_buffer=True)
    try:
        scratch.colorspace_settings.name = "Non-Color"
        scratch.pixels.foreach_set(core.to_blender_pixels(array))
        scratch.filepath_raw = path
        scratch.file_format = "OPEN_EXR"
        scratch.use_half_precision = False
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        scratch.save()
    finally:
        bpy.data.images.remove(scratch)


def write_results(directory: str, frame: int, result, kinds=tuple(core.RESULT_KINDS)) -> List[str]:
    paths = []
    for kind in kinds:
        array = result.get(kind)
        if array is None:
            raise ValueError(f"the server returned no {kind!r}")
        path = core.result_path(directory, kind, frame)
        write_exr(path, array)
        paths.append(path)
    return paths


def unsaved_output(settings) -> bool:
    """True when the output folder is relative to a .blend that has not been saved: it has no folder yet."""
    return (settings.output_dir or "//mattebox/").startswith("//") and not bpy.data.filepath


def output_directory(settings) -> str:
    """The folder for result files: the setting (// = next to the .blend), ``<Name>`` inside it. For an unsaved
    .blend the // part is the temporary folder instead (Preferences > File Paths, else the system's; not
    Blender's per-session folder, which is deleted when Blender quits), and the report and panel say so."""
    text = settings.output_dir or "//mattebox/"
    if unsaved_output(settings):
        base = bpy.context.preferences.filepaths.temporary_directory or tempfile.gettempdir()
        text = os.path.join(base, text[2:])
    return os.path.join(os.path.normpath(bpy.path.abspath(text)), settings.name)


def result_image_name(name: str, kind: str) -> str:
    return f"{name} {kind.title()}"


def load_result_images(name: str, directory: str, frames: List[int]) -> Dict[str, "bpy.types.Image"]:
    """Point (or create) the Image datablocks ``<name> Alpha/Foreground/Trimap`` at the result files.

    One frame: a still image; several: an image sequence starting at the first frame."""
    images = {}
    first = min(frames)
    for kind, (_, colorspace) in core.RESULT_KINDS.items():
        path = core.result_path(directory, kind, first)
        image_name = result_image_name(name, kind)
        image = bpy.data.images.get(image_name)
        if image is None:
            image = bpy.data.images.load(path, check_existing=False)  # reads pixels lazily, when first used
            image.name = image_name
        source = "SEQUENCE" if len(frames) > 1 else "FILE"
        # set only what differs: each of these assignments makes Blender reload the image's buffers
        for owner, attribute, value in ((image, "source", source), (image.colorspace_settings, "name", colorspace),
                                        (image, "alpha_mode", "CHANNEL_PACKED")):
            if getattr(owner, attribute) != value:
                setattr(owner, attribute, value)
        image.filepath = path  # also when unchanged: drops cached pixels, the files were rewritten
        images[kind] = image
    return images


# ---------------------------------------------------------------------------------------- node group
def group_name(name: str) -> str:
    return f"Mattebox {name}"


def _new_socket(tree, name: str, socket_type: str) -> None:
    tree.interface.new_socket(name, in_out="OUTPUT", socket_type=socket_type)


def ensure_node_group(name: str, images: Dict[str, "bpy.types.Image"], frames: List[int]):
    """The compositor group "Mattebox <name>": Image nodes for the results -> Alpha, Foreground, Trimap outputs."""
    tree = bpy.data.node_groups.get(group_name(name))
    if tree is None:
        tree = bpy.data.node_groups.new(group_name(name), "CompositorNodeTree")
    tree.nodes.clear()
    wanted = [("Alpha", "NodeSocketFloat"), ("Foreground", "NodeSocketColor"), ("Trimap", "NodeSocketFloat")]
    have = [(item.name, item.socket_type) for item in tree.interface.items_tree if item.item_type == "SOCKET"]
    if have != wanted:  # only then: a new interface drops the links users made to the group's outputs
        tree.interface.clear()
        for name, socket_type in wanted:
            _new_socket(tree, name, socket_type)
    output = tree.nodes.new("NodeGroupOutput")
    output.location = (600, 0)
    for row, kind in enumerate(("alpha", "foreground", "trimap")):
        node = tree.nodes.new("CompositorNodeImage")
        node.name = node.label = kind.title()
        node.image = images[kind]
        node.location = (0, -300 * row)
        if len(frames) > 1:  # a sequence numbered by scene frame
            node.frame_start = min(frames)
            node.frame_offset = min(frames) - 1
            node.frame_duration = max(frames) - min(frames) + 1
            node.use_auto_refresh = True  # follow the scene frame (off by default: the first frame only)
        source = node.outputs["Image"]
        if kind != "foreground":  # the data images repeat the value in every channel: take red, bit-exact
            split = tree.nodes.new("CompositorNodeSeparateColor")
            split.location = (300, -300 * row)
            tree.links.new(node.outputs["Image"], split.inputs["Image"])
            source = split.outputs["Red"]
        tree.links.new(source, output.inputs[kind.title()])
    return tree


def scene_compositor(scene: "bpy.types.Scene", create: bool = True):
    """(tree, created): the scene's compositor node tree (Blender 5: a group assigned to the scene; 4.x:
    scene.node_tree behind scene.use_nodes) and whether this call made it (so its default wiring is ours)."""
    if hasattr(scene, "compositing_node_group"):
        tree = scene.compositing_node_group
        if tree is None and create:
            tree = bpy.data.node_groups.new(f"{scene.name} Compositor", "CompositorNodeTree")
            _new_socket(tree, "Image", "NodeSocketColor")
            tree.nodes.new("NodeGroupOutput").location = (800, 0)
            scene.compositing_node_group = tree
            return tree, True
        return tree, False
    if create and not scene.use_nodes:
        scene.use_nodes = True  # Blender 4.x fills a new tree with Render Layers -> Composite
        return scene.node_tree, True
    return scene.node_tree, False


def _final_output(tree):
    """The compositor's final output socket: Blender 5's Group Output, 4.x's Composite (None if neither)."""
    for node in tree.nodes:
        if node.bl_idname == "NodeGroupOutput" and node.inputs:
            return node.inputs[0]
        if node.bl_idname == "CompositorNodeComposite":
            return node.inputs["Image"]
    return None


#: room left between placed nodes, and the height assumed for a node Blender has not drawn yet (dimensions 0)
NODE_GAP, NODE_HEIGHT = 60.0, 160.0


def free_spot(tree, right_edge: float, width: float) -> tuple:
    """Where a chain ``width`` wide, ending at ``right_edge``, goes beside the existing graph: below every node
    already there (nothing is covered, least of all the output), its right end left of the output so wires run
    left to right. Node locations are top-left corners; y grows upwards."""
    bottom = min((node.location.y - (node.dimensions.y or NODE_HEIGHT) for node in tree.nodes), default=0.0)
    return right_edge - width, bottom - NODE_GAP


def _viewer(tree):
    """The compositor's Viewer node and whether this call made it (Blender shows its image as the backdrop)."""
    for node in tree.nodes:
        if node.bl_idname == "CompositorNodeViewer":
            return node, False
    return tree.nodes.new("CompositorNodeViewer"), True


def show_backdrop() -> None:
    """Turn on the backdrop (the Viewer's image behind the nodes) of every compositor node editor on screen."""
    for screen in bpy.data.screens:
        for area in screen.areas:
            for space in area.spaces:
                if space.type == "NODE_EDITOR" and getattr(space, "tree_type", "") == "CompositorNodeTree":
                    space.show_backdrop = True


def add_group_to_compositor(scene: "bpy.types.Scene", group) -> "bpy.types.Node":
    """Put an instance of ``group`` in the scene's compositor (once), below the existing nodes and left of the
    output. Foreground with Alpha applied (premultiplied, as the compositor works) feeds the final output when that
    is unconnected, and a Viewer (made when there is none, or unconnected) so the result shows as the backdrop. A
    compositor made by this call is ours: its default Render Layers -> Composite link is replaced."""
    tree, created = scene_compositor(scene)
    for node in tree.nodes:
        if node.bl_idname == "CompositorNodeGroup" and node.node_tree == group:
            return node
    final = _final_output(tree)
    if final is not None and created:
        for link in list(final.links):
            tree.links.remove(link)
    right_edge = final.node.location.x - NODE_GAP if final is not None else 0.0
    x, y = free_spot(tree, right_edge, 2 * 140.0 + NODE_GAP)
    node = tree.nodes.new("CompositorNodeGroup")
    node.node_tree = group
    node.name = node.label = group.name
    node.location = (x, y)
    set_alpha = tree.nodes.new("CompositorNodeSetAlpha")
    set_alpha.location = (x + node.width + NODE_GAP, y)
    if hasattr(set_alpha, "mode"):  # Blender 4.x: a property; Blender 5: the "Type" menu socket
        set_alpha.mode = "APPLY"
    tree.links.new(node.outputs["Foreground"], set_alpha.inputs["Image"])
    tree.links.new(node.outputs["Alpha"], set_alpha.inputs["Alpha"])
    if final is not None and not final.is_linked:
        tree.links.new(set_alpha.outputs["Image"], final)
    viewer, made = _viewer(tree)
    if made:
        viewer.location = (set_alpha.location.x + set_alpha.width + NODE_GAP, y)
    if not viewer.inputs["Image"].is_linked:
        tree.links.new(set_alpha.outputs["Image"], viewer.inputs["Image"])
    show_backdrop()
    return node


def publish(name: str, directory: str, frames: List[int], scene: "bpy.types.Scene"):
    """Results on disk -> Image datablocks -> node group -> the scene's compositor. Returns the group."""
    images = load_result_images(name, directory, frames)
    group = ensure_node_group(name, images, frames)
    add_group_to_compositor(scene, group)
    return group
