"""`mattebox demo` (what `make demo` runs): a local server is started, every bundled sample is matted, viewable
results are written, and the throw-away server leaves nothing in the user's state directory."""
from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np

from tests.conftest import tree_env


def test_demo_writes_a_contact_sheet_and_a_close_synthetic_matte(tmp_path):
    env = tree_env(MATTEBOX_STATE=str(tmp_path / "state"))
    out = tmp_path / "demo_out"
    run = subprocess.run([sys.executable, "-m", "mattebox", "demo", "--out", str(out)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    sheet = cv2.imread(str(out / "contact_sheet.png"))
    assert sheet is not None and sheet.shape[0] > 200 and sheet.std() > 10  # a picture, not a blank
    alpha = cv2.imread(str(out / "synthetic_hair_alpha.png"), cv2.IMREAD_UNCHANGED)
    assert alpha.dtype == np.uint16 and 0.05 < alpha.mean() / 65535 < 0.95
    sad = float(run.stdout.split("SAD vs exact alpha")[1].split()[0])
    assert sad < 10  # the hair composite's exact alpha is recovered closely (3.78 when written)
    assert not (tmp_path / "state").exists()  # memory-only server
