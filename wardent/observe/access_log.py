"""The JSON access log: one line per request, at about a microsecond each.

stdlib logging with a JSON formatter costs ~17 µs a line, most of the
per-request budget (DESIGN.md, "The hot-path budget"). Here a request only
appends a msgspec Struct to a list; the list is encoded in one call and
written in one write() when it reaches `FLUSH_SIZE` entries, on a timer tick
every `FLUSH_INTERVAL` seconds, and on close.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from typing import Final

import msgspec

__all__ = ["AccessEntry", "AccessLog", "NullAccessLog", "open_access_log", "utc_timestamp"]

# Each flush stops the loop while it encodes and writes: 1,000 lines at a time
# showed in bench.py's half-load p99 (log on against off), a quarter of that
# much stalls a quarter as long, and one write() still carries 256 lines.
FLUSH_SIZE = 256
FLUSH_INTERVAL = 0.5

_log = logging.getLogger("wardent.access_log")


class AccessEntry(msgspec.Struct, gc=False):
    """One request, as it appears in the log (field order is the JSON key order)."""

    time: str
    request_id: str
    client_ip: str
    peer: str
    method: str
    path: str
    status: int
    bytes_in: int
    bytes_out: int
    duration_ms: float
    upstream_ms: float | None
    route: str
    reason: str | None
    user_agent: str | None
    shadow: str | None = None  # what guards in shadow mode would have refused


class _TimestampCache:
    __slots__ = ("ms", "prefix", "second", "text")

    def __init__(self) -> None:
        self.ms = -1
        self.text = ""
        self.second = -1
        self.prefix = ""


_cache = _TimestampCache()
# ".000Z" to ".999Z": a new millisecond costs one concatenation, not a format.
_MILLIS: Final = tuple(f".{ms:03d}Z" for ms in range(1000))


def utc_timestamp(now: float) -> str:
    """`now` (seconds since the epoch) as ISO 8601 UTC with milliseconds.

    Under load many requests end in the same millisecond, so the text is
    cached per millisecond and strftime runs once a second:
    2026-05-09T07:35:25.123Z.
    """
    ms = int(now * 1000)
    cache = _cache
    if ms == cache.ms:
        return cache.text
    second = ms // 1000
    if second != cache.second:
        cache.prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        cache.second = second
    cache.ms = ms
    cache.text = cache.prefix + _MILLIS[ms % 1000]
    return cache.text


class AccessLog:
    """Buffered JSON lines to stdout (`path == "-"`) or a file opened for append."""

    enabled = True

    def __init__(self, path: str) -> None:
        self.path = path
        self._pending: list[AccessEntry] = []
        self._encoder = msgspec.json.Encoder()
        self._fd: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._last_error = 0.0
        self._closed = False
        self.dropped = 0
        if path != "-":
            self._fd = self._open()

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)

    def record(self, entry: AccessEntry) -> None:
        pending = self._pending
        pending.append(entry)
        if len(pending) >= FLUSH_SIZE:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        if self._closed:
            self.dropped += len(batch)  # a straggler after shutdown: the fd is gone
            return
        data = self._encoder.encode_lines(batch)
        try:
            self._write(data)
        except OSError as error:
            # A full disk or a closed pipe must not take requests down with it.
            self.dropped += len(batch)
            now = time.monotonic()
            if now - self._last_error >= 60.0:
                self._last_error = now
                _log.error(
                    "access log write failed: %s",
                    error,
                    extra={"path": self.path, "dropped_total": self.dropped},
                )

    def _write(self, data: bytes) -> None:
        if self._fd is None:
            stdout = sys.stdout
            buffer = getattr(stdout, "buffer", None)
            if buffer is not None:
                buffer.write(data)
            else:
                stdout.write(data.decode())
            stdout.flush()
            return
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def reopen(self) -> None:
        """Flush, then reopen the file by name (after logrotate moved it away)."""
        self.flush()
        if self._fd is None or self._closed:
            return
        old, self._fd = self._fd, self._open()
        os.close(old)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Flush every FLUSH_INTERVAL seconds on `loop`: one timer, not a task per entry."""
        self._loop = loop
        self._timer = loop.call_later(FLUSH_INTERVAL, self._tick)

    def _tick(self) -> None:
        self.flush()
        if self._loop is not None:
            self._timer = self._loop.call_later(FLUSH_INTERVAL, self._tick)

    def close(self) -> None:
        """Stop the timer, write what is pending and close the file."""
        self._loop = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.flush()
        self._closed = True
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class NullAccessLog:
    """`telemetry.access_log: off`: the same interface, doing nothing.

    `enabled` is False so the request path can skip building the entry at all.
    """

    enabled = False

    def __init__(self, path: str = "-") -> None:
        self.path = path
        self.dropped = 0

    def record(self, entry: AccessEntry) -> None:
        pass

    def flush(self) -> None:
        pass

    def reopen(self) -> None:
        pass

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        pass

    def close(self) -> None:
        pass


def open_access_log(mode: str, path: str) -> AccessLog | NullAccessLog:
    """The access log that `telemetry.access_log` (json | off) asks for."""
    return NullAccessLog(path) if mode == "off" else AccessLog(path)
