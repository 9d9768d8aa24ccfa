"""Jobs that survive a server restart: SQLite records (WAL) plus spooled inputs and stored results on disk.

A state directory (``paths.state_dir()``, ``mattebox serve --state-dir``) holds::

    jobs.sqlite3 (+ -wal, -shm)  one row per job the server still owes a client
    spool/<id>.mbx               the job's input buffers, from acceptance until the job finishes (to rerun it)
    results/<id>.mbx             a finished job's reply (header + output frames), until released or expired
    running/<id>.run             an empty marker: the job has started running (made before its engine starts)
    lock                         an advisory lock: one server per directory
    .mattebox-state              the marker that makes the folder a mattebox state directory

The directory is mattebox's alone. A folder that exists, is not empty and has no marker is refused (a folder an
older mattebox left, holding only the names above, is adopted), and so is one where any of the names above is a
symbolic link: nothing in it is followed. Only files the store recorded writing (the ``files`` table, or a job
row naming them) are ever deleted; anything else found there is left alone.

Every file is written to a temporary name and moved into place with ``os.replace``, and carries its payload's
size and CRC-32, so a ``kill -9`` mid-write leaves either nothing or a file that is detected as incomplete, never
half a result that looks whole. The database runs in WAL mode with ``synchronous=NORMAL``: a killed process loses
nothing committed (a power cut may lose the last commits, which then read as jobs still running, and rerun).

All database and file writes run on one thread (:class:`JobStore`'s writer), in the order they were asked for, so
the server's ROUTER loop never waits on a disk write; the loop only enqueues. Two exceptions, both in worker
threads and neither touching the database: reading a restored job's spooled inputs, and the run marker, an empty
file a worker makes before the engine starts, so a job that kills the server at once still counts as having run
(the database's ``running`` state is written by the writer, which may be behind). Start-up
(:meth:`JobStore.recover`) runs before the writer starts.

Recovery policy: finished jobs stay fetchable until their ``expires`` time; queued jobs are queued again; a job
that was running is rerun once (``reruns`` counts the restarts it lived through) and reported ``job_lost`` if it
is interrupted again, because a job that twice coincides with a server dying may be what kills it. A database
that cannot be opened or fails SQLite's ``quick_check`` is moved aside (logged) and a fresh one started.
"""
from __future__ import annotations

import logging
import os
import queue
import sqlite3
import stat
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import msgpack

from mattebox_plugin import protocol
from mattebox_plugin.protocol import Buffer, ProtocolError

log = logging.getLogger("mattebox.jobstore")

FILE_MAGIC = b"MBXJOB1\n"
DB_NAME = "jobs.sqlite3"
#: the file that makes a folder a mattebox state directory
MARKER = ".mattebox-state"
MARKER_TEXT = ("mattebox state directory: the job store of `mattebox serve` (server/mattebox/jobstore.py). Files "
               "here belong to it; other files are never read or deleted.\n")
FOLDERS = ("spool", "results", "running")
#: every name a state directory holds; an unmarked folder holding only these (an older mattebox's) is adopted
OWN_NAMES = frozenset((MARKER, DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm", "lock") + FOLDERS)
#: open flags that refuse a symbolic link as the last path component (0 where the OS has none: Windows)
O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
O_BINARY = getattr(os, "O_BINARY", 0)
#: how many server restarts a running job may live through before it is reported ``job_lost``
MAX_RERUNS = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    client TEXT NOT NULL,
    params BLOB NOT NULL,           -- msgpack map, engine resolved
    state TEXT NOT NULL,            -- queued, running, done, failed, cancelled
    priority INTEGER NOT NULL,
    created REAL NOT NULL,          -- wall-clock seconds (time.time())
    started REAL,
    finished REAL,
    error_code TEXT,
    error_message TEXT,
    error_field TEXT,
    error_hint TEXT,
    inputs TEXT,                    -- spool file name, until the job finishes
    result TEXT,                    -- result file name, once done
    expires REAL,                   -- wall-clock time the finished record and its result are deleted
    reruns INTEGER NOT NULL DEFAULT 0
)"""
FILES_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY           -- 'spool/NAME' or 'results/NAME': recorded before the file is written
)"""
COLUMNS = ("id", "client", "params", "state", "priority", "created", "started", "finished", "error_code",
           "error_message", "error_field", "error_hint", "inputs", "result", "expires", "reruns")


class StoreUnavailable(Exception):
    """The state directory cannot be used (not writable, or locked by another running server)."""


class StoredFileError(Exception):
    """A spooled input or stored result is missing, truncated or fails its checksum."""


# ------------------------------------------------------------------------------------------- files
def _byte_view(frame: Any) -> memoryview:
    view = memoryview(frame)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def write_message(path: Path, header: Dict[str, Any], frames: Sequence[Any]) -> int:
    """Write ``header`` + ``frames`` to ``path`` atomically (temp file + ``os.replace``); returns bytes written.

    Layout: magic, u32 length of a msgpack map {header, sizes, crc32}, then the frames back to back.
    """
    views = [_byte_view(f) for f in frames]
    crc = 0
    for view in views:
        crc = zlib.crc32(view, crc)
    meta = msgpack.packb({"header": header, "sizes": [v.nbytes for v in views], "crc32": crc}, use_bin_type=True)
    tmp = path.with_name(f"{path.name}.tmp")
    try:
        tmp.unlink()  # a kill mid-write left it; unlink never follows a link planted there
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW | O_BINARY, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(FILE_MAGIC)
        fh.write(struct.pack("<I", len(meta)))
        fh.write(meta)
        for view in views:
            fh.write(view)
    os.replace(tmp, path)
    return len(FILE_MAGIC) + 4 + len(meta) + sum(v.nbytes for v in views)


def read_message(path: Path) -> Tuple[Dict[str, Any], List[memoryview]]:
    """Read a file written by :func:`write_message` -> (header, frames). Raises StoredFileError naming the fault;
    a symbolic link is refused, never followed."""
    try:
        with os.fdopen(os.open(path, os.O_RDONLY | O_NOFOLLOW | O_BINARY), "rb") as fh:
            if fh.read(len(FILE_MAGIC)) != FILE_MAGIC:
                raise StoredFileError(f"{path.name}: not a mattebox job file (bad magic)")
            (meta_len,) = struct.unpack("<I", fh.read(4).rjust(4, b"\0"))
            meta = msgpack.unpackb(fh.read(meta_len), raw=False)
            sizes = [int(n) for n in meta["sizes"]]
            payload = bytearray(sum(sizes))
            got = fh.readinto(payload)
            extra = fh.read(1)
    except FileNotFoundError:
        raise StoredFileError(f"{path.name} is missing") from None
    except OSError as exc:
        raise StoredFileError(f"{path.name}: cannot be opened ({exc.strerror}; a symbolic link is never "
                              f"followed)") from None
    except StoredFileError:
        raise
    except Exception as exc:  # truncated metadata, not msgpack, wrong types
        raise StoredFileError(f"{path.name}: unreadable ({exc.__class__.__name__}: {exc})") from None
    if got != len(payload) or extra:
        raise StoredFileError(f"{path.name}: holds {got}{'+' if extra else ''} payload bytes, its header says "
                              f"{len(payload)} (an interrupted write?)")
    if zlib.crc32(payload) != meta.get("crc32"):
        raise StoredFileError(f"{path.name}: checksum mismatch (the file is corrupt)")
    frames, at, view = [], 0, memoryview(payload)
    for size in sizes:
        frames.append(view[at:at + size])
        at += size
    return meta["header"], frames


def load_inputs(path: Path) -> Dict[str, Buffer]:
    """A spooled job's input buffers, as :func:`protocol.validate_buffers` returned them when it was accepted."""
    header, frames = read_message(path)
    return {desc["name"]: Buffer(desc["name"], frame, desc["shape"], desc["dtype"], desc.get("colorspace", "linear"),
                                 desc.get("premultiplied", False)) for desc, frame in zip(header["buffers"], frames)}


def _lower_thread_priority(niceness: int = 10) -> None:
    """Let the writer yield the CPU to the request loop and the workers (Linux schedules threads as tasks, so
    a thread can be reniced on its own); elsewhere nothing changes."""
    if hasattr(os, "setpriority") and hasattr(threading, "get_native_id") and os.name == "posix":
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
        except OSError:
            pass


# ------------------------------------------------------------------------------------- the directory
def state_dir_problem(directory: Path) -> Optional[str]:
    """Why ``directory`` cannot be a state directory, or None when it can (it is missing or empty, carries the
    :data:`MARKER`, or holds only what an older mattebox left there). Reads only; never follows a link inside it
    (the directory itself may be a link its user made)."""
    directory = Path(directory)
    try:
        if not stat.S_ISDIR(os.stat(directory).st_mode):
            return f"state directory {directory} is not a folder"
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot read state directory {directory}: {exc.strerror}"
    foreign = [name for name in names if name not in OWN_NAMES and not name.startswith(DB_NAME + ".corrupt-")]
    if names and MARKER not in names and (foreign or DB_NAME not in names):
        shown = ", ".join(foreign[:3] or names[:3]) + (", ..." if len(foreign or names) > 3 else "")
        return (f"state directory {directory} is not empty and is not a mattebox state directory (no {MARKER} file; "
                f"it holds {shown}); mattebox keeps its jobs only in a new or empty folder, so that it never deletes "
                f"files it did not write: give --state-dir (or $MATTEBOX_STATE) a new folder")
    for name in sorted(OWN_NAMES):
        try:
            mode = os.lstat(directory / name).st_mode
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(mode):
            return (f"{directory / name} is a symbolic link; mattebox never follows links inside its state "
                    f"directory: remove the link (or give --state-dir another folder)")
        if (name in FOLDERS) != stat.S_ISDIR(mode):
            kind = "folder" if name in FOLDERS else "file"
            return f"{directory / name} is not a {kind}, as a state directory needs; remove it"
    return None


def _claim(directory: Path) -> None:
    """Create (mode 700) or adopt ``directory`` as a state directory: refuse what :func:`state_dir_problem` names,
    then write the marker and make the sub-folders."""
    problem = state_dir_problem(directory)
    if problem:
        raise StoreUnavailable(problem)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(directory / MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as fh:
            fh.write(MARKER_TEXT)
    for name in FOLDERS:
        try:
            os.mkdir(directory / name, 0o700)
        except FileExistsError:
            pass
    problem = state_dir_problem(directory)  # what appeared between the check and now
    if problem:
        raise StoreUnavailable(problem)


class _DirectoryLock:
    """An exclusive advisory lock on ``directory/lock`` (fcntl, or msvcrt on Windows), released by the OS when the
    process dies, so a server killed with ``kill -9`` never blocks its successor. The file is opened without
    truncating and without following a link (O_NOFOLLOW), and only written once the lock is held."""

    def __init__(self, directory: Path):
        self.path = directory / "lock"
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | O_NOFOLLOW, 0o600)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise StoreUnavailable(f"{self.path} is not a regular file; remove it")
        self.fh = os.fdopen(fd, "r+")
        try:
            if os.name == "nt":
                import msvcrt

                msvcrt.locking(self.fh.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(self.fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.fh.seek(0)
            holder = self.fh.read(200).strip() or "another process"
            self.fh.close()
            raise StoreUnavailable(f"state directory {directory} is in use by {holder}; give each server its own "
                                   f"--state-dir") from None
        self.fh.seek(0)
        self.fh.truncate()
        self.fh.write(f"mattebox server pid {os.getpid()}")
        self.fh.flush()

    def release(self) -> None:
        self.fh.close()  # closing drops the lock


def describe_state_dir(directory: Path) -> str:
    """One line for ``mattebox doctor``: what a state directory holds and whether a server uses it, or why a server
    refuses it; read-only (the database is opened read-only, the lock only probed, no link followed)."""
    directory = Path(directory)
    problem = state_dir_problem(directory)
    if problem:
        return f"REFUSED: {problem} (servers run memory-only)"
    if not directory.is_dir():
        return f"{directory}: not created yet (the first `mattebox serve` makes it)"
    parts = [str(directory)]
    database = directory / DB_NAME
    if database.exists():
        try:
            db = sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True)
            try:
                counts = dict(db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall())
            finally:
                db.close()
            parts.append(", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no jobs")
        except sqlite3.Error as exc:
            parts.append(f"database unreadable ({exc}); the next server moves it aside")
    results = [entry.stat(follow_symlinks=False) for entry in os.scandir(directory / "results")
               if entry.name.endswith(".mbx")] if (directory / "results").is_dir() else []
    parts.append(f"{len(results)} results on disk ({sum(st.st_size for st in results) / 2**20:.0f} MiB)")
    parts.append(_lock_state(directory / "lock"))
    return "; ".join(parts)


def _lock_state(lock: Path) -> str:
    """"free", "in use by …" (the holder's note in the lock file) or "lock state unknown" — probed on a read-only
    handle (never through a link) and let go at once."""
    if not lock.exists():
        return "free"
    if os.name == "nt":
        return "lock state unknown on Windows"
    import fcntl

    with os.fdopen(os.open(lock, os.O_RDONLY | O_NOFOLLOW)) as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return f"in use by {fh.read(200).strip() or 'another process'}"
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    return "free"


# ----------------------------------------------------------------------------------------------- store
@dataclass
class StoredJob:
    """One job row as recovery hands it to the server (times are wall-clock seconds)."""

    id: str
    client: str
    params: Dict[str, Any]
    state: str
    priority: int
    created: float
    started: Optional[float]
    finished: Optional[float]
    error: Optional[ProtocolError]
    inputs: Optional[Path]
    result: Optional[Path]
    expires: Optional[float]
    reruns: int


class JobStore:
    """Job records and their files in a state directory. Asynchronous methods enqueue work for the writer thread
    and return at once; :meth:`recover` runs once, before :meth:`start`."""

    def __init__(self, directory: Path, ttl: float):
        self.directory = Path(directory)
        self.ttl = float(ttl)
        self.spool = self.directory / "spool"
        self.results = self.directory / "results"
        self.running = self.directory / "running"
        try:
            _claim(self.directory)
            self._lock = _DirectoryLock(self.directory)
        except OSError as exc:
            raise StoreUnavailable(f"cannot use state directory {self.directory}: {exc}") from None
        try:
            self.db = self._open_db()
        except BaseException:
            self._lock.release()
            raise
        self._ops: "queue.Queue[Optional[Tuple[Callable, tuple]]]" = queue.Queue()
        #: job id -> input buffers waiting to be spooled; ``forget`` drops them at once, so a job delivered and
        #: released before the writer reaches it neither holds its memory nor costs a write
        self._to_spool: Dict[str, Dict[str, Buffer]] = {}
        self._thread: Optional[threading.Thread] = None
        self.counters = {"spooled": 0, "stored_results": 0, "write_errors": 0, "bytes_written": 0}

    # ------------------------------------------------------------------------------------ opening
    def _open_db(self) -> sqlite3.Connection:
        path = self.directory / DB_NAME
        try:
            return self._connect(path)
        except sqlite3.DatabaseError as exc:
            aside = path.with_name(f"{DB_NAME}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
            for suffix in ("", "-wal", "-shm"):
                part = Path(str(path) + suffix)
                if part.exists():
                    os.replace(part, Path(str(aside) + suffix))
            log.warning("job database unreadable; moved aside, starting empty (jobs it held are lost to this "
                        "server: their clients resubmit them)",
                        extra={"fields": {"path": str(path), "moved_to": str(aside), "error": str(exc)}})
            try:
                return self._connect(path)
            except sqlite3.DatabaseError as again:
                raise StoreUnavailable(f"cannot create a job database at {path}: {again}") from None

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)  # autocommit statements
        try:
            if db.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower() != "wal":
                raise sqlite3.DatabaseError("WAL journal mode is not available")
            db.execute("PRAGMA synchronous=NORMAL")
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {check}")
            db.execute(SCHEMA)
            db.execute(FILES_SCHEMA)
            columns = [row[1] for row in db.execute("PRAGMA table_info(jobs)")]
            if tuple(columns) != COLUMNS:
                raise sqlite3.DatabaseError(f"unexpected jobs table columns {columns}")
        except BaseException:
            db.close()
            raise
        return db

    # ---------------------------------------------------------------------------------- start-up
    def recover(self) -> List[StoredJob]:
        """Apply the restart policy to every row and return the jobs to restore, oldest first.

        Expired finished jobs are deleted; running jobs become queued again (``reruns`` + 1) or, past
        :data:`MAX_RERUNS` or with their spooled inputs gone, failed with ``job_lost``; finished jobs whose result
        file is gone fail the same way. Files no row refers to (leftovers of a kill mid-write) are deleted.
        """
        now = time.time()
        restored: List[StoredJob] = []
        rows = self.db.execute(f"SELECT {', '.join(COLUMNS)} FROM jobs ORDER BY created").fetchall()
        for row in rows:
            record = dict(zip(COLUMNS, row))
            try:
                job = self._recover_one(record, now)
            except Exception as exc:  # one bad row must not stop the server or the other jobs
                log.warning("dropping an unreadable job record", extra={"fields": {"id": record.get("id"),
                                                                                   "error": str(exc)}})
                self._delete(str(record.get("id")))
                continue
            if job is not None:
                restored.append(job)
        self._remove_orphans({p for job in restored for p in (job.inputs, job.result) if p is not None})
        for record in rows:  # read above; a rerun makes a new one
            self._unlink(self._marker(str(record[0])))
        foreign = [entry.name for folder in (self.spool, self.results, self.running) for entry in os.scandir(folder)
                   if self._own(folder, entry.name) is None]
        if foreign:
            log.info("files in the state directory that this store did not write are left alone",
                     extra={"fields": {"count": len(foreign), "first": sorted(foreign)[:5]}})
        counts: Dict[str, int] = {}
        for job in restored:
            counts[job.state] = counts.get(job.state, 0) + 1
        log.info("job store recovered", extra={"fields": {"state_dir": str(self.directory), "jobs": counts}})
        return restored

    def _recover_one(self, record: Dict[str, Any], now: float) -> Optional[StoredJob]:
        job_id, state = record["id"], record["state"]
        inputs = self._file(self.spool, record["inputs"])
        result = self._file(self.results, record["result"])
        if state in ("done", "failed", "cancelled") and (record["expires"] or 0) <= now:
            self._delete(job_id)
            return None
        lost = None
        if state == "running" or (state == "queued" and self._marker(job_id).exists()):
            record["reruns"] += 1
            if record["reruns"] > MAX_RERUNS:
                lost = (f"job {job_id} was running when the server stopped, and it had already been rerun after "
                        f"{MAX_RERUNS} earlier server restart(s); it is not rerun again in case it is what stops the "
                        f"server")
            state = "queued"
        if state == "queued" and lost is None and (inputs is None or not inputs.is_file()):
            lost = f"job {job_id} was queued when the server restarted, but its spooled inputs are missing"
        if state == "done" and (result is None or not result.is_file()):
            lost = f"job {job_id} finished before the server restarted, but its stored result is missing"
        error = None
        finished, expires = record["finished"], record["expires"]
        if lost is not None:
            error = ProtocolError("job_lost", lost + "; submit it again", hint="the server log has the details")
            log.warning("job lost across a restart", extra={"fields": {"id": job_id, "reason": lost}})
            self._write_finished(job_id, "failed", now, error, None)
            state, result, inputs, finished, expires = "failed", None, None, now, now + self.ttl
        elif state == "queued":
            self.db.execute("UPDATE jobs SET state='queued', started=NULL, reruns=? WHERE id=?",
                            (record["reruns"], job_id))
        elif state in ("failed", "cancelled"):
            code = record["error_code"] if record["error_code"] in protocol.ERROR_CODES else "engine_failed"
            error = ProtocolError(code, record["error_message"] or "", record["error_field"], record["error_hint"])
        return StoredJob(id=job_id, client=record["client"], params=msgpack.unpackb(record["params"], raw=False),
                         state=state, priority=record["priority"], created=record["created"],
                         started=record["started"], finished=finished, error=error, inputs=inputs, result=result,
                         expires=expires, reruns=record["reruns"])

    def _remove_orphans(self, keep: set) -> None:
        """Delete the files this store recorded writing that no restored job needs (a kill between a write and
        its row, or mid-write: the ``.tmp`` too). Files it has no record of are never touched."""
        removed = 0
        for (path,) in self.db.execute("SELECT path FROM files").fetchall():
            folder, _, name = str(path).partition("/")
            file = self._file(self.directory / folder, name) if folder in ("spool", "results") else None
            if file is None:
                self.db.execute("DELETE FROM files WHERE path=?", (path,))
            elif file not in keep:
                self._remove(file)
                removed += 1
        if removed:
            log.info("removed files no job refers to", extra={"fields": {"count": removed}})

    # ---------------------------------------------------------------------------------- own files
    @staticmethod
    def _file(folder: Path, name: Optional[str]) -> Optional[Path]:
        """``folder/name`` for a file name the store makes (``<job id>.mbx``), None for anything else (no name,
        a path, a database holding something it never wrote)."""
        if not name or "/" in name or "\\" in name or not name.endswith(".mbx"):
            return None
        return folder / name

    def _own(self, folder: Path, name: str) -> Optional[Path]:
        """``folder/name`` when the store wrote it (recorded, named by a job row, a run marker of a job it holds,
        or the ``.tmp`` of one of those), else None."""
        base = name[:-4] if name.endswith(".tmp") else name
        if folder == self.running:
            job_id = base[:-4] if base.endswith(".run") else None
            known = job_id and self.db.execute("SELECT 1 FROM jobs WHERE id=?", (job_id,)).fetchone()
        else:
            known = (self.db.execute("SELECT 1 FROM files WHERE path=?", (f"{folder.name}/{base}",)).fetchone()
                     or self.db.execute("SELECT 1 FROM jobs WHERE inputs=? OR result=?", (base, base)).fetchone())
        return folder / name if known else None

    def _write(self, path: Path, header: Dict[str, Any], frames: Sequence[Any]) -> None:
        """Record ``path`` as the store's, then write it (:func:`write_message`): a kill between the two leaves a
        record the next start cleans up, never a file it would not recognise as its own."""
        self.db.execute("INSERT OR IGNORE INTO files (path) VALUES (?)", (f"{path.parent.name}/{path.name}",))
        self.counters["bytes_written"] += write_message(path, header, frames)

    def _remove(self, path: Path) -> None:
        """Delete a file the store wrote (and its ``.tmp``), then its record."""
        self._unlink(path)
        self._unlink(path.with_name(f"{path.name}.tmp"))
        self.db.execute("DELETE FROM files WHERE path=?", (f"{path.parent.name}/{path.name}",))

    # ------------------------------------------------------------------------------------ writer
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mattebox-jobstore", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Finish every queued write, then close the database and release the directory."""
        if self._thread is not None:
            self._ops.put(None)
            self._thread.join(timeout=60)
        self.db.close()
        self._lock.release()

    def pending(self) -> int:
        return self._ops.qsize()

    def _run(self) -> None:
        _lower_thread_priority()
        while True:
            item = self._ops.get()
            if item is None:
                return
            fn, args = item
            try:
                fn(*args)
            except Exception:  # a disk or database error must not stop the writer (the job stays in memory)
                self.counters["write_errors"] += 1
                log.exception("job store write failed", extra={"fields": {"op": fn.__name__}})

    def _enqueue(self, fn: Callable, *args: Any) -> None:
        self._ops.put((fn, args))

    # -------------------------------------------------------------------- asynchronous operations
    def add(self, job: Any, buffers: Dict[str, Buffer], then: Callable[[bool], None]) -> None:
        """Record a newly accepted job and spool its inputs; then ``then(stored)`` (the server answers accepted)."""
        self._to_spool[job.id] = buffers
        self._enqueue(self._add, job, then)

    def started(self, job_id: str) -> None:
        """The job's engine is about to run: make its run marker now (in the caller's thread: it must exist before
        the engine can crash the server) and record the state on the writer."""
        try:
            os.close(os.open(self._marker(job_id), os.O_WRONLY | os.O_CREAT | O_NOFOLLOW, 0o600))
        except OSError as exc:
            log.warning("could not mark a job running", extra={"fields": {"id": job_id, "error": str(exc)}})
        self._enqueue(self._started, job_id, time.time())

    def _marker(self, job_id: str) -> Path:
        return self.running / f"{job_id}.run"

    def finished(self, job: Any, on_stored: Callable[[], None]) -> None:
        """Store ``job.reply`` (a result's frames go to a file); ``on_stored()`` once it is on disk."""
        self._enqueue(self._finished, job, on_stored)

    def requeue(self, job_id: str) -> None:
        """A clean shutdown interrupted the job: run it again after the restart (not counted as a rerun)."""
        self._enqueue(self._requeue, job_id)

    def forget(self, job_id: str) -> None:
        """The client has the result (release) or it expired: delete the row and its files."""
        self._to_spool.pop(job_id, None)
        self._enqueue(self._delete, job_id)

    def deliver(self, job_id: str, send: Callable[[Dict[str, Any], List[Any]], None],
                lost: Callable[[ProtocolError], None]) -> None:
        """Read a stored result and ``send(header, frames)``; a missing or corrupt file -> ``lost(error)``."""
        self._enqueue(self._deliver, job_id, send, lost)

    # ------------------------------------------------------------------------ writer-thread bodies
    def _add(self, job: Any, then: Callable[[bool], None]) -> None:
        buffers = self._to_spool.pop(job.id, None)
        # a job that already ended needs no spooled inputs: its end is the next thing written
        name = f"{job.id}.mbx" if job.state in ("queued", "running") else None
        stored = False
        if buffers is not None:  # else released already: nothing to keep
            try:
                if name is not None:
                    descs = [buf.describe() for buf in buffers.values()]
                    self._write(self.spool / name, {"buffers": descs}, [buf.data for buf in buffers.values()])
                    self.counters["spooled"] += 1
                self.db.execute(f"INSERT OR REPLACE INTO jobs ({', '.join(COLUMNS)}) VALUES "
                                f"({', '.join('?' * len(COLUMNS))})",
                                (job.id, job.client, msgpack.packb(job.params, use_bin_type=True), "queued",
                                 job.priority, time.time(), None, None, None, None, None, None, name, None, None, 0))
                stored = True
            except (OSError, sqlite3.Error) as exc:
                self.counters["write_errors"] += 1
                log.error("could not store job; it runs, but would not survive a restart",
                          extra={"fields": {"id": job.id, "error": str(exc)}})
                if name is not None:
                    self._remove(self.spool / name)
        then(stored)

    def _started(self, job_id: str, when: float) -> None:
        self.db.execute("UPDATE jobs SET state='running', started=? WHERE id=?", (when, job_id))

    def _finished(self, job: Any, on_stored: Callable[[], None]) -> None:
        reply = job.reply  # read first: the server drops it when the client releases the job
        if job.released or not job.stored or reply is None:
            return  # delivered and released already (forget follows in the queue), or never recorded
        header, frames = reply
        now = time.time()
        result = None
        error = None
        if header.get("op") == protocol.RESULT:
            result = f"{job.id}.mbx"
            self._write(self.results / result, header, frames)
            self.counters["stored_results"] += 1
        else:
            error = ProtocolError.from_header(header)
        self._write_finished(job.id, job.state, now, error, result)
        on_stored()

    def _write_finished(self, job_id: str, state: str, now: float, error: Optional[ProtocolError],
                        result: Optional[str]) -> None:
        row = self.db.execute("SELECT inputs FROM jobs WHERE id=?", (job_id,)).fetchone()
        self.db.execute("UPDATE jobs SET state=?, finished=?, error_code=?, error_message=?, error_field=?, "
                        "error_hint=?, inputs=NULL, result=?, expires=? WHERE id=?",
                        (state, now, error and error.code, error and error.message, error and error.field,
                         error and error.hint, result, now + self.ttl, job_id))
        inputs = self._file(self.spool, row[0]) if row else None
        if inputs is not None:
            self._remove(inputs)
        self._unlink(self._marker(job_id))

    def _requeue(self, job_id: str) -> None:
        self.db.execute("UPDATE jobs SET state='queued', started=NULL WHERE id=? AND state IN ('queued', 'running')",
                        (job_id,))
        self._unlink(self._marker(job_id))  # a clean stop: not counted as a rerun

    def _delete(self, job_id: str) -> None:
        row = self.db.execute("SELECT inputs, result FROM jobs WHERE id=?", (job_id,)).fetchone()
        self.db.execute("DELETE FROM jobs WHERE id=?", (job_id,))
        self._unlink(self._marker(job_id))
        for folder, name in zip((self.spool, self.results), row or ()):
            path = self._file(folder, name)
            if path is not None:
                self._remove(path)

    def _deliver(self, job_id: str, send, lost) -> None:
        row = self.db.execute("SELECT result FROM jobs WHERE id=?", (job_id,)).fetchone()
        result = self._file(self.results, row[0] if row else None) or self.results / f"{job_id}.mbx"
        try:
            header, frames = read_message(result)
        except StoredFileError as exc:
            error = ProtocolError("job_lost", f"the stored result of job {job_id} cannot be read ({exc}); submit it "
                                  f"again", hint="the server log has the details")
            log.warning("stored result unreadable", extra={"fields": {"id": job_id, "error": str(exc)}})
            self._write_finished(job_id, "failed", time.time(), error, None)
            self._remove(result)
            lost(error)
            return
        send(header, frames)

    @staticmethod
    def _unlink(path: Path) -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


__all__ = ["JobStore", "StoredJob", "StoreUnavailable", "StoredFileError", "MAX_RERUNS", "load_inputs",
           "read_message", "write_message"]
