from __future__ import annotations

import asyncio
import calendar
import json
import os
import time
from pathlib import Path

import pytest

from wardent.observe import access_log
from wardent.observe.access_log import (
    AccessEntry,
    AccessLog,
    NullAccessLog,
    open_access_log,
    utc_timestamp,
)

FIELDS = {
    "time",
    "request_id",
    "client_ip",
    "peer",
    "method",
    "path",
    "status",
    "bytes_in",
    "bytes_out",
    "duration_ms",
    "upstream_ms",
    "route",
    "reason",
    "user_agent",
    "shadow",
}


def entry(number: int = 0, **changes: object) -> AccessEntry:
    fields: dict[str, object] = {
        "time": utc_timestamp(1_700_000_000.25),
        "request_id": f"abc-{number}",
        "client_ip": "203.0.113.7",
        "peer": "127.0.0.1:51234",
        "method": "GET",
        "path": "/api/me?x=1",
        "status": 200,
        "bytes_in": 0,
        "bytes_out": 42,
        "duration_ms": 1.25,
        "upstream_ms": 0.75,
        "route": "api",
        "reason": None,
        "user_agent": 'curl/8.5 "quoted"',
    }
    fields.update(changes)
    return AccessEntry(**fields)  # type: ignore[arg-type]


def read_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_utc_timestamp() -> None:
    now = calendar.timegm((2026, 5, 9, 7, 35, 25, 0, 0, 0)) + 0.1234
    assert utc_timestamp(now) == "2026-05-09T07:35:25.123Z"
    assert utc_timestamp(now + 0.5) == "2026-05-09T07:35:25.623Z"  # same second: cached
    assert utc_timestamp(now + 1) == "2026-05-09T07:35:26.123Z"
    assert utc_timestamp(float(int(now))) == "2026-05-09T07:35:25.000Z"
    assert utc_timestamp(int(now) + 0.9995) == "2026-05-09T07:35:25.999Z"


def test_lines_are_json_with_every_field(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(str(path))
    log.record(entry(1))
    log.record(entry(2, status=429, reason="rate_limit", upstream_ms=None, user_agent=None))
    assert path.read_text() == ""  # buffered until a flush
    log.flush()
    first, second = read_lines(path)
    assert set(first) == FIELDS
    assert first["request_id"] == "abc-1"
    assert first["time"] == "2023-11-14T22:13:20.250Z"
    assert first["user_agent"] == 'curl/8.5 "quoted"'
    assert first["duration_ms"] == 1.25
    assert second["status"] == 429
    assert second["reason"] == "rate_limit"
    assert second["upstream_ms"] is None
    assert second["user_agent"] is None
    log.close()


def test_flushes_when_the_batch_is_full(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(str(path))
    for number in range(access_log.FLUSH_SIZE - 1):
        log.record(entry(number))
    assert path.stat().st_size == 0
    log.record(entry(access_log.FLUSH_SIZE))
    assert len(read_lines(path)) == access_log.FLUSH_SIZE
    log.record(entry(-1))
    assert len(read_lines(path)) == access_log.FLUSH_SIZE
    log.close()
    assert len(read_lines(path)) == access_log.FLUSH_SIZE + 1


def test_close_flushes_and_later_entries_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(str(path))
    log.record(entry(1))
    log.close()
    assert [line["request_id"] for line in read_lines(path)] == ["abc-1"]
    log.record(entry(2))
    log.flush()
    log.close()
    assert len(read_lines(path)) == 1
    assert log.dropped == 1


def test_appends_to_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    path.write_text('{"old": true}\n')
    log = AccessLog(str(path))
    log.record(entry(1))
    log.close()
    assert len(read_lines(path)) == 2


def test_reopen_after_logrotate(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(str(path))
    log.record(entry(1))
    log.flush()
    rotated = tmp_path / "access.log.1"
    os.rename(path, rotated)
    log.record(entry(2))
    log.reopen()  # flushes the pending line into the file it was written to, then reopens
    log.record(entry(3))
    log.close()
    assert [line["request_id"] for line in read_lines(rotated)] == ["abc-1", "abc-2"]
    assert [line["request_id"] for line in read_lines(path)] == ["abc-3"]


def test_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    log = AccessLog("-")
    log.record(entry(7))
    log.reopen()  # nothing to reopen on stdout; still flushes
    log.close()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["request_id"] == "abc-7"


def test_write_errors_are_counted_not_raised(tmp_path: Path) -> None:
    log = AccessLog(str(tmp_path / "access.log"))
    assert log._fd is not None
    os.close(log._fd)
    log._fd = os.open(os.devnull, os.O_RDONLY)  # every write now fails with EBADF
    log.record(entry(1))
    log.flush()
    assert log.dropped == 1
    log.close()


async def test_timer_flushes_every_half_second(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(str(path))
    log.start(asyncio.get_running_loop())
    log.record(entry(1))
    started = time.monotonic()
    while path.stat().st_size == 0:
        assert time.monotonic() - started < 2, "the timer did not flush"
        await asyncio.sleep(0.05)
    log.record(entry(2))
    await asyncio.sleep(access_log.FLUSH_INTERVAL + 0.2)
    assert len(read_lines(path)) == 2  # the timer re-arms itself
    log.close()
    assert log._timer is None


def test_null_access_log_does_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    log = NullAccessLog()
    assert not log.enabled
    log.record(entry(1))
    log.flush()
    log.reopen()
    log.close()
    assert capsys.readouterr().out == ""


def test_open_access_log(tmp_path: Path) -> None:
    assert isinstance(open_access_log("off", "-"), NullAccessLog)
    log = open_access_log("json", str(tmp_path / "a.log"))
    assert isinstance(log, AccessLog)
    assert log.enabled
    log.close()
