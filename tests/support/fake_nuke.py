"""Helpers for Nuke host tests: put the fake ``nuke`` module (tests/fakes/nuke) and the node's package on
sys.path, start each test from a fresh fake session, and build small comps with numpy pixels."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Dict

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
FAKES = ROOT / "tests" / "fakes"
NODE_DIR = ROOT / "nodes" / "nuke"
FARM_SCRIPT = NODE_DIR / "mattebox_nuke" / "farm.py"
FAKE_NUKE_T = FAKES / "nuke_t.py"
#: the Nuke versions whose Python API reference the fake enforces (tests/fakes/nuke_api.json)
NUKE_VERSIONS = tuple(json.loads((FAKES / "nuke_api.json").read_text(encoding="utf-8"))["versions"])


def _ensure_paths() -> None:
    for path in (str(NODE_DIR), str(FAKES)):
        if path not in sys.path:
            sys.path.insert(0, path)


@pytest.fixture(name="fake_nuke")
def fake_nuke_fixture(tmp_path, monkeypatch):
    """The fake nuke module (Nuke 15.1's API) in a fresh terminal-mode session; client config and node cache
    under tmp_path."""
    yield from _fresh_session(tmp_path, monkeypatch, "15.1")


@pytest.fixture(name="fake_nuke_each", params=NUKE_VERSIONS)
def fake_nuke_each_fixture(request, tmp_path, monkeypatch):
    """As ``fake_nuke``, once for each Nuke version's API whitelist."""
    yield from _fresh_session(tmp_path, monkeypatch, request.param)


def _fresh_session(tmp_path, monkeypatch, version: str):
    _ensure_paths()
    import nuke

    nuke.fake.use_api(version)
    nuke.fake.reset(gui=False)
    monkeypatch.setenv("MATTEBOX_CONFIG", str(tmp_path / "client.json"))  # no user config, no server_command
    monkeypatch.delenv("MATTEBOX_ENDPOINT", raising=False)
    monkeypatch.setenv("MATTEBOX_NUKE_CACHE", str(tmp_path / "cache"))
    yield nuke
    nuke.fake.reset(gui=False)


def rgba_planes(rgb: np.ndarray, alpha: float = 1.0) -> Dict[str, np.ndarray]:
    """(H, W, 3) array -> Nuke channel planes, alpha constant."""
    rgb = np.asarray(rgb, np.float32)
    planes = {f"rgba.{c}": np.ascontiguousarray(rgb[..., i]) for i, c in enumerate(("red", "green", "blue"))}
    planes["rgba.alpha"] = np.full(rgb.shape[:2], alpha, np.float32)
    return planes


def plate_frames(frames, height: int = 48, width: int = 64, seed: int = 0) -> Dict[int, Dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {f: rgba_planes(rng.random((height, width, 3)).astype(np.float32)) for f in frames}


def square_mask(height: int = 48, width: int = 64) -> np.ndarray:
    mask = np.zeros((height, width), np.float32)
    mask[height // 4:3 * height // 4, width // 4:3 * width // 4] = 1.0
    return mask
