"""A client of Binance's public market-data WebSocket: the combined stream of
`<symbol>@aggTrade` (or `@trade`) for the configured symbols.

What Binance requires, and how it is met:
* The server pings every 20 s and drops a client that has not ponged within a minute:
  the websockets library answers pings itself while we read.
* Connections live at most 24 h: we reconnect on our own before that
  (`max_connection_age`), immediately, without backoff.
* Anything else that ends a connection (refused, reset, closed, a stalled peer that
  stops answering our own keepalive pings) reconnects with exponential backoff and
  jitter, so a fleet of clients does not reconnect in lockstep.
* A malformed frame is counted and skipped; it never ends the connection.

Frames look like {"stream": "btcusdt@aggTrade", "data": {"e": "aggTrade", "E": ...,
"s": "BTCUSDT", "a": 5933014, "p": "0.001", "q": "100", "f": 100, "l": 105,
"T": 123456785, "m": true, "M": true}}; `@trade` frames carry "t" instead of "a".
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

from tradesim.market.feed.trade import Trade

log = logging.getLogger("tradesim.feed.binance")

ID_FIELDS = {"aggTrade": "a", "trade": "t"}


class MalformedFrame(ValueError):
    pass


@dataclass(frozen=True)
class BinanceConfig:
    base_url: str
    symbols: tuple[str, ...]
    stream: str = "aggTrade"
    max_connection_age: float = 23.5 * 3600
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    open_timeout: float = 10.0

    def url(self) -> str:
        streams = "/".join(f"{symbol.lower()}@{self.stream}" for symbol in self.symbols)
        return f"{self.base_url.rstrip('/')}/stream?streams={streams}"


@dataclass
class BinanceStats:
    connects: int = 0
    failures: int = 0
    planned_reconnects: int = 0
    malformed: int = 0
    ignored: int = 0
    duplicates: int = 0


def _decimal(data: dict[str, Any], key: str) -> Decimal:
    value = data.get(key)
    if not isinstance(value, str):
        raise MalformedFrame(f"{key!r} must be a decimal string")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise MalformedFrame(f"{key!r} is not a decimal: {value!r}") from None
    if not number.is_finite() or number < 0:
        raise MalformedFrame(f"{key!r} must be finite and >= 0: {value!r}")
    return number


def _integer(data: dict[str, Any], key: str) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise MalformedFrame(f"{key!r} must be an integer")
    return value


def parse_frame(message: str | bytes) -> Trade | None:
    """A trade, or None for a frame that is valid but not a trade (a reply to a
    subscribe request); raises MalformedFrame for anything else."""
    if isinstance(message, bytes):
        raise MalformedFrame("binary frame")
    try:
        envelope = json.loads(message)
    except ValueError:
        raise MalformedFrame("not JSON") from None
    if not isinstance(envelope, dict):
        raise MalformedFrame("not a JSON object")
    if "result" in envelope and "id" in envelope:
        return None
    data = envelope.get("data")
    if not isinstance(data, dict):
        raise MalformedFrame("no 'data' object")
    id_field = ID_FIELDS.get(str(data.get("e")))
    if id_field is None:
        raise MalformedFrame(f"unexpected event type {data.get('e')!r}")
    symbol = data.get("s")
    if not isinstance(symbol, str) or not symbol.isalnum():
        raise MalformedFrame("'s' must be a symbol")
    price = _decimal(data, "p")
    if price == 0:
        raise MalformedFrame("'p' must be positive")
    return Trade(
        symbol=symbol.upper(),
        price=price,
        quantity=_decimal(data, "q"),
        time_ms=_integer(data, "T"),
        trade_id=_integer(data, id_field),
    )


class BinanceSource:
    def __init__(
        self,
        config: BinanceConfig,
        *,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.rng = rng or random.Random()
        self.sleep = sleep
        self.clock = clock
        self.stats = BinanceStats()
        self._last_ids: dict[str, int] = {}

    def backoff_delay(self, attempt: int) -> float:
        """Exponential with "equal jitter": half the cap fixed, half random, so a
        retry never comes at once yet clients spread out."""
        cap = min(self.config.backoff_max, self.config.backoff_initial * 2.0 ** min(attempt, 30))
        return cap / 2 + self.rng.uniform(0, cap / 2)

    def _accept(self, message: str | bytes) -> Trade | None:
        try:
            trade = parse_frame(message)
        except MalformedFrame as exc:
            self.stats.malformed += 1
            log.warning("skipping malformed Binance frame: %s", exc)
            return None
        if trade is None:
            self.stats.ignored += 1
            return None
        # Trade ids only grow per symbol; an overlap after a reconnect is not a trade.
        if trade.trade_id <= self._last_ids.get(trade.symbol, -1):
            self.stats.duplicates += 1
            return None
        self._last_ids[trade.symbol] = trade.trade_id
        return trade

    async def trades(self) -> AsyncIterator[Trade]:
        config = self.config
        attempt = 0
        while True:
            try:
                async with connect(
                    config.url(),
                    ping_interval=config.ping_interval,
                    ping_timeout=config.ping_timeout,
                    open_timeout=config.open_timeout,
                    close_timeout=2,
                    max_size=1 << 20,
                ) as ws:
                    self.stats.connects += 1
                    log.info("connected to %s", config.url())
                    deadline = self.clock() + config.max_connection_age
                    while (remaining := deadline - self.clock()) > 0:
                        try:
                            message = await asyncio.wait_for(ws.recv(), remaining)
                        except TimeoutError:
                            break
                        trade = self._accept(message)
                        if trade is not None:
                            attempt = 0
                            yield trade
                    # Binance ends every connection at 24 h; leave first, on our terms.
                    self.stats.planned_reconnects += 1
                    log.info("reconnecting before Binance's 24-hour limit")
                    continue
            except (OSError, TimeoutError, WebSocketException) as exc:
                self.stats.failures += 1
                log.warning("Binance stream failed (%s: %s)", type(exc).__name__, exc)
            delay = self.backoff_delay(attempt)
            attempt += 1
            log.info("reconnecting in %.1f s", delay)
            await self.sleep(delay)
