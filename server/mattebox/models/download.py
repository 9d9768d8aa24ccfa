"""HTTP(S) download with resume, size and sha256 checks (standard library only; ``mattebox models pull``).

:func:`download` writes ``DEST.part`` and renames it to ``DEST`` only after the size and the sha256 check. A cut
connection leaves the ``.part`` file and the next call resumes it with an HTTP ``Range`` request (RFC 9110
sec. 14; a server that ignores Range answers 200 and the download restarts). A wrong digest removes the partial
file. Errors are :class:`DownloadError` with one line a user can act on (404, time-out, refused connection, wrong
hash). Progress goes to stderr as a bar when stderr is a terminal, and nowhere otherwise.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Optional, TextIO

from .. import __version__

CHUNK = 1 << 16
#: seconds without a byte before a connection counts as stalled
DEFAULT_TIMEOUT = 30.0


class DownloadError(RuntimeError):
    """A download failed; the message says why and what to do."""


def _request(url: str, offset: int = 0) -> urllib.request.Request:
    headers = {"User-Agent": f"mattebox/{__version__} (+urllib)"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.Request(url, headers=headers)


def _open(url: str, timeout: float, offset: int = 0):
    """urlopen with every failure turned into a DownloadError naming the URL."""
    try:
        return urllib.request.urlopen(_request(url, offset), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the .part already holds the whole file (or more): start again
            raise _RangeRefused() from None
        hint = " (the file has moved or the name is wrong; give another --url)" if exc.code == 404 else ""
        raise DownloadError(f"HTTP {exc.code} {exc.reason} from {url}{hint}") from None
    except (urllib.error.URLError, TimeoutError) as exc:  # socket.timeout is TimeoutError (Python 3.10+)
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError):
            raise DownloadError(f"timed out after {timeout:g} s waiting for {url}; check the network or raise "
                                f"--timeout") from None
        raise DownloadError(f"cannot reach {url}: {reason}") from None


class _RangeRefused(Exception):
    pass


def fetch_json(url: str, timeout: float = DEFAULT_TIMEOUT):
    """GET a small JSON document (the Hub's file listing)."""
    with _open(url, timeout) as response:
        try:
            return json.loads(response.read(1 << 22).decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise DownloadError(f"{url} did not answer JSON: {exc}") from None


def hf_lfs_info(endpoint: str, repo: str, revision: str, filename: str, timeout: float = DEFAULT_TIMEOUT):
    """(sha256, size) the Hugging Face Hub publishes for an LFS file (tree API: ``lfs.oid`` is the file's
    sha256), or ("", size) for a small non-LFS file, whose git blob id is not a sha256 of the content."""
    listing = fetch_json(f"{endpoint}/api/models/{repo}/tree/{revision}", timeout)
    for entry in listing if isinstance(listing, list) else []:
        if isinstance(entry, dict) and entry.get("path") == filename:
            lfs = entry.get("lfs") or {}
            oid = str(lfs.get("oid", "")).lower()
            sha256 = oid if len(oid) == 64 and all(c in "0123456789abcdef" for c in oid) else ""
            return sha256, int(lfs.get("size", entry.get("size", 0)) or 0)
    raise DownloadError(f"{repo}@{revision} on {endpoint} has no file {filename!r}")


class Progress:
    """A one-line bar on ``stream`` when it is a terminal; silent otherwise."""

    def __init__(self, label: str, total: int, stream: Optional[TextIO] = None):
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.label, self.total, self.started, self.last = label, total, time.monotonic(), 0.0

    def update(self, done: int, final: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not final and now - self.last < 0.2):
            return
        self.last = now
        rate = done / max(now - self.started, 1e-6)
        if self.total:
            frac = min(done / self.total, 1.0)
            bar = "#" * int(frac * 30)
            text = f"{self.label} [{bar:<30}] {frac:6.1%} {done / 1e6:8.1f}/{self.total / 1e6:.1f} MB"
        else:
            text = f"{self.label} {done / 1e6:8.1f} MB"
        self.stream.write(f"\r{text} {rate / 1e6:6.1f} MB/s" + ("\n" if final else ""))
        self.stream.flush()


def download(url: str, dest: Path, expected_sha256: str = "", expected_size: int = 0,
             timeout: float = DEFAULT_TIMEOUT, progress_stream: Optional[TextIO] = None,
             on_chunk: Optional[Callable[[int], None]] = None) -> str:
    """Download ``url`` to ``dest`` (resuming ``dest.part``); returns the file's sha256.

    The size is checked against ``expected_size`` (when known) and the server's Content-Length; the digest against
    ``expected_sha256`` (when given). A mismatch removes the partial file and raises :class:`DownloadError`.
    ``on_chunk(bytes_so_far)`` is a test hook.
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    if expected_size and offset > expected_size:
        part.unlink()
        offset = 0
    try:
        response = _open(url, timeout, offset)
    except _RangeRefused:
        part.unlink()
        offset = 0
        response = _open(url, timeout)
    with response:
        if offset and response.status != 206:  # Range ignored: the body is the whole file again
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else expected_size
        if expected_size and total and total != expected_size:
            raise DownloadError(f"{url} is {total} bytes, expected {expected_size}: the published file changed "
                                f"or the URL is wrong")
        digest = hashlib.sha256()
        mode = "ab" if offset else "wb"
        if offset:
            with open(part, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        bar = Progress(dest.name, total, progress_stream)
        done = offset
        with open(part, mode) as out:
            while True:
                try:
                    block = response.read(CHUNK)
                except TimeoutError:
                    raise DownloadError(f"download of {url} stalled for {timeout:g} s at {done} of {total or '?'} "
                                        f"bytes; run the same command again to resume") from None
                except (OSError, http.client.HTTPException) as exc:  # reset, IncompleteRead, ...
                    raise DownloadError(f"download of {url} was cut at {done} of {total or '?'} bytes "
                                        f"({exc.__class__.__name__}); run the same command again to resume") from None
                if not block:
                    break
                out.write(block)
                digest.update(block)
                done += len(block)
                bar.update(done)
                if on_chunk is not None:
                    on_chunk(done)
        bar.update(done, final=True)
    if total and done < total:
        raise DownloadError(f"download of {url} was cut at {done} of {total} bytes; run the same command again to "
                            f"resume")
    actual = digest.hexdigest()
    if expected_sha256 and actual != expected_sha256.lower():
        part.unlink()
        raise DownloadError(f"{url} has sha256 {actual}, expected {expected_sha256}: refused and removed (a "
                            f"corrupt transfer, or the published file changed)")
    part.replace(dest)
    return actual
