"""Structured, quiet-by-default logging: one ``key=value`` line per event on stderr."""

from __future__ import annotations

import logging
import sys


class KeyValueFormatter(logging.Formatter):
    """Formats a record as ``ts=... level=... logger=... msg="..." key=value ...``."""

    def format(self, record: logging.LogRecord) -> str:
        fields = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        return " ".join(f"{k}={_quote(v)}" for k, v in fields.items())


def _quote(value: object) -> str:
    text = str(value)
    return f'"{text}"' if (" " in text or not text) else text


class StderrHandler(logging.StreamHandler):
    """A stream handler that writes to whatever ``sys.stderr`` is when a record is emitted, so
    a handler configured under a replaced stderr (an embedding app, a test's capture) never
    writes to a stream that has since been closed."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        """The current ``sys.stderr``."""
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:  # StreamHandler.__init__ assigns it
        pass


def configure(level: str = "WARNING") -> None:
    """Send the project's logs to stderr at ``level`` (quiet by default)."""
    handler = StderrHandler()
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def event(logger: logging.Logger, msg: str, level: int = logging.INFO, **fields: object) -> None:
    """Log ``msg`` with structured ``fields``."""
    logger.log(level, msg, extra={"fields": fields})
