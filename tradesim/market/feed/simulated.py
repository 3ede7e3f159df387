"""Geometric Brownian motion ticks, one per symbol every `interval` seconds.

S(t+dt) = S(t) * exp((mu - sigma^2/2) dt + sigma sqrt(dt) Z),  Z ~ N(0, 1),
with sigma the annualised volatility and dt in years; mu = 0 (no drift).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from decimal import Decimal

from tradesim.market.feed.trade import Trade

SECONDS_PER_YEAR = 365.25 * 24 * 3600
DEFAULT_PRICES = {"BTCUSDT": "60000", "ETHUSDT": "3000", "SOLUSDT": "150", "BNBUSDT": "550"}


def tick_size(price: float) -> Decimal:
    """Like an exchange's tick: cents for prices above 1, finer below."""
    return Decimal("0.01") if price >= 1 else Decimal("0.000001")


class SimulatedSource:
    def __init__(
        self,
        start_prices: Mapping[str, Decimal],
        *,
        interval: float = 0.5,
        volatility: float = 0.8,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.prices = {symbol: float(price) for symbol, price in start_prices.items()}
        self.interval = interval
        self.volatility = volatility
        self.rng = rng or random.Random()
        self.clock = clock
        self.sleep = sleep
        self._next_id = 1

    def step(self, price: float) -> float:
        dt = self.interval / SECONDS_PER_YEAR
        sigma = self.volatility
        shock = self.rng.gauss(0.0, 1.0)
        return price * math.exp(-0.5 * sigma * sigma * dt + sigma * math.sqrt(dt) * shock)

    async def trades(self) -> AsyncIterator[Trade]:
        while True:
            now_ms = int(self.clock() * 1000)
            for symbol, price in self.prices.items():
                new = self.step(price)
                self.prices[symbol] = new
                quantity = Decimal(str(round(self.rng.expovariate(1.0) * 1000 / new, 6) or 1e-6))
                yield Trade(
                    symbol=symbol,
                    price=Decimal(str(new)).quantize(tick_size(new)),
                    quantity=quantity,
                    time_ms=now_ms,
                    trade_id=self._next_id,
                )
                self._next_id += 1
            await self.sleep(self.interval)
