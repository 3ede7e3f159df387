"""Stripe billing: the webhook's signature check and its rules (each one, replays, and
events out of order), the checkout through the real stripe client against a local
Stripe, and what the pro tier unlocks."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test import Client, override_settings
from django.utils import timezone

from tests.tradesim.fake_stripe import (
    FakeStripe,
    event,
    invoice_object,
    new_id,
    signature_header,
    subscription_object,
)
from tests.tradesim.helpers import Api, error_of
from tradesim.accounts.models import Account
from tradesim.billing import rules
from tradesim.billing.config import BillingConfig, load_billing_config
from tradesim.billing.models import StripeCustomer, Subscription, WebhookEvent
from tradesim.env import Env
from tradesim.market.models import Symbol
from tradesim.trading.models import Holding

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as Response

pytestmark = pytest.mark.django_db

WHSEC = "whsec_test_0123456789abcdef"
PRICE = "price_test_pro"
T0 = 1_700_000_000  # event times: Stripe's `created`, not the signing time


@pytest.fixture
def billing() -> Iterator[BillingConfig]:
    config = dataclasses.replace(settings.BILLING, webhook_secret=WHSEC, webhook_tolerance=300)
    with override_settings(BILLING=config):
        yield config


@pytest.fixture
def user() -> Api:
    api = Api()
    assert api.register("payer").status_code == 201
    return api


def account() -> Account:
    return Account.objects.get(user__username="payer")


def deliver(
    evt: dict[str, Any],
    *,
    secret: str = WHSEC,
    timestamp: int | None = None,
    header: str | None = None,
    body: str | None = None,
) -> Response:
    """POSTs an event as Stripe does; the client enforces CSRF, as a browser's would."""
    payload = json.dumps(evt) if body is None else body
    signed = signature_header(payload, secret, timestamp) if header is None else header
    headers = {"Stripe-Signature": signed} if signed else {}
    client = Client(enforce_csrf_checks=True)
    return client.post("/stripe/webhook", payload, content_type="application/json", headers=headers)


class StripeWorld:
    """One customer with one subscription, and the events Stripe sends about it."""

    def __init__(self, owner: Account, *, link: bool = True) -> None:
        self.account = owner
        self.user_id = str(owner.user_id)
        self.customer = new_id("cus")
        self.sub = new_id("sub")
        if link:  # as a checkout does: the customer is created and linked up front
            StripeCustomer.objects.create(id=self.customer, account=owner)

    def created(self, at: int, *, metadata: bool = True) -> dict[str, Any]:
        obj = subscription_object(
            self.sub, self.customer, PRICE, user_id=self.user_id if metadata else None, start=at
        )
        return event("customer.subscription.created", obj, at)

    def paid(self, at: int, *, period_start: int | None = None) -> dict[str, Any]:
        obj = invoice_object(
            self.sub,
            self.customer,
            PRICE,
            period_start=at if period_start is None else period_start,
        )
        return event("invoice.paid", obj, at)

    def failed(self, at: int) -> dict[str, Any]:
        obj = invoice_object(self.sub, self.customer, PRICE, period_start=at, status="open")
        return event("invoice.payment_failed", obj, at)

    def deleted(self, at: int) -> dict[str, Any]:
        obj = subscription_object(
            self.sub, self.customer, PRICE, user_id=self.user_id, status="canceled", start=at
        )
        return event("customer.subscription.deleted", obj, at)

    def subscription(self) -> Subscription:
        return Subscription.objects.get(id=self.sub)


def ok(response: Response) -> dict[str, Any]:
    assert response.status_code == 200, response.content
    body: dict[str, Any] = response.json()
    assert body["received"] is True
    return body


def tier() -> str:
    return account().tier


# --- the signature -----------------------------------------------------------------


def test_a_signed_event_is_accepted_without_a_csrf_token(billing: BillingConfig, user: Api) -> None:
    body = ok(deliver(event("customer.created", {"id": new_id("cus"), "object": "customer"})))
    assert body["outcome"] == "ignored_type" and body["duplicate"] is False
    assert WebhookEvent.objects.filter(id=body["id"]).exists()


@pytest.mark.parametrize(
    "case",
    ["missing", "wrong_secret", "stale", "tampered", "garbage_header", "not_v1"],
)
def test_a_bad_signature_is_refused_and_changes_nothing(
    billing: BillingConfig, user: Api, case: str
) -> None:
    world = StripeWorld(account())
    evt = world.paid(T0)
    payload = json.dumps(evt)
    kwargs: dict[str, Any] = {}
    if case == "missing":
        kwargs["header"] = ""
    elif case == "wrong_secret":
        kwargs["secret"] = "whsec_someone_else"
    elif case == "stale":
        kwargs["timestamp"] = int(time.time()) - 301
    elif case == "tampered":
        header = signature_header(payload, WHSEC)
        kwargs.update(header=header, body=payload.replace(PRICE, "price_free_lunch"))
    elif case == "garbage_header":
        kwargs["header"] = "t=oops,v1=zz"
    elif case == "not_v1":
        header = signature_header(payload, WHSEC)
        kwargs["header"] = header.replace("v1=", "v0=")
    response = deliver(evt, **kwargs)
    assert response.status_code == 400, response.content
    assert error_of(response) == "signature_invalid"
    assert tier() == Account.TIER_FREE
    assert not WebhookEvent.objects.exists() and not Subscription.objects.exists()


def test_without_a_webhook_secret_the_endpoint_is_unavailable(user: Api) -> None:
    config = dataclasses.replace(settings.BILLING, webhook_secret=None)
    with override_settings(BILLING=config):
        response = deliver(event("invoice.paid", {"id": "in_1"}))
    assert response.status_code == 503 and error_of(response) == "billing_unavailable"


def test_only_post(billing: BillingConfig) -> None:
    response = Client().get("/stripe/webhook")
    assert response.status_code == 405 and error_of(response) == "method_not_allowed"


@pytest.mark.parametrize(
    "payload",
    [
        "not json",
        "[]",
        json.dumps({"id": "evt_1", "type": "invoice.paid", "created": "yesterday", "data": {}}),
        json.dumps({"id": "evt_1", "type": "invoice.paid", "created": 1, "data": {"object": 1}}),
        json.dumps({"type": "invoice.paid", "created": 1, "data": {"object": {}}}),
    ],
)
def test_a_signed_body_that_is_not_an_event_is_refused(
    billing: BillingConfig, payload: str
) -> None:
    response = deliver({}, body=payload)
    assert response.status_code == 400 and error_of(response) == "invalid_event"
    assert not WebhookEvent.objects.exists()


# --- the rules -------------------------------------------------------------------------


def test_invoice_paid_makes_the_account_pro(billing: BillingConfig, user: Api) -> None:
    world = StripeWorld(account())
    body = ok(deliver(world.paid(T0)))
    assert body["outcome"] == "active;tier=pro"
    assert tier() == Account.TIER_PRO
    sub = world.subscription()
    assert sub.status == Subscription.ACTIVE and sub.paid_through == T0 + 30 * 24 * 3600
    me = user.get("/api/me").json()
    assert me["tier"] == "pro"


def test_subscription_created_only_links_the_customer(billing: BillingConfig, user: Api) -> None:
    world = StripeWorld(account(), link=False)
    evt = world.created(T0)
    assert evt["data"]["object"]["status"] == "active"  # says active; still not the tier
    body = ok(deliver(evt))
    assert body["outcome"] == "linked"
    assert StripeCustomer.objects.get(id=world.customer).account == account()
    assert tier() == Account.TIER_FREE
    assert world.subscription().status == Subscription.INCOMPLETE


def test_subscription_created_for_an_unknown_user_links_nothing(billing: BillingConfig) -> None:
    world_owner = Account(user_id=999_999)
    world = StripeWorld(world_owner, link=False)
    body = ok(deliver(world.created(T0)))
    assert body["outcome"] == "deferred"
    assert not StripeCustomer.objects.exists()


def test_payment_failed_returns_early_for_a_free_account(billing: BillingConfig, user: Api) -> None:
    world = StripeWorld(account())
    body = ok(deliver(world.failed(T0)))
    assert body["outcome"] == "ignored_free_tier"
    assert tier() == Account.TIER_FREE
    assert not Subscription.objects.exists()


def test_payment_failed_marks_a_pro_subscription_past_due(
    billing: BillingConfig, user: Api
) -> None:
    world = StripeWorld(account())
    ok(deliver(world.paid(T0)))
    body = ok(deliver(world.failed(T0 + 100)))
    assert body["outcome"] == "past_due"
    assert world.subscription().status == Subscription.PAST_DUE
    assert tier() == Account.TIER_PRO  # Stripe is retrying; only invoice.paid/deleted move the tier
    # A retry that succeeds makes it active again.
    ok(deliver(world.paid(T0 + 200)))
    assert world.subscription().status == Subscription.ACTIVE


def test_subscription_deleted_returns_the_account_to_free(
    billing: BillingConfig, user: Api
) -> None:
    world = StripeWorld(account())
    ok(deliver(world.paid(T0)))
    body = ok(deliver(world.deleted(T0 + 100)))
    assert body["outcome"] == "canceled;tier=free"
    assert tier() == Account.TIER_FREE
    assert world.subscription().status == Subscription.CANCELED


def test_an_event_for_a_customer_nobody_knows_waits_for_the_link(
    billing: BillingConfig, user: Api
) -> None:
    # The customer was made outside our checkout, and invoice.paid overtook
    # customer.subscription.created: nothing to apply it to yet.
    world = StripeWorld(account(), link=False)
    paid = world.paid(T0 + 1)
    assert ok(deliver(paid))["outcome"] == "deferred"
    assert tier() == Account.TIER_FREE
    assert ok(deliver(world.created(T0)))["outcome"] == "linked"
    assert tier() == Account.TIER_PRO
    row = WebhookEvent.objects.get(id=paid["id"])
    assert not row.deferred and row.payload is None and row.outcome.startswith("late:active")


def test_unknown_event_types_are_recorded_and_ignored(billing: BillingConfig, user: Api) -> None:
    world = StripeWorld(account())
    for kind in ("customer.subscription.updated", "invoice.finalized", "charge.succeeded"):
        assert (
            ok(deliver(event(kind, {"id": new_id("x"), "customer": world.customer})))["outcome"]
            == "ignored_type"
        )
    assert tier() == Account.TIER_FREE


# --- idempotency -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["paid", "failed", "deleted", "created"])
def test_a_replayed_event_is_a_200_no_op(billing: BillingConfig, user: Api, kind: str) -> None:
    world = StripeWorld(account())
    ok(deliver(world.paid(T0)))
    evt = getattr(world, kind)(T0 + 10)
    first = ok(deliver(evt))
    snapshot = (tier(), world.subscription().status, world.subscription().paid_through)
    for _ in range(2):
        again = ok(deliver(evt))
        assert again["duplicate"] is True and again["outcome"] == first["outcome"]
    assert (tier(), world.subscription().status, world.subscription().paid_through) == snapshot
    assert WebhookEvent.objects.filter(id=evt["id"]).count() == 1


def test_a_replayed_invoice_paid_cannot_undo_a_cancellation(
    billing: BillingConfig, user: Api
) -> None:
    world = StripeWorld(account())
    paid = world.paid(T0)
    ok(deliver(paid))
    ok(deliver(world.deleted(T0 + 100)))
    assert ok(deliver(paid))["duplicate"] is True
    assert tier() == Account.TIER_FREE


# --- out of order ------------------------------------------------------------------------


def test_a_late_invoice_paid_does_not_revive_a_deleted_subscription(
    billing: BillingConfig, user: Api
) -> None:
    world = StripeWorld(account())
    ok(deliver(world.deleted(T0 + 100)))
    body = ok(deliver(world.paid(T0)))  # older, arrives after
    assert body["outcome"] == "recorded_subscription_canceled;tier=free"
    assert tier() == Account.TIER_FREE
    assert world.subscription().status == Subscription.CANCELED


def test_an_older_invoice_paid_does_not_clear_a_newer_failure(
    billing: BillingConfig, user: Api
) -> None:
    world = StripeWorld(account())
    ok(deliver(world.paid(T0)))
    ok(deliver(world.failed(T0 + 200)))
    body = ok(deliver(world.paid(T0 + 100, period_start=T0 + 100)))  # older than the failure
    assert body["outcome"] == "recorded_status_newer;tier=pro"
    sub = world.subscription()
    assert sub.status == Subscription.PAST_DUE
    assert sub.paid_through == T0 + 100 + 30 * 24 * 3600  # the payment itself still counts


def test_an_older_failure_does_not_override_a_newer_payment(
    billing: BillingConfig, user: Api
) -> None:
    world = StripeWorld(account())
    ok(deliver(world.paid(T0 + 200)))
    assert ok(deliver(world.failed(T0 + 100)))["outcome"] == "ignored_status_newer"
    assert world.subscription().status == Subscription.ACTIVE
    assert tier() == Account.TIER_PRO


def test_paid_through_only_grows(billing: BillingConfig, user: Api) -> None:
    world = StripeWorld(account())
    month = 30 * 24 * 3600
    ok(deliver(world.paid(T0 + month, period_start=T0 + month)))
    ok(deliver(world.paid(T0, period_start=T0)))
    assert world.subscription().paid_through == T0 + 2 * month


def test_subscription_created_after_invoice_paid_keeps_the_tier(
    billing: BillingConfig, user: Api
) -> None:
    world = StripeWorld(account())
    ok(deliver(world.paid(T0 + 1)))
    ok(deliver(world.created(T0)))
    assert tier() == Account.TIER_PRO
    assert world.subscription().status == Subscription.ACTIVE


@pytest.mark.parametrize(
    "order",
    [
        ("created", "paid", "deleted"),
        ("deleted", "paid", "created"),
        ("paid", "deleted", "created"),
        ("deleted", "created", "paid"),
    ],
)
def test_every_arrival_order_of_a_whole_life_ends_free(
    billing: BillingConfig, user: Api, order: tuple[str, ...]
) -> None:
    world = StripeWorld(account())
    events = {
        "created": world.created(T0),
        "paid": world.paid(T0),
        "deleted": world.deleted(T0 + 50),
    }
    for name in order:
        ok(deliver(events[name]))
    assert tier() == Account.TIER_FREE
    assert world.subscription().status == Subscription.CANCELED


def test_a_second_live_subscription_keeps_pro_when_the_first_is_deleted(
    billing: BillingConfig, user: Api
) -> None:
    first = StripeWorld(account())
    second = StripeWorld(account())
    ok(deliver(first.paid(T0)))
    ok(deliver(second.paid(T0 + 10)))
    assert ok(deliver(first.deleted(T0 + 20)))["outcome"] == "canceled;tier=pro"
    assert tier() == Account.TIER_PRO
    ok(deliver(second.deleted(T0 + 30)))
    assert tier() == Account.TIER_FREE


# --- checkout through the stripe client ----------------------------------------------------


@pytest.fixture
def stripe_server() -> Iterator[FakeStripe]:
    with FakeStripe(prices=(PRICE,)) as server:
        yield server


@pytest.fixture
def checkout_billing(stripe_server: FakeStripe) -> Iterator[BillingConfig]:
    config = dataclasses.replace(
        settings.BILLING,
        api_base=stripe_server.url,
        secret_key=stripe_server.secret_key,
        price_pro=PRICE,
        webhook_secret=stripe_server.webhook_secret,
        public_url=None,
    )
    with override_settings(BILLING=config):
        yield config


def test_checkout_creates_a_session_through_the_stripe_client(
    checkout_billing: BillingConfig, stripe_server: FakeStripe, user: Api
) -> None:
    response = user.post("/api/billing/checkout")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["id"].startswith("cs_test_")
    assert body["url"] == f"{stripe_server.url}/checkout/{body['id']}"
    (customer_call, session_call) = stripe_server.requests
    assert customer_call[:2] == ("POST", "/v1/customers")
    user_id = str(account().user_id)
    assert customer_call[2]["metadata"] == {"user_id": user_id, "username": "payer"}
    assert session_call[:2] == ("POST", "/v1/checkout/sessions")
    params = session_call[2]
    customer = StripeCustomer.objects.get(account=account()).id
    assert params["customer"] == customer
    assert params["mode"] == "subscription"
    assert params["line_items"] == [{"price": PRICE, "quantity": "1"}]
    assert params["client_reference_id"] == user_id
    assert params["subscription_data"] == {"metadata": {"user_id": user_id}}
    assert params["success_url"].startswith("http://testserver/billing?checkout=success")
    assert params["cancel_url"] == "http://testserver/billing?checkout=canceled"
    # A second checkout reuses the customer.
    assert user.post("/api/billing/checkout").status_code == 200
    assert [call[1] for call in stripe_server.requests].count("/v1/customers") == 1


def test_paying_at_checkout_makes_the_account_pro(
    checkout_billing: BillingConfig, stripe_server: FakeStripe, user: Api
) -> None:
    session = user.post("/api/billing/checkout").json()
    for evt in stripe_server.complete(session["id"]):
        payload = json.dumps(evt)
        ok(deliver(evt, secret=stripe_server.webhook_secret, body=payload))
    assert tier() == Account.TIER_PRO
    body = user.get("/api/billing").json()
    assert body["tier"] == "pro" and body["subscription"]["status"] == "active"
    assert user.post("/api/billing/checkout").status_code == 409


def test_checkout_with_a_bad_key_is_a_provider_error(
    checkout_billing: BillingConfig, stripe_server: FakeStripe, user: Api
) -> None:
    config = dataclasses.replace(checkout_billing, secret_key="sk_test_wrong")
    with override_settings(BILLING=config):
        response = user.post("/api/billing/checkout")
    assert response.status_code == 502 and error_of(response) == "payment_provider_error"
    assert "Invalid API Key" in response.json()["detail"]


def test_checkout_with_an_unknown_price_is_a_provider_error(
    checkout_billing: BillingConfig, user: Api
) -> None:
    with override_settings(BILLING=dataclasses.replace(checkout_billing, price_pro="price_nope")):
        response = user.post("/api/billing/checkout")
    assert response.status_code == 502 and "No such price" in response.json()["detail"]


def test_checkout_without_stripe_configured_is_unavailable(user: Api) -> None:
    config = dataclasses.replace(settings.BILLING, secret_key=None, price_pro=None)
    with override_settings(BILLING=config):
        response = user.post("/api/billing/checkout")
        assert user.get("/api/billing").json()["checkout_enabled"] is False
    assert response.status_code == 503 and error_of(response) == "billing_unavailable"


def test_checkout_needs_a_login_and_csrf(checkout_billing: BillingConfig, user: Api) -> None:
    assert error_of(Api().post("/api/billing/checkout")) == "not_authenticated"
    response = user.post("/api/billing/checkout", csrf=False)
    assert response.status_code == 403 and error_of(response) == "csrf_failed"


def test_billing_says_what_each_plan_gives(user: Api) -> None:
    body = user.get("/api/billing").json()
    assert body["tier"] == "free" and body["subscription"] is None
    assert body["free_symbols"] == ["BTCUSDT", "ETHUSDT"]
    assert [plan["tier"] for plan in body["plans"]] == ["free", "pro"]


# --- what pro unlocks ------------------------------------------------------------------


def set_price(symbol: str, price: str) -> None:
    Symbol.objects.filter(name=symbol).update(
        last_price=Decimal(price), last_trade_at=timezone.now()
    )


def quote(api: Api, symbol: str, side: str, quantity: str) -> Response:
    return api.post("/api/quotes", {"symbol": symbol, "side": side, "quantity": quantity})


def test_free_accounts_buy_the_free_markets_only(user: Api) -> None:
    set_price("BTCUSDT", "50000")
    set_price("SOLUSDT", "150")
    assert quote(user, "BTCUSDT", "buy", "0.01").status_code == 201
    response = quote(user, "solusdt", "buy", "1")
    assert response.status_code == 403 and error_of(response) == "pro_required"
    assert "pro plan" in response.json()["detail"]


def test_pro_accounts_buy_every_market_and_anyone_can_sell(user: Api) -> None:
    set_price("SOLUSDT", "150")
    Account.objects.filter(pk=account().pk).update(tier=Account.TIER_PRO)
    response = quote(user, "SOLUSDT", "buy", "2")
    assert response.status_code == 201
    assert user.post("/api/trades", {"quote_id": response.json()["id"]}).status_code == 201
    # Back to free: the position can still be closed.
    Account.objects.filter(pk=account().pk).update(tier=Account.TIER_FREE)
    assert quote(user, "SOLUSDT", "buy", "1").status_code == 403
    sale = quote(user, "SOLUSDT", "sell", "2")
    assert sale.status_code == 201
    assert user.post("/api/trades", {"quote_id": sale.json()["id"]}).status_code == 201
    assert not Holding.objects.exists()


# --- configuration ---------------------------------------------------------------------


def test_billing_configuration_from_the_environment() -> None:
    config = load_billing_config(
        Env(
            {
                "STRIPE_API_BASE": "http://127.0.0.1:12111/",
                "STRIPE_SECRET_KEY": "sk_test_1",
                "STRIPE_PRICE_PRO": "price_1",
                "STRIPE_WEBHOOK_SECRET": "whsec_1",
                "TRADESIM_FREE_SYMBOLS": "btcusdt",
            }
        )
    )
    assert config.api_base == "http://127.0.0.1:12111"
    assert config.checkout_enabled and config.webhook_enabled
    assert config.free_symbols == ("BTCUSDT",)
    defaults = load_billing_config(Env({}))
    assert defaults.api_base == "https://api.stripe.com"
    assert not defaults.checkout_enabled and not defaults.webhook_enabled


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"STRIPE_SECRET_KEY": "sk_test_1"}, "STRIPE_PRICE_PRO"),
        ({"STRIPE_API_BASE": "ftp://example"}, "STRIPE_API_BASE"),
        ({"STRIPE_WEBHOOK_SECRET": " "}, "STRIPE_WEBHOOK_SECRET"),
        ({"STRIPE_WEBHOOK_TOLERANCE": "0"}, "STRIPE_WEBHOOK_TOLERANCE"),
    ],
)
def test_bad_billing_configuration_names_the_variable(
    variables: dict[str, str], named: str
) -> None:
    with pytest.raises(ImproperlyConfigured, match=named):
        load_billing_config(Env(variables))


# --- the same event delivered twice at once -------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_deliveries_of_one_event_apply_it_once() -> None:
    assert connection.vendor == "postgresql"
    owner = Account.objects.create(
        user=User.objects.create_user("racer", password="irrelevant-here"), cash=Decimal(0)
    )
    world = StripeWorld(owner)
    paid = rules.parse_event(world.paid(T0))
    failed = rules.parse_event(world.failed(T0 + 10))
    threads_count = 12
    barrier = threading.Barrier(threads_count)
    results: list[rules.Result] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            result = rules.handle(paid if index % 2 == 0 else failed)
            with lock:
                results.append(result)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == threads_count
    assert sum(not r.duplicate for r in results) == 2  # each event applied exactly once
    assert WebhookEvent.objects.count() == 2
    owner.refresh_from_db()
    assert owner.tier == Account.TIER_PRO
