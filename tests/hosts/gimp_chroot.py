"""A cached Debian trixie chroot with GIMP 3, for testing the GIMP plug-in in the real host.

GIMP 3.0 is packaged in Debian trixie (not in the bookworm base of our machines), so tests build a minimal
trixie root with ``debootstrap`` once, outside the clone, under ``mattebox.paths.cache_dir() / "gimp-trixie"``,
and reuse it. A stamp file inside the root records what was installed; a root whose stamp does not match
:data:`STAMP` is rebuilt. Builds take about 1-2 minutes and ~1 GB; they need root, network to a Debian mirror and
``debootstrap`` (installed with apt-get when missing).

Commands run inside the chroot with :func:`run_in_chroot`: each gets its own private mount namespace
(``unshare -m``) in which ``/proc`` (and ``/dev/shm``) are mounted, so nothing stays mounted after the command and
concurrent runs do not fight over mounts. The network namespace is the host's, so a server on the host's
loopback is reachable from inside.

Command line::

    python tests/hosts/gimp_chroot.py build     # build or reuse; prints the root
    python tests/hosts/gimp_chroot.py status    # prints why it cannot be built, or where it is
    python tests/hosts/gimp_chroot.py run -- gimp-console-3.0 --version
    python tests/hosts/gimp_chroot.py run --bind /tmp/work -- ...   # /tmp/work visible inside too
    python tests/hosts/gimp_chroot.py remove
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

SUITE = "trixie"
PACKAGES = ("gimp", "python3-gi", "gir1.2-gimp-3.0", "python3-numpy", "python3-zmq", "python3-msgpack",
            # a virtual display and a scripted "user" for the plug-in's interactive dialogs
            "xvfb", "xauth", "xdotool")
#: bump when the build steps change so cached roots are rebuilt
LAYOUT = 2


def stamp_for(packages: Sequence[str]) -> Dict[str, object]:
    """What a usable root built with ``packages`` holds (other roots, e.g. tests/hosts/blender_chroot.py, pass
    their own package list to the functions below)."""
    return {"layout": LAYOUT, "suite": SUITE, "variant": "minbase", "packages": list(packages)}


#: what a usable GIMP root holds
STAMP = stamp_for(PACKAGES)
STAMP_NAME = ".mattebox-gimp-stamp.json"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
#: the executable that batch runs use inside the root
GIMP_CONSOLE = "gimp-console-3.0"
#: HOME of root inside the chroot; GIMP keeps its profile (and user plug-ins) below it
CHROOT_HOME = "/root"
USER_PLUGIN_DIR = CHROOT_HOME + "/.config/GIMP/3.0/plug-ins"


class ChrootUnavailable(RuntimeError):
    """The chroot cannot be built or used on this machine; the message says why."""


def default_root() -> Path:
    """``cache_dir()/gimp-trixie`` (``$MATTEBOX_GIMP_CHROOT`` overrides)."""
    env = os.environ.get("MATTEBOX_GIMP_CHROOT")
    if env:
        return Path(env)
    from mattebox.paths import cache_dir

    return cache_dir() / "gimp-trixie"


def debian_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror: ``$MATTEBOX_DEBIAN_MIRROR``, else the host's first deb822/list source, else deb.debian.org."""
    env = os.environ.get("MATTEBOX_DEBIAN_MIRROR")
    if env:
        return env
    sources = apt_dir / "sources.list.d" / "debian.sources"
    if sources.is_file():
        for match in re.finditer(r"^URIs:\s*(\S+)", sources.read_text(), re.M):
            uri = match.group(1).rstrip("/")
            if not uri.endswith("-security"):
                return uri
    legacy = apt_dir / "sources.list"
    if legacy.is_file():
        for line in legacy.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and "security" not in parts[1]:
                return parts[1].rstrip("/")
    return DEFAULT_MIRROR


def is_ready(root: Optional[Path] = None, packages: Sequence[str] = PACKAGES) -> bool:
    """True when ``root`` holds a finished build of ``packages`` (:func:`stamp_for`)."""
    root = Path(root or default_root())
    try:
        return json.loads((root / STAMP_NAME).read_text()) == stamp_for(packages)
    except (OSError, ValueError):
        return False


def unavailable_reason(root: Optional[Path] = None, packages: Sequence[str] = PACKAGES) -> Optional[str]:
    """Why the chroot can be neither used nor built here, or None when it can."""
    if not sys.platform.startswith("linux"):
        return f"the GIMP chroot needs Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return "the GIMP chroot needs root (chroot, mount and debootstrap)"
    for tool in ("chroot", "unshare", "mount"):
        if shutil.which(tool) is None:
            return f"'{tool}' is not on PATH"
    if is_ready(root, packages):
        return None
    if shutil.which("debootstrap") is None and shutil.which("apt-get") is None:
        return "neither debootstrap nor apt-get (to install it) is available to build the GIMP chroot"
    return None


def _log(message: str) -> None:
    print(f"[gimp-chroot] {message}", file=sys.stderr, flush=True)


def _run(argv: Sequence[str], **kwargs) -> None:
    _log("$ " + " ".join(argv))
    result = subprocess.run(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)
    if result.returncode != 0:
        tail = "\n".join(result.stdout.splitlines()[-40:])
        raise ChrootUnavailable(f"command failed with exit status {result.returncode}: {' '.join(argv)}\n{tail}")


def _mounts_under(path: Path) -> List[str]:
    prefix = str(path.resolve())
    with open("/proc/self/mounts") as fh:
        points = [line.split()[1].replace("\\040", " ") for line in fh]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


def _remove_tree(path: Path) -> None:
    """Delete a (partial) root, refusing when anything is still mounted inside it."""
    if not path.exists():
        return
    mounted = _mounts_under(path)
    if mounted:
        raise ChrootUnavailable(f"refusing to delete {path}: still mounted inside it: {', '.join(mounted)}")
    shutil.rmtree(path)


@contextlib.contextmanager
def _build_lock(root: Path) -> Iterator[None]:
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / (root.name + ".lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _ensure_debootstrap() -> None:
    if shutil.which("debootstrap"):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    _run(["apt-get", "update", "-q"], env=env)
    _run(["apt-get", "install", "-y", "-q", "debootstrap"], env=env)
    if not shutil.which("debootstrap"):
        raise ChrootUnavailable("apt-get installed debootstrap but it is not on PATH")


def ensure_chroot(root: Optional[Path] = None, mirror: Optional[str] = None,
                  packages: Sequence[str] = PACKAGES) -> Path:
    """Build a trixie chroot with ``packages`` (default GIMP's) at ``root`` unless a matching build is there;
    return the root.

    The build happens in ``<root>.partial`` and is renamed into place only when complete, so an interrupted
    build never looks usable. Concurrent callers wait on a lock file beside the root.
    """
    root = Path(root or default_root())
    reason = unavailable_reason(root, packages)
    if reason:
        raise ChrootUnavailable(reason)
    if is_ready(root, packages):
        return root
    with _build_lock(root):
        if is_ready(root, packages):  # another process finished it while we waited
            return root
        _ensure_debootstrap()
        mirror = mirror or debian_mirror()
        partial = root.with_name(root.name + ".partial")
        _remove_tree(partial)
        _remove_tree(root)
        _log(f"building Debian {SUITE} with {' '.join(packages)} in {root} from {mirror} (minutes, ~1 GB)")
        _run(["debootstrap", "--variant=minbase", SUITE, str(partial), mirror])
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        run_in_chroot(["apt-get", "update", "-q"], root=partial, env=env, check=True, timeout=900)
        run_in_chroot(["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages], root=partial,
                      env=env, check=True, timeout=1800)
        run_in_chroot(["apt-get", "clean"], root=partial, check=True, timeout=300)
        (partial / CHROOT_HOME.lstrip("/")).mkdir(parents=True, exist_ok=True)
        (partial / STAMP_NAME).write_text(json.dumps(stamp_for(packages), indent=1) + "\n")
        partial.rename(root)
        _log(f"ready: {root}")
    return root


def remove_chroot(root: Optional[Path] = None) -> None:
    root = Path(root or default_root())
    with _build_lock(root):
        _remove_tree(root.with_name(root.name + ".partial"))
        _remove_tree(root)


#: environment inside the chroot; the caller's ``env`` is added on top. Nothing of the host's leaks in.
BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": CHROOT_HOME,
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "TMPDIR": "/tmp",
}


def run_in_chroot(argv: Sequence[str], root: Optional[Path] = None, env: Optional[Dict[str, str]] = None,
                  timeout: float = 300, check: bool = False, input: Optional[str] = None,
                  binds: Sequence[str] = ()) -> subprocess.CompletedProcess:
    """Run ``argv`` inside the chroot with /proc and /dev/shm mounted in a private mount namespace.

    The mounts live only as long as the command (the namespace dies with it), so nothing needs unmounting and
    nothing is left behind even when the command is killed. ``binds``: host folders mounted at the same path
    inside (shared files, e.g. a zip the host built for the chroot's Blender). Returns the CompletedProcess (text
    stdout/stderr); raises subprocess.TimeoutExpired after ``timeout`` seconds (the whole process group is killed) and
    ChrootUnavailable when ``check`` is set and the command fails.
    """
    root = Path(root or default_root())
    full_env = dict(BASE_ENV)
    full_env.update(env or {})
    quoted_root = _sh_quote(str(root))
    bind_mounts = "".join(f"mkdir -p {_sh_quote(str(root) + str(Path(b).resolve()))} && mount --bind "
                          f"{_sh_quote(str(Path(b).resolve()))} {_sh_quote(str(root) + str(Path(b).resolve()))} && "
                          for b in binds)
    script = (f"mount -t proc proc {quoted_root}/proc && "
              f"mkdir -p {quoted_root}/dev/shm && mount -t tmpfs -o mode=1777 shm {quoted_root}/dev/shm && "
              + bind_mounts +
              f"exec chroot {quoted_root} /usr/bin/env -i "
              + " ".join(_sh_quote(f"{k}={v}") for k, v in full_env.items()) + ' "$@"')
    command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "mattebox-chroot", *argv]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        stdout, stderr = proc.communicate()
        raise subprocess.TimeoutExpired(list(argv), timeout, output=stdout, stderr=stderr) from None
    result = subprocess.CompletedProcess(list(argv), proc.returncode, stdout, stderr)
    if check and result.returncode != 0:
        tail = "\n".join((stdout + stderr).splitlines()[-40:])
        raise ChrootUnavailable(f"in chroot: {' '.join(argv)} failed with exit status {result.returncode}\n{tail}")
    return result


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def main(argv: Optional[Sequence[str]] = None, default: Optional[Path] = None, packages: Sequence[str] = PACKAGES,
         description: str = __doc__) -> int:
    """The command line of a cached root with ``packages`` at ``default`` (None: the GIMP root); the Blender root
    (tests/hosts/blender_chroot.py) is driven by the same commands."""
    parser = argparse.ArgumentParser(description=description.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=None, help="root folder (default: the cache)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build the root unless a matching one is cached")
    sub.add_parser("status", help="say whether the root is ready, buildable, or why not")
    sub.add_parser("remove", help="delete the cached root")
    run = sub.add_parser("run", help="run a command inside the root")
    run.add_argument("--bind", action="append", default=[], help="host folder to mount at the same path inside")
    run.add_argument("argv", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    root = args.root or default or default_root()
    try:
        if args.command == "build":
            print(ensure_chroot(root, packages=packages))
        elif args.command == "status":
            reason = unavailable_reason(root, packages)
            print(f"unavailable: {reason}" if reason else (f"ready: {root}" if is_ready(root, packages)
                                                           else f"buildable at {root}"))
        elif args.command == "remove":
            remove_chroot(root)
        else:
            command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
            result = run_in_chroot(command or ["sh"], root=ensure_chroot(root, packages=packages), timeout=3600,
                                   binds=args.bind)
            sys.stdout.write(result.stdout)
            sys.stderr.write(result.stderr)
            return result.returncode
    except ChrootUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0

if __name__ == "__main__":
    if __package__ in (None, ""):
        sys.path[:0] = [str(Path(__file__).resolve().parents[2] / p) for p in ("server", "plugin")]
    sys.exit(main())
