"""The portfolio view: cash, holdings at the last price, cost basis, P&L, allocation."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

from tradesim.accounts.models import Account
from tradesim.trading.models import Holding

CENT = Decimal("0.01")
CASH_KEY = "cash"


def _money(value: Decimal) -> Decimal:
    return value.quantize(CENT, ROUND_HALF_EVEN)


def _percent(part: Decimal, whole: Decimal) -> str:
    if whole <= 0:
        return "0.00"
    return str(_money(part * 100 / whole))


def portfolio(account: Account) -> dict[str, object]:
    holdings = []
    values: dict[str, Decimal] = {}
    total_market = Decimal("0.00")
    total_cost = Decimal("0.00")
    rows = Holding.objects.filter(account=account).select_related("symbol").order_by("symbol")
    for holding in rows:
        symbol = holding.symbol
        # Without a price yet, a holding is carried at what it cost.
        price = symbol.last_price
        value = _money(holding.quantity * price) if price is not None else holding.cost_basis
        pnl = value - holding.cost_basis
        holdings.append(
            {
                "asset": symbol.base,
                "symbol": symbol.name,
                "quantity": str(holding.quantity),
                "price": None if price is None else str(price),
                "average_price": str(_money(holding.cost_basis / holding.quantity)),
                "cost_basis": str(holding.cost_basis),
                "market_value": str(value),
                "pnl": str(pnl),
                "pnl_percent": _percent(pnl, holding.cost_basis),
            }
        )
        values[symbol.base] = values.get(symbol.base, Decimal(0)) + value
        total_market += value
        total_cost += holding.cost_basis
    total = account.cash + total_market
    allocation = {asset: _percent(value, total) for asset, value in values.items()}
    allocation[CASH_KEY] = _percent(account.cash, total)
    return {
        "cash": str(account.cash),
        "holdings": holdings,
        "market_value": str(total_market),
        "cost_basis": str(total_cost),
        "pnl": str(total_market - total_cost),
        "realized_pnl": str(account.realized_pnl),
        "total_value": str(total),
        "allocation": allocation,
    }
