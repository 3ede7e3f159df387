"""Candles and EMAs, held against the independent reference in reference.py."""

from __future__ import annotations

import random
from decimal import Decimal
from fractions import Fraction

import pytest

from tests.tradesim.reference import RefCandle, reference_candles
from tradesim.market.candles import Candle, CandleSeries

MAX_GAP = 5


def make_trades(seed: int, count: int = 2500) -> list[tuple[int, Decimal, Decimal]]:
    """A random walk with bursts, short gaps (filled) and a few long ones (new segment)."""
    rng = random.Random(seed)
    time_ms = 1_700_000_000_000 + rng.randrange(10_000)
    price = Decimal("60000")
    trades = []
    for _ in range(count):
        roll = rng.random()
        if roll < 0.01:
            time_ms += rng.randrange(7, 20) * 10_000  # a long gap: beyond MAX_GAP
        elif roll < 0.05:
            time_ms += rng.randrange(1, 5) * 10_000  # a short gap
        else:
            time_ms += rng.randrange(0, 4000)
        price = max(Decimal("1"), price + Decimal(rng.randrange(-5000, 5001)) / 100)
        trades.append((time_ms, price, Decimal(rng.randrange(1, 10**6)) / 10**6))
    return trades


def run_series(series: CandleSeries, trades: list[tuple[int, Decimal, Decimal]]) -> list[Candle]:
    closed: list[Candle] = []
    for time_ms, price, quantity in trades:
        closed.extend(series.add(price, quantity, time_ms))
    return closed


def assert_matches(actual: list[Candle], expected: list[RefCandle]) -> None:
    assert [c.start_ms for c in actual] == [c.start_ms for c in expected]
    for got, want in zip(actual, expected, strict=True):
        assert (got.open, got.high, got.low, got.close) == (
            want.open,
            want.high,
            want.low,
            want.close,
        ), got.start_ms
        assert (got.volume, got.trades) == (want.volume, want.trades), got.start_ms
        for name in ("ema12", "ema26"):
            mine: Decimal | None = getattr(got, name)
            exact: Fraction | None = getattr(want, name)
            assert (mine is None) == (exact is None), (name, got.start_ms, mine, exact)
            if mine is not None and exact is not None:
                # Rounding to 8 places at every step stays within a few 1e-8.
                assert abs(Fraction(mine) - exact) < Fraction(1, 10**7), (name, got.start_ms)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_candles_and_emas_match_the_reference(seed: int) -> None:
    trades = make_trades(seed)
    series = CandleSeries(max_gap=MAX_GAP)
    closed = run_series(series, trades)
    assert series.current is not None
    expected = reference_candles(trades, MAX_GAP)
    assert_matches(closed, expected[:-1])
    # The open candle has its prices so far; EMAs are only computed on closed candles.
    last = expected[-1]
    last.ema12 = last.ema26 = None
    assert_matches([series.current], [last])
    # The data really exercises the rules: fillers, several segments, seeded EMAs.
    assert any(c.trades == 0 for c in closed)
    assert len({c.segment for c in expected}) > 3
    assert sum(c.ema26 is not None for c in closed) > 100


def test_a_restarted_series_continues_exactly() -> None:
    trades = make_trades(7)
    whole = CandleSeries(max_gap=MAX_GAP)
    expected = run_series(whole, trades)
    for split in (300, 1234, 2001):
        first = CandleSeries(max_gap=MAX_GAP)
        before = run_series(first, trades[:split])
        # What store.load_series hands back: the newest 27 closed candles + the open one.
        resumed = CandleSeries(max_gap=MAX_GAP, history=before[-27:], current=first.current)
        after = run_series(resumed, trades[split:])
        combined = [*before, *after]
        assert [c.start_ms for c in combined] == [c.start_ms for c in expected]
        assert [(c.ema12, c.ema26) for c in combined] == [(c.ema12, c.ema26) for c in expected]


def test_first_ema_is_the_sma_of_the_first_closes() -> None:
    series = CandleSeries()
    closes = [Decimal(100 + i) for i in range(30)]
    closed = run_series(series, [(i * 10_000, p, Decimal(1)) for i, p in enumerate(closes)])
    assert [c.ema12 for c in closed[:11]] == [None] * 11
    assert closed[11].ema12 == sum(closes[:12]) / 12
    assert closed[24].ema26 is None
    assert closed[25].ema26 == Decimal(sum(closes[:26]) / 26).quantize(Decimal("1e-8"))
    alpha = Decimal(2) / 13
    assert closed[12].ema12 == (alpha * closes[12] + (1 - alpha) * closed[11].ema12).quantize(
        Decimal("1e-8")
    )


def test_late_trades_are_dropped_and_counted() -> None:
    series = CandleSeries()
    series.add(Decimal(10), Decimal(1), 25_000)
    closed = series.add(Decimal(11), Decimal(1), 31_000)
    assert [c.start_ms for c in closed] == [20_000]
    assert series.add(Decimal(99), Decimal(1), 29_999) == []
    assert series.late == 1
    assert closed[0].high == Decimal(10)


def test_the_watermark_closes_a_quiet_candle_and_later_trades_for_it_are_late() -> None:
    series = CandleSeries()
    series.add(Decimal(10), Decimal(1), 1_000)
    assert series.advance(9_999) == []
    closed = series.advance(10_000)
    assert [c.start_ms for c in closed] == [0]
    assert closed[0].closed and series.current is None
    series.add(Decimal(12), Decimal(1), 9_000)
    assert series.late == 1
    # The next trade two buckets on fills the empty bucket between.
    fillers = series.add(Decimal(13), Decimal(1), 25_000)
    assert [(c.start_ms, c.close, c.trades) for c in fillers] == [(10_000, Decimal(10), 0)]


@pytest.mark.parametrize(("empty", "filled"), [(MAX_GAP, True), (MAX_GAP + 1, False)])
def test_gap_limit_boundary(empty: int, filled: bool) -> None:
    trades = [(i * 10_000, Decimal(100 + i), Decimal(1)) for i in range(30)]
    resume = (30 + empty) * 10_000
    trades += [(resume + i * 10_000, Decimal(200 + i), Decimal(1)) for i in range(3)]
    series = CandleSeries(max_gap=MAX_GAP)
    closed = run_series(series, trades)
    fillers = [c for c in closed if c.trades == 0]
    assert len(fillers) == (empty if filled else 0)
    first_after = next(c for c in closed if c.start_ms == resume)
    # Filled: the EMA runs on; not filled: a new segment, EMAs seeding again.
    assert (first_after.ema12 is not None) is filled
    assert_matches(closed, reference_candles(trades, MAX_GAP)[:-1])
