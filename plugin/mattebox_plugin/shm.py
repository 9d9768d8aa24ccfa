"""Same-host fast path: pixel buffers in shared memory, only headers over ZeroMQ.

Segments come in two kinds, both made only by clients, both starting with a 64-byte header: a magic and a 32-byte
random key (:data:`HEADER`); the client names the key in every request that uses the segment, and the server
compares it (``hmac.compare_digest``) with the key in the segment before it reads or writes a byte.

- **memfd** (the default on Linux): an anonymous ``memfd_create`` file sealed with ``F_SEAL_SHRINK | F_SEAL_SEAL``
  (memfd_create(2), fcntl(2) *File Sealing*), named on the wire ``mattebox-<pid>-<16 hex>@<fd>``. The server
  opens it as ``/proc/<pid>/fd/<fd>``, which the kernel allows only to the same user (or root): that is the
  ownership check, and it also proves the pid. A sealed file can never shrink, so the server **maps** it and
  reads inputs in place and writes results straight into it, with no SIGBUS possible; it refuses a file that is
  not a memfd of the kernel's internal shmem mount (same ``st_dev`` as a memfd of its own: no hugetlbfs, disk or
  FUSE files) or whose seals lack ``F_SEAL_SHRINK``.
- **named** (the fallback where memfd or sealing is unavailable, or the server cannot open the client's
  ``/proc`` entries): a 0600 file ``/dev/shm/mattebox-<owner pid>-<16 hex>``. Such a file can shrink under the
  server, so the server never maps it: it copies inputs out with ``pread`` and results in with ``pwrite`` after
  an ``fstat``; a client that truncates it fails its own job instead of killing the server with SIGBUS.

In detail (docs/protocol.md, *Same-host shared memory*):

- shared memory is offered only to connections the server sees as local (ipc, or tcp from a loopback address);
- the connection proves in ``hello`` that the server can read a probe segment it made (same host);
- a segment is bound to the owner (docs/protocol.md, *Ownership*) that first used it, and its name must carry
  the pid of the process whose probe that connection proved.

Cleanup: a memfd vanishes with the last descriptor and mapping of it, so a client killed with ``kill -9`` leaves
only the server's mapping, which the periodic sweep drops once the pid is gone. Named segments of a dead client
are unlinked by that sweep, and every server and client start sweeps those whose owner pid is dead. A server
killed with ``kill -9`` owns no segment.

Client-side mappings are long-lived and reused job after job (a segment is busy from submit until the job's reply
arrives, and while result arrays that view it are alive): mapping and first-touching fresh pages costs about 10x
a copy of the same bytes, so a new segment per job would lose to plain ZeroMQ frames. The same holds on the
server, which is why it views a sealed segment instead of copying it into fresh memory per job.

Standard library only (numpy is optional on the host side): ctypes pins let result arrays view a segment
without copying while the pool can tell when the last such view is gone.
"""
from __future__ import annotations

import ctypes
import fcntl
import functools
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
NAME_RE = re.compile(r"^mattebox-(\d+)-([0-9a-f]{16})$")  #: a named segment in /dev/shm
MEMFD_RE = re.compile(r"^(mattebox-(\d+)-[0-9a-f]{16})@(\d+)$")  #: memfd: its memfd name @ its fd in the owner
KEY_RE = re.compile(r"^[0-9a-f]{64}$")
ALIGN = 64  #: byte alignment of every buffer inside a segment
MAGIC = b"MBXSHM1\0"
KEY_BYTES = 32  #: 256-bit key per segment
HEADER = ALIGN  #: magic + key; buffers start at this offset and may never overlap it
#: how a server's hello reply (``shm_reason``) starts when it could not read the probe: a client whose memfd
#: probe failed so tries once more with a named one
PROBE_UNREADABLE = "cannot read the client's probe segment"
POOL_LIMIT_BYTES = 4 << 30  #: a client maps at most this much; past it, jobs go inline over ZeroMQ


def supported() -> bool:
    """True where segments can be made: Linux memfd or a writable /dev/shm (not macOS or Windows: inline)."""
    return memfd_supported() or named_supported()


def named_supported() -> bool:
    """True where named segments can be made: Linux with a writable /dev/shm."""
    return sys.platform.startswith("linux") and os.path.isdir(SHM_DIR) and os.access(SHM_DIR, os.W_OK)


@functools.lru_cache(maxsize=None)
def memfd_supported() -> bool:
    """True where a sealed memfd can be made and reopened through /proc (Linux >= 3.17, Python >= 3.8)."""
    if not sys.platform.startswith("linux") or not hasattr(os, "memfd_create") \
            or not hasattr(fcntl, "F_ADD_SEALS"):
        return False
    try:
        fd = _sealed_memfd("mattebox-check", ALIGN)
    except OSError:
        return False
    try:
        os.close(os.open(f"/proc/self/fd/{fd}", os.O_RDWR | os.O_CLOEXEC))
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _sealed_memfd(name: str, size: int) -> int:
    """A memfd of ``size`` bytes that can no longer shrink (F_SEAL_SHRINK) nor take other seals (F_SEAL_SEAL)."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.ftruncate(fd, size)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL)
    except BaseException:
        os.close(fd)
        raise
    return fd


@functools.lru_cache(maxsize=None)
def _memfd_device() -> int:
    """st_dev of the kernel's internal shmem mount, where every (non-hugetlb) memfd lives."""
    fd = os.memfd_create("mattebox-device", os.MFD_CLOEXEC)
    try:
        return os.fstat(fd).st_dev
    finally:
        os.close(fd)


def align(size: int) -> int:
    return (int(size) + ALIGN - 1) // ALIGN * ALIGN


def owner_pid(name: str) -> Optional[int]:
    """The pid a segment name (either kind) carries, or None for a name that is neither."""
    match = NAME_RE.match(name)
    if match:
        return int(match.group(1))
    match = MEMFD_RE.match(name)
    return int(match.group(2)) if match else None


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
    """One shared-memory segment a client made and maps: :data:`HEADER` bytes of magic and key, then buffers.
    A memfd segment keeps its descriptor open (the server reaches it through ``/proc/<pid>/fd/<fd>``)."""

    def __init__(self, name: str, mapping: mmap.mmap, size: int, key: str, fd: Optional[int] = None):
        self.name = name
        self.map = mapping
        self.size = size
        self.key = key  #: hex of the 32-byte key in the header; sent with every request naming the segment
        self.memfd = fd is not None  #: a sealed memfd (else a named segment in /dev/shm)
        self.fd = fd  #: the memfd's descriptor while the client offers it; None once withdrawn, or named
        self.pins: List[weakref.ref] = []  #: views handed to the user (result arrays)
        self.busy = False  #: a job's request or reply is using it

    @classmethod
    def create(cls, room: int, memfd: Optional[bool] = None) -> "Segment":
        """A new segment with ``room`` bytes for buffers (rounded up) after its header: a sealed memfd where
        ``memfd`` (default: :func:`memfd_supported`), else a 0600 file in /dev/shm."""
        if memfd is None:
            memfd = memfd_supported()
        base = f"{PREFIX}{os.getpid()}-{secrets.token_hex(8)}"
        key = secrets.token_bytes(KEY_BYTES)
        size = HEADER + align(max(int(room), 1))
        if memfd:
            fd = _sealed_memfd(base, size)
            name, path = f"{base}@{fd}", None
        else:
            name, path = base, os.path.join(SHM_DIR, base)
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            if path is not None:
                os.ftruncate(fd, size)
            mapping = mmap.mmap(fd, size)
        except BaseException:
            os.close(fd)
            if path is not None:
                os.unlink(path)
            raise
        if path is not None:
            os.close(fd)  # the name keeps a named segment; a memfd lives as long as its descriptor
            fd = None
        mapping[:len(MAGIC) + KEY_BYTES] = MAGIC + key
        return cls(name, mapping, size, key.hex(), fd)

    @property
    def path(self) -> str:
        """Where this process reaches the segment's file: /dev/shm/NAME, or /proc/self/fd/FD for a memfd."""
        return f"/proc/self/fd/{self.fd}" if self.memfd else os.path.join(SHM_DIR, self.name)

    @property
    def room(self) -> int:
        """Bytes available for buffers (from offset :data:`HEADER`)."""
        return self.size - HEADER

    def ref(self, offset: int) -> Dict[str, Any]:
        """The ``shm`` map a request uses to name bytes at ``offset`` of this segment."""
        return {"name": self.name, "offset": int(offset), "key": self.key}

    def _check_span(self, offset: int, nbytes: int) -> None:
        if offset < HEADER or nbytes < 0 or offset + nbytes > self.size:
            raise ValueError(f"bytes {offset}..{offset + nbytes} are outside segment '{self.name}' "
                             f"(buffers lie in {HEADER}..{self.size})")

    def view(self, offset: int, nbytes: int) -> memoryview:
        self._check_span(offset, nbytes)
        return memoryview(self.map)[offset:offset + nbytes]

    def pinned(self, offset: int, nbytes: int) -> Any:
        """A bytes-like view (ctypes array) of part of the segment; the pool will not reuse the segment while it
        or anything made from it (numpy arrays, their views) is alive."""
        self._check_span(offset, nbytes)
        pin = (ctypes.c_char * nbytes).from_buffer(self.map, offset)
        self.pins.append(weakref.ref(pin))
        return pin

    def in_use(self) -> bool:
        self.pins = [p for p in self.pins if p() is not None]
        return self.busy or bool(self.pins)

    def unlink(self) -> None:
        """Withdraw the segment from the server: unlink a named one, close a memfd's descriptor (the server's
        sweep then lets go of it; the memory goes with the last mapping)."""
        if self.memfd:
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None
            return
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

    def __init__(self, limit_bytes: int = POOL_LIMIT_BYTES, memfd: Optional[bool] = None):
        self.limit_bytes = limit_bytes
        self.memfd = memfd_supported() if memfd is None else memfd  #: which kind of segment to make
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
            segment = Segment.create(nbytes, self.memfd)
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


def probe_create(memfd: Optional[bool] = None) -> Segment:
    """A small segment for hello's probe ({name, key}): the server proves it shares this host's memory by
    reading the segment's key (and, for a memfd, that it may open this process's descriptors)."""
    return Segment.create(ALIGN, memfd)


# ------------------------------------------------------------------------------------------ server side
class ServerSegment:
    """A client segment as the server holds it: its checked key and the owner it is bound to. :meth:`open` gives
    a :class:`MappedSegment` for a sealed memfd and a :class:`FileSegment` for a named segment."""

    def __init__(self, name: str, key: bytes, owner: str):
        self.name = name
        self.key = key
        self.owner = owner

    @staticmethod
    def open(name: Any, key_hex: Any, owner: str) -> "ServerSegment":
        """Open the segment ``name`` and check that its header holds ``key_hex``. Raises ValueError naming the
        problem."""
        key = _parse_key(key_hex)
        if isinstance(name, str) and NAME_RE.match(name):
            return FileSegment.open_named(name, key, owner)
        if isinstance(name, str) and MEMFD_RE.match(name):
            if not memfd_supported():
                raise ValueError(f"segment '{name}' is a memfd, which this server cannot open (no sealed memfds "
                                 f"or no /proc here)")
            return MappedSegment.open_memfd(name, key, owner)
        raise ValueError(f"{name!r} is not a mattebox shared-memory segment name")

    def check(self, key_hex: Any, owner: str) -> None:
        if not hmac.compare_digest(self.owner.encode(), owner.encode()):
            raise ValueError(f"segment '{self.name}' belongs to another client")
        if not hmac.compare_digest(_parse_key(key_hex), self.key):
            raise ValueError(f"the key does not match segment '{self.name}'")

    def _size(self) -> int:
        raise NotImplementedError

    def _span(self, offset: Any, nbytes: int) -> int:
        """Check ``offset..offset+nbytes`` against the segment's size now; returns the offset."""
        if not isinstance(offset, int) or isinstance(offset, bool):
            raise ValueError("shm offset must be an integer")
        size = self._size()
        if offset < HEADER or nbytes < 0 or offset + nbytes > size:
            raise ValueError(f"bytes {offset}..{offset + nbytes} are outside segment '{self.name}' (buffers lie in "
                             f"{HEADER}..{size}; was it truncated?)")
        return offset

    def read(self, offset: Any, nbytes: int) -> Any:
        """The ``nbytes`` at ``offset`` as a bytes-like object; ValueError if they lie outside the segment."""
        raise NotImplementedError

    def region(self, offset: Any, size: int) -> "ReplyRegion":
        """``size`` bytes at ``offset`` as a place for a job's results; ValueError if outside the segment."""
        raise NotImplementedError

    def gone(self) -> bool:
        """True once the client withdrew the segment (unlinked it, or closed its memfd)."""
        raise NotImplementedError

    def close(self) -> bool:
        """Let go of the segment; False while job buffers still view it (call again later)."""
        raise NotImplementedError


def _check_header(fd: int, name: str, key: bytes) -> None:
    head = os.pread(fd, HEADER, 0)
    if len(head) < HEADER or head[:len(MAGIC)] != MAGIC:
        raise ValueError(f"segment '{name}' has no mattebox header")
    if not hmac.compare_digest(head[len(MAGIC):len(MAGIC) + KEY_BYTES], key):
        raise ValueError(f"the key does not match segment '{name}'")


class FileSegment(ServerSegment):
    """A named segment: an open descriptor, never a mapping. Reads and writes go through ``pread``/``pwrite``
    after an ``fstat``, so a segment truncated by its client gives a short read, never SIGBUS."""

    def __init__(self, name: str, fd: int, key: bytes, owner: str):
        super().__init__(name, key, owner)
        self.fd = fd
        self._closed = False

    @classmethod
    def open_named(cls, name: str, key: bytes, owner: str) -> "FileSegment":
        """Open ``/dev/shm/NAME`` (a regular file with one link, not a symlink) and check its key."""
        try:
            fd = os.open(os.path.join(SHM_DIR, name), os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise ValueError(f"cannot open segment '{name}': {exc.strerror or exc}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
                raise ValueError(f"segment '{name}' is not a plain shared-memory file")
            _check_header(fd, name, key)
        except BaseException:
            os.close(fd)
            raise
        return cls(name, fd, key, owner)

    def _size(self) -> int:
        return os.fstat(self.fd).st_size

    def read(self, offset: Any, nbytes: int) -> bytearray:
        """A private copy; ValueError if the segment is (or becomes) too short."""
        offset = self._span(offset, nbytes)
        out = bytearray(nbytes)
        view, got = memoryview(out), 0
        while got < nbytes:
            n = os.preadv(self.fd, [view[got:]], offset + got)
            if n <= 0:
                raise ValueError(f"segment '{self.name}' shrank while it was read ({got} of {nbytes} bytes)")
            got += n
        return out

    def region(self, offset: Any, size: int) -> "ReplyRegion":
        """A region with its own duplicate of the descriptor (closed with the region), so the sweep closing the
        segment while a worker writes can never redirect the write to another file."""
        return ReplyRegion(self.name, self._span(offset, size), size, fd=os.dup(self.fd))

    def gone(self) -> bool:
        return not os.path.exists(os.path.join(SHM_DIR, self.name))

    def close(self) -> bool:
        if not self._closed:
            self._closed = True
            os.close(self.fd)
        return True


class MappedSegment(ServerSegment):
    """A sealed memfd, mapped. F_SEAL_SHRINK means the file can never get shorter than the mapping, so no access
    through it can fault (SIGBUS); inputs are read in place and results written straight in."""

    def __init__(self, name: str, mapping: mmap.mmap, identity: Tuple[int, int], key: bytes, owner: str):
        super().__init__(name, key, owner)
        self.map = mapping
        self._identity = identity  #: (st_dev, st_ino) of the memfd, to tell when the client closed it

    @classmethod
    def open_memfd(cls, name: str, key: bytes, owner: str) -> "MappedSegment":
        """Open ``/proc/<pid>/fd/<fd>`` (the kernel allows it to the owner's user and root only), check that it
        is that process's memfd of this name, sealed against shrinking, with the key; then map it."""
        base, pid, number = MEMFD_RE.match(name).groups()
        try:
            fd = os.open(f"/proc/{pid}/fd/{number}", os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise ValueError(f"cannot open segment '{name}': {exc.strerror or exc} (another user's process, or "
                             f"one that is gone)") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_dev != _memfd_device() \
                    or os.readlink(f"/proc/self/fd/{fd}") != f"/memfd:{base} (deleted)":
                raise ValueError(f"descriptor {number} of process {pid} is not the memfd '{base}'")
            try:
                seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
            except OSError:
                seals = 0
            if not seals & fcntl.F_SEAL_SHRINK:
                raise ValueError(f"segment '{name}' is not sealed against shrinking (F_SEAL_SHRINK)")
            _check_header(fd, name, key)
            size = os.fstat(fd).st_size  # sealed: it can only grow from here on
            try:
                mapping = mmap.mmap(fd, size)
            except OSError as exc:
                raise ValueError(f"cannot map segment '{name}': {exc.strerror or exc}") from None
        finally:
            os.close(fd)  # the mapping holds the file
        return cls(name, mapping, (info.st_dev, info.st_ino), key, owner)

    def _size(self) -> int:
        return len(self.map)

    def read(self, offset: Any, nbytes: int) -> memoryview:
        """A view of the client's bytes, no copy (the client must not write them until the job's reply)."""
        offset = self._span(offset, nbytes)
        return memoryview(self.map)[offset:offset + nbytes]

    def region(self, offset: Any, size: int) -> "ReplyRegion":
        offset = self._span(offset, size)
        return ReplyRegion(self.name, offset, size, view=memoryview(self.map)[offset:offset + size])

    def gone(self) -> bool:
        _, pid, number = MEMFD_RE.match(self.name).groups()
        try:
            info = os.stat(f"/proc/{pid}/fd/{number}")
        except OSError:
            return True
        return (info.st_dev, info.st_ino) != self._identity

    def close(self) -> bool:
        try:
            self.map.close()
            return True
        except BufferError:
            return False


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
        self._closing: List[ServerSegment] = []  #: let go of, but a job's buffers still view them
        self._proven: Dict[bytes, int] = {}  #: connection -> pid whose probe segment this server read on it
        self._lock = threading.Lock()

    def probe(self, route: bytes, probe: Any) -> Tuple[bool, str]:
        """Check a hello's ``shm`` probe ({name, key}) from a local connection; remember the probe's pid for
        the connection when the key matches."""
        if not supported():
            return False, "the server has no shared memory (memfd or /dev/shm)"
        try:
            name, _, key = _shm_map(probe)
            segment = ServerSegment.open(name, key, owner="")
        except ValueError as exc:
            return False, f"{PROBE_UNREADABLE} ({exc}): not the same host, or not allowed"
        segment.close()  # nothing views a probe
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

    def read(self, route: bytes, owner: str, value: Any, nbytes: int) -> Any:
        """The ``nbytes`` a buffer's ``shm`` map ({name, offset, key}) names: a view of a sealed memfd, a copy
        of a named segment. Raises ValueError."""
        name, offset, key = _shm_map(value)
        return self._get(route, owner, name, key).read(offset, nbytes)

    def reply_region(self, route: bytes, owner: str, value: Any) -> "ReplyRegion":
        """A matte request's ``reply_shm`` ({name, offset, size, key}) as a region to write. Raises ValueError."""
        name, offset, key = _shm_map(value, "size")
        size = value.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValueError("reply_shm size must be a non-negative integer")
        return self._get(route, owner, name, key).region(offset, size)

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
                if owner_gone or segment.gone():  # dead, or dropped by its client
                    if owner_gone and isinstance(segment, FileSegment):
                        try:
                            os.unlink(os.path.join(SHM_DIR, name))
                        except OSError:
                            pass
                    if not segment.close():
                        self._closing.append(segment)
                    del self._segments[name]
                    dropped += 1
            self._closing = [segment for segment in self._closing if not segment.close()]
        sweep_dead()
        return dropped

    def close(self) -> None:
        with self._lock:
            for segment in list(self._segments.values()) + self._closing:
                segment.close()
            self._segments.clear()
            self._closing.clear()

    def __len__(self) -> int:
        return len(self._segments)


class ReplyRegion:
    """Where a job's outputs go: part of the client's segment that the client reserved (``reply_shm``): a view
    of a mapped memfd, or a duplicate descriptor of a named segment for ``pwrite``."""

    def __init__(self, name: str, offset: int, size: int, fd: Optional[int] = None,
                 view: Optional[memoryview] = None):
        self.name = name
        self.offset = offset
        self.size = size
        self._view = view
        self._finalizer = weakref.finalize(self, os.close, fd) if fd is not None else None
        self._fd = fd

    def place(self, descs: List[Dict[str, Any]], frames: List[Any]) -> Tuple[List[Dict[str, Any]], List[Any]]:
        """Copy result frames into the region (a named segment shrunk meanwhile is extended by ``pwrite``, never
        a fault); returns descriptions carrying ``shm`` and no frames, or the inputs unchanged when they do not
        fit (then they travel as frames)."""
        sizes = [memoryview(f).nbytes for f in frames]
        if sum(align(n) for n in sizes) > self.size:
            return descs, frames
        placed, at = [], 0
        for desc, frame, size in zip(descs, frames, sizes):
            data = memoryview(frame).cast("B")
            if self._view is not None:
                self._view[at:at + size] = data
            else:
                done = 0
                while done < size:
                    done += os.pwrite(self._fd, data[done:], self.offset + at + done)
            placed.append(dict(desc, shm={"name": self.name, "offset": self.offset + at}))
            at += align(size)
        return placed, []

    def close(self) -> None:
        if self._view is not None:
            self._view.release()  # lets the sweep unmap the segment
            self._view = None
        if self._finalizer is not None:
            self._finalizer()
