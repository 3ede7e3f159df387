"""What each Stripe webhook event does to an account. No HTTP and no signature here:
views.py verifies and parses; this applies.

The rules:

* `invoice.paid` is the single source of truth for the tier: it is the only event
  that makes an account pro. It marks its subscription active and extends
  `paid_through` to the invoice's period end.
* `customer.subscription.created` only links the Stripe customer to the user (from
  the subscription's `metadata.user_id`). It never changes the tier, whatever
  status the subscription says it has.
* `invoice.payment_failed` returns early for a free-tier account; otherwise it marks
  the subscription past due (the account stays pro while Stripe retries).
* `customer.subscription.deleted` cancels the subscription, for good; an account
  with no other paid, live subscription returns to free.

Ordering. Stripe does not deliver events in order, so:

* a subscription's status moves only for an event whose `created` is not older than
  the event that last set it (`status_at`); equal times apply in arrival order;
* `canceled` is final: a late `invoice.paid` or `invoice.payment_failed` for a
  deleted subscription changes nothing;
* `paid_through` only grows (the largest period end of any paid invoice);
* the tier is recomputed from all of the account's subscriptions after every event:
  pro exactly when one of them has a paid invoice and is not canceled.

Idempotency: every event id is stored in the transaction that applies it; a replay
finds the row and changes nothing. An event for a customer that is not linked to a
user yet is stored whole and applied when the link arrives, in `created` order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from tradesim.accounts.models import Account
from tradesim.billing.models import StripeCustomer, Subscription, WebhookEvent

log = logging.getLogger("tradesim.billing")

INVOICE_PAID = "invoice.paid"
INVOICE_PAYMENT_FAILED = "invoice.payment_failed"
SUBSCRIPTION_CREATED = "customer.subscription.created"
SUBSCRIPTION_DELETED = "customer.subscription.deleted"
HANDLED = (INVOICE_PAID, INVOICE_PAYMENT_FAILED, SUBSCRIPTION_CREATED, SUBSCRIPTION_DELETED)

MAX_ID = 255


class InvalidEvent(ValueError):
    """The payload is signed but is not an event this endpoint can read."""


@dataclass(frozen=True)
class StripeEvent:
    id: str
    type: str
    created: int
    object: Mapping[str, Any]
    raw: Mapping[str, Any]


@dataclass(frozen=True)
class Result:
    duplicate: bool
    outcome: str


def parse_event(data: Any) -> StripeEvent:
    if not isinstance(data, dict):
        raise InvalidEvent("the event must be a JSON object")
    event_id, kind, created = data.get("id"), data.get("type"), data.get("created")
    if not isinstance(event_id, str) or not 0 < len(event_id) <= MAX_ID:
        raise InvalidEvent("'id' must be the event id, a string")
    if not isinstance(kind, str) or not 0 < len(kind) <= 100:
        raise InvalidEvent("'type' must be a string")
    if isinstance(created, bool) or not isinstance(created, int) or created < 0:
        raise InvalidEvent("'created' must be a Unix timestamp")
    body = data.get("data")
    obj = body.get("object") if isinstance(body, dict) else None
    if not isinstance(obj, dict):
        raise InvalidEvent("'data.object' must be an object")
    return StripeEvent(id=event_id, type=kind, created=created, object=obj, raw=data)


def _id_of(value: Any) -> str | None:
    """A Stripe reference: an id string, or an expanded object with an id."""
    if isinstance(value, dict):
        value = value.get("id")
    if isinstance(value, str) and 0 < len(value) <= MAX_ID:
        return value
    return None


def _customer_of(obj: Mapping[str, Any]) -> str | None:
    return _id_of(obj.get("customer"))


def _invoice_subscription(invoice: Mapping[str, Any]) -> str | None:
    """Since API version 2025-03-31 an invoice names its subscription under
    parent.subscription_details; before, as a top-level `subscription`."""
    parent = invoice.get("parent")
    if isinstance(parent, dict):
        details = parent.get("subscription_details")
        if isinstance(details, dict) and _id_of(details.get("subscription")):
            return _id_of(details.get("subscription"))
    return _id_of(invoice.get("subscription"))


def _invoice_period_end(invoice: Mapping[str, Any], fallback: int) -> int:
    """The end of the service period the invoice paid for: the latest line period
    end (an invoice's own period_end is the previous period for subscriptions)."""
    ends: list[int] = []
    lines = invoice.get("lines")
    rows = lines.get("data") if isinstance(lines, dict) else None
    for line in rows if isinstance(rows, list) else []:
        period = line.get("period") if isinstance(line, dict) else None
        end = period.get("end") if isinstance(period, dict) else None
        if isinstance(end, int) and not isinstance(end, bool):
            ends.append(end)
    if ends:
        return max(ends)
    end = invoice.get("period_end")
    return end if isinstance(end, int) and not isinstance(end, bool) else fallback


def _user_id_of(subscription: Mapping[str, Any]) -> int | None:
    metadata = subscription.get("metadata")
    raw = metadata.get("user_id") if isinstance(metadata, dict) else None
    if isinstance(raw, str) and raw.isdigit():
        return int(raw)
    return None


def _subscription(sub_id: str, customer: str, account: Account) -> Subscription:
    row, _ = Subscription.objects.select_for_update().get_or_create(
        id=sub_id, defaults={"account": account, "customer_id": customer}
    )
    return row


def recompute_tier(account: Account) -> str:
    subscriptions = Subscription.objects.filter(account=account)
    tier = Account.TIER_PRO if any(s.entitles_pro for s in subscriptions) else Account.TIER_FREE
    if account.tier != tier:
        log.info("account %s: tier %s -> %s", account.pk, account.tier, tier)
        account.tier = tier
        account.save(update_fields=["tier"])
    return tier


# --- the rules, each run with the account row locked -------------------------------


def _invoice_paid(event: StripeEvent, account: Account, customer: str) -> str:
    sub_id = _invoice_subscription(event.object)
    if sub_id is None:
        return "ignored_not_a_subscription_invoice"
    sub = _subscription(sub_id, customer, account)
    period_end = _invoice_period_end(event.object, event.created)
    if sub.paid_through is None or period_end > sub.paid_through:
        sub.paid_through = period_end
        sub.last_paid_invoice = _id_of(event.object.get("id")) or ""
    if sub.status == Subscription.CANCELED:
        outcome = "recorded_subscription_canceled"
    elif event.created >= sub.status_at:
        sub.status = Subscription.ACTIVE
        sub.status_at = event.created
        outcome = "active"
    else:
        outcome = "recorded_status_newer"
    sub.save()
    return f"{outcome};tier={recompute_tier(account)}"


def _invoice_payment_failed(event: StripeEvent, account: Account, customer: str) -> str:
    if account.tier == Account.TIER_FREE:
        return "ignored_free_tier"
    sub_id = _invoice_subscription(event.object)
    if sub_id is None:
        return "ignored_not_a_subscription_invoice"
    sub = _subscription(sub_id, customer, account)
    if sub.status == Subscription.CANCELED:
        return "ignored_subscription_canceled"
    if event.created < sub.status_at:
        return "ignored_status_newer"
    sub.status = Subscription.PAST_DUE
    sub.status_at = event.created
    sub.save()
    return "past_due"


def _subscription_deleted(event: StripeEvent, account: Account, customer: str) -> str:
    sub_id = _id_of(event.object.get("id"))
    if sub_id is None:
        raise InvalidEvent("a subscription event needs data.object.id")
    sub = _subscription(sub_id, customer, account)
    sub.status = Subscription.CANCELED
    sub.status_at = max(sub.status_at, event.created)
    sub.canceled_at = event.created
    sub.save()
    return f"canceled;tier={recompute_tier(account)}"


def _subscription_created(event: StripeEvent, account: Account, customer: str) -> str:
    # The link itself is made before this runs (see _apply); all that is left is to
    # know the subscription, which changes no tier.
    sub_id = _id_of(event.object.get("id"))
    if sub_id is None:
        raise InvalidEvent("a subscription event needs data.object.id")
    _subscription(sub_id, customer, account)
    return "linked"


Rule = Callable[[StripeEvent, Account, str], str]
RULES: dict[str, Rule] = {
    INVOICE_PAID: _invoice_paid,
    INVOICE_PAYMENT_FAILED: _invoice_payment_failed,
    SUBSCRIPTION_CREATED: _subscription_created,
    SUBSCRIPTION_DELETED: _subscription_deleted,
}


def link_customer(customer: str, account: Account) -> StripeCustomer:
    """Links a customer to an account (a customer already linked keeps its account)
    and applies the events that were waiting for it. Call inside a transaction."""
    link, created = StripeCustomer.objects.get_or_create(id=customer, defaults={"account": account})
    if link.account_id != account.pk:
        log.warning(
            "customer %s is linked to account %s; not relinking it to %s",
            customer,
            link.account_id,
            account.pk,
        )
    if created:
        _apply_deferred(customer)
    return link


def _apply_deferred(customer: str) -> None:
    waiting = WebhookEvent.objects.select_for_update().filter(customer_id=customer, deferred=True)
    for row in waiting.order_by("created", "received_at"):
        assert row.payload is not None
        event = parse_event(row.payload)
        row.outcome = f"late:{_apply(event)}"[:64]
        row.deferred = False
        row.payload = None
        row.applied_at = timezone.now()
        row.save(update_fields=["outcome", "deferred", "payload", "applied_at"])


def _apply(event: StripeEvent) -> str:
    """Applies one event; returns its outcome ("deferred" if its customer is unknown)."""
    rule = RULES.get(event.type)
    if rule is None:
        return "ignored_type"
    customer = _customer_of(event.object)
    if customer is None:
        return "ignored_no_customer"
    link = StripeCustomer.objects.filter(id=customer).first()
    if link is None and event.type == SUBSCRIPTION_CREATED:
        user_id = _user_id_of(event.object)
        owner = Account.objects.filter(user_id=user_id).first() if user_id is not None else None
        if owner is not None:
            # Link first, so the rule below and any events waiting for this customer
            # see it; the waiting ones are applied after this event's own rule.
            link = StripeCustomer.objects.create(id=customer, account=owner)
            account = Account.objects.select_for_update().get(pk=owner.pk)
            outcome = rule(event, account, customer)
            _apply_deferred(customer)
            return outcome
    if link is None:
        return "deferred"
    account = Account.objects.select_for_update().get(pk=link.account_id)
    return rule(event, account, customer)


def handle(event: StripeEvent) -> Result:
    """Applies an event exactly once; a replay (same id) is a no-op."""
    existing = WebhookEvent.objects.filter(id=event.id).first()
    if existing is not None:
        return Result(duplicate=True, outcome=existing.outcome)
    try:
        with transaction.atomic():
            # The ledger row first: a concurrent delivery of the same event blocks on
            # it (PostgreSQL) or waits for the write lock (SQLite), then fails here.
            row = WebhookEvent.objects.create(
                id=event.id,
                type=event.type,
                created=event.created,
                customer_id=_customer_of(event.object) or "",
                outcome="applying",
            )
            outcome = _apply(event)
            row.outcome = outcome[:64]
            if outcome == "deferred":
                row.deferred = True
                row.payload = dict(event.raw)
            else:
                row.applied_at = timezone.now()
            row.save()
    except IntegrityError:
        existing = WebhookEvent.objects.filter(id=event.id).first()
        if existing is None:
            raise
        return Result(duplicate=True, outcome=existing.outcome)
    log.info("stripe event %s %s: %s", event.id, event.type, outcome)
    return Result(duplicate=False, outcome=outcome)
