"""The Binance client against a local WebSocket server speaking Binance's frames:
disconnects (clean and abrupt), malformed frames, ping/pong, backoff with jitter, and
the reconnect before Binance's 24-hour limit."""

from __future__ import annotations

import asyncio
import json
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve

from tradesim.market.feed.binance import BinanceConfig, BinanceSource, MalformedFrame, parse_frame
from tradesim.market.feed.trade import Trade


def agg_trade(symbol: str, agg_id: int, price: str, qty: str = "0.5", time_ms: int = 0) -> str:
    """A combined-stream aggTrade frame, field for field as Binance sends it."""
    time_ms = time_ms or 1_700_000_000_000 + agg_id
    return json.dumps(
        {
            "stream": f"{symbol.lower()}@aggTrade",
            "data": {
                "e": "aggTrade",
                "E": time_ms + 3,
                "s": symbol,
                "a": agg_id,
                "p": price,
                "q": qty,
                "f": agg_id * 10,
                "l": agg_id * 10 + 2,
                "T": time_ms,
                "m": True,
                "M": True,
            },
        }
    )


def raw_trade(symbol: str, trade_id: int, price: str) -> str:
    return json.dumps(
        {
            "stream": f"{symbol.lower()}@trade",
            "data": {
                "e": "trade",
                "E": 1_700_000_000_123,
                "s": symbol,
                "t": trade_id,
                "p": price,
                "q": "0.00100000",
                "T": 1_700_000_000_120,
                "m": False,
                "M": True,
            },
        }
    )


def test_parse_aggtrade_and_trade_frames() -> None:
    assert parse_frame(agg_trade("BTCUSDT", 7, "60000.01000000", time_ms=1234)) == Trade(
        "BTCUSDT", Decimal("60000.01"), Decimal("0.5"), 1234, 7
    )
    parsed = parse_frame(raw_trade("ETHUSDT", 99, "3000.5"))
    assert parsed is not None and parsed.trade_id == 99 and parsed.time_ms == 1_700_000_000_120
    # The reply to a SUBSCRIBE request is valid but not a trade.
    assert parse_frame('{"result": null, "id": 1}') is None


def _with(field: str, value: Any) -> str:
    frame = json.loads(agg_trade("BTCUSDT", 1, "1"))
    if value is _DROP:
        del frame["data"][field]
    else:
        frame["data"][field] = value
    return json.dumps(frame)


_DROP = object()


@pytest.mark.parametrize(
    "frame",
    [
        b"\x00\x01binary",
        "not json",
        "[1, 2]",
        '{"stream": "btcusdt@aggTrade"}',
        '{"stream": "btcusdt@aggTrade", "data": "x"}',
        _with("e", "kline"),
        _with("p", "abc"),
        _with("p", "-1"),
        _with("p", "0"),
        _with("p", 60000.5),
        _with("p", "NaN"),
        _with("q", _DROP),
        _with("T", "1700000000000"),
        _with("T", True),
        _with("a", _DROP),
        _with("s", None),
    ],
)
def test_malformed_frames_are_rejected(frame: str | bytes) -> None:
    with pytest.raises(MalformedFrame):
        parse_frame(frame)


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap() -> None:
    config = BinanceConfig("ws://x", ("BTCUSDT",), backoff_initial=1.0, backoff_max=60.0)
    a = BinanceSource(config, rng=random.Random(1))
    b = BinanceSource(config, rng=random.Random(2))
    caps = [1, 2, 4, 8, 16, 32, 60, 60, 60]
    delays_a = [a.backoff_delay(n) for n in range(len(caps))]
    delays_b = [b.backoff_delay(n) for n in range(len(caps))]
    for cap, delay in zip(caps, delays_a, strict=True):
        assert cap / 2 <= delay <= cap
    assert delays_a != delays_b  # jitter: two clients do not retry in lockstep
    assert a.backoff_delay(10_000) <= 60.0


class FakeBinance:
    """A local server; `script(ws, n)` plays connection number n (from 1)."""

    def __init__(self, script: Callable[[ServerConnection, int], Awaitable[None]]) -> None:
        self.script = script
        self.connections = 0
        self.paths: list[str] = []
        self.server: Server | None = None

    async def handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        assert ws.request is not None
        self.paths.append(ws.request.path)
        await self.script(ws, self.connections)

    async def start(self, port: int = 0) -> str:
        self.server = await serve(self.handler, "127.0.0.1", port)
        bound = next(iter(self.server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{bound}"

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def take(source: BinanceSource, count: int, limit: float = 10.0) -> list[Trade]:
    async def collect() -> list[Trade]:
        out: list[Trade] = []
        stream: AsyncIterator[Trade] = source.trades()
        async for trade in stream:
            out.append(trade)
            if len(out) == count:
                await stream.aclose()  # type: ignore[attr-defined]
                break
        return out

    return await asyncio.wait_for(collect(), limit)


def fast_config(url: str, **overrides: Any) -> BinanceConfig:
    values: dict[str, Any] = {
        "base_url": url,
        "symbols": ("BTCUSDT", "ETHUSDT"),
        "backoff_initial": 0.02,
        "backoff_max": 0.1,
        "open_timeout": 2.0,
    }
    values.update(overrides)
    return BinanceConfig(**values)


async def test_stream_survives_disconnects_malformed_frames_and_answers_pings() -> None:
    pongs: list[float] = []

    async def script(ws: ServerConnection, n: int) -> None:
        if n == 1:
            await ws.send(agg_trade("BTCUSDT", 1, "60000.10"))
            await ws.send("}{ not json")
            await ws.send(b"\x00binary frame")
            await ws.send('{"result": null, "id": 1}')
            await ws.send(agg_trade("BTCUSDT", 2, "60000.20"))
            await ws.send(agg_trade("ETHUSDT", 1, "3000.00"))
            await ws.close(1001, "going away")  # a clean close, as at maintenance
        elif n == 2:
            await ws.send(agg_trade("BTCUSDT", 2, "60000.20"))  # overlap after reconnect
            await ws.send(agg_trade("BTCUSDT", 3, "60000.30"))
            await asyncio.sleep(0.05)
            assert ws.transport is not None
            ws.transport.abort()  # the network drops: no close frame at all
        else:
            # Binance pings; a client that does not pong is cut off.
            pongs.append(await asyncio.wait_for(await ws.ping(b"binance"), 2.0))
            await ws.send(agg_trade("BTCUSDT", 4, "60000.40"))
            await ws.wait_closed()

    server = FakeBinance(script)
    url = await server.start()
    sleeps: list[float] = []

    async def record_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        await asyncio.sleep(seconds)

    source = BinanceSource(fast_config(url), rng=random.Random(3), sleep=record_sleep)
    try:
        trades = await take(source, 5)
    finally:
        await server.stop()
    assert [(t.symbol, t.trade_id) for t in trades] == [
        ("BTCUSDT", 1),
        ("BTCUSDT", 2),
        ("ETHUSDT", 1),
        ("BTCUSDT", 3),
        ("BTCUSDT", 4),
    ]
    assert trades[0].price == Decimal("60000.10")
    assert server.paths[0] == "/stream?streams=btcusdt@aggTrade/ethusdt@aggTrade"
    assert server.connections == 3
    assert len(pongs) == 1
    stats = source.stats
    assert (stats.malformed, stats.ignored, stats.duplicates) == (2, 1, 1)
    assert stats.failures == 2 and stats.connects == 3
    # Each unplanned reconnect waited a jittered backoff; the trades in between reset it.
    assert len(sleeps) == 2 and all(0.01 <= s <= 0.02 for s in sleeps)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_backoff_while_the_server_is_down_then_recovery() -> None:
    port = free_port()
    server = FakeBinance(lambda ws, n: _send_and_hold(ws, agg_trade("BTCUSDT", n, "1.5")))
    sleeps: list[float] = []

    async def sleep_then_maybe_start(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 4:  # the exchange comes back after four failed attempts
            await server.start(port)

    source = BinanceSource(
        fast_config(f"ws://127.0.0.1:{port}", backoff_initial=1.0, backoff_max=8.0),
        rng=random.Random(9),
        sleep=sleep_then_maybe_start,
    )
    try:
        trades = await take(source, 1)
    finally:
        await server.stop()
    assert trades[0].price == Decimal("1.5")
    assert source.stats.failures == 4
    caps = [1, 2, 4, 8]
    assert all(cap / 2 <= s <= cap for cap, s in zip(caps, sleeps, strict=True))


async def _send_and_hold(ws: ServerConnection, frame: str) -> None:
    await ws.send(frame)
    await ws.wait_closed()


async def test_reconnects_on_its_own_before_the_24_hour_limit() -> None:
    async def script(ws: ServerConnection, n: int) -> None:
        for i in range(1000):
            await ws.send(agg_trade("BTCUSDT", n * 1000 + i, "2"))
            await asyncio.sleep(0.02)

    server = FakeBinance(script)
    url = await server.start()
    sleeps: list[float] = []

    async def record_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    # 0.3 s stands in for Binance's 24 h.
    source = BinanceSource(fast_config(url, max_connection_age=0.3), sleep=record_sleep)
    try:
        trades = await take(source, 40)
    finally:
        await server.stop()
    assert server.connections >= 3
    assert source.stats.planned_reconnects >= 2
    assert source.stats.failures == 0 and sleeps == []  # planned: no backoff, no gap
    ids = [t.trade_id for t in trades]
    assert ids == sorted(ids)
    assert len({t.trade_id // 1000 for t in trades}) >= 3
