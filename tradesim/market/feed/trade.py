from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol


@dataclass(frozen=True)
class Trade:
    symbol: str
    price: Decimal
    quantity: Decimal
    time_ms: int  # the exchange's trade time, which decides the candle
    trade_id: int


class TradeSource(Protocol):
    def trades(self) -> AsyncIterator[Trade]: ...
