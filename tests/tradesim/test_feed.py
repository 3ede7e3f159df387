"""The feed worker against the real database: prices, persisted candles, events, and
a restart that continues the EMAs; the simulated source's statistics."""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import statistics
from collections.abc import AsyncIterator, Iterable
from decimal import Decimal

import pytest

from tests.tradesim.reference import reference_candles
from tests.tradesim.test_candles import MAX_GAP, make_trades
from tradesim.market.feed.simulated import SECONDS_PER_YEAR, SimulatedSource
from tradesim.market.feed.store import to_ms
from tradesim.market.feed.trade import Trade
from tradesim.market.feed.worker import FeedWorker
from tradesim.market.models import Candle, MarketEvent, Symbol
from tradesim.market.symbols import ensure_symbols, split_symbol


class ListSource:
    def __init__(self, trades: Iterable[Trade]) -> None:
        self.items = list(trades)

    async def trades(self) -> AsyncIterator[Trade]:
        for index, trade in enumerate(self.items):
            if index % 200 == 0:
                await asyncio.sleep(0)  # let the flusher run between bursts
            yield trade


def as_trades(
    symbol: str, rows: list[tuple[int, Decimal, Decimal]], first_id: int = 1
) -> list[Trade]:
    return [
        Trade(symbol=symbol, price=p, quantity=q, time_ms=t, trade_id=first_id + i)
        for i, (t, p, q) in enumerate(rows)
    ]


def run_worker(trades: list[Trade], now_ms: int) -> FeedWorker:
    worker = FeedWorker(
        ListSource(trades),
        ["BTCUSDT", "ETHUSDT"],
        flush_interval=0.01,
        max_gap=MAX_GAP,
        # The watermark sits before the last trade: the newest candle stays open.
        clock=lambda: now_ms / 1000,
    )
    asyncio.run(worker.run(asyncio.Event()))
    return worker


@pytest.mark.django_db(transaction=True)
def test_worker_persists_prices_candles_and_events_and_resumes_after_restart() -> None:
    ensure_symbols(["BTCUSDT", "ETHUSDT"])
    rows = make_trades(11, count=1500)
    split = 800
    first = run_worker(as_trades("BTCUSDT", rows[:split]), now_ms=rows[split - 1][0])
    assert first.stats.trades == split
    assert Symbol.objects.get(name="BTCUSDT").last_price == rows[split - 1][1]
    # A second run (a restarted worker) picks the series up from the database.
    second = run_worker(as_trades("BTCUSDT", rows[split:], first_id=split + 1), now_ms=rows[-1][0])
    assert second.stats.trades == len(rows) - split

    expected = reference_candles(rows, MAX_GAP)
    stored = list(Candle.objects.filter(symbol_id="BTCUSDT").order_by("start"))
    assert [to_ms(c.start) for c in stored] == [c.start_ms for c in expected]
    for row, want in zip(stored[:-1], expected[:-1], strict=True):
        assert row.closed
        assert (row.open, row.high, row.low, row.close) == (
            want.open,
            want.high,
            want.low,
            want.close,
        )
        assert row.volume == want.volume and row.trades == want.trades
        for name in ("ema12", "ema26"):
            got, exact = getattr(row, name), getattr(want, name)
            assert (got is None) == (exact is None)
            if got is not None:
                assert abs(float(got) - float(exact)) < 1e-6
    assert not stored[-1].closed and stored[-1].close == rows[-1][1]
    assert Symbol.objects.get(name="BTCUSDT").last_price == rows[-1][1]

    candle_events = MarketEvent.objects.filter(kind="candle", symbol="BTCUSDT")
    assert candle_events.count() == len(expected) - 1
    newest = candle_events.order_by("-id").first()
    assert newest is not None and newest.payload["time"] == expected[-2].start_ms // 1000
    assert MarketEvent.objects.filter(kind="tick", symbol="BTCUSDT").exists()
    assert not Candle.objects.filter(symbol_id="ETHUSDT").exists()


@pytest.mark.django_db(transaction=True)
def test_worker_ignores_unknown_symbols_and_counts_them() -> None:
    ensure_symbols(["BTCUSDT", "ETHUSDT"])
    trades = [Trade("DOGEUSDT", Decimal("0.1"), Decimal(1), 1_000, 1)]
    trades += [Trade("ETHUSDT", Decimal("3000.5"), Decimal(1), 2_000, 2)]
    worker = run_worker(trades, now_ms=2_000)
    assert worker.stats.unknown_symbol == 1
    assert Symbol.objects.get(name="ETHUSDT").last_price == Decimal("3000.5")
    assert not Symbol.objects.filter(name="DOGEUSDT").exists()


def test_simulated_prices_follow_gbm_with_the_configured_volatility() -> None:
    sleeps: list[float] = []

    async def no_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    source = SimulatedSource(
        {"BTCUSDT": Decimal("60000")},
        interval=1.0,
        volatility=0.8,
        rng=random.Random(5),
        clock=lambda: 1_700_000_000.0,
        sleep=no_sleep,
    )

    async def collect(count: int) -> list[Trade]:
        out = []
        async for trade in source.trades():
            out.append(trade)
            if len(out) == count:
                break
        return out

    trades = asyncio.run(collect(20_000))
    prices = [float(t.price) for t in trades]
    returns = [math.log(b / a) for a, b in itertools.pairwise(prices)]
    expected_sd = 0.8 * math.sqrt(1.0 / SECONDS_PER_YEAR)
    assert statistics.stdev(returns) == pytest.approx(expected_sd, rel=0.05)
    assert abs(statistics.mean(returns)) < 3 * expected_sd / math.sqrt(len(returns))
    assert all(t.price > 0 and t.quantity > 0 for t in trades)
    assert all(t.price == t.price.quantize(Decimal("0.01")) for t in trades)
    assert len(set(t.trade_id for t in trades)) == len(trades)
    assert sleeps and set(sleeps) == {1.0}


def test_symbol_names_split_into_base_and_quote() -> None:
    assert split_symbol("BTCUSDT") == ("BTC", "USDT")
    assert split_symbol("ETHBTC") == ("ETH", "BTC")
    with pytest.raises(ValueError, match="quote asset"):
        split_symbol("USDT")
