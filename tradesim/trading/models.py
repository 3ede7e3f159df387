"""Quotes (a price promised for a few seconds), executed trades, and holdings."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.db import models

from tradesim.accounts.models import CASH_DIGITS, CASH_PLACES, Account
from tradesim.market.models import PRICE_DIGITS, PRICE_PLACES, Symbol

QUANTITY_DIGITS = 20
QUANTITY_PLACES = 8


class Side(models.TextChoices):
    BUY = "buy"
    SELL = "sell"


class Quote(models.Model):
    # Random and stored server-side: a client cannot invent or alter a quote, only
    # present the id of one it was given.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="quotes")
    symbol = models.ForeignKey(Symbol, on_delete=models.PROTECT, related_name="quotes")
    side = models.CharField(max_length=4, choices=Side.choices)
    quantity = models.DecimalField(max_digits=QUANTITY_DIGITS, decimal_places=QUANTITY_PLACES)
    price = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES)
    # The cash that moves: a buy's cost rounded up to the cent, a sale's proceeds down.
    notional = models.DecimalField(max_digits=CASH_DIGITS, decimal_places=CASH_PLACES)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)


class Trade(models.Model):
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="trades")
    # One-to-one: the database itself refuses a second trade from the same quote.
    quote = models.OneToOneField(Quote, on_delete=models.PROTECT, related_name="trade")
    symbol = models.ForeignKey(Symbol, on_delete=models.PROTECT, related_name="trades")
    side = models.CharField(max_length=4, choices=Side.choices)
    quantity = models.DecimalField(max_digits=QUANTITY_DIGITS, decimal_places=QUANTITY_PLACES)
    price = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES)
    notional = models.DecimalField(max_digits=CASH_DIGITS, decimal_places=CASH_PLACES)
    realized_pnl = models.DecimalField(
        max_digits=CASH_DIGITS, decimal_places=CASH_PLACES, default=Decimal("0.00")
    )
    executed_at = models.DateTimeField(auto_now_add=True)


class Holding(models.Model):
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="holdings")
    symbol = models.ForeignKey(Symbol, on_delete=models.PROTECT, related_name="holdings")
    quantity = models.DecimalField(max_digits=QUANTITY_DIGITS, decimal_places=QUANTITY_PLACES)
    # Average-cost method: what the current quantity cost in total.
    cost_basis = models.DecimalField(max_digits=CASH_DIGITS, decimal_places=CASH_PLACES)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "symbol"], name="holding_account_symbol"),
            models.CheckConstraint(
                condition=models.Q(quantity__gte=0), name="holding_quantity_gte_0"
            ),
            models.CheckConstraint(
                condition=models.Q(cost_basis__gte=0), name="holding_cost_basis_gte_0"
            ),
        ]
