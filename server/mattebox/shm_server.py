"""The server's side of the same-host fast path (mattebox_plugin/shm.py holds the format and the client's side):
opening, checking and binding the segments clients name, and writing results into the space they reserved.

It lives in the server package, not in mattebox_plugin, because installers vendor mattebox_plugin into every host
application and a host never opens another process's segments.
"""
from __future__ import annotations

import fcntl
import hmac
import mmap
import os
import stat
import threading
import weakref
from typing import Any, Dict, List, Optional, Tuple

from mattebox_plugin.shm import (HEADER, KEY_BYTES, KEY_RE, MAGIC, MEMFD_RE, NAME_RE, PROBE_UNREADABLE, SHM_DIR,
                                 _memfd_device, align, memfd_supported, owner_pid, pid_alive, supported, sweep_dead,
                                 unmap)


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
        return unmap(self.map)


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
