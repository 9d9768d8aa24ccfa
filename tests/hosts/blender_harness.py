"""The pytest side of the real-Blender tests: :func:`blender_python_or_skip` and :func:`run_blender`.

Each snippet runs inside a fresh Blender process (tests/hosts/blender_session.py) with its own user resources
folder and client config, so nothing touches the user's Blender.
"""
from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.hosts import blender_env

SESSION = Path(__file__).resolve().parent / "blender_session.py"


def blender_python_or_skip() -> Path:
    """The bpy venv's python; skip with the reason when it cannot be built (a failure under CI)."""
    try:
        return blender_env.ensure()
    except blender_env.BlenderEnvUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Blender tests, but the bpy venv could not be built: {exc}")
        pytest.skip(f"real Blender unavailable: {exc}")


def run_blender(python: Path, tmp_path: Path, snippet: str, mode: str = "dev", timeout: float = 180,
                **args) -> dict:
    """Run ``snippet`` inside Blender with the extension enabled; returns its RESULT."""
    script = tmp_path / f"snippet_{len(list(tmp_path.glob('snippet_*')))}.py"
    script.write_text(PRELUDE + textwrap.dedent(snippet))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MATTEBOX_ENDPOINT")}
    env.update(BLENDER_USER_RESOURCES=str(tmp_path / "blender-user"), MATTEBOX_TEST_ARGS=json.dumps(args),
               MATTEBOX_CONFIG=str(tmp_path / "client.json"), PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([str(python), str(SESSION), mode, str(script)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=str(tmp_path))
    lines = [line for line in proc.stdout.splitlines() if line.startswith("MATTEBOX_RESULT ")]
    if proc.returncode != 0 or not lines:
        raise AssertionError(f"Blender run failed (rc {proc.returncode}):\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-4000:]}")
    return json.loads(lines[-1][len("MATTEBOX_RESULT "):])


#: shared by every snippet: a small synthetic plate (a textured disc on a gradient) and its coarse mask; the same
#: gradient without the disc (``subject=False``, another seed: its own noise) is its clean plate
PRELUDE = '''
import os, time
core = ext.core
H, W = 72, 96
def make_plate(seed=7, shift=0, subject=True):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    inside = (((xx - 48 - shift) ** 2 + (yy - 34) ** 2) < 22 ** 2) & subject  # subject=False: the clean plate
    plate = np.ones((H, W, 4), np.float32)
    fg = np.array([0.9, 0.45, 0.2], np.float32)
    bg = np.stack([0.1 + 0.5 * xx / W, 0.3 + 0.2 * yy / H, 0.7 - 0.3 * xx / W], axis=2)
    plate[..., :3] = np.where(inside[..., None], fg, bg) + rng.normal(0, 0.02, (H, W, 3))
    return plate.astype(np.float32), inside.astype(np.float32)
def setup_scene(endpoint, engine="classical", **kw):
    helpers.use_server(endpoint, **kw)
    plate, inside = make_plate()
    s = bpy.context.scene.mattebox
    s.image = helpers.new_image("plate", plate)
    s.mask = helpers.new_image("mask", inside, "Non-Color")
    if engine not in core.FALLBACK_ENGINES + ("auto",):
        bpy.ops.mattebox.check_server()  # the Engine menu lists this server's engines (e.g. test-slow) from now on
    s.engine = engine
    s.output_dir = os.path.join(os.getcwd(), "mattes") + os.sep
    return s, plate, inside
def run_once(runs):
    """One run of the scene's settings to its end, published; appends what happened (and the report) to runs."""
    run = ext.operators.start_run(bpy.context)
    run.wait(timeout=120)
    reports = []
    ext.operators.finish_run(run, lambda kind, text: reports.append(text))
    runs.append({"state": run.state, "error": run.error, "computed": run.computed, "reused": run.reused,
                 "report": reports[-1], "infos": {str(f): i for f, i in run.infos.items()}})
def report_of(callable_):
    t = time.monotonic()
    try:
        callable_()
        return None, time.monotonic() - t
    except RuntimeError as exc:
        return str(exc), time.monotonic() - t
'''


