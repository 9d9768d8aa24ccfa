"""A shot rendered by the server for a client that holds the frames (docs/protocol.md, *Shots*).

The worker runs :func:`~.solve.matte_shot` with a read callback that, for a frame it does not hold, asks the
client for it (a ``need`` message) and waits on a condition variable until the request loop hands the frame over
(:meth:`ShotSession.offer`), the job is cancelled, the loop fails it (:meth:`ShotSession.fail`: a bad frame),
``shot_timeout_s`` passes with no word from the client, or the shot's waits for its client add up to more than
``shot_max_wait_s`` (both ``frame_timeout``: the worker is the server's, lent to the shot while its client keeps
up; pings keep a slow reader's shot alive, but only so long). Key frames' masks and trimaps arrive
with their frames and are held only while a frame still to come is bracketed by them (:class:`_WireKey`).

Memory: the frames the walk still needs (matte_shot's window of 2·radius + 1 frames, the span back to the key
before it, frames received and not yet read) and the keys around it; each frame's bytes count against the owner's
and the server's budgets (``Job.nbytes``) from its arrival until the walk has passed it.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from mattebox_plugin import protocol
from mattebox_plugin.protocol import Buffer, ProtocolError

from ..codec import decode_request, encode_result
from ..contract import JobCancelled, MatteResult
from .guidance import MASK, TRIMAP, Key
from .solve import ShotSettings, matte_shot

GUIDANCE = (MASK, TRIMAP)
#: (header, frames) -> None: send a message about the job to its client (never final)
Send = Callable[[Dict[str, Any], List[Any]], None]


def _no_send(header: Dict[str, Any], frames: List[Any]) -> None:
    raise RuntimeError("ShotSession: read before run() gave a way to reach the client")


class ShotSession:
    """The server's side of one shot job: frames handed over by the request loop, taken by the worker.

    ``spec``: :func:`protocol.validate_shot`'s result; ``params``: the job's validated params; ``cancelled``: the
    job's cancel event; ``on_bytes(n)``: called (under the session's lock) with the bytes now held; ``timeout``:
    seconds of silence from the client while a frame is awaited; ``max_wait``: seconds of waiting for frames in all."""

    def __init__(self, job_id: str, spec: Dict[str, Any], params: Dict[str, Any], timeout: float,
                 cancelled: threading.Event, on_bytes: Callable[[int], None] = lambda n: None,
                 max_wait: float = float("inf")):
        self.job_id = job_id
        self.spec = spec
        self.params = params
        self.timeout = float(timeout)
        self.max_wait = float(max_wait)
        self.waited = 0.0  #: seconds spent waiting for the client's frames so far (against ``max_wait``)
        self.cancelled = cancelled
        self.on_bytes = on_bytes
        self.keys = set(spec["keys"])
        self.step = spec["frames"][1] - spec["frames"][0] if len(spec["frames"]) > 1 else 1
        self._cv = threading.Condition()
        self._inbox: Dict[int, Dict[str, Buffer]] = {}  #: frames received, not yet read by the worker
        self._held: Dict[int, int] = {}  #: frame -> wire bytes, from arrival until the walk has passed it
        self._guidance: Dict[int, Tuple[str, np.ndarray]] = {}  #: key frame -> (kind, value) while needed
        self._guidance_bytes = 0  #: bytes of ``_guidance`` (kept by the worker, counted under the lock)
        self._send: Send = _no_send  #: how the worker reaches the client (set by :meth:`run`)
        self._images: Dict[int, np.ndarray] = {}  #: decoded images that came with guidance asked for first
        self._failure: Optional[ProtocolError] = None
        self._last_heard = time.monotonic()
        self.wanted: Optional[int] = None  #: the frame the worker waits for (re-asked after a reconnect)
        self.shape: Optional[Tuple[int, int]] = None  #: the shot's height and width, from its first frame
        self.colorspace = "linear"  #: the image colourspace of the shot (its first frame's), for the results
        self.closed = False

    # ----------------------------------------------------------------------------------- loop side
    def heard(self) -> None:
        """The client spoke (attach, frame): it is alive, so the wait for a frame starts afresh."""
        with self._cv:
            self._last_heard = time.monotonic()

    def admit(self, frame: int) -> None:
        """Raise ProtocolError (``frame``) unless the worker waits for ``frame``: checked before the loop validates
        the frame's buffers or copies its shared memory, and again by :meth:`offer`."""
        with self._cv:
            self._admit(frame)

    def _admit(self, frame: int) -> None:
        if self.closed:
            raise ProtocolError("bad_field", f"shot job {self.job_id} has ended; frame {frame} is not needed",
                                field="frame")
        if frame != self.wanted:
            raise ProtocolError("bad_field", f"frame {frame} was not asked for (the server waits for "
                                f"{'frame ' + str(self.wanted) if self.wanted is not None else 'no frame'})",
                                field="frame", hint="send a frame only in answer to a need message")

    def offer(self, frame: int, buffers: Dict[str, Buffer], fields: Dict[str, str]) -> None:
        """Hand over a frame's validated buffers (``fields``: input name -> ``buffers.N``); raises ProtocolError
        naming the field when the frame was not asked for or does not fit the shot."""
        with self._cv:
            self._last_heard = time.monotonic()
            self._admit(frame)
            unused = sorted(set(buffers) - {"image", MASK, TRIMAP})
            if unused:
                raise ProtocolError("bad_field", f"frame {frame}: a shot uses the image and a key's mask or trimap, "
                                    f"not '{unused[0]}'", field=fields[unused[0]] + ".name")
            guidance = [name for name in GUIDANCE if name in buffers]
            if frame in self.keys and len(guidance) != 1:
                raise ProtocolError("bad_field", f"frame {frame} is a key (shot.keys): expected a mask or a trimap "
                                    f"with its image, got {' and '.join(guidance) or 'neither'}", field="buffers")
            if frame not in self.keys and guidance:
                raise ProtocolError("bad_field", f"frame {frame} is not a key (shot.keys) but carries a "
                                    f"{guidance[0]}", field=fields[guidance[0]] + ".name",
                                    hint="list every frame with guidance in shot.keys")
            shape = buffers["image"].shape[:2]
            if self.shape is None:
                self.shape, self.colorspace = shape, buffers["image"].colorspace
            elif shape != self.shape:
                raise ProtocolError("shape_mismatch", f"frame {frame} is {shape[1]}×{shape[0]} but the shot's "
                                    f"frames are {self.shape[1]}×{self.shape[0]}", field=fields["image"] + ".shape",
                                    hint="every frame of a shot has the same size")
            self._inbox[frame] = buffers
            self._held[frame] = sum(buf.nbytes for buf in buffers.values())
            self._account()
            self._cv.notify_all()

    def fail(self, error: ProtocolError) -> None:
        """End the shot with ``error`` (a frame the loop refused): the waiting worker raises it. A bare copy is
        kept: the error's traceback and context hold the loop's frames, and with them the refused frame's bytes,
        which would then live as long as the job (result_ttl), counted against no budget."""
        with self._cv:
            self._failure = ProtocolError(error.code, error.message, error.field, error.hint)
            self._cv.notify_all()

    def wake(self) -> None:
        """Wake a waiting worker to look at the cancel event (cancel, shutdown)."""
        with self._cv:
            self._cv.notify_all()

    # --------------------------------------------------------------------------------- worker side
    def _account(self) -> None:
        """Report the bytes held (frames the walk still needs, keys' guidance); called under the lock."""
        self.on_bytes(sum(self._held.values()) + self._guidance_bytes)

    def _fetch(self, frame: int) -> Dict[str, Buffer]:
        """The frame's buffers: ask the client (``need``) and wait for them."""
        asked = time.monotonic()
        with self._cv:
            ask = frame not in self._inbox
            if ask:
                self.wanted, self._last_heard = frame, asked  # the wait starts now
        if ask:  # sent outside the lock: the request loop takes it to hand frames over
            self._send({"op": protocol.NEED, "id": self.job_id, "frame": frame}, [])
        with self._cv:
            while frame not in self._inbox:
                if self._failure is not None:
                    raise self._failure
                if self.cancelled.is_set():
                    raise JobCancelled()
                now = time.monotonic()
                silent, waited = now - self._last_heard, self.waited + now - asked
                if silent > self.timeout:
                    raise ProtocolError("frame_timeout", f"shot job {self.job_id} waited for frame {frame}, and "
                                        f"heard nothing from its client for {silent:.0f} s (shot_timeout_s "
                                        f"{self.timeout:g})", field="frame", hint="is the client still running?")
                if waited > self.max_wait:
                    raise ProtocolError("frame_timeout", f"shot job {self.job_id} waited for frame {frame}; its "
                                        f"waits for its client's frames add up to {waited:.0f} s, over "
                                        f"shot_max_wait_s {self.max_wait:g}", field="frame",
                                        hint="send each frame as soon as it is asked for (or raise the server's "
                                        "--shot-max-wait for a slow reader)")
                self._cv.wait(min(1.0, self.timeout - silent + 0.01, self.max_wait - waited + 0.01))
            self.waited += time.monotonic() - asked
            self.wanted = None
            return self._inbox.pop(frame)

    def _decode(self, frame: int) -> Tuple[np.ndarray, Optional[Tuple[str, np.ndarray]]]:
        """-> (image, linear H×W×3 float32; (kind, value) of the frame's guidance, or None), via the codec."""
        buffers = self._fetch(frame)
        request = decode_request(buffers, self.params)
        for kind in GUIDANCE:
            value = getattr(request, kind)
            if value is not None:
                return request.image, (kind, np.ascontiguousarray(value, dtype=np.float32))
        return request.image, None

    def read(self, frame: int) -> np.ndarray:
        """matte_shot's read callback: the frame's image (a key's guidance is kept aside)."""
        if frame in self._images:  # came with its guidance, asked for first
            return self._images.pop(frame)
        image, guidance = self._decode(frame)
        if guidance is not None:
            self._keep_guidance(frame, guidance)
        return image

    def guidance(self, frame: int) -> Tuple[str, np.ndarray]:
        """A key frame's (kind, value); a key asked for before its image keeps the image for :meth:`read`."""
        if frame not in self._guidance:
            self._images[frame], guidance = self._decode(frame)
            self._keep_guidance(frame, guidance)
        return self._guidance[frame]

    def _keep_guidance(self, frame: int, guidance: Tuple[str, np.ndarray]) -> None:
        if frame not in self._guidance:
            with self._cv:
                self._guidance[frame] = guidance
                self._guidance_bytes += guidance[1].nbytes
                self._account()

    def _passed(self, floor: int) -> None:
        """The walk no longer needs frames before ``floor``, nor keys before the last key at or before it."""
        before = [k for k in self.keys if k <= floor]
        with self._cv:
            for frame in [f for f in self._held if f < floor]:
                del self._held[frame]
            for frame in [k for k in self._guidance if before and k < max(before)]:
                self._guidance_bytes -= self._guidance.pop(frame)[1].nbytes
            self._account()
        for frame in [f for f in self._images if f < floor]:
            del self._images[frame]

    def run(self, progress: Any, send: Send) -> Tuple[List[Dict], List[Any], Dict[str, Any]]:
        """Render the shot; every output frame but the last goes out through ``send`` as a ``result`` with
        ``final: false``; -> (descriptions, frames, info) of the last, which the worker sends as the job's result."""
        outputs = self.params["outputs"]
        settings = ShotSettings(quality=self.params["quality"], radius=self.spec["radius"],
                                band_width=self.params["band_width"],
                                foreground=any(name in outputs for name in ("foreground", "premultiplied")))
        self._send = send
        keys = {frame: _WireKey(self, frame) for frame in self.spec["keys"]}
        last = self.spec["outputs"][-1]
        shots = matte_shot(self.read, self.spec["frames"], keys, self.spec["outputs"], settings, progress)
        try:
            for done in shots:
                foreground = done.foreground if done.foreground is not None else np.zeros(done.alpha.shape + (3,),
                                                                                            np.float32)
                result = MatteResult(alpha=done.alpha, foreground=foreground, trimap=done.trimap)
                descs, frames = encode_result(result, outputs, self.colorspace)
                info = dict(done.info, engine="classical-shot")
                self._passed(done.frame - self.spec["radius"] * self.step)
                if done.frame == last:
                    return descs, frames, info
                send({"op": protocol.RESULT, "id": self.job_id, "buffers": descs, "info": info,
                      "frame": done.frame, "final": False}, frames)
        finally:
            shots.close()
            self.close()
        raise RuntimeError("matte_shot ended before the shot's last output frame")  # a bug, not the client's

    def close(self) -> None:
        """Let go of everything the shot holds (its end, whatever it was)."""
        with self._cv:
            self.closed = True
            self._inbox.clear()
            self._held.clear()
            self._guidance.clear()
            self._guidance_bytes = 0
            self._images.clear()
            self.wanted = None
            self._account()


class _WireKey:
    """A key (:class:`~.guidance.Key`'s fields) whose mask or trimap comes from the client with its frame and is
    fetched only when the guidance of some frame first uses it."""

    def __init__(self, session: ShotSession, frame: int):
        self._session, self._frame = session, frame

    def _key(self) -> Key:
        kind, value = self._session.guidance(self._frame)
        return Key(kind, value, band_width=self._session.params["band_width"])

    kind = property(lambda self: self._key().kind)
    value = property(lambda self: self._key().value)
    band_width = property(lambda self: self._session.params["band_width"])
