"""`manage.py seed_history`: simulated candle history for symbols that have none.

A fresh install has no candles, and EMA 26 needs 26 closed 10-second candles (over
four minutes) before it has a value. This fills the last few minutes with simulated
trades (the simulated feed's own random walk), run through the same candle rules
and the same store as the feed worker, so the chart shows candles and both EMA lines
at once and the feed worker continues the series seamlessly. Symbols that already
have candles are left alone: recorded history is never rewritten.

Run it before the feed worker (the browser tests do); never against a database
whose feed is live.
"""

from __future__ import annotations

import random
import time
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tradesim.market.candles import INTERVAL_MS, CandleSeries, bucket_of
from tradesim.market.feed import store
from tradesim.market.feed.simulated import DEFAULT_PRICES, SimulatedSource, tick_size
from tradesim.market.feed.store import FlushBatch
from tradesim.market.feed.trade import Trade
from tradesim.market.models import Candle
from tradesim.market.symbols import ensure_symbols

TRADE_EVERY_MS = 1000


class Command(BaseCommand):
    help = "Simulated candle history for symbols without any (so EMAs show at once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--minutes", type=float, default=10.0, help="history length")
        parser.add_argument("--symbols", help="comma-separated, default: TRADESIM_SYMBOLS")
        parser.add_argument(
            "--volatility", type=float, help="annualised; default: TRADESIM_SIM_VOLATILITY"
        )
        parser.add_argument("--seed", type=int, help="random seed, for a repeatable history")

    def handle(self, *args: Any, **options: Any) -> None:
        config = settings.TRADESIM
        names = (
            [s.strip().upper() for s in options["symbols"].split(",") if s.strip()]
            if options["symbols"]
            else list(config.symbols)
        )
        minutes = options["minutes"]
        if not 0 < minutes <= 24 * 60:
            raise CommandError("--minutes must be more than 0 and at most a day")
        try:
            rows = ensure_symbols(names)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        volatility = options["volatility"]
        source = SimulatedSource(
            {
                row.name: row.last_price or Decimal(DEFAULT_PRICES.get(row.name, "100"))
                for row in rows
            },
            interval=TRADE_EVERY_MS / 1000,
            volatility=config.sim_volatility if volatility is None else volatility,
            rng=random.Random(options["seed"]),
        )
        # History ends where the current 10 s bucket begins: every seeded candle is
        # closed, and the feed worker's first trade opens the next one.
        end_ms = bucket_of(int(time.time() * 1000))
        start_ms = end_ms - int(minutes * 60_000) // INTERVAL_MS * INTERVAL_MS
        for row in rows:
            if Candle.objects.filter(symbol=row).exists():
                self.stdout.write(f"{row.name}: has candles already; left alone")
                continue
            batch = self._history(source, row.name, start_ms, end_ms, config.candle_max_gap)
            store.flush(batch)
            self.stdout.write(
                f"{row.name}: {len(batch.closed)} candles of history, last price "
                f"{batch.ticks[row.name].price}"
            )

    @staticmethod
    def _history(
        source: SimulatedSource, symbol: str, start_ms: int, end_ms: int, max_gap: int
    ) -> FlushBatch:
        series = CandleSeries(max_gap=max_gap)
        batch = FlushBatch()
        price = source.prices[symbol]
        for trade_id, time_ms in enumerate(range(start_ms, end_ms, TRADE_EVERY_MS), start=1):
            price = source.step(price)
            trade = Trade(
                symbol=symbol,
                price=Decimal(str(price)).quantize(tick_size(price)),
                quantity=Decimal(str(round(source.rng.expovariate(1.0) * 1000 / price, 6) or 1e-6)),
                time_ms=time_ms,
                trade_id=trade_id,
            )
            batch.closed.extend(
                (symbol, candle)
                for candle in series.add(trade.price, trade.quantity, trade.time_ms)
            )
            batch.ticks[symbol] = trade
        batch.closed.extend((symbol, candle) for candle in series.advance(end_ms))
        source.prices[symbol] = price
        return batch
