"""The real GIMP 3 GUI session of ``make screenshots`` (tests/hosts/screenshots_gimp.py), checked as a test: the
plug-in installed as the README says, run from Filters > Matting > Mattebox with the keyboard, must open a dialog
that fits a 1280 px screen, finish with its message, and log no Python error. Skipped where the GIMP chroot
cannot be built (tests/hosts/gimp_chroot.py says why)."""
from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.hosts import gimp_chroot, screenshots_gimp

pytestmark = pytest.mark.host

#: log lines that mean our plug-in misbehaved: a Python traceback, or a GLib/GTK/GIMP warning from its process
PROBLEM = re.compile(r"Traceback|(plug-in-mattebox|mattebox\.py).*(WARNING|CRITICAL|fatal error)|"
                     r"(WARNING|CRITICAL).*(plug-in-mattebox|mattebox\.py)", re.I)


@pytest.fixture(scope="module")
def session():
    reason = gimp_chroot.unavailable_reason()
    if reason:
        pytest.skip(f"the GIMP GUI test needs the Debian trixie chroot: {reason}")
    root = gimp_chroot.ensure_chroot()
    work = Path(tempfile.mkdtemp(prefix="mattebox-gimp-gui-test-", dir=root / "tmp"))
    try:
        yield screenshots_gimp.run_session(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_the_gui_run_from_the_menu_ends_with_the_plugins_message(session):
    assert session["returncode"] == 0 or session["session"], session["stderr"][-3000:]  # the driver itself ran
    steps = "\n".join(session["session"].get("steps", []))
    assert "error" not in session["session"], f"{session['session']['error']}\n{steps}\n{session['log'][-3000:]}"
    assert "ok: the plug-in's message" in steps
    assert "dialog" in session and "result" in session


def test_the_dialog_fits_a_1280_px_screen(session):
    x, y, width, height = session["session"]["windows"]["dialog"]
    assert width <= 1280 and height <= 800, (width, height)


def test_the_gui_run_logs_no_python_error(session):
    problems = [line for line in session["log"].splitlines() if PROBLEM.search(line)]
    assert not problems, "\n".join(problems)
