"""Quoting and executing trades. Decimal throughout; every check that guards money
runs again under row locks inside the transaction that moves it."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_UP, Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from tradesim.accounts.models import Account
from tradesim.api import ApiError
from tradesim.billing.tiers import check_may_buy
from tradesim.market.models import Symbol
from tradesim.trading.models import Holding, Quote, Side, Trade

CENT = Decimal("0.01")
QUANTITY_STEP = Decimal("0.00000001")
MAX_QUANTITY = Decimal("1000000000")
MIN_NOTIONAL = Decimal("1.00")
MAX_NOTIONAL = Decimal("1000000000000")


def check_quantity(quantity: Decimal) -> Decimal:
    if quantity <= 0:
        raise ApiError(400, "invalid_quantity", "quantity must be greater than zero")
    if quantity > MAX_QUANTITY:
        raise ApiError(400, "invalid_quantity", f"quantity must be at most {MAX_QUANTITY}")
    if quantity != quantity.quantize(QUANTITY_STEP, ROUND_DOWN):
        raise ApiError(400, "invalid_quantity", "quantity has more than 8 decimal places")
    return quantity.quantize(QUANTITY_STEP)


def notional_of(side: str, price: Decimal, quantity: Decimal) -> Decimal:
    # Rounded in the house's favour, so no sequence of trades can mint a cent.
    return (price * quantity).quantize(CENT, ROUND_UP if side == Side.BUY else ROUND_DOWN)


def _check_covered(
    account: Account, holding: Holding | None, side: str, quantity: Decimal, notional: Decimal
) -> None:
    if side == Side.BUY and account.cash < notional:
        raise ApiError(
            422, "insufficient_funds", f"this buy costs {notional}; cash is {account.cash}"
        )
    held = holding.quantity if holding is not None else Decimal(0)
    if side == Side.SELL and held < quantity:
        raise ApiError(
            422, "insufficient_holdings", f"selling {quantity} needs that much; you hold {held}"
        )


def create_quote(account: Account, symbol_name: str, side: str, quantity: Decimal) -> Quote:
    if side not in Side.values:
        raise ApiError(400, "invalid_side", "side must be 'buy' or 'sell'")
    quantity = check_quantity(quantity)
    symbol = Symbol.objects.filter(name=symbol_name.upper(), active=True).first()
    if symbol is None:
        raise ApiError(400, "unknown_symbol", f"{symbol_name!r} is not a traded symbol")
    if side == Side.BUY:
        check_may_buy(account, symbol.name)  # what the pro tier unlocks (billing/tiers.py)
    config = settings.TRADESIM
    now = timezone.now()
    if symbol.last_price is None or symbol.last_trade_at is None:
        raise ApiError(503, "price_unavailable", f"no price for {symbol.name} yet; is the feed up?")
    if now - symbol.last_trade_at > timedelta(seconds=config.max_price_age):
        raise ApiError(503, "price_stale", f"the last {symbol.name} price is too old to quote")
    notional = notional_of(side, symbol.last_price, quantity)
    if notional < MIN_NOTIONAL:
        raise ApiError(400, "order_too_small", f"orders must be worth at least {MIN_NOTIONAL}")
    if notional > MAX_NOTIONAL:
        raise ApiError(400, "order_too_large", f"orders must be worth at most {MAX_NOTIONAL}")
    # An early, unlocked check so an order that cannot fill fails at once; the
    # authoritative check is the locked one in execute_trade.
    holding = Holding.objects.filter(account=account, symbol=symbol).first()
    _check_covered(account, holding, side, quantity, notional)
    return Quote.objects.create(
        account=account,
        symbol=symbol,
        side=side,
        quantity=quantity,
        price=symbol.last_price,
        notional=notional,
        expires_at=now + timedelta(seconds=config.quote_ttl),
    )


def execute_trade(account_id: int, quote_id: uuid.UUID) -> tuple[Trade, Account]:
    """One transaction: lock the account, the quote and the holding (always in that
    order, so two trades cannot deadlock), re-verify everything, write everything.
    Any ApiError rolls the whole transaction back: nothing is written."""
    with transaction.atomic():
        account = Account.objects.select_for_update().get(pk=account_id)
        quote = Quote.objects.select_for_update().filter(pk=quote_id).first()
        # Not "forbidden" for someone else's quote: its existence is none of their business.
        if quote is None or quote.account_id != account.pk:
            raise ApiError(404, "quote_not_found", "no quote with this id is yours")
        if quote.used_at is not None:
            raise ApiError(409, "quote_used", "this quote has already been traded")
        now = timezone.now()  # after the locks: waiting for them uses up the quote's time
        if quote.expires_at <= now:
            raise ApiError(410, "quote_expired", "this quote has expired; ask for a new one")
        holding = (
            Holding.objects.select_for_update()
            .filter(account=account, symbol_id=quote.symbol_id)
            .first()
        )
        _check_covered(account, holding, quote.side, quote.quantity, quote.notional)
        realized = Decimal("0.00")
        if quote.side == Side.BUY:
            account.cash -= quote.notional
            if holding is None:
                holding = Holding(
                    account=account, symbol_id=quote.symbol_id, quantity=0, cost_basis=0
                )
            holding.quantity += quote.quantity
            holding.cost_basis += quote.notional
        else:
            assert holding is not None  # _check_covered guarantees it
            if quote.quantity == holding.quantity:
                removed = holding.cost_basis
            else:
                removed = (holding.cost_basis * quote.quantity / holding.quantity).quantize(
                    CENT, ROUND_HALF_EVEN
                )
            realized = quote.notional - removed
            account.cash += quote.notional
            account.realized_pnl += realized
            holding.quantity -= quote.quantity
            holding.cost_basis -= removed
        if holding.quantity == 0:
            holding.delete()
        else:
            holding.save()
        account.save(update_fields=["cash", "realized_pnl"])
        quote.used_at = now
        quote.save(update_fields=["used_at"])
        trade = Trade.objects.create(
            account=account,
            quote=quote,
            symbol_id=quote.symbol_id,
            side=quote.side,
            quantity=quote.quantity,
            price=quote.price,
            notional=quote.notional,
            realized_pnl=realized,
        )
    return trade, account
