"""The human units of the YAML: durations, sizes, rates."""

from __future__ import annotations

import math

import pytest

from wardent.config.units import Rate, format_duration, parse_duration, parse_rate, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("10s", 10.0),
        ("1.5s", 1.5),
        ("10m", 600.0),
        ("24h", 86400.0),
        ("7d", 604800.0),
        ("0s", 0.0),
        (" 2s ", 2.0),
        ("2 s", 2.0),
        (30, 30.0),
        (0.5, 0.5),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    ["10x", "10", "s", "", "-5s", "1h30m", "10S", "ten seconds", True, None, [], -1, math.nan],
)
def test_bad_durations(value: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)


def test_bad_duration_message_says_what_was_expected() -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration("10x")
    assert "'10x' is not a duration" in str(caught.value)
    assert "250ms" in str(caught.value)


def test_infinite_duration_is_refused() -> None:
    with pytest.raises(ValueError, match="finite"):
        parse_duration(math.inf)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(2.0, "2s"), (90.0, "90s"), (600.0, "10m"), (86400.0, "1d"), (0.25, "250ms"), (0.0, "0ms")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512B", 512),
        ("512", 512),
        (512, 512),
        ("64KiB", 64 * 1024),
        ("10MiB", 10 * 1024**2),
        ("1GiB", 1024**3),
        ("500KB", 500_000),
        ("10MB", 10_000_000),
        ("1GB", 1_000_000_000),
        ("10mib", 10 * 1024**2),
        ("16 KiB", 16 * 1024),
        ("0", 0),
    ],
)
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "value", ["10XB", "1.5MiB", "MiB", "", "-1KiB", "10 MiBs", 1.5, True, None, -1]
)
def test_bad_sizes(value: object) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(value)


@pytest.mark.parametrize(
    ("text", "count", "period", "per_second"),
    [
        ("20/s", 20.0, 1.0, 20.0),
        ("300/m", 300.0, 60.0, 5.0),
        ("1000/h", 1000.0, 3600.0, 1000 / 3600),
        ("5000/d", 5000.0, 86400.0, 5000 / 86400),
        ("0.5/s", 0.5, 1.0, 0.5),
        (" 20 / s ", 20.0, 1.0, 20.0),
    ],
)
def test_rates(text: str, count: float, period: float, per_second: float) -> None:
    rate = parse_rate(text)
    assert rate == Rate(count, period)
    assert rate.per_second == pytest.approx(per_second)
    assert parse_rate(rate) is rate


@pytest.mark.parametrize("value", ["20", "20/x", "/s", "0/s", "-1/s", "20 per s", 20, None])
def test_bad_rates(value: object) -> None:
    with pytest.raises(ValueError, match="rate"):
        parse_rate(value)


def test_rate_prints_as_written() -> None:
    assert str(parse_rate("20/s")) == "20/s"
    assert str(parse_rate("0.5/m")) == "0.5/m"
    assert str(parse_rate("1000/h")) == "1000/h"
