"""Mattebox for Nuke: a node that mattes its plate through a mattebox server (see node.py for how).

Importing this package touches neither Nuke nor the network: ``exr`` and ``job`` are plain Python, and the Nuke
side (``node``) is imported by the functions below when a button or menu calls them.
"""
from __future__ import annotations

__version__ = "0.1.0"


def create():
    """Toolbar command: a Mattebox node below the selected node."""
    from .node import create as _create

    return _create()


def matte(group, frames=None, background=None):
    from .node import matte as _matte

    return _matte(group, frames, background)


def matte_button():
    from .node import matte_button as _button

    return _button()


def refresh_button():
    from .node import refresh_button as _button

    return _button()
