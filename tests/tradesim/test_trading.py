"""Quotes, trades and the portfolio through the HTTP API, including every bad input."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from tests.tradesim.helpers import Api, error_of
from tradesim.accounts.models import Account
from tradesim.market.models import Symbol
from tradesim.trading.models import Holding, Quote, Trade

pytestmark = pytest.mark.django_db


def set_price(symbol: str, price: str, age: float = 0.0) -> None:
    Symbol.objects.filter(name=symbol).update(
        last_price=Decimal(price), last_trade_at=timezone.now() - timedelta(seconds=age)
    )


@pytest.fixture
def trader() -> Api:
    set_price("BTCUSDT", "50000.00")
    set_price("ETHUSDT", "2500.00")
    api = Api()
    assert api.register("trader").status_code == 201
    return api


def quote(api: Api, symbol: str, side: str, quantity: Any) -> dict[str, Any]:
    response = api.post("/api/quotes", {"symbol": symbol, "side": side, "quantity": quantity})
    assert response.status_code == 201, response.content
    body: dict[str, Any] = response.json()
    return body


def trade(api: Api, symbol: str, side: str, quantity: str) -> dict[str, Any]:
    quoted = quote(api, symbol, side, quantity)
    response = api.post("/api/trades", {"quote_id": quoted["id"]})
    assert response.status_code == 201, response.content
    body: dict[str, Any] = response.json()
    return body


def account() -> Account:
    return Account.objects.get(user__username="trader")


def test_a_quote_binds_price_quantity_and_a_short_expiry(trader: Api) -> None:
    before = timezone.now()
    body = quote(trader, "btcusdt", "buy", "0.5")
    assert set(body) == {"id", "symbol", "side", "quantity", "price", "notional", "expires_at"}
    assert body["symbol"] == "BTCUSDT" and body["side"] == "buy"
    assert Decimal(body["quantity"]) == Decimal("0.5")
    assert Decimal(body["price"]) == Decimal("50000")
    assert Decimal(body["notional"]) == Decimal("25000.00")
    ttl = datetime.fromisoformat(body["expires_at"]) - before
    assert timedelta(seconds=4) < ttl <= timedelta(seconds=6)
    stored = Quote.objects.get(id=body["id"])
    assert stored.account == account() and stored.used_at is None


def test_buy_then_sell_moves_cash_and_holdings_exactly(trader: Api) -> None:
    bought = trade(trader, "BTCUSDT", "buy", "0.3")
    assert bought["cash"] == "85000.00"
    assert bought["trade"]["side"] == "buy" and Decimal(bought["trade"]["notional"]) == 15000
    holding = Holding.objects.get(account=account(), symbol_id="BTCUSDT")
    assert holding.quantity == Decimal("0.3") and holding.cost_basis == Decimal("15000.00")

    set_price("BTCUSDT", "60000.00")
    sold = trade(trader, "BTCUSDT", "sell", "0.1")
    # Proceeds 6000; a third of the 15000 cost basis leaves: 1000 realised.
    assert sold["cash"] == "91000.00"
    assert Decimal(sold["trade"]["realized_pnl"]) == Decimal("1000.00")
    holding.refresh_from_db()
    assert holding.quantity == Decimal("0.2") and holding.cost_basis == Decimal("10000.00")
    assert account().realized_pnl == Decimal("1000.00")

    trade(trader, "BTCUSDT", "sell", "0.2")
    assert not Holding.objects.filter(account=account()).exists()
    assert account().cash == Decimal("103000.00")
    assert Trade.objects.filter(account=account()).count() == 3


def test_cash_rounds_in_the_house_favour(trader: Api) -> None:
    set_price("ETHUSDT", "2500.333")
    bought = trade(trader, "ETHUSDT", "buy", "0.001")  # 2.500333 -> costs 2.51
    assert Decimal(bought["trade"]["notional"]) == Decimal("2.51")
    sold = trade(trader, "ETHUSDT", "sell", "0.001")  # proceeds 2.50
    assert Decimal(sold["trade"]["notional"]) == Decimal("2.50")
    assert account().cash == Decimal("99999.99")


def test_portfolio_values_holdings_at_the_last_price(trader: Api) -> None:
    trade(trader, "BTCUSDT", "buy", "0.4")  # 20000
    trade(trader, "ETHUSDT", "buy", "4")  # 10000
    set_price("BTCUSDT", "55000.00")  # BTC now 22000: +2000
    set_price("ETHUSDT", "2000.00")  # ETH now 8000: -2000
    body = trader.get("/api/portfolio").json()
    assert body["cash"] == "70000.00"
    assert body["market_value"] == "30000.00"
    assert body["cost_basis"] == "30000.00"
    assert body["pnl"] == "0.00"
    assert body["total_value"] == "100000.00"
    by_asset = {h["asset"]: h for h in body["holdings"]}
    btc = by_asset["BTC"]
    assert btc["symbol"] == "BTCUSDT" and Decimal(btc["quantity"]) == Decimal("0.4")
    assert btc["market_value"] == "22000.00" and btc["pnl"] == "2000.00"
    assert btc["pnl_percent"] == "10.00" and btc["average_price"] == "50000.00"
    assert by_asset["ETH"]["pnl"] == "-2000.00" and by_asset["ETH"]["pnl_percent"] == "-20.00"
    assert body["allocation"] == {"BTC": "22.00", "ETH": "8.00", "cash": "70.00"}


def test_a_fresh_portfolio_is_all_cash(trader: Api) -> None:
    body = trader.get("/api/portfolio").json()
    assert body["holdings"] == [] and body["allocation"] == {"cash": "100.00"}


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"symbol": "DOGEUSDT", "side": "buy", "quantity": "1"}, 400, "unknown_symbol"),
        ({"symbol": "BTCUSDT", "side": "hold", "quantity": "1"}, 400, "invalid_side"),
        ({"symbol": "BTCUSDT", "side": "buy", "quantity": "0"}, 400, "invalid_quantity"),
        ({"symbol": "BTCUSDT", "side": "buy", "quantity": "-1"}, 400, "invalid_quantity"),
        ({"symbol": "BTCUSDT", "side": "buy", "quantity": "1e12"}, 400, "invalid_quantity"),
        ({"symbol": "BTCUSDT", "side": "buy", "quantity": "0.000000001"}, 400, "invalid_quantity"),
        ({"symbol": "BTCUSDT", "side": "buy", "quantity": "NaN"}, 400, "invalid_field"),
        ({"symbol": "BTCUSDT", "side": "buy", "quantity": "Infinity"}, 400, "invalid_field"),
        ({"symbol": "BTCUSDT", "side": "buy", "quantity": "lots"}, 400, "invalid_field"),
        ({"symbol": "BTCUSDT", "side": "buy", "quantity": True}, 400, "invalid_field"),
        ({"symbol": "BTCUSDT", "side": "buy", "quantity": [1]}, 400, "invalid_field"),
        ({"symbol": "BTCUSDT", "side": "buy"}, 400, "missing_field"),
        ({"side": "buy", "quantity": "1"}, 400, "missing_field"),
        ({"symbol": "BTCUSDT", "side": "buy", "quantity": "0.00000001"}, 400, "order_too_small"),
        ({"symbol": "BTCUSDT", "side": "buy", "quantity": "3"}, 422, "insufficient_funds"),
        ({"symbol": "BTCUSDT", "side": "sell", "quantity": "0.1"}, 422, "insufficient_holdings"),
    ],
)
def test_bad_quote_requests_are_refused_and_write_nothing(
    trader: Api, body: dict[str, Any], status: int, code: str
) -> None:
    response = trader.post("/api/quotes", body)
    assert response.status_code == status, response.content
    assert error_of(response) == code
    assert not Quote.objects.exists()


def test_json_numbers_are_read_as_decimals_not_floats(trader: Api) -> None:
    response = trader.post(
        "/api/quotes", raw=b'{"symbol": "BTCUSDT", "side": "buy", "quantity": 0.1}'
    )
    assert response.status_code == 201
    assert Decimal(response.json()["quantity"]) == Decimal("0.1")


def test_no_or_stale_price_means_no_quote(trader: Api) -> None:
    Symbol.objects.filter(name="ETHUSDT").update(last_price=None, last_trade_at=None)
    response = trader.post("/api/quotes", {"symbol": "ETHUSDT", "side": "buy", "quantity": "1"})
    assert response.status_code == 503 and error_of(response) == "price_unavailable"
    set_price("BTCUSDT", "50000", age=settings.TRADESIM.max_price_age + 5)
    response = trader.post("/api/quotes", {"symbol": "BTCUSDT", "side": "buy", "quantity": "1"})
    assert response.status_code == 503 and error_of(response) == "price_stale"
    assert not Quote.objects.exists()


def assert_nothing_traded(cash: str = "100000.00") -> None:
    assert account().cash == Decimal(cash)
    assert not Trade.objects.exists()


def test_an_expired_quote_cannot_be_traded(trader: Api) -> None:
    with override_settings(TRADESIM=dataclasses.replace(settings.TRADESIM, quote_ttl=0.1)):
        quoted = quote(trader, "BTCUSDT", "buy", "0.1")
    Quote.objects.filter(id=quoted["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = trader.post("/api/trades", {"quote_id": quoted["id"]})
    assert response.status_code == 410 and error_of(response) == "quote_expired"
    assert_nothing_traded()
    assert Quote.objects.get(id=quoted["id"]).used_at is None


def test_a_quote_trades_once(trader: Api) -> None:
    quoted = quote(trader, "BTCUSDT", "buy", "0.1")
    assert trader.post("/api/trades", {"quote_id": quoted["id"]}).status_code == 201
    again = trader.post("/api/trades", {"quote_id": quoted["id"]})
    assert again.status_code == 409 and error_of(again) == "quote_used"
    assert account().cash == Decimal("95000.00")
    assert Trade.objects.count() == 1


def test_someone_elses_quote_is_not_found(trader: Api) -> None:
    quoted = quote(trader, "BTCUSDT", "buy", "0.1")
    other = Api()
    other.register("mallory")
    response = other.post("/api/trades", {"quote_id": quoted["id"]})
    assert response.status_code == 404 and error_of(response) == "quote_not_found"
    assert_nothing_traded()
    assert Account.objects.get(user__username="mallory").cash == Decimal("100000.00")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"quote_id": str(uuid.uuid4())}, 404, "quote_not_found"),
        ({"quote_id": "not-a-uuid"}, 400, "invalid_field"),
        ({"quote_id": 42}, 400, "invalid_field"),
        ({}, 400, "missing_field"),
    ],
)
def test_bad_trade_requests(trader: Api, body: dict[str, Any], status: int, code: str) -> None:
    response = trader.post("/api/trades", body)
    assert response.status_code == status
    assert error_of(response) == code
    assert_nothing_traded()


def test_funds_are_checked_again_when_the_trade_executes(trader: Api) -> None:
    # Each quote alone is affordable; both together are not.
    first = quote(trader, "BTCUSDT", "buy", "1.5")
    second = quote(trader, "BTCUSDT", "buy", "1.5")
    assert trader.post("/api/trades", {"quote_id": first["id"]}).status_code == 201
    response = trader.post("/api/trades", {"quote_id": second["id"]})
    assert response.status_code == 422 and error_of(response) == "insufficient_funds"
    assert account().cash == Decimal("25000.00")
    assert Quote.objects.get(id=second["id"]).used_at is None
    assert Holding.objects.get(account=account()).quantity == Decimal("1.5")


def test_holdings_are_checked_again_when_a_sale_executes(trader: Api) -> None:
    trade(trader, "ETHUSDT", "buy", "1")
    first = quote(trader, "ETHUSDT", "sell", "1")
    second = quote(trader, "ETHUSDT", "sell", "1")
    assert trader.post("/api/trades", {"quote_id": first["id"]}).status_code == 201
    response = trader.post("/api/trades", {"quote_id": second["id"]})
    assert response.status_code == 422 and error_of(response) == "insufficient_holdings"
    assert not Holding.objects.exists()


@pytest.mark.parametrize(
    ("method", "path"),
    [("post", "/api/quotes"), ("post", "/api/trades"), ("get", "/api/portfolio")],
)
def test_trading_needs_a_login(method: str, path: str) -> None:
    api = Api()
    response = api.post(path, {}) if method == "post" else api.get(path)
    assert response.status_code == 401
    assert error_of(response) == "not_authenticated"


def test_trading_needs_csrf(trader: Api) -> None:
    response = trader.post(
        "/api/quotes", {"symbol": "BTCUSDT", "side": "buy", "quantity": "1"}, csrf=False
    )
    assert response.status_code == 403 and error_of(response) == "csrf_failed"
    assert not Quote.objects.exists()
