"""What each tier may do. Pro unlocks every market: a free account buys only the
symbols in TRADESIM_FREE_SYMBOLS (BTCUSDT and ETHUSDT by default); pro buys all of
them. Selling is always allowed, so an account that goes back to free can still
close the positions it opened as pro."""

from __future__ import annotations

from django.conf import settings

from tradesim.accounts.models import Account
from tradesim.api import ApiError


def free_symbols() -> tuple[str, ...]:
    symbols: tuple[str, ...] = settings.BILLING.free_symbols
    return symbols


def may_buy(tier: str, symbol: str) -> bool:
    return tier == Account.TIER_PRO or symbol.upper() in free_symbols()


def check_may_buy(account: Account, symbol: str) -> None:
    if not may_buy(account.tier, symbol):
        raise ApiError(
            403,
            "pro_required",
            f"buying {symbol} needs the pro plan; free accounts buy "
            f"{', '.join(free_symbols())} (upgrade on /billing)",
        )


def plans() -> list[dict[str, object]]:
    free = ", ".join(free_symbols())
    return [
        {
            "tier": Account.TIER_FREE,
            "name": "Free",
            "price": "$0",
            "perks": [
                f"Buy {free}",
                "Live 10-second candles with EMA 12 / 26",
                "Portfolio and P&L",
            ],
        },
        {
            "tier": Account.TIER_PRO,
            "name": "Pro",
            "price": settings.BILLING.pro_price_label,
            "perks": ["Buy every listed market", "Everything in Free"],
        },
    ]
