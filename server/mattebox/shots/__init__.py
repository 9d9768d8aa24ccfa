"""Shots, not stills: key-frame guidance carried through a shot by optical flow, and temporally steady mattes.

:func:`~.solve.matte_shot` is the entry point (`mattebox render --key-mask/--key-trimap`, bench/shots.py);
:mod:`.guidance` carries keys, :mod:`.flow` holds the shot's motion. docs/shots.md explains the method and its
measured effect.
"""
from .guidance import Key, PropagationSettings
from .solve import ShotFrame, ShotSettings, matte_shot

__all__ = ["Key", "PropagationSettings", "ShotFrame", "ShotSettings", "matte_shot"]
