"""Attacks (issue #17): every defect the issue lists, scripted against real ``python -m mattebox serve`` processes
(and the CLI), each judged by behaviour, not by error codes (the fixes' codes are not settled):

- *held*: the attacker got nothing it should not have (no other client's bytes, jobs or keys, no file outside
  mattebox's own touched), the server still answers, memory stayed bounded, and any refusal is a clear message (an
  error naming a field or path, never a traceback);
- *lost*: jobs of another, well-behaved client running alongside that did not come back with the right result
  (None where no other client is involved);
- *peak*: for each oversized input, the highest RSS of the process that took it, above its idle RSS, against twice
  the configured limit (the target in the issue). Every process under attack is watched and killed when its RSS
  passes ``CAP_MB`` (the row then says so): the whole section stays well under 6 GiB on a shared machine.

Everything runs on loopback or ipc, every loop is bounded in count and time, and every file lives in a scratch
folder removed afterwards. Where a second person is needed, the attacker runs as uid nobody through ``setpriv``
(skipped when this does not run as root). ``python bench/reliability.py --only attacks`` runs the section alone.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Dict, List, Optional

import msgpack
import numpy as np
import zmq

from mattebox_plugin import protocol, shm
from mattebox_plugin.client import Client, Job, JobFailed, ServerUnavailable
from mattebox.testing.engines import SLOW_ENGINE
from mattebox.testing.servers import LOOPBACK, ServerProcess, tree_env

MIB = 1 << 20
CAP_MB = 3072  #: a process under attack is killed past this RSS (MiB): the attack is then NOT held
SLOW = dict(MATTEBOX_ENGINES=SLOW_ENGINE, MATTEBOX_TEST_STEPS="10", MATTEBOX_TEST_STEP_S="0.05")  # 0.5 s jobs
PASSTHROUGH = {"engine": "passthrough", "outputs": ["alpha"]}


# ------------------------------------------------------------------------------------------- helpers
def rss_mb(pid: int, key: str = "VmRSS") -> float:
    """``key`` (VmRSS, VmHWM) of a process from /proc, in MiB; NaN once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return float("nan")


class Watch:
    """Follows one process's RSS every 10 ms from a thread: ``baseline`` (at start), ``peak`` (the kernel's own
    high-water mark where it can still be read) and ``growth``; kills the process (SIGKILL) when RSS passes
    ``cap_mb`` and sets ``killed``."""

    def __init__(self, pid: int, cap_mb: float = CAP_MB):
        self.pid, self.cap_mb = pid, cap_mb
        self.baseline = rss_mb(pid)
        self.peak = self.baseline
        self.killed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            now = max(rss_mb(self.pid), rss_mb(self.pid, "VmHWM"))
            if now != now:  # NaN: the process is gone
                return
            self.peak = max(self.peak, now)
            if now > self.cap_mb and not self.killed:
                self.killed = True
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def stop(self) -> "Watch":
        self._stop.set()
        self._thread.join()
        last = rss_mb(self.pid, "VmHWM")  # what happened since the last sample
        self.peak = self.peak if last != last else max(self.peak, last)
        return self

    @property
    def growth(self) -> float:
        return round(self.peak - self.baseline, 1)


def start_server(*args: str, state_dir="none", endpoint: str = LOOPBACK, **env) -> ServerProcess:
    """A ``mattebox serve`` subprocess (memory-only unless ``state_dir``) with the slow test engine loaded."""
    return ServerProcess.temporary("--log-level", "warning", *args, endpoint=endpoint, state_dir=state_dir,
                                   env=dict(SLOW, **env), start_timeout=60, stop_timeout=30)


_SERVE_HELP: List[str] = []


def optional_flag(flag: str, value) -> List[str]:
    """``[flag, value]`` when this tree's ``mattebox serve`` has ``flag`` (read once from its --help), else []: the
    same bench runs before and after the issue-17 branches that add limits are merged."""
    if not _SERVE_HELP:
        _SERVE_HELP.append(subprocess.run([sys.executable, "-m", "mattebox", "serve", "--help"], env=tree_env(),
                                          capture_output=True, text=True, timeout=60).stdout)
    return [flag, str(value)] if re.search(re.escape(flag) + r"\b", _SERVE_HELP[0]) else []


@contextmanager
def scratch():
    """A scratch folder every local user can enter (a second user needs to reach files in it); removed after."""
    folder = Path(tempfile.mkdtemp(prefix="mattebox-attack-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def snapshot(folder: Path) -> Dict[str, str]:
    """Every entry under ``folder`` (not following symlinks), by relative path -> its kind and content hash or
    link target."""
    entries = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            kind = "link:" + os.readlink(path)
        elif path.is_file():
            kind = "file:" + hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            kind = "dir"
        entries[path.relative_to(folder).as_posix()] = kind
    return entries


def changed(before: Dict[str, str], after: Dict[str, str]) -> List[str]:
    """Entries of ``before`` that are gone or different in ``after`` (new entries are not counted)."""
    return [path for path, kind in before.items() if after.get(path) != kind]


def clear(output: str) -> bool:
    """A message a person can act on: no Python traceback, no raw OpenCV assertion."""
    return "Traceback" not in output and "(-215" not in output and "error: OpenCV" not in output


_SCRATCH = re.compile(re.escape(tempfile.gettempdir()) + r"/mattebox-(?:attack|server)-[^/\s'\"]+")
_PORT = re.compile(r"(127\.0\.0\.1|\[::1\]):\d+")


def last_line(output: str) -> str:
    """The last line of a command's output, scratch folders and ports masked, so the table is stable."""
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    line = _PORT.sub(r"\1:PORT", _SCRATCH.sub("SCRATCH", lines[-1])) if lines else "(no output)"
    return line[:200]


def cli(*args: str, cap_mb: float = CAP_MB, timeout: float = 60.0, cwd=None, env=None):
    """Run ``python -m mattebox ARGS`` watched (killed past ``cap_mb`` MiB RSS or after ``timeout`` s).
    -> (return code, output, peak RSS MiB, killed for memory, timed out)."""
    proc = subprocess.Popen([sys.executable, "-m", "mattebox", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=tree_env(**(env or {})), cwd=cwd)
    watch = Watch(proc.pid, cap_mb)
    timed_out = False
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        proc.kill()
        output, _ = proc.communicate()
    watch.stop()
    return proc.returncode, output.decode(errors="replace"), round(watch.peak, 1), watch.killed, timed_out


def row(attack: str, held: Optional[bool], detail: str, lost: Optional[int] = None, peak_mb=None,
        limit_mb=None) -> dict:
    """One line of the table. ``peak_mb``: RSS growth (or peak) of the process that took the input; ``limit_mb``:
    what it must stay under (2x the configured limit)."""
    return {"attack": attack, "held": held, "lost": lost, "peak_mb": peak_mb, "limit_mb": limit_mb,
            "detail": detail}


class Raw:
    """A hand-made client (a bare DEALER): sends whatever the attacker wants and reads answers by id."""

    def __init__(self, endpoint: str, server_key: Optional[bytes] = None):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if server_key:
            self.sock.curve_serverkey = server_key
            self.sock.curve_publickey, self.sock.curve_secretkey = zmq.curve_keypair()
        self.sock.connect(endpoint)
        self.client = f"attacker-{uuid.uuid4().hex[:8]}"

    def send(self, header: dict, frames=()) -> None:
        self.sock.send_multipart(protocol.encode(header, frames), copy=False)

    def answer(self, request_id: str, timeout: float = 20.0, skip=("accepted", "progress")):
        """(header, frames) of the first message for ``request_id`` whose op is not in ``skip``; None on silence."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.sock.poll(100):
                continue
            frames = self.sock.recv_multipart()
            try:
                header, buffers = protocol.decode(frames)
            except protocol.ProtocolError:
                continue
            if header.get("id") == request_id and header.get("op") not in skip:
                return header, buffers
        return None

    def request(self, header: dict, frames=(), timeout: float = 20.0, **kw):
        header = dict(header, id=header.get("id") or uuid.uuid4().hex)
        self.send(header, frames)
        return self.answer(header["id"], timeout, **kw)

    def matte(self, buffers: List[dict], frames=(), params=None, timeout: float = 20.0,
              skip=("accepted", "progress"), **extra):
        """A matte request (``extra``: more header fields) -> its answer, as :meth:`answer`."""
        header = {"op": "matte", "id": uuid.uuid4().hex, "client": self.client, "params": params or PASSTHROUGH,
                  "buffers": buffers, **extra}
        return self.request(header, frames, timeout, skip=skip)

    def close(self) -> None:
        self.sock.close(linger=0)
        self.ctx.term()


def describe(name: str, shape, dtype: str = "float32", **extra) -> dict:
    colour = "data" if len(shape) == 2 else "linear"
    return {"name": name, "shape": list(shape), "dtype": dtype, "colorspace": colour, **extra}


class Victim:
    """Another client minding its own business: ``jobs`` slow jobs submitted before the attack, collected after
    it, plus one fresh round trip at priority 10 (it must not wait behind an attacker's queue). ``lost()`` counts
    those that did not come back right."""

    def __init__(self, endpoint: str, jobs: int = 2, **client_options):
        self.client = Client(endpoint, timeout=5, heartbeat=0.5, shared_memory=False, **client_options)
        rng = np.random.default_rng(len(endpoint))
        self.images = [rng.random((32, 32, 3), dtype=np.float32) for _ in range(jobs)]
        self.jobs = [self.client.submit(image=img, params={"engine": "test-slow"}) for img in self.images]

    def lost(self) -> int:
        ok = 0
        for job, image in zip(self.jobs, self.images):
            try:
                ok += bool(np.allclose(job.result(timeout=60).alpha, image.mean(axis=2), atol=1e-6))
            except Exception:
                pass
        mask = np.full((32, 32), 0.25, np.float32)
        try:
            job = self.client.submit(image=np.ones((32, 32, 3), np.float32), mask=mask,
                                     params=dict(PASSTHROUGH, priority=10))
            ok += bool(np.array_equal(job.result(timeout=60).alpha, mask))
        except Exception:
            pass
        self.client.close()
        return len(self.jobs) + 1 - ok


def _answered(answer) -> str:
    if answer is None:
        return "no answer"
    header = answer[0]
    if header["op"] == "result":
        return "a result came back"
    if header["op"] == "error":
        return f"{header['code']}" + (f" ({header['field']})" if header.get("field") else "") + \
            f": {header['message'][:100]}"
    return header["op"]


def _error_names_field(answer, word: str) -> bool:
    return answer is not None and answer[0]["op"] == "error" and word in str(answer[0].get("field", "")) and \
        clear(answer[0].get("message", ""))


# --------------------------------------------------------------------------------------- shared memory
def shm_empty_token() -> dict:
    """hello {shm: {name: <the victim's segment>, token: ""}} from another connection that never opened it (the
    name is in /dev/shm for every user to see), then a job reading the victim's input, and a reply_shm writing into
    the victim's live result."""
    name = "shm: empty-token probe, read + overwrite another client's segment"
    if not shm.supported():
        return row(name, None, "skipped: no /dev/shm here")
    server = start_server()
    attacker = None
    try:
        with Client(server.endpoint, timeout=10, shared_memory=True) as victim:
            victim.hello()
            if not victim.shared_memory:
                return row(name, None, "skipped: the server gave the victim no shared memory")
            plate = np.random.default_rng(1).random((64, 64, 3), dtype=np.float32)
            mask = np.random.default_rng(2).random((64, 64), dtype=np.float32)
            result = victim.submit(image=plate, mask=mask, params=PASSTHROUGH).result(timeout=30)
            alpha = result.alpha  # a live view of the victim's segment (its reply room)
            segment = victim._shm_pool.segments[0].name
            attacker = Raw(server.endpoint)
            hello = attacker.request({"op": "hello", "client": attacker.client, "protocol": 1,
                                      "shm": {"name": segment, "token": ""}})
            read = attacker.matte([describe("image", plate.shape, shm={"name": segment, "offset": 0})],
                                  params={"engine": "passthrough", "outputs": ["foreground"]})
            leaked = read is not None and read[0]["op"] == "result" and bytes(read[1][0]) == plate.tobytes()
            reply_at = shm.align(plate.nbytes) + shm.align(mask.nbytes)
            wrote = attacker.matte([describe("image", plate.shape), describe("mask", mask.shape)],
                                   [np.zeros_like(plate), np.zeros_like(mask)],
                                   reply_shm={"name": segment, "offset": reply_at, "size": mask.nbytes})
            overwritten = not np.array_equal(alpha, mask)
            del result, alpha
        alive = server.alive()
        held = not leaked and not overwritten and alive
        return row(name, held, f"probe answered shm={hello[0].get('shm') if hello else '?'}; read: "
                   f"{'victim plate returned byte-exact' if leaked else _answered(read)}; reply_shm: "
                   f"{'victim result overwritten' if overwritten else _answered(wrote)}", lost=int(overwritten))
    finally:
        if attacker is not None:
            attacker.close()
        server.stop()


def shm_truncate() -> dict:
    """A client (the real one, so it proves its segments however the server asks) runs one job through shared
    memory, truncates that segment to 4096 bytes (a sealed memfd refuses), and sends the same request again under a
    new id (SIGBUS)."""
    name = "shm: segment truncated between jobs (SIGBUS)"
    if not shm.supported():
        return row(name, None, "skipped: no /dev/shm here")
    server = start_server()
    victim = Victim(server.endpoint)
    plate = np.random.default_rng(3).random((64, 64, 3), dtype=np.float32)
    try:
        with Client(server.endpoint, timeout=5, heartbeat=0.5, resubmit=False, shared_memory=True) as attacker:
            attacker.hello()
            if not attacker.shared_memory:
                return row(name, None, "skipped: the server gave this client no shared memory")
            sent: List[dict] = []
            send = attacker._send
            attacker._send = lambda header, frames=(): (sent.append(header), send(header, frames))[1]
            first = attacker.submit(image=plate, params=PASSTHROUGH)
            request = next(h for h in sent if h["op"] == protocol.MATTE)
            first.result(timeout=30)
            segment = attacker._shm_pool.get(request["buffers"][0]["shm"]["name"])
            try:
                os.truncate(segment.path, 4096)
                truncated = "truncated"
                attacker._shm_pool.segments.remove(segment)  # the attacker must not read it again either (SIGBUS)
            except PermissionError:
                truncated = "truncate refused (sealed memfd)"
            again = Job(attacker, uuid.uuid4().hex, None, [])  # followed like an attach: never resubmitted
            attacker._jobs[again.id] = again
            send(dict(request, id=again.id))
            try:
                again.result(timeout=15)
                second = "a result came back"
            except JobFailed as exc:
                second = f"{exc.code}: {exc.message[:100]}"
            except (ServerUnavailable, TimeoutError):
                second = "no answer"
        alive = server.alive()
        code = server.proc.returncode
        lost = victim.lost()
        held = alive and second != "no answer" and lost == 0
        return row(name, held, f"{truncated}; then: {second}; server {'alive' if alive else f'died (exit {code})'}",
                   lost=lost)
    finally:
        server.stop()


# ------------------------------------------------------------------------------------------ ownership
def _ownership(label: str, server_args=(), alice_keys: Optional[dict] = None, bob_keys: Optional[dict] = None):
    """Alice runs two jobs; Bob (another key or another connection) reads ``status``, attaches to her first job
    by id (then releases it) and cancels her second. -> (row, whether status showed Bob her job id)."""
    server = start_server(*server_args)
    options = dict(timeout=5, heartbeat=0.3, resubmit=False, shared_memory=False)
    try:
        with Client(server.endpoint, **options, **(alice_keys or {})) as alice, \
                Client(server.endpoint, **options, **(bob_keys or {})) as bob:
            alice.hello()
            bob.hello()
            images = [np.random.default_rng(10 + i).random((32, 32, 3), dtype=np.float32) for i in range(2)]
            first = alice.submit(image=images[0], params={"engine": "test-slow"})
            status = bob.status()
            leaked = first.id in repr(status)
            stolen = False
            try:  # alice is not polling meanwhile: whatever bob gets, he got from the server
                stolen = bool(np.allclose(bob.attach(first.id, release=True).result(timeout=15).alpha,
                                          images[0].mean(axis=2), atol=1e-6))
            except (JobFailed, TimeoutError):
                pass
            second = alice.submit(image=images[1], params={"engine": "test-slow"})
            bob._send({"op": protocol.CANCEL, "id": second.id})
            got = []
            for job, image in zip((first, second), images):
                try:
                    got.append(bool(np.allclose(job.result(timeout=15).alpha, image.mean(axis=2), atol=1e-6)))
                except (JobFailed, TimeoutError) as exc:
                    got.append(str(getattr(exc, "code", "timeout")))
        lost = sum(g is not True for g in got)
        held = not stolen and lost == 0 and server.alive()
        detail = (f"status showed her job id: {'yes' if leaked else 'no'}; attach by id: "
                  f"{'her result went to the attacker' if stolen else 'refused'}; her jobs after release+cancel: "
                  f"{', '.join('ok' if g is True else g for g in got)}")
        return row(f"jobs: attach/release/cancel another owner's job ({label})", held, detail, lost=lost), leaked
    finally:
        server.stop()


def ownership() -> List[dict]:
    from mattebox.commands.keys import make_keys

    with scratch() as folder:
        texts = make_keys(folder / "keys", ["alice", "bob"])
        server_key = texts["server_public_key"]
        keys = {who: {"server_public_key": server_key, "client_public_key": texts[f"{who}_public_key"],
                      "client_secret_key": texts[f"{who}_secret_key"]} for who in ("alice", "bob")}
        curve_args = ("--curve-secret-key", str(folder / "keys" / "server.key_secret"),
                      "--curve-clients", str(folder / "keys" / "clients"))
        curve_row, _ = _ownership("two CURVE keys", curve_args, keys["alice"], keys["bob"])
    plain_row, leaked = _ownership("two loopback connections, no CURVE")
    status_row = row("status: lists other clients' job ids", not leaked,
                     "another connection's status named her running job" if leaked else "no foreign job ids")
    return [curve_row, plain_row, status_row]


# ---------------------------------------------------------------------------------- limits before memory
def _oversized(name: str, server: ServerProcess, limit_mb: float, attack: Callable[[], str], victim: bool = True):
    """Run ``attack`` (-> what the server answered) while watching the server's RSS; a Victim's jobs run across
    it. Held: growth <= 2x ``limit_mb``, the server alive and the victim's jobs intact."""
    other = Victim(server.endpoint) if victim else None
    watch = Watch(server.proc.pid)
    try:
        answered = attack()
    finally:
        watch.stop()
    alive = server.alive()
    lost = other.lost() if other else None
    held = alive and not watch.killed and watch.growth <= 2 * limit_mb and not lost
    fate = f"killed at the {CAP_MB} MiB cap" if watch.killed else ("alive" if alive else "died")
    return row(name, held, f"{answered}; server {fate}", lost=lost, peak_mb=watch.growth, limit_mb=2 * limit_mb)


def frames_over_limit(frames: int = 16, frame_mb: int = 60, limit_mb: int = 64) -> dict:
    """One message of 16 x 60 MiB frames (each under ZMQ_MAXMSGSIZE) to a server with --max-message-bytes 64 MiB."""
    server = start_server("--max-message-bytes", str(limit_mb * MIB))
    attacker = Raw(server.endpoint)
    frame = bytes(frame_mb * MIB)
    shape = [frame_mb * MIB // (4096 * 3), 4096, 3]

    def attack() -> str:
        return _answered(attacker.matte([describe("image", shape, "uint8")] * frames, [frame] * frames,
                                        timeout=60))
    try:
        return _oversized(f"limits: {frames} x {frame_mb} MiB frames, --max-message-bytes {limit_mb} MiB", server,
                          limit_mb, attack)
    finally:
        attacker.close()
        server.stop()


def queue_dodge(jobs: int = 150, job_mb: int = 12, per_client: int = 8) -> dict:
    """A new ``client`` string per job to dodge the per-client queue limit: 150 x 12 MiB slow jobs (float32, so
    the engine adds no converted copy) against a limit of 8 jobs, and of 8 jobs' bytes where the server has a
    per-client byte budget."""
    server = start_server("--max-queued-jobs", str(per_client),
                          *optional_flag("--max-bytes-per-client", per_client * job_mb * MIB))
    attacker = Raw(server.endpoint)
    image = np.zeros((job_mb * MIB // (1024 * 3 * 4), 1024, 3), np.float32)
    counts = {"accepted": 0, "refused": 0}

    def attack() -> str:
        deadline = time.monotonic() + 120
        for _ in range(jobs):
            if not server.alive() or time.monotonic() > deadline:
                break
            attacker.client = uuid.uuid4().hex  # a "new client" each time
            answer = attacker.matte([describe("image", image.shape)], [image], params={"engine": "test-slow"},
                                    timeout=20, skip=("progress",))
            counts["accepted" if answer and answer[0]["op"] == "accepted" else "refused"] += 1
        return f"{counts['accepted']} of {jobs} accepted (limit {per_client} per client)"
    try:
        return _oversized(f"limits: new 'client' string per job, {jobs} x {job_mb} MiB", server,
                          per_client * job_mb, attack)
    finally:
        attacker.close()
        server.stop()


def big_header(outer: int = 4096, inner: int = 4000, limit_mb: int = 256) -> dict:
    """A 250 MiB msgpack header (4096 lists of 4000 15-character strings, each list within the decoder's limits)
    to a server taking 256 MiB messages, while another client's small jobs measure how long it stalls."""
    server = start_server("--max-message-bytes", str(limit_mb * MIB))
    attacker = Raw(server.endpoint)
    item = b"\xaf" + b"x" * 15
    head = msgpack.packb({"v": 1, "op": "status", "id": "big-header"})
    inner_list = b"\xdd" + struct.pack(">I", inner) + item * inner
    header = bytes([head[0] + 1]) + head[1:] + msgpack.packb("pad") + b"\xdd" + struct.pack(">I", outer) + \
        inner_list * outer
    latencies: List[float] = []
    wrong = []
    done = threading.Event()

    def small_client() -> None:
        with Client(server.endpoint, timeout=30, shared_memory=False) as client:
            n = 0
            while not done.is_set() and n < 2000:
                mask = np.full((32, 32), n / 2000, np.float32)
                started = time.perf_counter()
                try:
                    alpha = client.submit(image=np.ones((32, 32, 3), np.float32), mask=mask,
                                          params=PASSTHROUGH).result(timeout=30).alpha
                    wrong.append(not np.array_equal(alpha, mask))
                except Exception:
                    wrong.append(True)
                    return
                latencies.append(time.perf_counter() - started)
                n += 1
                time.sleep(0.02)

    def attack() -> str:
        thread = threading.Thread(target=small_client, daemon=True)
        thread.start()
        time.sleep(0.5)  # a few round trips before, as a baseline
        attacker.sock.send_multipart([protocol.MAGIC, header], copy=False)
        answer = attacker.answer("big-header", timeout=20, skip=())  # a dropped frame is never answered
        time.sleep(0.5)
        done.set()
        thread.join(60)
        return f"{len(header) / MIB:.0f} MiB header: {_answered(answer)}"
    try:
        result = _oversized(f"limits: {len(header) / MIB:.0f} MiB msgpack header", server, limit_mb, attack,
                            victim=False)
    finally:
        attacker.close()
        server.stop()
    stall = max(latencies) if latencies else float("inf")
    result["lost"] = sum(wrong)
    result["held"] = bool(result["held"] and stall < 1.0 and not any(wrong))
    result["stall_s"] = round(stall, 2)
    result["detail"] += f"; another client's slowest round trip {stall:.2f} s over {len(latencies)} jobs"
    return result


def _png_bomb(path: Path, side: int = 20000) -> None:
    """A valid RGB PNG declaring side x side pixels, all zero: 1.2 GB of pixels in about 1.1 MB of file."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)

    packer, row_bytes = zlib.compressobj(9), bytes(1 + 3 * side)
    idat = b"".join([packer.compress(row_bytes) for _ in range(side)] + [packer.flush()])
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def _write_png(path: Path, array: np.ndarray) -> None:
    from mattebox.imageio import write_png

    path.parent.mkdir(parents=True, exist_ok=True)
    write_png(path, array, bits=8)


def png_bomb() -> dict:
    """`mattebox matte` on a 1.1 MB PNG declaring 20000 x 20000: the CLI's peak RSS against twice its peak on a
    64 x 64 PNG (a header check refuses before decoding; decoding first costs gigabytes)."""
    name = "limits: 1.1 MiB PNG declaring 20000x20000 (mattebox matte)"
    server = start_server()
    try:
        with scratch() as folder:
            _png_bomb(folder / "bomb.png")
            _write_png(folder / "small.png", np.full((64, 64, 3), 0.5, np.float32))
            common = ("--endpoint", server.endpoint, "--engine", "passthrough", "--quiet")
            _, _, small_peak, _, _ = cli("matte", str(folder / "small.png"), "--out", str(folder / "a"), *common)
            rc, output, peak, killed, timed_out = cli("matte", str(folder / "bomb.png"), "--out", str(folder / "b"),
                                                      *common)
            size = (folder / "bomb.png").stat().st_size / MIB
    finally:
        server.stop()
    held = not killed and not timed_out and rc != 0 and clear(output) and peak <= 2 * small_peak
    fate = f"killed at the {CAP_MB} MiB cap" if killed else f"exit {rc}: {last_line(output)}"
    return row(name, held, f"{size:.1f} MiB file; {fate}; peak RSS {peak:.0f} MiB (64x64 PNG: {small_peak:.0f} MiB)",
               peak_mb=peak, limit_mb=round(2 * small_peak, 1))


def _plates(folder: Path, frames, mask: bool = True) -> None:
    for frame in frames:
        _write_png(folder / f"plate.{frame:04d}.png", np.full((32, 32, 3), 0.5, np.float32))
        if mask:
            _write_png(folder / f"mask.{frame:04d}.png", np.full((32, 32), 0.5, np.float32))


def _render(folder: Path, endpoint: str, frames: str, **options):
    return cli("render", str(folder / "plate.####.png"), "--frames", frames, "--mask", str(folder / "mask.####.png"),
               "--alpha", str(folder / "out" / "alpha.####.png"), "--endpoint", endpoint, "--engine", "passthrough",
               "--force", **options)


def render_huge_range(seconds: float = 30.0) -> dict:
    """`render --frames 1-300000000` (only frame 1 exists): the render process's peak RSS against twice its
    peak on --frames 1-1, killed after ``seconds`` (a streamed range that keeps running is bounded, so held)."""
    name = "limits: render --frames 1-300000000"
    server = start_server()
    try:
        with scratch() as folder:
            _plates(folder, [1])
            _, _, one_peak, _, _ = _render(folder, server.endpoint, "1-1")
            rc, output, peak, killed, timed_out = _render(folder, server.endpoint, "1-300000000", cap_mb=2048,
                                                          timeout=seconds)
    finally:
        server.stop()
    held = not killed and peak <= 2 * one_peak and (timed_out or clear(output))
    fate = "killed at the 2048 MiB cap" if killed else (f"still running after {seconds:g} s" if timed_out
                                                       else f"exit {rc}: {last_line(output)}")
    return row(name, held, f"{fate}; peak RSS {peak:.0f} MiB (--frames 1-1: {one_peak:.0f} MiB)", peak_mb=peak,
               limit_mb=round(2 * one_peak, 1))


def unreleased_results(jobs: int = 600, limit_mb: int = 64) -> dict:
    """600 jobs whose 1 MiB results are never released, on a memory-only server with 64 MiB for results where it
    has such a budget (``--max-result-bytes``), else with --max-message-bytes 64 MiB."""
    server = start_server("--max-message-bytes", str(limit_mb * MIB),
                          *optional_flag("--max-result-bytes", limit_mb * MIB))
    attacker = Raw(server.endpoint)
    image = np.zeros((512, 512, 3), np.uint8)
    first_id: List[str] = []

    def attack() -> str:
        results = 0
        deadline = time.monotonic() + 180
        for _ in range(jobs):
            if not server.alive() or time.monotonic() > deadline:
                break
            answer = attacker.matte([describe("image", image.shape, "uint8")], [image], timeout=20)
            first_id.append(answer[0]["id"] if answer else "")
            results += bool(answer and answer[0]["op"] == "result")
        late = attacker.request({"op": "attach", "id": first_id[0]}, skip=("progress",)) if first_id else None
        return f"{results} of {jobs} results kept unreleased; attach to the first: {_answered(late)}"
    try:
        return _oversized(f"limits: {jobs} unreleased 1 MiB results, memory-only server", server, limit_mb, attack)
    finally:
        attacker.close()
        server.stop()


# ---------------------------------------------------------------------------------------------- keys
NOBODY_READER = """
import ctypes, os, select, struct, sys
folder, wanted = sys.argv[1], sys.argv[2].encode()
libc = ctypes.CDLL(None, use_errno=True)
watch = libc.inotify_init1(os.O_NONBLOCK)
libc.inotify_add_watch(watch, folder.encode(), 0x100 | 0x80)  # IN_CREATE | IN_MOVED_TO
print("ready", flush=True)
fd = None
while fd is None and watch in select.select([watch, sys.stdin], [], [], 20)[0]:  # stdin closes: writer done
    events = os.read(watch, 65536)
    while events and fd is None:
        length = struct.unpack_from("iIII", events)[3]
        name = events[16:16 + length].rstrip(b"\\0")
        events = events[16 + length:]
        if name == wanted:
            try:
                fd = os.open(os.path.join(folder, wanted.decode()), os.O_RDONLY)  # the permission check is here
            except OSError:
                print("refused", flush=True)
                fd = -1
sys.stdin.read()  # until the key writer is done: the bytes are read afterwards, through the open descriptor
if fd is not None and fd >= 0 and b"secret-key" in os.read(fd, 1 << 16):
    print("READ", flush=True)
"""


def _as_nobody() -> Optional[List[str]]:
    """The command prefix that runs a program as uid nobody, or None when that is not possible here."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return None
    return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def keys_world_readable(tries: int = 10) -> dict:
    """While `mattebox keys` writes into an existing key folder, uid nobody, told by inotify the moment
    server.key_secret appears, opens it and reads it once the writer is done (10 tries)."""
    name = "keys: secret readable by another user while `mattebox keys` runs"
    prefix = _as_nobody()
    if prefix is None:
        return row(name, None, "skipped: needs root (setpriv) to act as a second user")
    python = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
    reads = 0
    with scratch() as folder:
        for n in range(tries):
            out = folder / f"keys{n}"
            out.mkdir(mode=0o755)  # the user's key folder, made beforehand (e.g. /etc/mattebox/keys)
            reader = subprocess.Popen(prefix + [python, "-c", NOBODY_READER, str(out), "server.key_secret"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd="/")
            reader.stdout.readline()
            cli("keys", "--out", str(out), timeout=60)
            try:
                output, _ = reader.communicate("", timeout=30)
            except subprocess.TimeoutExpired:
                reader.kill()
                output, _ = reader.communicate()
            reads += "READ" in output
        mode = oct((folder / "keys0" / "server.key_secret").stat().st_mode & 0o777)
    return row(name, reads == 0, f"uid nobody read server.key_secret in {reads} of {tries} tries (final mode {mode})")


def keys_replace_server() -> dict:
    """`mattebox keys --client X` (without --no-server) on a folder that already holds the server's pair."""
    with scratch() as folder:
        cli("keys", "--out", str(folder), timeout=60)
        before = snapshot(folder)
        rc, output, *_ = cli("keys", "--out", str(folder), "--client", "x", timeout=60)
        replaced = [name for name in changed(before, snapshot(folder)) if name.startswith("server.")]
    return row("keys: `keys --client X` replaces the server pair", not replaced,
               f"replaced: {', '.join(replaced)}" if replaced else f"server pair kept (exit {rc}: {last_line(output)})")


# ------------------------------------------------------------------------------------ files not ours
def _serve_once(folder: Path, state: Path) -> str:
    """Start a server on ``state`` and stop it; -> what happened, in a few words."""
    try:
        run = folder / f"run-{state.name}"
        run.mkdir()
        server = ServerProcess(run, "--log-level", "info", state_dir=state, start_timeout=60)
    except RuntimeError as exc:
        text = str(exc)
        return f"refused{'' if clear(text) else ' with a traceback'}: {last_line(text.split(';')[0])}"
    log = server.log_tail()
    server.stop()
    return "served memory-only" if "job store unavailable" in log else "served with a job store"


def state_dir_foreign() -> List[dict]:
    """`serve --state-dir DIR` on a folder holding files mattebox did not write (in results/, running/, a lock
    file), and on one whose results/ is a symlink to a folder outside: nothing that is not mattebox's may change."""
    rows = []
    with scratch() as folder:
        state = folder / "foreign"
        for rel in ("results/keep.bin", "running/keep.bin", "lock", "notes.txt"):
            (state / rel).parent.mkdir(parents=True, exist_ok=True)
            (state / rel).write_text(f"not mattebox's: {rel}\n")
        before = snapshot(state)
        what = _serve_once(folder, state)
        lost = changed(before, snapshot(state))
        rows.append(row("state dir: existing folder with foreign files", not lost,
                        f"{what}; {'changed or deleted: ' + ', '.join(lost) if lost else 'foreign files untouched'}"))
        outside, state = folder / "outside", folder / "linked"
        outside.mkdir()
        (outside / "precious.txt").write_text("outside the state dir\n")
        state.mkdir()
        (state / "results").symlink_to(outside)
        before = snapshot(outside)
        what = _serve_once(folder, state)
        lost = changed(before, snapshot(outside))
        touched = f"outside folder: {', '.join(lost)} deleted or changed" if lost else "outside folder untouched"
        rows.append(row("state dir: results/ is a symlink to another folder", not lost, f"{what}; {touched}"))
    return rows


def uninstall_foreign() -> dict:
    """`mattebox uninstall nuke --target DIR` where DIR/mattebox holds files no installer wrote."""
    with scratch() as folder:
        (folder / "mattebox").mkdir()
        (folder / "mattebox" / "my_gizmo.py").write_text("# the user's own work\n")
        (folder / "init.py").write_text("# the user's init.py\n")
        before = snapshot(folder)
        rc, output, *_ = cli("uninstall", "nuke", "--target", str(folder), timeout=60)
        lost = changed(before, snapshot(folder))
    return row("uninstall nuke --target on a folder with foreign files", not lost and clear(output),
               f"exit {rc}: {last_line(output)}; " + (f"deleted or changed: {', '.join(lost)}" if lost
                                                      else "foreign files untouched"))


# ---------------------------------------------------------------------------------------- endpoints
def _serve_cli(endpoint: str, *args: str, timeout: float = 30.0):
    """`mattebox serve --endpoint ENDPOINT ARGS` until it is ready (then stopped) or exits.
    -> (ready, return code, output)."""
    with scratch() as folder:
        ready = folder / "ready"
        proc = subprocess.Popen([sys.executable, "-m", "mattebox", "serve", "--endpoint", endpoint, "--state-dir",
                                 "none", "--device", "cpu", "--ready-file", str(ready), *args],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=tree_env())
        deadline = time.monotonic() + timeout
        while proc.poll() is None and not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        was_ready = ready.exists()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            output, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
        return was_ready, proc.returncode, output.decode(errors="replace")


def endpoints() -> List[dict]:
    """tcp://[::1] (serving or a clear refusal both hold), a port already in use, and CURVE on a wildcard address
    without --curve-clients. The last never binds: its port is not a number, so libzmq fails before any socket
    exists, and only a refusal that comes first (naming the clients folder) holds."""
    rows = []
    ready, rc, output = _serve_cli("tcp://[::1]:0")
    rows.append(row("endpoint: tcp://[::1]:0", ready or (rc != 0 and clear(output)),
                    "served" if ready else f"exit {rc}: {last_line(output)}"))
    server = start_server()
    try:
        ready, rc, output = _serve_cli(server.endpoint)
    finally:
        server.stop()
    rows.append(row("endpoint: port already in use", not ready and rc != 0 and clear(output),
                    "bound twice?" if ready else f"exit {rc}: {last_line(output)}"))
    from mattebox.commands.keys import make_keys

    with scratch() as folder:
        make_keys(folder, [])
        wildcard = "tcp://0.0.0.0:not-a-port"  # never a bind: libzmq rejects the port before making a socket
        ready, rc, output = _serve_cli(wildcard, "--curve-secret-key", str(folder / "server.key_secret"))
    refused = not ready and clear(output) and ("curve-clients" in output or "allow-any" in output)
    rows.append(row("endpoint: CURVE on 0.0.0.0 without --curve-clients", refused,
                    f"exit {rc}: {last_line(output)}"))
    return rows


def _refusals(count: int, fresh_keys: bool) -> dict:
    """``count`` connections with an unregistered CURVE key (one key for all, or a new key each: keys cost
    nothing to make): how many log lines they cost (held: fewer than count / 10, and a registered client is still
    served)."""
    from mattebox.commands.keys import make_keys

    with scratch() as folder:
        texts = make_keys(folder, ["alice"])
        server = ServerProcess(folder, "--log-level", "warning", "--curve-secret-key",
                               str(folder / "server.key_secret"), "--curve-clients", str(folder / "clients"),
                               state_dir="none", start_timeout=60)
        ctx = zmq.Context()
        socks = []
        stranger = zmq.curve_keypair()
        try:
            for _ in range(count):
                sock = ctx.socket(zmq.DEALER)
                sock.setsockopt(zmq.LINGER, 0)
                sock.setsockopt(zmq.RECONNECT_IVL, -1)  # one handshake each
                sock.curve_serverkey = texts["server_public_key"].encode()
                sock.curve_publickey, sock.curve_secretkey = zmq.curve_keypair() if fresh_keys else stranger
                sock.connect(server.endpoint)
                sock.send_multipart(protocol.encode({"op": "hello", "id": "x"}), zmq.NOBLOCK)
                socks.append(sock)
            lines, steady_since, deadline = -1, time.monotonic(), time.monotonic() + 30
            while time.monotonic() < deadline and time.monotonic() - steady_since < 2.0:
                now = server.log_tail(10 ** 8).count("client refused")
                if now != lines:
                    lines, steady_since = now, time.monotonic()
                time.sleep(0.1)
            with Client(server.endpoint, timeout=10, shared_memory=False, server_public_key=texts["server_public_key"],
                        client_public_key=texts["alice_public_key"],
                        client_secret_key=texts["alice_secret_key"]) as alice:
                serving = alice.hello()["protocol"] == 1
        finally:
            for sock in socks:
                sock.close(linger=0)
            ctx.term()
            server.stop()
    keys = f"{count} fresh keys" if fresh_keys else "one key"
    return row(f"log: {count} refused CURVE handshakes, {keys}", lines < count // 10 and serving,
               f"{lines} log lines with 'client refused'; a registered client still served: {serving}")


def refused_handshakes() -> List[dict]:
    return [_refusals(300, fresh_keys=False), _refusals(300, fresh_keys=True)]


# ---------------------------------------------------------------------------------------- bad inputs
def bad_requests() -> List[dict]:
    """roi outside the image, and a 1x1 image for the classical engine."""
    server = start_server()
    attacker = Raw(server.endpoint)
    try:
        image = np.full((32, 32, 3), 0.5, np.float32)
        roi = attacker.matte([describe("image", image.shape)], [image],
                             params=dict(PASSTHROUGH, roi=[1000, 1000, 50, 50]))
        tiny = np.full((1, 1, 3), 0.5, np.float32)
        one = attacker.matte([describe("image", tiny.shape)], [tiny], params={"engine": "classical"}, timeout=60)
        alive = server.alive()
    finally:
        attacker.close()
        server.stop()
    one_ok = one is not None and (one[0]["op"] == "result" or (one[0]["op"] == "error" and
                                                               clear(one[0].get("message", ""))))
    return [row("input: roi outside the image", _error_names_field(roi, "roi") and alive, _answered(roi)),
            row("input: 1x1 image (classical engine)", one_ok and alive, _answered(one))]


def render_files() -> List[dict]:
    """`render` over a range with a missing frame, and with a symlink planted at an output path."""
    rows = []
    server = start_server()
    try:
        with scratch() as folder:
            _plates(folder, [1, 3])
            rc, output, *_ = _render(folder, server.endpoint, "1-3", timeout=60)
            rows.append(row("render: a missing frame in the range", rc != 0 and clear(output) and "0002" in output,
                            f"exit {rc}: {last_line(output)}"))
        with scratch() as folder:
            _plates(folder, [1])
            victim = folder / "outside" / "precious.png"
            victim.parent.mkdir()
            victim.write_bytes(b"not an output\n")
            (folder / "out").mkdir()
            (folder / "out" / "alpha.0001.png").symlink_to(victim)
            before = snapshot(victim.parent)
            rc, output, *_ = _render(folder, server.endpoint, "1-1", timeout=60)
            lost = changed(before, snapshot(victim.parent))
            rows.append(row("render: symlink planted at the output path", not lost and clear(output),
                            f"exit {rc}: {last_line(output)}; " + ("wrote through the link into "
                                                                   "outside/precious.png" if lost
                                                                   else "link target untouched")))
    finally:
        server.stop()
    return rows


def folder_named_png() -> dict:
    """`mattebox matte x.png` where x.png is a folder: the message must say so."""
    with scratch() as folder:
        (folder / "x.png").mkdir()
        rc, output, *_ = cli("matte", str(folder / "x.png"), "--local", "--quiet", "--out", str(folder / "out"))
    said = any(word in output.lower() for word in ("directory", "folder", "not a file"))
    return row("input: a folder named x.png", rc != 0 and clear(output) and said, f"exit {rc}: {last_line(output)}")


# ----------------------------------------------------------------------------------- shot jobs (#20)
def _shot(attacker: Raw, first: int = 1, last: int = 5, owner_key: Optional[str] = None, **shot) -> str:
    """Open a shot job (classical, no keys) -> its id; the answer (accepted / need / error) is left unread."""
    job_id = uuid.uuid4().hex
    attacker.send({"op": "matte", "id": job_id, "owner_key": owner_key or uuid.uuid4().hex * 2,
                   "params": {"engine": "classical"}, "buffers": [], "shot": dict(shot, first=first, last=last)})
    return job_id


def _warm_shot(server: ServerProcess) -> None:
    """One small shot to the end, so the solver's modules are loaded before RSS is watched (some 600 MiB of
    imports, and a peak of a few hundred MiB on a shot worker's first temporal solve, even of 16x16 frames)."""
    rng = np.random.default_rng(3)
    with Client(server.endpoint, timeout=60, shared_memory=False) as client:
        list(client.matte_shot([1, 2, 3, 4, 5], lambda f: {"image": rng.random((16, 16, 3), dtype=np.float32)}))
    _reset_peak(server)


def _reset_peak(server: ServerProcess) -> None:
    """Reset the kernel's peak RSS of the server to its RSS now (clear_refs 5), so a Watch started next measures
    the attack, not what the solver's first use cost before it."""
    try:
        Path(f"/proc/{server.proc.pid}/clear_refs").write_text("5")
    except OSError:
        pass  # an older kernel: the peak then includes the warm-up (the row errs on the side of NOT held)


def shot_hog(shots: int = 8) -> dict:
    """Shots from 8 owners (a fresh owner_key each) that never answer `need`, on a server with one device worker and
    a 600 s shot time-out: another client's single frames must still come back (a shot used to hold the worker)."""
    server = start_server("--workers", "1", "--shot-timeout", "600")
    attacker = Raw(server.endpoint)
    try:
        ids = [_shot(attacker) for _ in range(shots)]
        asked = attacker.answer(ids[0], timeout=30, skip=("accepted", "progress")) is not None
        victim = Victim(server.endpoint)
        lost = victim.lost()
        held = server.alive() and asked and not lost
        return row(f"shots: {shots} shots never answer need (one device worker, --shot-timeout 600)", held,
                   f"first shot asked for a frame: {asked}; the other client's single frames: "
                   f"{'all came back' if not lost else f'{lost} lost'}", lost=lost)
    finally:
        attacker.close()
        server.stop()


def shot_declarations(shots: int = 256, queued_limit: int = 256) -> dict:
    """256 shots of 100,000 frames from 256 owners: every one is queued, and may cost no more than its header
    (limit: 2x max_queued_jobs x max_header_bytes = 2 x 256 x 64 KiB, plus the two running shots' walk)."""
    server = start_server("--shot-timeout", "600")
    attacker = Raw(server.endpoint)
    try:
        _warm_shot(server)
        watch = Watch(server.proc.pid)
        ids = [_shot(attacker, 0, 99_999) for _ in range(shots)]
        answers = [attacker.answer(i, timeout=10, skip=("progress", "need")) for i in ids]
        watch.stop()
        accepted = sum(a is not None and a[0]["op"] == "accepted" for a in answers)
        limit_mb = queued_limit * protocol.DEFAULT_LIMITS["max_header_bytes"] / MIB
        held = server.alive() and not watch.killed and watch.growth <= 2 * limit_mb
        return row(f"shots: {shots} declarations of 100,000 frames, fresh owner each", held,
                   f"{accepted} of {shots} accepted; server {'alive' if server.alive() else 'died'}",
                   peak_mb=watch.growth, limit_mb=2 * limit_mb)
    finally:
        attacker.close()
        server.stop()


def shot_frames(frame_mb: int = 60, limit_mb: int = 64) -> dict:
    """Frames a shot cannot use: the frame asked for but far bigger than the first (60 MiB after 16x16), and 60 MiB
    frames for a frame not asked for and for another owner's shot, and a frame after a cancel; --max-message-bytes
    64 MiB. The first shot's solve of its first frame happens before RSS is watched (see :func:`_warm_shot`)."""
    server = start_server("--max-message-bytes", str(limit_mb * MIB), "--shot-timeout", "600")
    attacker = Raw(server.endpoint)
    small = np.zeros((16, 16, 3), np.float32)
    big = np.zeros((frame_mb * MIB // (2048 * 3 * 4), 2048, 3), np.float32)
    said = []

    def frame(job_id: str, number: int, image: np.ndarray, key: str):
        attacker.send({"op": "frame", "id": job_id, "frame": number, "owner_key": key,
                       "buffers": [describe("image", image.shape)]}, [image])
        return attacker.answer(job_id, timeout=30, skip=("accepted", "progress", "need"))

    key = uuid.uuid4().hex * 2  # a shot that has its first frame and waits for the second (solved before watching)
    first = _shot(attacker, owner_key=key)
    attacker.answer(first, timeout=60, skip=("accepted", "progress"))  # need 1
    attacker.send({"op": "frame", "id": first, "frame": 1, "owner_key": key,
                   "buffers": [describe("image", small.shape)]}, [small])
    attacker.answer(first, timeout=60, skip=("accepted", "progress"))  # need 2
    _reset_peak(server)

    def attack() -> str:
        said.append(("bigger frame", frame(first, 2, big, key)))
        job = _shot(attacker, owner_key=key)
        attacker.answer(job, timeout=10, skip=("accepted", "progress"))
        said.append(("unasked frame", frame(job, 4, big, key)))
        job = _shot(attacker, owner_key=key)
        attacker.answer(job, timeout=10, skip=("accepted", "progress"))
        said.append(("another owner's shot", frame(job, 1, big, uuid.uuid4().hex * 2)))
        attacker.send({"op": "cancel", "id": job, "owner_key": key})
        attacker.answer(job, timeout=10, skip=("accepted", "progress", "need", "cancel"))
        said.append(("after cancel", frame(job, 1, small, key)))
        return "; ".join(f"{what}: {_answered(answer)[:60]}" for what, answer in said)
    try:
        result = _oversized(f"shots: unasked, bigger, foreign and late frames, --max-message-bytes {limit_mb} MiB",
                            server, limit_mb, attack)
        refused = all(answer is not None and answer[0]["op"] == "error" and clear(answer[0]["message"])
                      for _, answer in said)
        result["held"] = result["held"] and refused
        return result
    finally:
        attacker.close()
        server.stop()


def shot_slowloris(max_wait: int = 5) -> dict:
    """A client that pings (attach every 0.5 s) and never sends the frame asked for, --shot-timeout 600,
    --shot-max-wait 5; then a shot cancelled while it waits: its worker and bytes must come back at once."""
    server = start_server("--shot-timeout", "600", "--shot-max-wait", str(max_wait))
    attacker = Raw(server.endpoint)
    try:
        key = uuid.uuid4().hex * 2
        job = _shot(attacker, owner_key=key)
        started = time.monotonic()
        answer = None
        while answer is None and time.monotonic() - started < 60:
            attacker.send({"op": "attach", "id": job, "owner_key": key})
            answer = attacker.answer(job, timeout=0.5, skip=("accepted", "progress", "need"))
        failed_after = time.monotonic() - started
        job = _shot(attacker, owner_key=key)
        attacker.answer(job, timeout=10, skip=("accepted", "progress"))
        attacker.send({"op": "cancel", "id": job, "owner_key": key})
        cancelled = attacker.answer(job, timeout=10, skip=("accepted", "progress", "need", "cancel"))
        status = attacker.request({"op": "status", "owner_key": key}, timeout=10, skip=())[0]
        held = (answer is not None and answer[0].get("code") == "frame_timeout" and failed_after < 3 * max_wait
                and cancelled is not None and cancelled[0].get("code") == "cancelled"
                and status["bytes_held"] == 0 and not status["running"] and server.alive())
        return row(f"shots: pings for ever without the frame (--shot-max-wait {max_wait}); cancel while waiting",
                   held, f"after {failed_after:.1f} s: {_answered(answer)[:90]}; cancel: {_answered(cancelled)[:20]}, "
                   f"bytes_held {status['bytes_held']}, running {len(status['running'])}")
    finally:
        attacker.close()
        server.stop()


# ---------------------------------------------------------------------------------------------- all
ATTACKS: List[Callable] = [shm_empty_token, shm_truncate, ownership, frames_over_limit, queue_dodge, big_header,
                           png_bomb, render_huge_range, unreleased_results, keys_world_readable, keys_replace_server,
                           state_dir_foreign, uninstall_foreign, endpoints, refused_handshakes, bad_requests,
                           render_files, folder_named_png, shot_hog, shot_declarations, shot_frames,
                           shot_slowloris]


def run_all() -> List[dict]:
    """Every attack in turn; one that breaks the bench itself is reported as such (held unknown), not skipped."""
    rows: List[dict] = []
    for attack in ATTACKS:
        started = time.perf_counter()
        try:
            result = attack()
        except Exception as exc:
            traceback.print_exc()
            result = row(attack.__name__, None, f"bench error: {exc.__class__.__name__}: {exc}"[:200])
        new = result if isinstance(result, list) else [result]
        for r in new:
            print(f"  {'held' if r['held'] else 'NOT held' if r['held'] is False else 'skipped'}: {r['attack']} "
                  f"-- {r['detail']} ({time.perf_counter() - started:.0f} s)", flush=True)
        rows.extend(new)
    return rows


def table(rows: List[dict]) -> List[str]:
    """The markdown section for reliability.md."""
    def verdict(held):
        return "held" if held else ("**NOT held**" if held is False else "skipped")

    def cell(value):
        return "-" if value is None else str(value)

    lines = ["## Attacks (issue #17)", "",
             "Each defect of issue #17 as a scripted attack on a real `mattebox serve` (or the CLI). *held*: nothing "
             "leaked, lost or touched, the server still answers, any refusal is a clear message; *lost*: another "
             "client's jobs that did not come back right; *peak MiB*: RSS growth of the server (for the CLI rows: "
             "the command's peak RSS) while it took the input, against *limit MiB* = 2x the configured limit (CLI "
             "rows: 2x the same command's peak on a small valid input).", "",
             "| attack | verdict | lost | peak MiB | limit MiB | what happened |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['attack']} | {verdict(r['held'])} | {cell(r['lost'])} | {cell(r['peak_mb'])} | "
              f"{cell(r['limit_mb'])} | {r['detail'].replace('|', '/')} |" for r in rows]
    held = sum(r["held"] is True for r in rows)
    lines += ["", f"{held} of {len(rows)} held, {sum(r['held'] is False for r in rows)} not held, "
              f"{sum(r['held'] is None for r in rows)} skipped.", ""]
    return lines
