"""Waiting on a condition in tests, never on a sleep: CI is a loaded 2-core machine, where anything may take far
longer than it does on a quiet one, so a test polls what it needs (a status, a file, a counter) under a generous
time-out and fails naming what never happened."""
from __future__ import annotations

import time
from typing import Any, Callable

#: seconds a test waits for something that takes well under one on a quiet machine
GENEROUS = 60.0


def wait_for(condition: Callable[[], Any], timeout: float = GENEROUS, what: str = "condition",
             poll: float = 0.05) -> Any:
    """``condition()``'s first true value, polled every ``poll`` seconds; AssertionError naming ``what`` when it
    is not true within ``timeout`` seconds (checked once more at the deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll)
