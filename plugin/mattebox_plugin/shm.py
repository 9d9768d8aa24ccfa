"""Same-host fast path: pixel buffers in shared memory, only headers over ZeroMQ.

Segments are memory-mapped files in ``/dev/shm`` named ``mattebox-<owner pid>-<token>``. Only clients create
them; the server maps what a client names (after the client proved, in ``hello``, that the server can open a
segment it made) and writes results back into the space the client reserved in the same segment. So:

- a server killed with ``kill -9`` leaves nothing behind (it owns no segment);
- a client killed with ``kill -9`` leaves segments named with its pid: the server's periodic sweep drops its
  mappings and unlinks them, and every server and client start sweeps segments whose owner pid is dead.

Mappings are long-lived and reused job after job (a segment is busy from submit until the job's reply arrives,
and while result arrays that view it are alive): on this kind of machine mapping and first-touching fresh pages
costs about 10x a copy of the same bytes, so a new segment per job would lose to plain ZeroMQ frames.

Standard library only (numpy is optional on the host side): ctypes pins let result arrays view a segment
without copying while the pool can tell when the last such view is gone.
"""
from __future__ import annotations

import ctypes
import mmap
import os
import re
import secrets
import sys
import threading
import weakref
from typing import Any, Dict, List, Optional, Tuple

SHM_DIR = "/dev/shm"
PREFIX = "mattebox-"
NAME_RE = re.compile(r"^mattebox-(\d+)-([0-9a-f]{16})$")
ALIGN = 64  #: byte alignment of every buffer inside a segment
POOL_LIMIT_BYTES = 4 << 30  #: a client maps at most this much; past it, jobs go inline over ZeroMQ


def supported() -> bool:
    """True where segments can be made: Linux-style /dev/shm (not macOS or Windows, which go inline)."""
    return sys.platform.startswith("linux") and os.path.isdir(SHM_DIR) and os.access(SHM_DIR, os.W_OK)


def align(size: int) -> int:
    return (int(size) + ALIGN - 1) // ALIGN * ALIGN


def owner_pid(name: str) -> Optional[int]:
    match = NAME_RE.match(name)
    return int(match.group(1)) if match else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, another user's
    return True


class Segment:
    """One mapped shared-memory file."""

    def __init__(self, name: str, mapping: mmap.mmap, size: int):
        self.name = name
        self.map = mapping
        self.size = size
        self.pins: List[weakref.ref] = []  #: views handed to the user (result arrays)
        self.busy = False  #: a job's request or reply is using it

    @classmethod
    def create(cls, size: int) -> "Segment":
        name = f"{PREFIX}{os.getpid()}-{secrets.token_hex(8)}"
        fd = os.open(os.path.join(SHM_DIR, name), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            os.ftruncate(fd, size)
            mapping = mmap.mmap(fd, size)
        except BaseException:
            os.close(fd)
            os.unlink(os.path.join(SHM_DIR, name))
            raise
        os.close(fd)
        return cls(name, mapping, size)

    @classmethod
    def open(cls, name: str) -> "Segment":
        """Map an existing segment by name (names are checked: no paths, only mattebox segments)."""
        if not NAME_RE.match(name):
            raise ValueError(f"'{name}' is not a mattebox shared-memory segment name")
        fd = os.open(os.path.join(SHM_DIR, name), os.O_RDWR | getattr(os, "O_NOFOLLOW", 0))
        try:
            size = os.fstat(fd).st_size
            if size <= 0:
                raise ValueError(f"segment '{name}' is empty")
            mapping = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        return cls(name, mapping, size)

    def view(self, offset: int, nbytes: int) -> memoryview:
        if offset < 0 or nbytes < 0 or offset + nbytes > self.size:
            raise ValueError(f"bytes {offset}..{offset + nbytes} are outside segment '{self.name}' of {self.size}")
        return memoryview(self.map)[offset:offset + nbytes]

    def pinned(self, offset: int, nbytes: int) -> Any:
        """A bytes-like view (ctypes array) of part of the segment; the pool will not reuse the segment while it
        or anything made from it (numpy arrays, their views) is alive."""
        if offset < 0 or offset + nbytes > self.size:
            raise ValueError(f"bytes {offset}..{offset + nbytes} are outside segment '{self.name}' of {self.size}")
        pin = (ctypes.c_char * nbytes).from_buffer(self.map, offset)
        self.pins.append(weakref.ref(pin))
        return pin

    def in_use(self) -> bool:
        self.pins = [p for p in self.pins if p() is not None]
        return self.busy or bool(self.pins)

    def unlink(self) -> None:
        try:
            os.unlink(os.path.join(SHM_DIR, self.name))
        except FileNotFoundError:
            pass

    def close(self) -> bool:
        """Unmap; False while someone still views it (the mapping then goes when the last view does)."""
        try:
            self.map.close()
            return True
        except BufferError:
            return False


def sweep_dead(directory: str = SHM_DIR) -> List[str]:
    """Unlink mattebox segments whose owner process is gone; returns their names."""
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        pid = owner_pid(name)
        if pid is not None and not pid_alive(pid):
            try:
                os.unlink(os.path.join(directory, name))
                removed.append(name)
            except OSError:
                pass
    return removed


class ClientPool:
    """A client's segments, reused job after job. Not thread-safe (the client is single-threaded)."""

    def __init__(self, limit_bytes: int = POOL_LIMIT_BYTES):
        self.limit_bytes = limit_bytes
        self.segments: List[Segment] = []
        sweep_dead()

    def acquire(self, nbytes: int) -> Optional[Segment]:
        """A free segment of at least ``nbytes`` (made if needed), marked busy; None when over the limit."""
        free = [s for s in self.segments if s.size >= nbytes and not s.in_use()]
        if free:
            segment = min(free, key=lambda s: s.size)
        else:
            # drop idle segments that are too small, then grow
            for small in [s for s in self.segments if not s.in_use()]:
                self._drop(small)
            if sum(s.size for s in self.segments) + nbytes > self.limit_bytes:
                return None
            segment = Segment.create(align(nbytes))
            self.segments.append(segment)
        segment.busy = True
        return segment

    def release(self, segment: Segment) -> None:
        segment.busy = False

    def get(self, name: str) -> Optional[Segment]:
        return next((s for s in self.segments if s.name == name), None)

    def _drop(self, segment: Segment) -> None:
        self.segments.remove(segment)
        segment.unlink()
        segment.close()

    def close(self) -> None:
        """Unlink every segment (result arrays still viewing one keep its memory until they go)."""
        for segment in list(self.segments):
            self._drop(segment)


def probe_create() -> Tuple[Segment, str]:
    """A small segment holding a random token: the server proves it shares this host's memory by reading it."""
    token = secrets.token_hex(16)
    segment = Segment.create(ALIGN)
    segment.map[:len(token)] = token.encode()
    return segment, token


class ServerCache:
    """The server's mappings of client segments, by name. Thread-safe (the loop maps, workers write results)."""

    def __init__(self):
        self._segments: Dict[str, Segment] = {}
        self._proven: Dict[str, int] = {}  #: client id -> pid whose probe this server read
        self._lock = threading.Lock()

    def probe(self, client: str, probe: Any) -> Tuple[bool, str]:
        """Check a hello's ``shm`` probe ({name, token}); remember the client's pid when it matches."""
        if not supported():
            return False, "the server has no /dev/shm"
        if not isinstance(probe, dict) or not isinstance(probe.get("name"), str) \
                or not isinstance(probe.get("token"), str) or not isinstance(client, str):
            return False, "hello's shm probe must be {name, token} and hello must carry 'client'"
        try:
            segment = Segment.open(probe["name"])
        except (OSError, ValueError) as exc:
            return False, f"cannot open the client's segment ({exc.__class__.__name__}): not the same host"
        try:
            token = probe["token"].encode()
            ok = bytes(segment.map[:len(token)]) == token
        finally:
            segment.close()
        if not ok:
            return False, "the segment does not hold the client's token"
        with self._lock:
            self._proven[client] = owner_pid(probe["name"])
        return True, "same host"

    def view(self, client: Any, name: Any, offset: Any, nbytes: int) -> memoryview:
        """Bytes ``offset..offset+nbytes`` of a proven client's segment. Raises ValueError naming the problem."""
        if not isinstance(name, str) or not isinstance(offset, int) or isinstance(offset, bool):
            raise ValueError("shm must be {name: str, offset: int}")
        pid = owner_pid(name)
        with self._lock:
            proven = self._proven.get(client) if isinstance(client, str) else None
            if pid is None or proven != pid:
                raise ValueError(f"segment '{name}' does not belong to a client that proved it shares this host "
                                 f"(send hello with an shm probe first)")
            segment = self._segments.get(name)
            if segment is None:
                try:
                    segment = Segment.open(name)
                except OSError as exc:
                    raise ValueError(f"cannot open segment '{name}': {exc.strerror or exc}") from None
                self._segments[name] = segment
        return segment.view(offset, nbytes)

    def reply_region(self, client: Any, value: Any) -> "ReplyRegion":
        """A matte request's ``reply_shm`` ({name, offset, size}) as a writable region. Raises ValueError."""
        if not isinstance(value, dict) or not isinstance(value.get("size"), int) or value["size"] < 0:
            raise ValueError("reply_shm must be {name: str, offset: int, size: int}")
        view = self.view(client, value.get("name"), value.get("offset"), value["size"])
        return ReplyRegion(value["name"], value["offset"], view)

    def sweep(self) -> int:
        """Drop mappings (and names) of clients that died; returns how many were dropped."""
        dropped = 0
        with self._lock:
            for client, pid in list(self._proven.items()):
                if not pid_alive(pid):
                    del self._proven[client]
            for name, segment in list(self._segments.items()):
                pid = owner_pid(name)
                owner_gone = pid is None or not pid_alive(pid)
                if owner_gone or not os.path.exists(os.path.join(SHM_DIR, name)):  # dead, or dropped by its client
                    segment.unlink()
                    if segment.close():
                        del self._segments[name]
                        dropped += 1
        sweep_dead()
        return dropped

    def close(self) -> None:
        with self._lock:
            for segment in self._segments.values():
                segment.close()
            self._segments.clear()

    def __len__(self) -> int:
        return len(self._segments)


class ReplyRegion:
    """Where a job's outputs go: part of the client's segment that the client reserved (``reply_shm``)."""

    def __init__(self, name: str, offset: int, view: memoryview):
        self.name = name
        self.offset = offset
        self.view = view

    def place(self, descs: List[Dict[str, Any]], frames: List[Any]) -> Tuple[List[Dict[str, Any]], List[Any]]:
        """Copy result frames into the region; returns descriptions carrying ``shm`` and no frames, or the
        inputs unchanged when they do not fit (then they travel as frames)."""
        sizes = [memoryview(f).nbytes for f in frames]
        if sum(align(n) for n in sizes) > self.view.nbytes:
            return descs, frames
        placed, at = [], 0
        for desc, frame, size in zip(descs, frames, sizes):
            self.view[at:at + size] = memoryview(frame).cast("B")
            placed.append(dict(desc, shm={"name": self.name, "offset": self.offset + at}))
            at += align(size)
        return placed, []
