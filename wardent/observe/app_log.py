"""Application logs (start-up, reload, errors): stdlib logging, one JSON object a line.

These are rare, so stdlib logging's cost does not matter here; the access log
has its own cheap path (access_log.py). Fields passed as `extra={...}` become
top-level JSON keys; an exception becomes `traceback`.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import msgspec

from wardent.observe.access_log import utc_timestamp

__all__ = ["JsonFormatter", "configure_logging"]

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

# Attributes every LogRecord has; anything else on a record came from `extra`.
_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


def _fallback(value: object) -> Any:
    return str(value)


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message", **extra, "traceback"?}` as one JSON line."""

    def __init__(self) -> None:
        super().__init__()
        self._encoder = msgspec.json.Encoder(enc_hook=_fallback)

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": utc_timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                payload[key if key not in payload else f"extra_{key}"] = value
        if record.exc_info:
            payload["traceback"] = self.formatException(record.exc_info)
        elif record.exc_text:
            payload["traceback"] = record.exc_text
        if record.stack_info:
            payload["stack"] = self.formatStack(record.stack_info)
        try:
            return self._encoder.encode(payload).decode()
        except (TypeError, ValueError, OverflowError):
            # An extra that even str() cannot save (say, a dict with tuple keys).
            safe = {
                key: value if isinstance(value, str) else repr(value)
                for key, value in payload.items()
            }
            return self._encoder.encode(safe).decode()


class _WardentHandler(logging.StreamHandler[TextIO]):
    """Marks the handler configure_logging installed, so a second call replaces it."""


def configure_logging(level: str, stream: TextIO | None = None) -> None:
    """Send every logger's records at `level` or above to stderr as JSON lines.

    Calling it again (a reload that changed `telemetry.log_level`) replaces
    the handler instead of adding a second one.
    """
    try:
        numeric = LEVELS[level.lower()]
    except KeyError:
        raise ValueError(f"log level {level!r} is not one of {', '.join(LEVELS)}") from None
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _WardentHandler):
            root.removeHandler(handler)
            handler.close()
    handler = _WardentHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(numeric)
