"""Work a shot starts before it needs it: independent solves of frames ahead and the optical flow of frame pairs
(docs/shots.md, *Time*).

The compiled kernels and cv2 release the GIL, so a worker thread computes on a second core while the walk steadies
an earlier frame. A :class:`Task` is a pure function call handed to a thread pool; the thread that needs its
value first takes it back and runs it itself if no worker has started it yet (work stealing), so the walk never
waits on work that sits in the queue, and the two cores stay busy whichever side has more to do. Who runs a task
does not change its value: the mattes are the same bit for bit with or without a pool.
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

    def result(self) -> Any:
        """The value: run here if no worker has started it, else wait for the worker (its error raised here)."""
        if self._value is _PENDING:
            if self._future is None or self._future.cancel():  # cancel() succeeds only before a worker starts it
                self._value = self._compute(*self._arguments)
            else:
                self._value = self._future.result()
            self._compute, self._arguments, self._future = None, (), None  # let go of the inputs
        return self._value
