"""Structured logging: every record has an event name plus fields, printed as JSON lines or key=value text."""
from __future__ import annotations

import json
import logging
import sys
import time


class _Formatter(logging.Formatter):
    def __init__(self, as_json: bool):
        super().__init__()
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", {}) or {}
        if self.as_json:
            payload = {"ts": round(record.created, 3), "level": record.levelname.lower(), "logger": record.name,
                       "event": record.getMessage(), **fields}
            if record.exc_info:
                payload["exc"] = self.formatException(record.exc_info)
            return json.dumps(payload, default=str)
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        pairs = " ".join(f"{k}={v}" for k, v in fields.items())
        text = f"{stamp} {record.levelname.lower():7s} {record.name}: {record.getMessage()} {pairs}".rstrip()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def setup(level: str = "info", fmt: str = "text", stream=None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_Formatter(fmt == "json"))
    root = logging.getLogger("mattebox")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
