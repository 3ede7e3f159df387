"""`manage.py run_feed`: the price feed worker (one per deployment)."""

from __future__ import annotations

import asyncio
import logging
import signal
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tradesim.config import FEED_SOURCES
from tradesim.market.feed.binance import BinanceConfig, BinanceSource
from tradesim.market.feed.simulated import DEFAULT_PRICES, SimulatedSource
from tradesim.market.feed.trade import TradeSource
from tradesim.market.feed.worker import FeedWorker
from tradesim.market.symbols import ensure_symbols

log = logging.getLogger("tradesim.feed")


class Command(BaseCommand):
    help = "Run the price feed: trades -> last prices, 10 s candles, stream events."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--source", choices=FEED_SOURCES, help="default: TRADESIM_FEED_SOURCE")
        parser.add_argument("--symbols", help="comma-separated, default: TRADESIM_SYMBOLS")

    def handle(self, *args: Any, **options: Any) -> None:
        config = settings.TRADESIM
        names = (
            [s.strip().upper() for s in options["symbols"].split(",") if s.strip()]
            if options["symbols"]
            else list(config.symbols)
        )
        try:
            rows = ensure_symbols(names)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        source_name = options["source"] or config.feed_source
        source: TradeSource
        if source_name == "binance":
            source = BinanceSource(
                BinanceConfig(
                    base_url=config.binance_url, symbols=tuple(names), stream=config.binance_stream
                )
            )
        else:
            source = SimulatedSource(
                {
                    row.name: row.last_price or Decimal(DEFAULT_PRICES.get(row.name, "100"))
                    for row in rows
                },
                interval=config.sim_interval,
                volatility=config.sim_volatility,
            )
        worker = FeedWorker(
            source,
            names,
            flush_interval=config.flush_interval,
            max_gap=config.candle_max_gap,
            retention=config.event_retention,
        )
        log.info("feed starting: source=%s symbols=%s", source_name, ",".join(names))
        asyncio.run(self._run(worker))
        log.info("feed stopped")

    @staticmethod
    async def _run(worker: FeedWorker) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await worker.run(stop)
