"""An independent, batch computation of the candle rules in docs/tradesim.md, for the
tests to hold tradesim.market.candles against: whole-history grouping instead of
trade-by-trade state, exact Fractions instead of rounded Decimals."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

INTERVAL_MS = 10_000


@dataclass
class RefCandle:
    start_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    trades: int
    segment: int
    ema12: Fraction | None = None
    ema26: Fraction | None = None


def reference_candles(trades: list[tuple[int, Decimal, Decimal]], max_gap: int) -> list[RefCandle]:
    """trades: (time_ms, price, quantity), in arrival order, none late."""
    buckets: dict[int, list[tuple[Decimal, Decimal]]] = {}
    for time_ms, price, quantity in trades:
        buckets.setdefault(time_ms // INTERVAL_MS * INTERVAL_MS, []).append((price, quantity))
    candles: list[RefCandle] = []
    segment = 0
    for start in sorted(buckets):
        if candles:
            previous = candles[-1]
            empty = (start - previous.start_ms) // INTERVAL_MS - 1
            if empty > max_gap:
                segment += 1
            else:
                for k in range(1, empty + 1):
                    c = previous.close
                    candles.append(
                        RefCandle(
                            previous.start_ms + k * INTERVAL_MS, c, c, c, c, Decimal(0), 0, segment
                        )
                    )
        prices = [p for p, _ in buckets[start]]
        candles.append(
            RefCandle(
                start_ms=start,
                open=prices[0],
                high=max(prices),
                low=min(prices),
                close=prices[-1],
                volume=sum((q for _, q in buckets[start]), Decimal(0)),
                trades=len(prices),
                segment=segment,
            )
        )
    for period in (12, 26):
        _ema(candles, period)
    return candles


def _ema(candles: list[RefCandle], period: int) -> None:
    alpha = Fraction(2, period + 1)
    segments: dict[int, list[RefCandle]] = {}
    for candle in candles:
        segments.setdefault(candle.segment, []).append(candle)
    for members in segments.values():
        value: Fraction | None = None
        for index, candle in enumerate(members):
            close = Fraction(candle.close)
            if index == period - 1:
                value = sum((Fraction(c.close) for c in members[:period]), Fraction(0)) / period
            elif value is not None:
                value = alpha * close + (1 - alpha) * value
            setattr(candle, f"ema{period}", value)
