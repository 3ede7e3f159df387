"""Wardent's own failures: dead, slow and broken upstreams, clients that leave, shutdown."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import aiohttp
import pytest

from tests.support.fake_upstream import FakeConnection, FakeUpstream
from tests.support.processes import Upstream, Wardent, free_port, running_wardent


async def _get(url: str, **kwargs: object) -> tuple[int, bytes, dict[str, str]]:
    async with aiohttp.ClientSession() as session:
        async with session.get(url, **kwargs) as response:  # type: ignore[arg-type]
            return response.status, await response.read(), dict(response.headers)


async def test_upstream_refusing_is_502(tmp_path: Path) -> None:
    with running_wardent(tmp_path, f"http://127.0.0.1:{free_port()}") as wardent:
        status, body, headers = await _get(wardent.url + "/anything")
        entry = wardent.wait_access(lambda entry: entry["path"] == "/anything")
    assert status == 502
    assert body == b""
    assert headers["Content-Length"] == "0"
    assert entry["status"] == 502
    assert entry["reason"] == "upstream:connect_refused"


async def test_upstream_timing_out_is_504(tmp_path: Path, upstream: Upstream) -> None:
    with running_wardent(tmp_path, upstream.url, upstream={"read_timeout": "500ms"}) as wardent:
        started = time.monotonic()
        status, body, _ = await _get(wardent.url + "/slow?s=3")
        elapsed = time.monotonic() - started
        # The gateway keeps serving after a timeout.
        ok, _, _ = await _get(wardent.url + "/echo/after")
    assert status == 504
    assert body == b""
    assert 0.4 < elapsed < 2.0
    assert ok == 200


async def test_upstream_killed_mid_response_breaks_the_client_response(tmp_path: Path) -> None:
    doomed = Upstream()
    try:
        with running_wardent(tmp_path, doomed.url) as wardent:
            async with aiohttp.ClientSession() as session:
                async with session.get(wardent.url + "/die") as response:
                    assert response.status == 200
                    with pytest.raises(aiohttp.ClientPayloadError):
                        await response.read()
                # Next request: the upstream is gone, so a clean 502, and Wardent lives.
                async with session.get(wardent.url + "/echo") as response:
                    assert response.status == 502
            assert wardent.proc.poll() is None
            wardent.wait_access(lambda entry: entry.get("reason") == "upstream:reset")
    finally:
        doomed.stop()


async def test_client_gone_cancels_the_upstream_request(tmp_path: Path) -> None:
    seen_eof = asyncio.Event()

    async def never_answer(conn: FakeConnection) -> None:
        await conn.read_request()
        try:
            await conn.reader.read(1)
        finally:
            seen_eof.set()  # EOF or reset: Wardent dropped the upstream request

    async with FakeUpstream(never_answer) as fake:
        with running_wardent(tmp_path, fake.url) as wardent:
            _reader, writer = await asyncio.open_connection("127.0.0.1", wardent.port)
            writer.write(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.3)
            writer.close()
            await asyncio.wait_for(seen_eof.wait(), 2)
            entry = wardent.wait_access(lambda entry: entry["path"] == "/hang")
    assert fake.accepted == 1
    assert entry["status"] == 499
    assert entry["reason"] == "client_closed"


def _closes_second_request(answer_after_close: bool) -> object:
    """Each connection answers one request, then drops the next one unanswered:
    a keep-alive connection the upstream closed while Wardent thought it idle."""

    async def handler(conn: FakeConnection) -> None:
        await conn.read_request()
        await conn.respond(b"first")
        await conn.read_request()
        conn.writer.transport.abort()

    return handler


async def test_stale_pooled_connection_is_retried_once_for_idempotent_requests(
    tmp_path: Path,
) -> None:
    async with FakeUpstream(_closes_second_request(True)) as fake:  # type: ignore[arg-type]
        with running_wardent(tmp_path, fake.url) as wardent:
            async with aiohttp.ClientSession() as session:
                async with session.get(wardent.url + "/a") as response:
                    assert await response.read() == b"first"
                async with session.get(wardent.url + "/b") as response:
                    assert response.status == 200
                    assert await response.read() == b"first"
                # Non-idempotent: never replayed, a clean 502.
                async with session.post(wardent.url + "/c", data=b"x") as response:
                    assert response.status == 502
    # /a on conn 1; /b dropped on conn 1, retried on conn 2; /c dropped on conn 2.
    assert fake.accepted == 2


async def test_graceful_shutdown_finishes_in_flight_requests(
    tmp_path: Path, upstream: Upstream
) -> None:
    wardent = Wardent(
        _config(tmp_path, upstream.url, shutdown_timeout="10s"),
    )
    try:
        async with aiohttp.ClientSession() as session:
            pending = asyncio.ensure_future(session.get(wardent.url + "/slow?s=1.5"))
            await asyncio.sleep(0.4)
            wardent.signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            # No longer accepting.
            with pytest.raises(aiohttp.ClientConnectionError):
                await session.get(wardent.url + "/echo", timeout=aiohttp.ClientTimeout(total=1))
            response = await pending
            assert response.status == 200
            assert await response.read() == b"slow done"
        code = await asyncio.to_thread(wardent.proc.wait, 10)
        assert code == 0
    finally:
        wardent.stop()


async def test_shutdown_deadline_cuts_requests_that_take_too_long(
    tmp_path: Path, upstream: Upstream
) -> None:
    wardent = Wardent(_config(tmp_path, upstream.url, shutdown_timeout="1s"))
    try:
        async with aiohttp.ClientSession() as session:
            pending = asyncio.ensure_future(session.get(wardent.url + "/slow?s=10"))
            await asyncio.sleep(0.3)
            started = time.monotonic()
            wardent.signal(signal.SIGTERM)
            code = await asyncio.to_thread(wardent.proc.wait, 10)
            elapsed = time.monotonic() - started
            with pytest.raises(aiohttp.ClientError):
                await pending
        assert code == 0
        assert elapsed < 3
    finally:
        wardent.stop()


def _config(tmp_path: Path, upstream_url: str, **overrides: object) -> Path:
    from tests.support.processes import write_config

    return write_config(tmp_path, upstream_url, **overrides)
