"""Symbol names: splitting BTCUSDT into base and quote, and making sure rows exist."""

from __future__ import annotations

from collections.abc import Iterable

from tradesim.market.models import Symbol

QUOTE_ASSETS = ("USDT", "USDC", "FDUSD", "BUSD", "EUR", "BTC", "ETH")


def split_symbol(name: str) -> tuple[str, str]:
    for quote in QUOTE_ASSETS:
        if name.endswith(quote) and len(name) > len(quote):
            return name[: -len(quote)], quote
    raise ValueError(f"cannot tell the quote asset of {name!r}")


def ensure_symbols(names: Iterable[str]) -> list[Symbol]:
    rows = []
    for name in names:
        base, quote = split_symbol(name)
        row, _ = Symbol.objects.get_or_create(name=name, defaults={"base": base, "quote": quote})
        if not row.active:
            row.active = True
            row.save(update_fields=["active"])
        rows.append(row)
    return rows
