"""The feed worker: trades in, last prices + candles + stream events out.

The source runs on the event loop; the database work runs in one dedicated thread
(Django's ORM is synchronous), flushed every `flush_interval` seconds. Coalescing to
one tick event per symbol per flush keeps a busy Binance stream (hundreds of trades a
second) from turning into hundreds of writes a second; candles still see every trade.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tradesim.dbthread import DbThread
from tradesim.market.candles import CandleSeries
from tradesim.market.feed import store
from tradesim.market.feed.store import FlushBatch
from tradesim.market.feed.trade import Trade, TradeSource

log = logging.getLogger("tradesim.feed")


@dataclass
class FeedStats:
    trades: int = 0
    unknown_symbol: int = 0
    flushes: int = 0
    flush_errors: int = 0


class FeedWorker:
    def __init__(
        self,
        source: TradeSource,
        symbols: Sequence[str],
        *,
        flush_interval: float = 0.25,
        max_gap: int = 360,
        retention: float = 600.0,
        grace_ms: int = 2000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.source = source
        self.symbols = list(symbols)
        self.flush_interval = flush_interval
        self.max_gap = max_gap
        self.retention = retention
        self.grace_ms = grace_ms
        self.clock = clock
        self.series: dict[str, CandleSeries] = {}
        self.batch = FlushBatch()
        self.stats = FeedStats()
        self.db = DbThread("feed-db")

    def ingest(self, trade: Trade) -> None:
        series = self.series.get(trade.symbol)
        if series is None:
            self.stats.unknown_symbol += 1
            return
        self.stats.trades += 1
        late_before = series.late
        for candle in series.add(trade.price, trade.quantity, trade.time_ms):
            self.batch.closed.append((trade.symbol, candle))
        if series.late != late_before:
            return  # an older trade than the candles already closed: not the last price
        if series.current is not None:
            self.batch.open[trade.symbol] = series.current
        self.batch.ticks[trade.symbol] = trade

    async def _consume(self) -> None:
        async for trade in self.source.trades():
            self.ingest(trade)

    def _take_batch(self) -> FlushBatch:
        watermark = int(self.clock() * 1000) - self.grace_ms
        for symbol, series in self.series.items():
            for candle in series.advance(watermark):
                self.batch.closed.append((symbol, candle))
        batch, self.batch = self.batch, FlushBatch()
        # The open candles keep changing on the loop while the thread writes them:
        # hand the thread copies, and nothing that has closed since.
        batch.open = {
            symbol: dataclasses.replace(candle)
            for symbol, candle in batch.open.items()
            if not candle.closed
        }
        return batch

    async def flush_once(self) -> None:
        batch = self._take_batch()
        if not batch:
            return
        try:
            await self.db.run(store.flush, batch)
            self.stats.flushes += 1
        except Exception:
            # Keep the data for the next flush; a database blip must not lose candles.
            self.stats.flush_errors += 1
            log.exception("feed flush failed; will retry")
            await self.db.reset()
            newer = self.batch
            batch.closed.extend(newer.closed)
            batch.ticks.update(newer.ticks)
            batch.open.update(newer.open)
            self.batch = batch

    async def run(self, stop: asyncio.Event) -> None:
        for symbol in self.symbols:
            self.series[symbol] = await self.db.run(store.load_series, symbol, self.max_gap)
        consumer = asyncio.create_task(self._consume())
        last_prune = 0.0
        try:
            while not stop.is_set() and not consumer.done():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.flush_interval)
                await self.flush_once()
                if time.monotonic() - last_prune > 60:
                    last_prune = time.monotonic()
                    await self.db.run(store.prune_events, self.retention)
        finally:
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)
            await self.flush_once()
            await self.db.close()
        if consumer.done() and not consumer.cancelled() and consumer.exception() is not None:
            raise RuntimeError("the trade source failed") from consumer.exception()
