"""GET /api/stream: live fan-out from the event log, filters, and Last-Event-ID resume."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.http import StreamingHttpResponse
from django.test import AsyncClient

from tradesim.market.models import MarketEvent
from tradesim.market.stream import Event, Subscription, broadcaster
from tradesim.market.symbols import ensure_symbols

pytestmark = pytest.mark.django_db(transaction=True)


def _close_connection() -> None:
    connection.close()


@pytest.fixture(autouse=True)
async def close_thread_connections() -> AsyncIterator[None]:
    yield
    # sync_to_async ran the ORM calls above in asgiref's shared thread: close that
    # thread's connection, or the test database cannot be dropped at the end.
    await sync_to_async(_close_connection)()


@sync_to_async
def add_event(kind: str, symbol: str, **payload: Any) -> int:
    return MarketEvent.objects.create(
        kind=kind, symbol=symbol, payload={"symbol": symbol, **payload}
    ).id


@sync_to_async
def add_symbols() -> None:
    ensure_symbols(["BTCUSDT", "ETHUSDT"])


class SseReader:
    """Reads the body in a task, like a server does; close() cancels that task, which
    is what a server does when the browser goes away (Django's ASGI handler cancels
    the response), so the view's cleanup runs exactly as in production."""

    def __init__(self, content: AsyncIterator[bytes]) -> None:
        self.chunks: asyncio.Queue[bytes] = asyncio.Queue()
        self.task = asyncio.create_task(self._pump(content))
        self.buffer = b""

    async def _pump(self, content: AsyncIterator[bytes]) -> None:
        async for chunk in content:
            await self.chunks.put(chunk)

    async def frame(self, wait: float = 5.0) -> dict[str, str]:
        while b"\n\n" not in self.buffer:
            self.buffer += await asyncio.wait_for(self.chunks.get(), wait)
        raw, self.buffer = self.buffer.split(b"\n\n", 1)
        fields: dict[str, str] = {}
        for line in raw.decode().splitlines():
            name, _, value = line.partition(": ")
            fields[name] = value
        return fields

    async def event(self, wait: float = 5.0) -> dict[str, str]:
        while True:
            frame = await self.frame(wait)
            if "event" in frame:
                return frame

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def open_stream(path: str = "/api/stream", **headers: str) -> SseReader:
    response = await AsyncClient().get(path, headers=headers)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    assert response["Cache-Control"] == "no-cache"
    assert isinstance(response, StreamingHttpResponse)
    content = response.streaming_content
    assert isinstance(content, AsyncIterator)
    reader = SseReader(content)
    assert await reader.frame() == {"retry": "2000"}
    return reader


async def stop_broadcaster() -> None:
    # Let the poller notice it has no subscribers and close its connection.
    if broadcaster.task is not None:
        await asyncio.wait_for(broadcaster.task, 5)


async def test_ticks_and_candles_fan_out_to_every_subscriber() -> None:
    await add_symbols()
    # Both at once: concurrent first subscribers must share one poller, or every
    # event would arrive twice.
    first, second = await asyncio.gather(open_stream(), open_stream())
    tick_id = await add_event("tick", "BTCUSDT", price="60000.5", time_ms=1)
    candle_id = await add_event("candle", "ETHUSDT", time=1700000000, close="3000")
    for reader in (first, second):
        tick = await reader.event()
        assert tick["id"] == str(tick_id) and tick["event"] == "tick"
        assert json.loads(tick["data"]) == {"symbol": "BTCUSDT", "price": "60000.5", "time_ms": 1}
        candle = await reader.event()
        assert candle["id"] == str(candle_id) and candle["event"] == "candle"
        assert json.loads(candle["data"])["close"] == "3000"
        await reader.close()
    await stop_broadcaster()


async def test_symbols_filter() -> None:
    await add_symbols()
    reader = await open_stream("/api/stream?symbols=ethusdt")
    await add_event("tick", "BTCUSDT", price="1")
    eth = await add_event("tick", "ETHUSDT", price="2")
    assert (await reader.event())["id"] == str(eth)
    await reader.close()
    await stop_broadcaster()


async def test_reconnect_with_last_event_id_replays_candles_and_the_newest_ticks() -> None:
    await add_symbols()
    seen = await add_event("tick", "BTCUSDT", price="1")
    candle_a = await add_event("candle", "BTCUSDT", time=10)
    await add_event("tick", "BTCUSDT", price="2")  # stale by the time the client is back
    newest_btc = await add_event("tick", "BTCUSDT", price="3")
    candle_b = await add_event("candle", "ETHUSDT", time=20)
    newest_eth = await add_event("tick", "ETHUSDT", price="4")
    reader = await open_stream(**{"Last-Event-ID": str(seen)})
    replayed = [int((await reader.event())["id"]) for _ in range(4)]
    assert replayed == [candle_a, newest_btc, candle_b, newest_eth]
    live = await add_event("tick", "ETHUSDT", price="5")
    assert (await reader.event())["id"] == str(live)
    await reader.close()
    await stop_broadcaster()


async def test_without_last_event_id_the_stream_starts_now() -> None:
    await add_symbols()
    await add_event("candle", "BTCUSDT", time=10)
    reader = await open_stream()
    live = await add_event("tick", "BTCUSDT", price="5")
    assert (await reader.event())["id"] == str(live)
    await reader.close()
    await stop_broadcaster()


async def test_stream_rejects_unknown_symbols_and_other_methods() -> None:
    await add_symbols()
    client = AsyncClient()
    response = await client.get("/api/stream?symbols=BTCUSDT,NOPE")
    assert response.status_code == 400
    assert response.json()["error"] == "unknown_symbol"
    response = await client.post("/api/stream")
    assert response.status_code in (403, 405)  # CSRF runs first; either way no stream


def test_a_subscriber_that_falls_behind_is_cut_off() -> None:
    async def scenario() -> None:
        subscription = Subscription(start=0)
        for i in range(subscription.queue.maxsize + 5):
            subscription.offer(Event(id=i, kind="tick", symbol="BTCUSDT", payload={}))
        assert subscription.overflowed
        assert subscription.queue.qsize() == 1
        assert subscription.queue.get_nowait() is None  # the stream ends; the client resumes

    asyncio.run(scenario())
