"""Where things live: the project root, shared data, caches, user config."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def alphamatting_dir() -> Optional[Path]:
    """The alphamatting-dev folder (``$MATTEBOX_ALPHAMATTING`` or ``../shared/data/alphamatting-dev``), or None."""
    env = os.environ.get("MATTEBOX_ALPHAMATTING")
    candidates = [Path(env)] if env else []
    candidates.append(PROJECT_ROOT.parent / "shared" / "data" / "alphamatting-dev")
    for path in candidates:
        if (path / "image").is_dir():
            return path
    return None


def cache_dir() -> Path:
    """Per-user cache for things built outside the clone (host test environments, models)."""
    base = os.environ.get("MATTEBOX_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or
                                                            os.path.expanduser("~/.cache"), "mattebox")
    return Path(base)


def state_dir() -> Path:
    """Where `mattebox serve` keeps jobs across restarts (jobstore.py): ``$MATTEBOX_STATE``, else
    ``$XDG_STATE_HOME/mattebox`` (``~/.local/state/mattebox``; ``%LOCALAPPDATA%/mattebox/state`` on Windows)."""
    env = os.environ.get("MATTEBOX_STATE")
    if env:
        return Path(env)
    if os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "mattebox" / "state"
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "mattebox"
