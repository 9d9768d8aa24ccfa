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

This module is the format and the client's side; the server's side (opening, checking, binding, writing results)
is mattebox/shm_server.py, outside the package installers vendor into hosts. Standard library only (numpy is
optional on the host side): ctypes pins let result arrays view a segment
without copying while the pool can tell when the last such view is gone.
"""
from __future__ import annotations

import ctypes
import fcntl
import functools
import mmap
import os
import re
import secrets
import sys
import weakref
from typing import Any, Dict, List, Optional

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
        return unmap(self.map)


def unmap(mapping: mmap.mmap) -> bool:
    """Close ``mapping``; False while a memoryview still views it (the pages then go with the last view)."""
    try:
        mapping.close()
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
