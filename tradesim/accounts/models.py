"""A user's trading account (cash, tier) and the server-side state of their sessions."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models

# Cash is in the quote currency (USDT), kept to the cent.
CASH_PLACES = 2
CASH_DIGITS = 20


class Account(models.Model):
    TIER_FREE = "free"
    TIER_PRO = "pro"
    TIERS = ((TIER_FREE, "Free"), (TIER_PRO, "Pro"))

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="account"
    )
    tier = models.CharField(max_length=16, choices=TIERS, default=TIER_FREE)
    cash = models.DecimalField(max_digits=CASH_DIGITS, decimal_places=CASH_PLACES)
    # Gains and losses already taken by sales; unrealised P&L is computed live.
    realized_pnl = models.DecimalField(
        max_digits=CASH_DIGITS, decimal_places=CASH_PLACES, default=Decimal("0.00")
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # The last line of defence against an overspend: the database itself
            # refuses a negative balance.
            models.CheckConstraint(condition=models.Q(cash__gte=0), name="account_cash_gte_0"),
        ]

    def __str__(self) -> str:
        return f"account of user {self.user_id}"


class TokenFamily(models.Model):
    """One login session: all the refresh tokens that descend from one login.

    Revoking it (logout, or a refresh token used twice) ends the session and, because
    access tokens carry its id and are checked against it, their access tokens too.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="token_families"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_reason = models.CharField(max_length=64, blank=True)


class RefreshToken(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    family = models.ForeignKey(TokenFamily, on_delete=models.CASCADE, related_name="tokens")
    issued_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    # Set when this token is exchanged for the next one; presenting it again after
    # that is reuse, the signature of a stolen token.
    used_at = models.DateTimeField(null=True, blank=True)
