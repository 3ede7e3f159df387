"""GET /api/symbols and GET /api/candles."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from tests.tradesim.helpers import Api, error_of
from tradesim.market.feed.store import to_datetime
from tradesim.market.models import Candle, Symbol

pytestmark = pytest.mark.django_db


def make_candles(count: int, *, open_last: bool = True) -> None:
    for i in range(count):
        price = Decimal(60000 + i)
        Candle.objects.create(
            symbol_id="BTCUSDT",
            start=to_datetime(1_700_000_000_000 + i * 10_000),
            open=price,
            high=price + 5,
            low=price - 5,
            close=price + 1,
            volume=Decimal("1.5"),
            trades=3,
            ema12=price if i >= 11 else None,
            ema26=None,
            closed=not (open_last and i == count - 1),
        )


def test_symbols_lists_the_traded_symbols_with_last_prices() -> None:
    Symbol.objects.filter(name="BTCUSDT").update(
        last_price=Decimal("60123.45"), last_trade_at=datetime(2024, 1, 1, tzinfo=UTC)
    )
    Symbol.objects.filter(name="SOLUSDT").update(active=False)
    body = Api().get("/api/symbols").json()
    by_name = {s["symbol"]: s for s in body["symbols"]}
    assert set(by_name) == {"BTCUSDT", "ETHUSDT"}
    assert by_name["BTCUSDT"]["base"] == "BTC" and by_name["BTCUSDT"]["quote"] == "USDT"
    assert Decimal(by_name["BTCUSDT"]["price"]) == Decimal("60123.45")
    assert by_name["BTCUSDT"]["updated_at"].startswith("2024-01-01T00:00:00")
    assert by_name["ETHUSDT"]["price"] is None


def test_candles_returns_the_newest_n_oldest_first_with_the_open_one_last() -> None:
    make_candles(30)
    body = Api().get("/api/candles", symbol="BTCUSDT", limit="20").json()
    assert body["symbol"] == "BTCUSDT" and body["interval"] == "10s"
    candles = body["candles"]
    assert len(candles) == 20
    times = [c["time"] for c in candles]
    assert times == sorted(times) and times[-1] == 1_700_000_000 + 29 * 10
    assert candles[-1]["closed"] is False and candles[0]["closed"] is True
    first = candles[0]
    assert Decimal(first["open"]) == Decimal(60010)
    assert Decimal(first["high"]) == Decimal(60015) and Decimal(first["close"]) == Decimal(60011)
    assert Decimal(first["volume"]) == Decimal("1.5") and first["trades"] == 3
    assert first["ema12"] is None and first["ema26"] is None
    assert Decimal(candles[1]["ema12"]) == Decimal(60011)
    # Lower-case symbols are accepted; the default limit is 100.
    assert len(Api().get("/api/candles", symbol="btcusdt").json()["candles"]) == 30


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({}, "missing_field"),
        ({"symbol": "DOGEUSDT"}, "unknown_symbol"),
        ({"symbol": "BTCUSDT", "limit": "0"}, "invalid_field"),
        ({"symbol": "BTCUSDT", "limit": "1001"}, "invalid_field"),
        ({"symbol": "BTCUSDT", "limit": "-3"}, "invalid_field"),
        ({"symbol": "BTCUSDT", "limit": "ten"}, "invalid_field"),
    ],
)
def test_candles_rejects_bad_queries(params: dict[str, str], code: str) -> None:
    response = Api().get("/api/candles", **params)
    assert response.status_code == 400
    assert error_of(response) == code
