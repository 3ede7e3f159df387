"""10-second OHLC candles built from trades by trade time, with EMA 12 and EMA 26.

Pure code (no database, no clock) so that it can be checked against an independent
reference computation. The rules, also in docs/tradesim.md:

* Candle k covers trade times [k*10 s, (k+1)*10 s). A candle closes when a trade for a
  later bucket arrives, or when the caller's watermark (wall clock minus a grace
  period) passes its end. A trade for a bucket that is already closed is dropped
  and counted (`late`).
* Gaps: buckets without trades between two traded buckets become flat candles
  (open = high = low = close = the previous close, volume 0, 0 trades), so the EMA
  advances one step per 10 s of market time. A gap longer than `max_gap` buckets
  is not filled: it ends the segment, and the EMAs start over.
* EMA(n), alpha = 2/(n+1): null for the first n-1 candles of a segment, then the SMA
  of the first n closes, then ema = alpha*close + (1-alpha)*previous. Every value is
  rounded to 8 decimal places before it is used again, so that a restarted worker
  that reloads the stored values continues exactly where it left off.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal

INTERVAL_MS = 10_000
EMA_PERIODS = (12, 26)
PLACES = Decimal("0.00000001")


def bucket_of(time_ms: int, interval_ms: int = INTERVAL_MS) -> int:
    return time_ms - time_ms % interval_ms


@dataclass
class Candle:
    start_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal = Decimal(0)
    trades: int = 0
    ema12: Decimal | None = None
    ema26: Decimal | None = None
    closed: bool = False

    def add(self, price: Decimal, quantity: Decimal) -> None:
        self.high = max(self.high, price)
        self.low = min(self.low, price)
        self.close = price
        self.volume += quantity
        self.trades += 1

    def to_json(self) -> dict[str, object]:
        def text(value: Decimal | None) -> str | None:
            return None if value is None else str(value)

        return {
            "time": self.start_ms // 1000,
            "open": str(self.open),
            "high": str(self.high),
            "low": str(self.low),
            "close": str(self.close),
            "volume": str(self.volume),
            "trades": self.trades,
            "ema12": text(self.ema12),
            "ema26": text(self.ema26),
            "closed": self.closed,
        }


@dataclass
class Ema:
    period: int
    value: Decimal | None = None
    seed: list[Decimal] = field(default_factory=list)

    @property
    def alpha(self) -> Decimal:
        return Decimal(2) / Decimal(self.period + 1)

    def push(self, close: Decimal) -> Decimal | None:
        if self.value is None:
            self.seed.append(close)
            if len(self.seed) == self.period:
                self.value = (sum(self.seed, Decimal(0)) / self.period).quantize(
                    PLACES, ROUND_HALF_EVEN
                )
                self.seed.clear()
        else:
            alpha = self.alpha
            self.value = (alpha * close + (1 - alpha) * self.value).quantize(
                PLACES, ROUND_HALF_EVEN
            )
        return self.value


class CandleSeries:
    """The candles of one symbol, fed trade by trade."""

    def __init__(
        self,
        *,
        max_gap: int = 360,
        interval_ms: int = INTERVAL_MS,
        history: Sequence[Candle] = (),
        current: Candle | None = None,
    ) -> None:
        self.interval_ms = interval_ms
        self.max_gap = max_gap
        self.current = current
        self.late = 0
        self.last_closed: Candle | None = history[-1] if history else None
        self.emas = {period: Ema(period) for period in EMA_PERIODS}
        self._restore(history)

    def _restore(self, history: Sequence[Candle]) -> None:
        """EMA state from the newest stored candles (at least 26 of them, oldest first)."""
        if not history:
            return
        segment = [history[-1]]
        for candle in reversed(history[:-1]):
            if segment[-1].start_ms - candle.start_ms != self.interval_ms:
                break
            segment.append(candle)
        segment.reverse()
        last = history[-1]
        for period, ema in self.emas.items():
            value = last.ema12 if period == 12 else last.ema26
            if value is not None:
                ema.value = value
            else:
                # Still seeding: the segment so far is shorter than the period.
                ema.seed = [c.close for c in segment][-(period - 1) :]

    def add(self, price: Decimal, quantity: Decimal, time_ms: int) -> list[Candle]:
        """Adds one trade; returns the candles it closed (with any gap fillers)."""
        start = bucket_of(time_ms, self.interval_ms)
        if self.current is not None and start == self.current.start_ms:
            self.current.add(price, quantity)
            return []
        newest = self.current.start_ms if self.current else None
        if newest is None and self.last_closed is not None:
            newest = self.last_closed.start_ms
        if newest is not None and start <= newest:
            self.late += 1
            return []
        closed: list[Candle] = []
        if self.current is not None:
            closed.append(self._close(self.current))
        if self.last_closed is not None:
            missing = (start - self.last_closed.start_ms) // self.interval_ms - 1
            if missing > self.max_gap:
                for ema in self.emas.values():
                    ema.value = None
                    ema.seed.clear()
            else:
                for _ in range(missing):
                    previous = self.last_closed
                    filler = Candle(
                        start_ms=previous.start_ms + self.interval_ms,
                        open=previous.close,
                        high=previous.close,
                        low=previous.close,
                        close=previous.close,
                    )
                    closed.append(self._close(filler))
        self.current = Candle(start_ms=start, open=price, high=price, low=price, close=price)
        self.current.add(price, quantity)
        return closed

    def advance(self, watermark_ms: int) -> list[Candle]:
        """Closes the open candle once the watermark has passed its end."""
        if self.current is not None and watermark_ms >= self.current.start_ms + self.interval_ms:
            return [self._close(self.current)]
        return []

    def _close(self, candle: Candle) -> Candle:
        candle.ema12 = self.emas[12].push(candle.close)
        candle.ema26 = self.emas[26].push(candle.close)
        candle.closed = True
        self.last_closed = candle
        if candle is self.current:
            self.current = None
        return candle
