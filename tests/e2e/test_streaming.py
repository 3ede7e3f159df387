"""Bodies, events and WebSockets stream through Wardent instead of being buffered."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest
import websockets

from tests.support.processes import Upstream, Wardent, running_wardent


async def test_sse_first_event_arrives_before_the_upstream_finishes(wardent: Wardent) -> None:
    async with aiohttp.ClientSession() as session:
        started = time.monotonic()
        async with session.get(wardent.url + "/sse?n=4&gap=0.6") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/event-stream")
            first = await response.content.readuntil(b"\n\n")
            first_at = time.monotonic() - started
            rest = await response.content.read()
            total = time.monotonic() - started
    assert first == b"id: 0\ndata: event 0\n\n"
    # The stream takes 4 x 0.6 s; the first event must not wait for the end.
    assert first_at < 0.5, first_at
    assert total > 1.8
    assert rest.count(b"data: event") == 3


async def test_websocket_echo_both_ways_and_close_code(wardent: Wardent) -> None:
    uri = f"ws://{wardent.public}/ws"
    async with websockets.connect(uri) as socket:
        await socket.send("hello")
        assert await socket.recv() == "echo:hello"
        payload = bytes(range(256)) * 300
        await socket.send(payload)
        assert await socket.recv() == payload
        await socket.send("close:4003")
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await socket.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4003
    assert closed.value.rcvd.reason == "bye"


async def test_large_download_streams_complete(wardent: Wardent) -> None:
    size = 64 * 1024 * 1024
    received = 0
    async with aiohttp.ClientSession() as session:
        async with session.get(wardent.url + f"/big?n={size}") as response:
            async for data in response.content.iter_any():
                received += len(data)
    assert received == size


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_one_gib_upload_keeps_rss_flat(tmp_path: Path, upstream: Upstream) -> None:
    """1 GiB up through Wardent: its RSS must not grow by anything like the body."""
    with running_wardent(tmp_path, upstream.url, guards={"body_limit": {"max": "2GiB"}}) as wardent:
        await _upload_one_gib(wardent)


async def _upload_one_gib(wardent: Wardent) -> None:
    size = 1024 * 1024 * 1024
    block = b"z" * (1024 * 1024)
    pid = wardent.proc.pid
    before = _rss_kib(pid)
    peak = before

    async def body() -> object:
        nonlocal peak
        for index in range(size // len(block)):
            if index % 64 == 0:
                peak = max(peak, _rss_kib(pid))
            yield block

    async with (
        aiohttp.ClientSession() as session,
        session.post(
            wardent.url + "/upload",
            data=body(),
            headers={"Content-Length": str(size)},
            timeout=aiohttp.ClientTimeout(total=120),
        ) as response,
    ):
        assert response.status == 200
        assert (await response.json())["body_bytes"] == size
    peak = max(peak, _rss_kib(pid))
    assert peak - before < 64 * 1024, f"RSS grew {peak - before} KiB for a 1 GiB body"


async def test_chunked_upload_streams_to_upstream(wardent: Wardent) -> None:
    async def body() -> object:
        for _ in range(100):
            yield b"q" * 10000
            await asyncio.sleep(0)

    async with aiohttp.ClientSession() as session:
        async with session.post(wardent.url + "/upload", data=body()) as response:
            assert response.status == 200
            assert (await response.json())["body_bytes"] == 1_000_000


async def test_upstream_over_unix_socket(tmp_path: Path) -> None:
    app_socket = tmp_path / "app.sock"
    upstream = Upstream(unix=str(app_socket))
    try:
        with running_wardent(tmp_path, upstream.url) as wardent:
            async with aiohttp.ClientSession() as session:
                for _ in range(3):
                    async with session.get(wardent.url + "/echo/unix") as response:
                        assert response.status == 200
                        assert (await response.json())["path"] == "/echo/unix"
    finally:
        upstream.stop()
