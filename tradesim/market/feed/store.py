"""The feed worker's database side (synchronous: it runs in one worker thread).

One transaction per flush: the last prices, the candles and the stream events of a
flush become visible together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.utils import timezone

from tradesim.market.candles import EMA_PERIODS, Candle, CandleSeries
from tradesim.market.feed.trade import Trade
from tradesim.market.models import Candle as CandleRow
from tradesim.market.models import MarketEvent, Symbol


def to_datetime(time_ms: int) -> datetime:
    return datetime.fromtimestamp(time_ms / 1000, tz=UTC)


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def tick_json(trade: Trade) -> dict[str, object]:
    return {
        "symbol": trade.symbol,
        "price": str(trade.price),
        "quantity": str(trade.quantity),
        "time_ms": trade.time_ms,
    }


def candle_from_row(row: CandleRow) -> Candle:
    return Candle(
        start_ms=to_ms(row.start),
        open=row.open,
        high=row.high,
        low=row.low,
        close=row.close,
        volume=row.volume,
        trades=row.trades,
        ema12=row.ema12,
        ema26=row.ema26,
        closed=row.closed,
    )


def load_series(symbol: str, max_gap: int) -> CandleSeries:
    """Resumes a symbol's candles and EMA state from what an earlier run stored."""
    rows = list(
        CandleRow.objects.filter(symbol_id=symbol).order_by("-start")[: max(EMA_PERIODS) + 1]
    )
    candles = [candle_from_row(row) for row in reversed(rows)]
    current = candles.pop() if candles and not candles[-1].closed else None
    return CandleSeries(max_gap=max_gap, history=candles, current=current)


@dataclass
class FlushBatch:
    ticks: dict[str, Trade] = field(default_factory=dict)  # the newest trade per symbol
    closed: list[tuple[str, Candle]] = field(default_factory=list)
    open: dict[str, Candle] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.ticks or self.closed or self.open)


def _save_candle(symbol: str, candle: Candle) -> None:
    CandleRow.objects.update_or_create(
        symbol_id=symbol,
        start=to_datetime(candle.start_ms),
        defaults={
            "open": candle.open,
            "high": candle.high,
            "low": candle.low,
            "close": candle.close,
            "volume": candle.volume,
            "trades": candle.trades,
            "ema12": candle.ema12,
            "ema26": candle.ema26,
            "closed": candle.closed,
        },
    )


def flush(batch: FlushBatch) -> None:
    with transaction.atomic():
        events: list[MarketEvent] = []
        for symbol, candle in batch.closed:
            _save_candle(symbol, candle)
            events.append(
                MarketEvent(
                    kind=MarketEvent.KIND_CANDLE,
                    symbol=symbol,
                    payload={"symbol": symbol, **candle.to_json()},
                )
            )
        for symbol, candle in batch.open.items():
            _save_candle(symbol, candle)
        for symbol, trade in batch.ticks.items():
            Symbol.objects.filter(name=symbol).update(
                last_price=trade.price, last_trade_at=to_datetime(trade.time_ms)
            )
            events.append(
                MarketEvent(kind=MarketEvent.KIND_TICK, symbol=symbol, payload=tick_json(trade))
            )
        MarketEvent.objects.bulk_create(events)


def prune_events(retention_seconds: float) -> int:
    cutoff = timezone.now() - timedelta(seconds=retention_seconds)
    deleted, _ = MarketEvent.objects.filter(created_at__lt=cutoff).delete()
    return deleted
