"""Upgrading: a Stripe Checkout Session for the pro price, through the official
`stripe` client pointed at STRIPE_API_BASE (Stripe, or the tests' local server).

The customer is created (once per account) before the session, with the user id in
its metadata, and linked at once: every later event for it finds its account, in
whatever order the events arrive. The subscription carries the user id in its
metadata too, which is how `customer.subscription.created` links a customer that
was made anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

import stripe
from django.db import transaction

from tradesim.accounts.models import Account
from tradesim.api import ApiError
from tradesim.billing.config import BillingConfig
from tradesim.billing.models import StripeCustomer
from tradesim.billing.rules import link_customer


@dataclass(frozen=True)
class CheckoutSession:
    id: str
    url: str


def client(config: BillingConfig) -> stripe.StripeClient:
    assert config.secret_key is not None
    return stripe.StripeClient(
        config.secret_key,
        base_addresses={"api": config.api_base},
        http_client=stripe.RequestsClient(timeout=config.timeout),
        max_network_retries=1,
    )


def _provider_error(exc: stripe.StripeError) -> ApiError:
    message = exc.user_message or str(exc) or type(exc).__name__
    return ApiError(502, "payment_provider_error", f"Stripe did not start a checkout: {message}")


def customer_for(api: stripe.StripeClient, account: Account) -> str:
    existing = StripeCustomer.objects.filter(account=account).order_by("created_at").first()
    if existing is not None:
        return existing.id
    user = account.user
    customer = api.v1.customers.create(
        params={
            "description": f"tradesim user {user.username}",
            "metadata": {"user_id": str(user.pk), "username": user.username},
        },
        # Two clicks at once create one customer: Stripe answers the same key with the
        # same customer.
        options={"idempotency_key": f"tradesim-customer-{account.pk}"},
    )
    with transaction.atomic():
        link_customer(customer.id, account)
    return customer.id


def start_checkout(config: BillingConfig, account: Account, base_url: str) -> CheckoutSession:
    if not config.checkout_enabled:
        raise ApiError(503, "billing_unavailable", "billing is not configured on this server")
    if account.tier == Account.TIER_PRO:
        raise ApiError(409, "already_pro", "this account is already on the pro plan")
    assert config.price_pro is not None
    api = client(config)
    user_id = str(account.user_id)
    try:
        customer = customer_for(api, account)
        session = api.v1.checkout.sessions.create(
            params={
                "mode": "subscription",
                "customer": customer,
                "client_reference_id": user_id,
                "line_items": [{"price": config.price_pro, "quantity": 1}],
                # Stripe fills in {CHECKOUT_SESSION_ID} itself.
                "success_url": (
                    f"{base_url}/billing?checkout=success&session_id={{CHECKOUT_SESSION_ID}}"
                ),
                "cancel_url": f"{base_url}/billing?checkout=canceled",
                "metadata": {"user_id": user_id},
                "subscription_data": {"metadata": {"user_id": user_id}},
            }
        )
    except stripe.StripeError as exc:
        raise _provider_error(exc) from None
    if not session.url:
        raise ApiError(502, "payment_provider_error", "Stripe returned a session without a URL")
    return CheckoutSession(id=session.id, url=session.url)
