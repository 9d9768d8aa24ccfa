"""mattebox for Blender 4.2+/5.x: a "Mattebox Matte" operator and compositor panel that send an image, a render or
a movie-clip frame to a mattebox server and bring back alpha, foreground and trimap as a compositor node group.

Importing this package does no work: classes are registered by :func:`register` and removed, in reverse order,
by :func:`unregister`. The client (``mattebox_plugin``, with pyzmq and msgpack from the bundled wheels) is only
imported when an operator runs.
"""
from __future__ import annotations



def _classes():
    # imported here, not at the top, so the bpy-free modules (core, connection) import anywhere, e.g. in tests
    from . import operators, properties, ui

    return properties.CLASSES + operators.CLASSES + ui.CLASSES


def register() -> None:
    import bpy

    from . import properties

    for cls in _classes():
        bpy.utils.register_class(cls)
    properties.register_properties()


def unregister() -> None:
    import bpy

    from . import operators, properties

    run = operators.active_run()
    if run is not None:
        run.cancel()
    properties.unregister_properties()
    for cls in reversed(_classes()):
        bpy.utils.unregister_class(cls)
