"""Stripe's side of an account: its customer ids, subscriptions, and every webhook
event received (the idempotency ledger). docs/tradesim.md ("Billing") has the rules."""

from __future__ import annotations

from django.db import models

from tradesim.accounts.models import Account

STRIPE_ID_LENGTH = 255


class StripeCustomer(models.Model):
    """Links a Stripe customer (cus_...) to an account.

    Written when a checkout creates the customer, and by `customer.subscription.created`
    (from the subscription's metadata.user_id) for a customer made anywhere else.
    """

    id = models.CharField(max_length=STRIPE_ID_LENGTH, primary_key=True)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="stripe_customers")
    created_at = models.DateTimeField(auto_now_add=True)


class Subscription(models.Model):
    """One Stripe subscription, as far as the webhook events have told us.

    `status_at` is the `created` time (Unix seconds) of the event that last set
    `status`; an event older than that is stale and does not move the status back.
    `canceled` is final. `paid_through` only grows: the latest period end any paid
    invoice covered, whatever order the invoices arrived in.
    """

    INCOMPLETE = "incomplete"  # known (subscription.created), no invoice paid yet
    ACTIVE = "active"
    PAST_DUE = "past_due"
    CANCELED = "canceled"
    STATUSES = (
        (INCOMPLETE, "incomplete"),
        (ACTIVE, "active"),
        (PAST_DUE, "past due"),
        (CANCELED, "canceled"),
    )

    id = models.CharField(max_length=STRIPE_ID_LENGTH, primary_key=True)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="subscriptions")
    customer_id = models.CharField(max_length=STRIPE_ID_LENGTH)
    status = models.CharField(max_length=16, choices=STATUSES, default=INCOMPLETE)
    status_at = models.BigIntegerField(default=0)
    paid_through = models.BigIntegerField(null=True, blank=True)
    last_paid_invoice = models.CharField(max_length=STRIPE_ID_LENGTH, blank=True)
    canceled_at = models.BigIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    @property
    def entitles_pro(self) -> bool:
        """Pro while some invoice of it was paid and it has not been deleted."""
        return self.paid_through is not None and self.status != self.CANCELED


class WebhookEvent(models.Model):
    """Every event ever accepted, by Stripe's event id: a replay finds its row and is
    a no-op. An event for a customer not linked yet is kept whole (`deferred`) and
    applied when the link arrives."""

    id = models.CharField(max_length=STRIPE_ID_LENGTH, primary_key=True)
    type = models.CharField(max_length=100)
    created = models.BigIntegerField()  # Stripe's Unix timestamp of the event
    customer_id = models.CharField(max_length=STRIPE_ID_LENGTH, blank=True, db_index=True)
    outcome = models.CharField(max_length=64)
    deferred = models.BooleanField(default=False)
    payload = models.JSONField(null=True, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
    applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["customer_id", "created"],
                name="billing_deferred",
                condition=models.Q(deferred=True),
            )
        ]
