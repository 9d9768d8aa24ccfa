"""Work a shot starts before it needs it: independent solves of frames ahead and the optical flow of frame pairs
(docs/shots.md, *Time*).

The compiled kernels and cv2 release the GIL, so a worker thread computes on a second core while the walk steadies
an earlier frame. A :class:`Task` is a pure function call handed to a thread pool; the thread that needs its
value first takes it back and runs it itself if no worker has started it yet (work stealing), so the walk never
waits on work that sits in the queue; and while a worker runs what the walk needs next, the walk runs a task
further ahead from the queue (:meth:`Task.steal`), so both cores stay busy whichever side has more to do. Who runs
a task does not change its value: the mattes are the same bit for bit with or without a pool.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional

_PENDING = object()


class Task:
    """``compute(*arguments)``, submitted to ``pool`` (None: run by the first :meth:`result`, in that thread)."""

    def __init__(self, pool: Optional[ThreadPoolExecutor], compute: Callable[..., Any], *arguments: Any):
        self._compute, self._arguments = compute, arguments
        self._future = pool.submit(compute, *arguments) if pool is not None else None
        self._value: Any = _PENDING

    def done(self) -> bool:
        """Whether the value is known (:meth:`result` will not wait or compute)."""
        return self._value is not _PENDING or (self._future is not None and self._future.done())

    def steal(self) -> bool:
        """Run it in this thread now if it waits in the pool's queue; -> whether it did."""
        if self._value is _PENDING and self._future is not None and self._future.cancel():
            self._finish(self._compute(*self._arguments))  # cancel() succeeds only before a worker starts it
            return True
        return False

    def result(self) -> Any:
        """The value: run here if no worker has started it, else wait for the worker (its error raised here)."""
        if self._value is _PENDING and not self.steal():
            self._finish(self._compute(*self._arguments) if self._future is None else self._future.result())
        return self._value

    def _finish(self, value: Any) -> None:
        self._value = value
        self._compute, self._arguments, self._future = None, (), None  # let go of the inputs
