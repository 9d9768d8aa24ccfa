"""Same-host fast path: pixel buffers in shared memory, only headers over ZeroMQ.

Segments are files in ``/dev/shm`` named ``mattebox-<owner pid>-<16 hex>``, mode 0600. Only clients create them.
Every segment starts with a 64-byte header: a magic and a 32-byte random key (:data:`HEADER`); the client names
the key in every request that uses the segment, and the server compares it (``hmac.compare_digest``) with the
key in the file before it reads or writes a byte. Another local user cannot read a 0600 file, so cannot learn its
key, and a job naming someone else's segment is refused. In detail (docs/protocol.md, *Same-host shared memory*):

- shared memory is offered only to connections the server sees as local (ipc, or tcp from a loopback address);
- the connection proves in ``hello`` that the server can read a probe segment it made (same host, same /dev/shm);
- a segment is bound to the owner (docs/protocol.md, *Ownership*) that first used it, and its name must carry
  the pid of the process whose probe that connection proved;
- the server never maps a client segment: it copies inputs out with ``pread`` and results in with ``pwrite`` on
  an open descriptor, after checking the file's size. A client that truncates a segment under the server gets
  a short read (its job fails naming the field) instead of killing the server with SIGBUS, which is what a
  shared mapping of a shrunken file does.

Cleanup: a client killed with ``kill -9`` leaves segments named with its pid: the server's periodic sweep drops
its descriptors and unlinks them, and every server and client start sweeps segments whose owner pid is dead. A
server killed with ``kill -9`` owns no segment.

Client-side mappings are long-lived and reused job after job (a segment is busy from submit until the job's reply
arrives, and while result arrays that view it are alive): mapping and first-touching fresh pages costs about 10x
a copy of the same bytes, so a new segment per job would lose to plain ZeroMQ frames.

Standard library only (numpy is optional on the host side): ctypes pins let result arrays view a segment
without copying while the pool can tell when the last such view is gone.
"""
from __future__ import annotations

import ctypes
import hmac
import mmap
import os
import re
import secrets
import stat
import sys
import threading
import weakref
from typing import Any, Dict, List, Optional, Tuple

SHM_DIR = "/dev/shm"
PREFIX = "mattebox-"
NAME_RE = re.compile(r"^mattebox-(\d+)-([0-9a-f]{16})$")
KEY_RE = re.compile(r"^[0-9a-f]{64}$")
ALIGN = 64  #: byte alignment of every buffer inside a segment
MAGIC = b"MBXSHM1\0"
KEY_BYTES = 32  #: 256-bit key per segment
HEADER = ALIGN  #: magic + key; buffers start at this offset and may never overlap it
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


# ------------------------------------------------------------------------------------------ client side
class Segment:
    """One shared-memory file a client made and maps: :data:`HEADER` bytes of magic and key, then buffers."""

    def __init__(self, name: str, mapping: mmap.mmap, size: int, key: str):
        self.name = name
        self.map = mapping
        self.size = size
        self.key = key  #: hex of the 32-byte key in the header; sent with every request naming the segment
        self.pins: List[weakref.ref] = []  #: views handed to the user (result arrays)
        self.busy = False  #: a job's request or reply is using it

    @classmethod
    def create(cls, room: int) -> "Segment":
        """A new 0600 segment with ``room`` bytes for buffers (rounded up) after its header."""
        name = f"{PREFIX}{os.getpid()}-{secrets.token_hex(8)}"
        key = secrets.token_bytes(KEY_BYTES)
        size = HEADER + align(max(int(room), 1))
        path = os.path.join(SHM_DIR, name)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            os.ftruncate(fd, size)
            mapping = mmap.mmap(fd, size)
        except BaseException:
            os.close(fd)
            os.unlink(path)
            raise
        os.close(fd)
        mapping[:len(MAGIC) + KEY_BYTES] = MAGIC + key
        return cls(name, mapping, size, key.hex())

    @property
    def room(self) -> int:
        """Bytes available for buffers (from offset :data:`HEADER`)."""
        return self.size - HEADER

    def ref(self, offset: int) -> Dict[str, Any]:
        """The ``shm`` map a request uses to name bytes at ``offset`` of this segment."""
        return {"name": self.name, "offset": int(offset), "key": self.key}

    def view(self, offset: int, nbytes: int) -> memoryview:
        if offset < HEADER or nbytes < 0 or offset + nbytes > self.size:
            raise ValueError(f"bytes {offset}..{offset + nbytes} are outside segment '{self.name}' "
                             f"(buffers lie in {HEADER}..{self.size})")
        return memoryview(self.map)[offset:offset + nbytes]

    def pinned(self, offset: int, nbytes: int) -> Any:
        """A bytes-like view (ctypes array) of part of the segment; the pool will not reuse the segment while it
        or anything made from it (numpy arrays, their views) is alive."""
        if offset < HEADER or nbytes < 0 or offset + nbytes > self.size:
            raise ValueError(f"bytes {offset}..{offset + nbytes} are outside segment '{self.name}' "
                             f"(buffers lie in {HEADER}..{self.size})")
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
        """A free segment with room for ``nbytes`` (made if needed), marked busy; None when over the limit."""
        free = [s for s in self.segments if s.room >= nbytes and not s.in_use()]
        if free:
            segment = min(free, key=lambda s: s.size)
        else:
            # drop idle segments that are too small, then grow
            for small in [s for s in self.segments if not s.in_use()]:
                self._drop(small)
            if sum(s.size for s in self.segments) + HEADER + align(nbytes) > self.limit_bytes:
                return None
            segment = Segment.create(nbytes)
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


def probe_create() -> Segment:
    """A small segment for hello's probe ({name, key}): the server proves it shares this host's memory by
    reading the segment's key."""
    return Segment.create(ALIGN)


# ------------------------------------------------------------------------------------------ server side
class ServerSegment:
    """A client segment as the server holds it: an open descriptor (never a mapping), its checked key, and the
    owner it is bound to. Reads and writes go through ``pread``/``pwrite`` after an ``fstat``, so a segment
    truncated by its client gives a short read, never SIGBUS."""

    def __init__(self, name: str, fd: int, key: bytes, owner: str):
        self.name = name
        self.fd = fd
        self.key = key
        self.owner = owner
        self._closed = False

    @classmethod
    def open(cls, name: str, key_hex: Any, owner: str) -> "ServerSegment":
        """Open ``/dev/shm/NAME`` (a mattebox name, a regular file with one link, not a symlink) and check that its
        header holds ``key_hex``. Raises ValueError naming the problem."""
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ValueError(f"{name!r} is not a mattebox shared-memory segment name")
        key = _parse_key(key_hex)
        try:
            fd = os.open(os.path.join(SHM_DIR, name), os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise ValueError(f"cannot open segment '{name}': {exc.strerror or exc}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
                raise ValueError(f"segment '{name}' is not a plain shared-memory file")
            head = os.pread(fd, HEADER, 0)
            if len(head) < HEADER or head[:len(MAGIC)] != MAGIC:
                raise ValueError(f"segment '{name}' has no mattebox header")
            if not hmac.compare_digest(head[len(MAGIC):len(MAGIC) + KEY_BYTES], key):
                raise ValueError(f"the key does not match segment '{name}'")
        except BaseException:
            os.close(fd)
            raise
        return cls(name, fd, key, owner)

    def check(self, key_hex: Any, owner: str) -> None:
        if not hmac.compare_digest(self.owner.encode(), owner.encode()):
            raise ValueError(f"segment '{self.name}' belongs to another client")
        if not hmac.compare_digest(_parse_key(key_hex), self.key):
            raise ValueError(f"the key does not match segment '{self.name}'")

    def _span(self, offset: Any, nbytes: int) -> int:
        """Check ``offset..offset+nbytes`` against the file's size now; returns the offset."""
        if not isinstance(offset, int) or isinstance(offset, bool):
            raise ValueError("shm offset must be an integer")
        size = os.fstat(self.fd).st_size
        if offset < HEADER or nbytes < 0 or offset + nbytes > size:
            raise ValueError(f"bytes {offset}..{offset + nbytes} are outside segment '{self.name}' (buffers lie in "
                             f"{HEADER}..{size}; was it truncated?)")
        return offset

    def read(self, offset: Any, nbytes: int) -> bytearray:
        """A private copy of ``nbytes`` at ``offset``; ValueError if the segment is (or becomes) too short."""
        offset = self._span(offset, nbytes)
        out = bytearray(nbytes)
        view, got = memoryview(out), 0
        while got < nbytes:
            n = os.preadv(self.fd, [view[got:]], offset + got)
            if n <= 0:
                raise ValueError(f"segment '{self.name}' shrank while it was read ({got} of {nbytes} bytes)")
            got += n
        return out

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self.fd)


def _parse_key(key_hex: Any) -> bytes:
    if not isinstance(key_hex, str) or not KEY_RE.match(key_hex):
        raise ValueError(f"the segment key must be {2 * KEY_BYTES} lowercase hex digits")
    return bytes.fromhex(key_hex)


def _shm_map(value: Any, *extra: str) -> Tuple[Any, Any, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"shm must be a map {{name, offset, key{''.join(', ' + e for e in extra)}}}")
    return value.get("name"), value.get("offset"), value.get("key")


class ServerCache:
    """The server's open client segments, by name. Thread-safe (the loop reads inputs, workers write results).

    ``route`` is the connection (ROUTER identity) a request came on, ``owner`` its owner identity (server.py)."""

    def __init__(self):
        self._segments: Dict[str, ServerSegment] = {}
        self._proven: Dict[bytes, int] = {}  #: connection -> pid whose probe segment this server read on it
        self._lock = threading.Lock()

    def probe(self, route: bytes, probe: Any) -> Tuple[bool, str]:
        """Check a hello's ``shm`` probe ({name, key}) from a local connection; remember the probe's pid for
        the connection when the key matches."""
        if not supported():
            return False, "the server has no /dev/shm"
        try:
            name, _, key = _shm_map(probe)
            segment = ServerSegment.open(name, key, owner="")
        except ValueError as exc:
            return False, f"cannot read the client's probe segment ({exc}): not the same host, or not allowed"
        segment.close()
        with self._lock:
            self._proven[route] = owner_pid(name)
        return True, "same host"

    def _get(self, route: bytes, owner: str, name: Any, key: Any) -> ServerSegment:
        pid = owner_pid(name) if isinstance(name, str) else None
        with self._lock:
            proven = self._proven.get(route)
            if proven is None:
                raise ValueError("this connection has not proved it shares the server's host (send hello with an "
                                 "shm probe first)")
            if pid != proven:
                raise ValueError(f"segment {name!r} was not made by the process that proved this connection")
            segment = self._segments.get(name)
            if segment is None:
                segment = self._segments[name] = ServerSegment.open(name, key, owner)
            else:
                segment.check(key, owner)
            return segment

    def read(self, route: bytes, owner: str, value: Any, nbytes: int) -> bytearray:
        """The ``nbytes`` a buffer's ``shm`` map ({name, offset, key}) names, copied. Raises ValueError."""
        name, offset, key = _shm_map(value)
        return self._get(route, owner, name, key).read(offset, nbytes)

    def reply_region(self, route: bytes, owner: str, value: Any) -> "ReplyRegion":
        """A matte request's ``reply_shm`` ({name, offset, size, key}) as a region to write. Raises ValueError."""
        name, offset, key = _shm_map(value, "size")
        size = value.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValueError("reply_shm size must be a non-negative integer")
        segment = self._get(route, owner, name, key)
        segment._span(offset, size)
        return ReplyRegion(segment.name, os.dup(segment.fd), offset, size)

    def sweep(self) -> int:
        """Forget connections and segments of clients that died or dropped them; returns segments dropped."""
        dropped = 0
        with self._lock:
            for route, pid in list(self._proven.items()):
                if not pid_alive(pid):
                    del self._proven[route]
            for name, segment in list(self._segments.items()):
                pid = owner_pid(name)
                owner_gone = pid is None or not pid_alive(pid)
                if owner_gone or not os.path.exists(os.path.join(SHM_DIR, name)):  # dead, or dropped by its client
                    if owner_gone:
                        try:
                            os.unlink(os.path.join(SHM_DIR, name))
                        except OSError:
                            pass
                    segment.close()
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
    """Where a job's outputs go: part of the client's segment that the client reserved (``reply_shm``). It holds
    its own duplicate of the segment's descriptor (closed with the region), so the sweep closing the segment
    while a worker writes can never redirect the write to another file."""

    def __init__(self, name: str, fd: int, offset: int, size: int):
        self.name = name
        self.offset = offset
        self.size = size
        self._fd = fd
        self._finalizer = weakref.finalize(self, os.close, fd)

    def place(self, descs: List[Dict[str, Any]], frames: List[Any]) -> Tuple[List[Dict[str, Any]], List[Any]]:
        """Copy result frames into the region with ``pwrite`` (a segment shrunk meanwhile is extended, never a
        fault); returns descriptions carrying ``shm`` and no frames, or the inputs unchanged when they do not fit
        (then they travel as frames)."""
        sizes = [memoryview(f).nbytes for f in frames]
        if sum(align(n) for n in sizes) > self.size:
            return descs, frames
        placed, at = [], 0
        for desc, frame, size in zip(descs, frames, sizes):
            view, done = memoryview(frame).cast("B"), 0
            while done < size:
                done += os.pwrite(self._fd, view[done:], self.offset + at + done)
            placed.append(dict(desc, shm={"name": self.name, "offset": self.offset + at}))
            at += align(size)
        return placed, []

    def close(self) -> None:
        self._finalizer()
