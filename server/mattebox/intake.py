"""Receive one request from the ROUTER frame by frame, keeping no more than the limits allow.

``ZMQ_MAXMSGSIZE`` (set in ``Server.bind``) bounds each *frame*; this module bounds the rest before anything is
decoded: the buffer frames' running total against ``max_message_bytes`` and their count against one frame per
input. Once a limit is passed the buffer frames seen so far are dropped and the rest of the message is drained
without keeping it, and the request is answered ``too_large`` naming the field. The header frame is checked
against ``max_header_bytes`` by ``protocol.decode`` before msgpack sees it.

What this cannot bound: libzmq delivers a multipart message atomically, so its I/O thread has buffered every
frame of a message (each under ``ZMQ_MAXMSGSIZE``) before the first one is readable here. The peak for a message
of many frames is therefore their sum, freed as soon as it is drained (docs/deploy.md, "Limits").
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import zmq

from mattebox_plugin import protocol
from mattebox_plugin.protocol import ProtocolError

#: magic, header, then at most one frame per input
MAX_FRAMES = 2 + len(protocol.INPUTS)


class Request:
    """One received message: the ``frames`` kept, as ``recv_multipart(copy=False)`` gives them (ROUTER route,
    magic, header, buffers; ``zmq.Frame`` objects, so message properties such as ``User-Id`` stay readable), and,
    when a limit was passed, the refusal to answer with (route, magic and header are kept, for the job id)."""

    def __init__(self, frames: List[zmq.Frame], refused: Optional[ProtocolError]):
        self.frames = frames
        self.route: bytes = frames[0].bytes
        self.refused = refused
        self.header: Dict[str, Any] = {}  #: set by :meth:`decode` once the header is decoded

    def decode(self, limits: Dict[str, int]) -> Tuple[Dict[str, Any], List[Any]]:
        """-> (header, buffer frames); raises the refusal after decoding the header (which names the job)."""
        self.header, buffers = protocol.decode([f.buffer for f in self.frames[1:]],
                                               max_header_bytes=_limit(limits, "max_header_bytes"))
        if self.refused is not None:
            raise self.refused
        return self.header, buffers


def receive(sock: zmq.Socket, limits: Dict[str, int]) -> Optional[Request]:
    """Receive the next message without blocking (None when there is none), enforcing the limits frame by frame."""
    try:
        kept = [sock.recv(zmq.NOBLOCK, copy=False)]  # the ROUTER's route
    except zmq.Again:
        return None
    max_message = _limit(limits, "max_message_bytes")
    refused: Optional[ProtocolError] = None
    buffered = 0
    while sock.getsockopt(zmq.RCVMORE):
        frame = sock.recv(copy=False)  # the parts of a message arrive together: this never waits
        if refused is not None:
            continue  # drain: let the frame go at once
        position = len(kept) - 1  # 0 magic, 1 header, 2... buffers
        if position >= 2:
            buffered += len(frame)
            if buffered > max_message:
                refused = ProtocolError("too_large", f"buffers are over max_message_bytes {max_message} (the "
                                        f"server stopped reading at {buffered} bytes)", field="buffers",
                                        hint="send a smaller image, or raise the server's --max-message-bytes")
            elif position >= MAX_FRAMES:
                refused = ProtocolError("too_large", f"more than {MAX_FRAMES - 2} buffer frames (one per input: "
                                        f"{', '.join(protocol.INPUTS)})", field="buffers")
        if refused is None:
            kept.append(frame)
        else:
            del kept[3:]  # keep route, magic and header (for the job id), drop the buffers
    return Request(kept, refused)


def _limit(limits: Dict[str, int], name: str) -> int:
    return int(limits.get(name, protocol.DEFAULT_LIMITS[name]))
