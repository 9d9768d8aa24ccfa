"""Debian's Blender 4.3 GUI (system Python 3.13, under Xvfb with software GL) with the extension installed as the
README says, driven like a person (tests/hosts/screenshots_blender.py): the install, host-doctor, a matte from the
panel, and no Python error in Blender's log. Skipped when the Blender root cannot be built (not root, no
debootstrap); the first run builds it (minutes, ~1.4 GB, a Debian mirror and PyPI)."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

from tests.hosts import blender_chroot, gimp_chroot, screenshots_blender


def test_blender_root_is_a_root_of_its_own(tmp_path, monkeypatch):
    """The GIMP root (built by `make test`) never gets Blender: each root's stamp names its own packages."""
    monkeypatch.delenv("MATTEBOX_BLENDER_CHROOT", raising=False)
    monkeypatch.setenv("MATTEBOX_CACHE", str(tmp_path / "cache"))
    assert blender_chroot.default_root() == tmp_path / "cache" / "blender-trixie"
    assert "blender" not in gimp_chroot.PACKAGES
    (tmp_path / gimp_chroot.STAMP_NAME).write_text(json.dumps(gimp_chroot.stamp_for(blender_chroot.PACKAGES)))
    assert gimp_chroot.is_ready(tmp_path, blender_chroot.PACKAGES)
    assert not gimp_chroot.is_ready(tmp_path)  # not a GIMP root


def test_python_error_lines_are_found():
    log = "Read prefs\nTraceback (most recent call last):\nValueError: bad\nError: Python: oops\nInfo: fine\n"
    assert screenshots_blender.python_errors(log) == ["Traceback (most recent call last):", "ValueError: bad",
                                                      "Error: Python: oops"]


@pytest.mark.host
def test_gui_session_installs_mattes_and_logs_no_python_error():
    reason = screenshots_blender.unavailable_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Blender GUI test: {reason}")
        pytest.skip(reason)
    with tempfile.TemporaryDirectory(prefix="mattebox-blender-gui-") as work:
        found = screenshots_blender.run_session(Path(work))
        assert "installed into Blender 4.3.2 (Python 3.13)" in found["install"], found["install"]
        assert found["doctor_ok"], found["doctor"]  # a distribution build is no longer called a FAIL
        session = found["session"]
        assert session.get("error") is None, session
        assert screenshots_blender.python_errors(found["log"]) == [], found["log"][-4000:]
        assert session["status"].startswith("Mattebox: 1 frame(s) matted"), session
        assert set(found["shots"]) == set(screenshots_blender.IMAGES)
