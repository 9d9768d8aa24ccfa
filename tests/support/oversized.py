"""Oversized requests and what they cost the server: for tests/test_limits.py and the reliability bench.

``peak_growth_mb(server, frames)`` sends one raw multipart message to a :class:`servers.ServerProcess`, waits for
the answer and returns it with how far the server's peak resident memory (VmHWM) rose; issue #17's target is a
rise of at most twice the configured limit for each oversized input.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import msgpack
import zmq

from mattebox_plugin import protocol

MiB = 1 << 20


def expanding_header(nbytes: int) -> bytes:
    """A valid hello header of about ``nbytes`` whose msgpack decodes to ~60x its size: nested empty lists
    (one byte on the wire, a Python list in memory), within msgpack's per-container limits."""
    inner = [[] for _ in range(4000)]
    block = len(msgpack.packb(inner))
    header = {"v": protocol.PROTOCOL_VERSION, "op": protocol.HELLO, "id": "big",
              "pad": [inner] * max(1, nbytes // block)}
    return msgpack.packb(header, use_bin_type=True)


def matte_frames(buffer_frames: List[bytes], job_id: str = "oversized") -> List[Any]:
    """A matte request whose header describes one small image, followed by ``buffer_frames`` (whatever they are)."""
    header = {"op": protocol.MATTE, "id": job_id, "params": {"engine": "passthrough"},
              "buffers": [{"name": "image", "shape": [4, 4, 3], "dtype": "float32"}]}
    return protocol.encode(header, buffer_frames)


def send_and_wait(endpoint: str, frames: List[Any], timeout: float = 60.0) -> Optional[Dict[str, Any]]:
    """Send ``frames`` on a fresh DEALER; -> the decoded reply header, or None when none came within ``timeout``."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(endpoint)
        sock.send_multipart(frames, copy=False)
        if not sock.poll(int(timeout * 1000)):
            return None
        return protocol.decode(sock.recv_multipart())[0]
    finally:
        sock.close()
        ctx.term()


def peak_growth_mb(server, frames: List[Any], timeout: float = 60.0) -> Tuple[Optional[Dict[str, Any]], float]:
    """-> (the server's reply header or None, the rise of its peak RSS in MiB while handling ``frames``).

    VmHWM only rises past the process's earlier peak: give each input a fresh server for its full cost."""
    before = server.peak_rss_mb()
    reply = send_and_wait(server.endpoint, frames, timeout)  # answered once handled: the peak is behind us
    return reply, server.peak_rss_mb() - before
