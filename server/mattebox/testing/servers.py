"""Real ``python -m mattebox serve`` processes for tests and benches: start one, wait for its ready file, stop it;
wait until a cluster replica is busy; an endpoint where no server is. The one place that knows how a test or bench
starts a server."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Union

#: the source checkout this module lies in (server/mattebox/testing/servers.py), when it lies in one
CHECKOUT = Path(__file__).resolve().parents[3]
LOOPBACK = "tcp://127.0.0.1:0"  # a random free port on loopback
LOG_TAIL_CHARS = 4000


def tree_env(**extra: str) -> dict:
    """Environment for subprocesses that must import this tree's packages (``extra`` set on top): in a source
    checkout its plugin/, server/ and installers/ first on PYTHONPATH, and its root (for test modules such as
    ``tests.support.models``); from an installed wheel the environment as it is."""
    env = dict(os.environ)
    if (CHECKOUT / "server" / "mattebox").is_dir():
        paths = [str(CHECKOUT / "plugin"), str(CHECKOUT / "server"), str(CHECKOUT / "installers"), str(CHECKOUT)]
        env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.update(extra)
    return env


class ServerProcess:
    """``python -m mattebox serve`` in a subprocess, started in ``folder`` (its ready file and ``server.log``, which
    several servers in one folder append to), with this tree's packages importable.

    ``args``: extra CLI arguments. ``endpoint``: what to bind (default: a random loopback port); ``.endpoint`` is
    what it bound. ``device``: ``--device`` (None: not passed). ``state_dir``: ``--state-dir`` (a folder, or
    "none" for memory-only; None: not passed, so ``$MATTEBOX_STATE`` decides). ``env``: variables set on top of
    this process's environment. Raises RuntimeError with the log's tail when the server exits before it is ready
    or is not ready within ``start_timeout`` seconds (generous: a server that fails exits at once and says why;
    one that is merely slow, on a loaded machine, should not fail the test)."""

    def __init__(self, folder: Union[str, Path], *args: str, endpoint: str = LOOPBACK, device: Optional[str] = "cpu",
                 state_dir: Union[str, Path, None] = None, env: Optional[dict] = None, start_timeout: float = 120.0,
                 stop_timeout: float = 15.0, remove_folder: bool = False):
        self.folder = Path(folder)
        self.log_path = self.folder / "server.log"
        self.stop_timeout = stop_timeout
        self._remove_folder = remove_folder
        ready = self.folder / f"endpoint-{time.monotonic_ns()}"
        command = [sys.executable, "-m", "mattebox", "serve", "--endpoint", endpoint, "--ready-file", str(ready)]
        command += ["--device", device] if device else []
        command += ["--state-dir", str(state_dir)] if state_dir is not None else []
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(command + list(args), env=tree_env(**(env or {})), stdout=self.log,
                                     stderr=self.log)
        deadline = time.monotonic() + start_timeout
        while not ready.exists():
            if self.proc.poll() is not None:
                self._fail(f"mattebox serve exited with code {self.proc.returncode} before it was ready")
            if time.monotonic() > deadline:
                self._fail(f"mattebox serve was not ready within {start_timeout:g} s")
            time.sleep(0.02)
        self.endpoint = ready.read_text().strip()

    @classmethod
    def temporary(cls, *args: str, state_dir: Union[str, Path, None] = None, **options) -> "ServerProcess":
        """A server in a new temporary folder, removed with everything in it on ``stop``; its job store lives there
        unless ``state_dir`` names another folder (or "none": memory-only). For benches, which have no tmp_path."""
        folder = Path(tempfile.mkdtemp(prefix="mattebox-server-"))
        return cls(folder, *args, state_dir=state_dir or folder / "state", remove_folder=True, **options)

    def _fail(self, what: str) -> None:
        tail = self.log_tail()
        self.stop()
        raise RuntimeError(f"{what}; last lines of {self.log_path}:\n{tail}")

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return "(no log)"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_mb(self) -> float:
        """Resident memory of the server process in MiB (Linux /proc), NaN when it is not known."""
        return self._proc_status_mb("VmRSS:")

    def peak_rss_mb(self) -> float:
        """The server process's peak resident memory so far in MiB (VmHWM), NaN when it is not known."""
        return self._proc_status_mb("VmHWM:")

    def _proc_status_mb(self, key: str) -> float:
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith(key):
                    return int(line.split()[1]) / 1024
        except FileNotFoundError:
            pass
        return float("nan")

    def stop(self, sig: int = signal.SIGTERM, timeout: Optional[float] = None) -> int:
        """Send ``sig`` (when still running), wait up to ``timeout`` seconds (default: ``stop_timeout``), then
        kill; -> the return code. Safe to call again."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=self.stop_timeout if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        if self._remove_folder:
            shutil.rmtree(self.folder, ignore_errors=True)
        return self.proc.returncode


def free_endpoint() -> str:
    """A loopback TCP endpoint nothing listens on: a port the OS just handed out and took back."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{sock.getsockname()[1]}"


def wait_for_busy_replica(client, timeout: float = 60.0, poll: float = 0.1) -> Optional[dict]:
    """The status entry (with ``pid``) of a live cluster replica that is running a job, polling
    ``client.status()`` every ``poll`` seconds; None when none is busy within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        busy = [r for r in client.status()["cluster"]["replicas"].values() if r["job"] and r.get("alive")]
        if busy:
            return busy[0]
        if time.monotonic() >= deadline:
            return None
        time.sleep(poll)


@contextmanager
def refused_endpoint() -> Iterator[str]:
    """A loopback endpoint where no server listens, for "server down" tests. Its port stays bound (not listening)
    by this process for the ``with`` block, so connecting is refused and no server started meanwhile, by this or a
    parallel test run, can take it, as one could a port found free and then closed."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"tcp://127.0.0.1:{sock.getsockname()[1]}"
