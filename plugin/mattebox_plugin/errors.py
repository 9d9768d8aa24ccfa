"""What went wrong, said the same way in every host: the client's exceptions and :func:`describe_error`.

The exceptions live here rather than in ``client`` so that a host can name and describe them without importing
pyzmq (GIMP and Blender register their menus before their vendored wheels are importable); ``client`` re-exports
them. :func:`describe_error` gives the text a host shows (Nuke's status knob, Blender's report, GIMP's message);
:func:`error_line` is the same text for places that do not already say it is Mattebox speaking.
"""
from __future__ import annotations

from typing import Optional

from .protocol import ProtocolError


class ServerUnavailable(Exception):
    """Nothing answered at the endpoint within the timeout."""


class ServerNotStarted(ServerUnavailable):
    """A local server was started for the host but never answered: it exited (``returncode``) or stayed silent.
    ``log_tail`` holds the end of its output (``log_path``), which usually says why."""

    def __init__(self, message: str, command=None, returncode: Optional[int] = None, log_path: Optional[str] = None,
                 log_tail: str = ""):
        super().__init__(message)
        self.command = command
        self.returncode = returncode
        self.log_path = log_path
        self.log_tail = log_tail


class JobFailed(ProtocolError):
    """The server answered a job with an error (``code`` from protocol.ERROR_CODES)."""


class Cancelled(Exception):
    """The user (or a farm's time limit) stopped the run."""

    def __init__(self, message: str = "cancelled"):
        super().__init__(message)


#: most characters of a server log quoted in an error
LOG_TAIL_CHARS = 600


def describe_error(exc: BaseException, endpoint: Optional[str] = None) -> str:
    """One line (a log tail may add lines) saying what failed and, where known, what to do.

    Server errors keep their code, field and hint (protocol.ERROR_CODES); a server that is not reachable says so
    and, when a local server was started and died, its exit status and the end of its log; with ``endpoint``, how
    to start one there. Input errors (ValueError, OSError, RuntimeError; the hosts' own errors derive from them,
    e.g. Nuke's MatteboxError) are their message; anything else is named as unexpected with its type, never as a
    traceback.
    """
    if isinstance(exc, Cancelled) or getattr(exc, "code", None) == "cancelled":
        return "cancelled"
    if isinstance(exc, ProtocolError):
        text = f"{exc.message} [{exc.code}]"
        if exc.field:
            text += f" (field {exc.field})"
        return text + (f"; {exc.hint}" if exc.hint else "")
    if isinstance(exc, ServerUnavailable):
        return _unavailable(exc, endpoint)
    if isinstance(exc, TimeoutError):
        return f"timed out: {exc}"
    if isinstance(exc, (ValueError, OSError, RuntimeError)):
        return str(exc) or type(exc).__name__
    return f"unexpected {type(exc).__name__}: {exc}"


def _unavailable(exc: ServerUnavailable, endpoint: Optional[str]) -> str:
    text = str(exc)
    if isinstance(exc, ServerNotStarted):
        if exc.returncode is not None and "exited with code" not in text:
            text += f" (exit status {exc.returncode})"
        tail = exc.log_tail.strip()
        if tail:
            text += f"; the end of its log ({exc.log_path}):\n{tail[-LOG_TAIL_CHARS:]}"
        elif exc.log_path:
            text += f"; its log ({exc.log_path}) is empty"
    elif endpoint and "mattebox serve" not in text:
        text += (f"; start one with `mattebox serve --endpoint {endpoint}`, or run `mattebox install` for this host "
                 f"so that one starts on demand")
    return text


def error_line(exc: BaseException, endpoint: Optional[str] = None) -> str:
    """:func:`describe_error` for a host-wide message (Blender's report bar, GIMP's message box): prefixed with
    "Mattebox: " unless the text already starts with the name."""
    text = describe_error(exc, endpoint)
    return text if text.lower().startswith("mattebox") else f"Mattebox: {text}"
