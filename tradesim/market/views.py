"""GET /api/symbols and GET /api/candles."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse

from tradesim.api import ApiError, api_view
from tradesim.market.feed.store import candle_from_row
from tradesim.market.models import Candle as CandleRow
from tradesim.market.models import Symbol

MAX_CANDLES = 1000
DEFAULT_CANDLES = 100


def active_symbol(name: str | None) -> Symbol:
    if not name:
        raise ApiError(400, "missing_field", "'symbol' is required, e.g. symbol=BTCUSDT")
    symbol = Symbol.objects.filter(name=name.upper(), active=True).first()
    if symbol is None:
        raise ApiError(400, "unknown_symbol", f"{name!r} is not a traded symbol")
    return symbol


@api_view("GET")
def symbols(request: HttpRequest) -> HttpResponse:
    return JsonResponse(
        {
            "symbols": [
                {
                    "symbol": row.name,
                    "base": row.base,
                    "quote": row.quote,
                    "price": None if row.last_price is None else str(row.last_price),
                    "updated_at": row.last_trade_at.isoformat() if row.last_trade_at else None,
                }
                for row in Symbol.objects.filter(active=True)
            ]
        }
    )


@api_view("GET")
def candles(request: HttpRequest) -> HttpResponse:
    symbol = active_symbol(request.GET.get("symbol"))
    raw_limit = request.GET.get("limit", str(DEFAULT_CANDLES))
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_CANDLES:
        raise ApiError(400, "invalid_field", f"'limit' must be an integer from 1 to {MAX_CANDLES}")
    rows = CandleRow.objects.filter(symbol=symbol).order_by("-start")[: int(raw_limit)]
    series = [candle_from_row(row).to_json() for row in reversed(rows)]
    return JsonResponse({"symbol": symbol.name, "interval": "10s", "candles": series})
