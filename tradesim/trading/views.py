"""POST /api/quotes, POST /api/trades, GET /api/portfolio."""

from __future__ import annotations

import uuid

from django.http import HttpRequest, HttpResponse, JsonResponse

from tradesim.accounts.sessions import Auth, with_auth
from tradesim.api import ApiError, api_view, decimal_field, json_body, string_field
from tradesim.trading import services
from tradesim.trading.portfolio import portfolio as portfolio_of


@api_view("POST")
@with_auth
def quotes(request: HttpRequest, auth: Auth) -> HttpResponse:
    data = json_body(request)
    quote = services.create_quote(
        auth.account,
        string_field(data, "symbol", max_length=20),
        string_field(data, "side", max_length=8),
        decimal_field(data, "quantity"),
    )
    return JsonResponse(
        {
            "id": str(quote.id),
            "symbol": quote.symbol_id,
            "side": quote.side,
            "quantity": str(quote.quantity),
            "price": str(quote.price),
            "notional": str(quote.notional),
            "expires_at": quote.expires_at.isoformat(),
        },
        status=201,
    )


@api_view("POST")
@with_auth
def trades(request: HttpRequest, auth: Auth) -> HttpResponse:
    raw = string_field(json_body(request), "quote_id", max_length=64)
    try:
        quote_id = uuid.UUID(raw)
    except ValueError:
        raise ApiError(400, "invalid_field", "'quote_id' must be a quote id (a UUID)") from None
    trade, account = services.execute_trade(auth.account.pk, quote_id)
    return JsonResponse(
        {
            "trade": {
                "id": trade.pk,
                "quote_id": str(trade.quote_id),
                "symbol": trade.symbol_id,
                "side": trade.side,
                "quantity": str(trade.quantity),
                "price": str(trade.price),
                "notional": str(trade.notional),
                "realized_pnl": str(trade.realized_pnl),
                "executed_at": trade.executed_at.isoformat(),
            },
            "cash": str(account.cash),
        },
        status=201,
    )


@api_view("GET")
@with_auth
def portfolio(request: HttpRequest, auth: Auth) -> HttpResponse:
    return JsonResponse(portfolio_of(auth.account))
