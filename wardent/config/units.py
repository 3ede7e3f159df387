"""Human units used in the YAML: durations, sizes and rates.

Each parser takes the YAML scalar as written and returns a plain number, or
raises ValueError with a message that says what was expected; pydantic turns
that message into a config error with the YAML path and line.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")

_SIZE_UNITS = {
    "b": 1,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([kmg]i?b|b)?\s*$", re.IGNORECASE)

_RATE_PERIODS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|m|h|d)\s*$")


def parse_duration(value: object) -> float:
    """`250ms`, `10s`, `10m`, `24h`, `7d` (or a bare number of seconds) → seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 250ms, 10s, 10m, 24h or 7d")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION_RE.match(value)
        if match is None:
            raise ValueError(
                f"{value!r} is not a duration: expected a number and a unit "
                "(ms, s, m, h, d), such as 250ms, 10s, 10m, 24h or 7d"
            )
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    else:
        raise ValueError("expected a duration such as 250ms, 10s, 10m, 24h or 7d")
    if not math.isfinite(seconds):
        raise ValueError("expected a finite duration such as 250ms, 10s, 10m, 24h or 7d")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def parse_size(value: object) -> int:
    """`64KiB`, `10MiB`, `1GiB`, `500KB` (or a bare number of bytes) → bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 64KiB or 10MiB")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str):
        match = _SIZE_RE.match(value)
        if match is None:
            raise ValueError(
                f"{value!r} is not a size: expected a whole number and a unit "
                "(B, KiB, MiB, GiB, or decimal KB, MB, GB), such as 64KiB or 10MiB"
            )
        unit = (match.group(2) or "b").lower()
        size = int(match.group(1)) * _SIZE_UNITS[unit]
    else:
        raise ValueError("expected a size such as 64KiB or 10MiB")
    if size < 0:
        raise ValueError("a size cannot be negative")
    return size


@dataclass(frozen=True, slots=True)
class Rate:
    """A number of events per period; `per_second` is what GCRA needs."""

    count: float
    period: float

    @property
    def per_second(self) -> float:
        return self.count / self.period

    def __str__(self) -> str:
        unit = {1.0: "s", 60.0: "m", 3600.0: "h", 86400.0: "d"}[self.period]
        count = int(self.count) if self.count == int(self.count) else self.count
        return f"{count}/{unit}"


def parse_rate(value: object) -> Rate:
    """`20/s`, `300/m`, `1000/h`, `5000/d` → Rate."""
    if isinstance(value, Rate):
        return value
    if not isinstance(value, str):
        raise ValueError("expected a rate such as 20/s, 300/m or 1000/h")
    match = _RATE_RE.match(value)
    if match is None:
        raise ValueError(
            f"{value!r} is not a rate: expected a number, a slash and a period "
            "(s, m, h, d), such as 20/s, 300/m or 1000/h"
        )
    count = float(match.group(1))
    if count <= 0:
        raise ValueError("a rate must be greater than zero")
    return Rate(count, _RATE_PERIODS[match.group(2)])


def format_duration(seconds: float) -> str:
    """The shortest exact spelling of a duration, for /config and logs."""
    for unit, factor in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= factor and seconds % factor == 0:
            return f"{int(seconds // factor)}{unit}"
    return f"{round(seconds * 1000)}ms"
