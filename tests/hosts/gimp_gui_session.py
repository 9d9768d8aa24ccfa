"""Runs inside the GIMP chroot (its python3): one real GIMP 3 GUI session on Xvfb, driven like a person would.

Starts Xvfb (its framebuffer memory-mapped into a file with ``-fbdir``, so screenshots need no X client and no
extra package in the root), starts ``gimp-3.0`` with a batch script that builds the sample image and shows it,
opens *Filters > Matting > Mattebox* from the menu bar with xdotool key presses, captures the dialog, presses OK,
waits for the run to finish and captures the result; then ends GIMP. Everything lands in the folder given as the
first argument (the second names a JSON file of settings, ARGS): ``dialog.xwd`` and ``result.xwd`` (the screen),
``gimp.log`` (GIMP's and the plug-in's output) and ``session.json`` (the steps, the captured windows' geometry,
and the error if a step failed).

Used by tests/hosts/screenshots_gimp.py (``make screenshots``) and tests/test_gimp_gui.py. No waiting on fixed sleeps:
every step waits for a window to appear or vanish, or for the screen to stop changing, with a time-out.
"""
import json
import os
import shutil
import subprocess
import sys
import time

OUT = sys.argv[1]
#: what the host side asks for (tests/hosts/screenshots_gimp.py): the batch script that opens the sample, the
#: image window's title (a regular expression) and the keys that open the plug-in after Alt+R
ARGS = json.load(open(sys.argv[2]))
SCREEN = (1280, 800)
MESSAGE = "^GIMP Message$"  #: the title of the window GIMP shows a plug-in's message in
PROGRESS = "^Mattebox: matting$"  #: the plug-in's progress window
STEP_TIMEOUT = 90.0  #: seconds one step may take (GIMP's first start scans every plug-in)
log = {"steps": []}


def note(text):
    log["steps"].append(f"{time.monotonic() - START:6.1f}s {text}")
    print("[gimp-gui]", text, file=sys.stderr, flush=True)


def xdotool(*args):
    result = subprocess.run(["xdotool", *args], capture_output=True, text=True)
    return result.stdout.strip()


def windows(title):
    """Visible windows whose title matches the regular expression ``title``."""
    return [w for w in xdotool("search", "--onlyvisible", "--name", title).split() if w]


def wait_for(what, condition, timeout=STEP_TIMEOUT, every=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            note(f"ok: {what}")
            return value
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")


def geometry(window):
    """(x, y, width, height) of a window, from xdotool."""
    values = dict(line.split("=", 1) for line in xdotool("getwindowgeometry", "--shell", window).splitlines())
    return [int(values[k]) for k in ("X", "Y", "WIDTH", "HEIGHT")]


def framebuffer():
    """The screen's bytes as a numpy array (Xvfb keeps the file current)."""
    import numpy

    with open(os.path.join(FB_DIR, "Xvfb_screen0"), "rb") as fh:
        return numpy.frombuffer(fh.read(), numpy.uint8)


def differs(before, now):
    """The selection's marching ants never stop, so only a change of over 0.2 % of the screen's bytes counts."""
    return int((before != now).sum()) > 0.002 * before.size


def wait_until_still(what, quiet=1.0, timeout=STEP_TIMEOUT):
    """Wait until the screen has not changed (:func:`differs`) for ``quiet`` seconds: GIMP finished drawing."""
    last, since = framebuffer(), time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = framebuffer()
        if differs(last, now):
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            note(f"still: {what}")
            return
    raise TimeoutError(f"the screen kept changing for {timeout:g} s ({what})")


def capture(name, window=None):
    shutil.copy(os.path.join(FB_DIR, "Xvfb_screen0"), os.path.join(OUT, name + ".xwd"))
    if window is not None:
        log.setdefault("windows", {})[name] = geometry(window)
    note(f"captured {name}")


def key(window, *keys):
    """Press ``keys`` in ``window`` one at a time, each once the screen has reacted to the one before (a menu
    opens between presses, and a key sent before it is mapped goes elsewhere)."""
    xdotool("windowfocus", "--sync", window)
    for name in keys:
        before = framebuffer()
        xdotool("key", "--clearmodifiers", name)
        try:
            wait_for(f"the screen to react to {name}", lambda old=before: differs(old, framebuffer()),
                     timeout=10, every=0.05)
        except TimeoutError:
            note(f"nothing changed after {name}")
        wait_until_still(f"after {name}", quiet=0.4)


#: the GIMP in the chroot (Debian trixie's gimp 3.0.4), written into gimprc as the profile's config-version
GIMP_VERSION = subprocess.run(["gimp-3.0", "--version"], capture_output=True, text=True).stdout.split()[-1]
START = time.monotonic()
FB_DIR = os.path.join(OUT, "fb")
os.makedirs(FB_DIR, exist_ok=True)
profile = os.environ["GIMP3_DIRECTORY"]
with open(os.path.join(profile, "gimprc"), "a") as fh:
    # no Welcome dialog: it shows on a profile's first start (config-version older than GIMP) and takes the focus
    fh.write('(show-welcome-dialog no)\n(config-version "%s")\n' % GIMP_VERSION)

display_file = os.path.join(OUT, "display")
with open(display_file, "w") as fd_out:
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(fd_out.fileno()), "-screen", "0", "%dx%dx24" % SCREEN,
                             "-fbdir", FB_DIR, "-nolisten", "tcp"], pass_fds=[fd_out.fileno()],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
gimp = None
status = 1
try:
    wait_for("Xvfb", lambda: open(display_file).read().strip(), timeout=30)
    os.environ["DISPLAY"] = ":" + open(display_file).read().strip()
    gimp_log = open(os.path.join(OUT, "gimp.log"), "w")
    sample = ARGS["sample_script"]
    gimp = subprocess.Popen(["gimp-3.0", "--no-splash", "--batch-interpreter=python-fu-eval",
                             "-b", f"exec(open({sample!r}).read())"], stdout=gimp_log, stderr=subprocess.STDOUT)
    main = wait_for("the image window", lambda: windows(ARGS["title"]))[0]
    log["windows_at_start"] = [xdotool("getwindowname", w) for w in windows(".")]
    wait_until_still("the image is shown")
    xdotool("windowmove", main, "0", "0")
    xdotool("windowsize", main, str(SCREEN[0]), str(SCREEN[1] - 150))  # room below for the message
    wait_until_still("the window is resized")
    # Filters > Matting > Mattebox... by keyboard: Alt+R opens Filte_rs, the menu's own mnemonics do the rest
    key(main, "alt+r", *ARGS["menu_keys"])
    dialog = wait_for("the Mattebox dialog", lambda: windows("^Mattebox$"))[0]
    wait_until_still("the dialog is drawn")
    capture("dialog", dialog)
    key(dialog, "Return")
    wait_for("the dialog to close", lambda: not windows("^Mattebox$"))
    # the run ends with the plug-in's message; its progress window may come and go between two polls (a small
    # frame mattes in under a second), so the message, not the progress window, is what is waited for
    message = wait_for("the plug-in's message", lambda: not windows(PROGRESS) and windows(MESSAGE), timeout=300)[0]
    main_box = geometry(main)
    xdotool("windowmove", message, "0", str(main_box[1] + main_box[3] + 4))  # below the canvas, not over it
    wait_until_still("the result is drawn", quiet=2.0)
    log["visible"] = [xdotool("getwindowname", w) for w in windows(".")]
    log.setdefault("windows", {})["message"] = geometry(message)
    capture("result", main)
    status = 0
except Exception as exc:  # the caller reads session.json and gimp.log
    log["error"] = f"{exc.__class__.__name__}: {exc}"
    try:
        capture("failure")
    except OSError:
        pass
finally:
    if gimp is not None:
        gimp.terminate()
        try:
            gimp.wait(30)
        except subprocess.TimeoutExpired:
            gimp.kill()
    xvfb.terminate()
    xvfb.wait(30)
    shutil.rmtree(FB_DIR, ignore_errors=True)
    with open(os.path.join(OUT, "session.json"), "w") as fh:
        json.dump(log, fh, indent=1)
sys.exit(status)
