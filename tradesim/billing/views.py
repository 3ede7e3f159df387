"""GET /api/billing, POST /api/billing/checkout, POST /stripe/webhook."""

from __future__ import annotations

import json

import stripe
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from tradesim.accounts.sessions import Auth, with_auth
from tradesim.api import ApiError, api_view
from tradesim.billing import checkout as checkout_flow
from tradesim.billing import rules, tiers
from tradesim.billing.models import Subscription


def _subscription_json(auth: Auth) -> dict[str, object] | None:
    sub = (
        Subscription.objects.filter(account=auth.account)
        .order_by("-status_at", "-updated_at")
        .first()
    )
    if sub is None:
        return None
    return {
        "status": sub.status,
        "paid_through": sub.paid_through,
        "canceled_at": sub.canceled_at,
    }


@api_view("GET")
@with_auth
def billing(request: HttpRequest, auth: Auth) -> HttpResponse:
    config = settings.BILLING
    return JsonResponse(
        {
            "tier": auth.account.tier,
            "subscription": _subscription_json(auth),
            "plans": tiers.plans(),
            "free_symbols": list(tiers.free_symbols()),
            "checkout_enabled": config.checkout_enabled,
        }
    )


def _base_url(request: HttpRequest) -> str:
    configured: str | None = settings.BILLING.public_url
    return configured or request.build_absolute_uri("/").rstrip("/")


@api_view("POST")
@with_auth
def checkout(request: HttpRequest, auth: Auth) -> HttpResponse:
    session = checkout_flow.start_checkout(settings.BILLING, auth.account, _base_url(request))
    return JsonResponse({"id": session.id, "url": session.url})


@csrf_exempt  # signed by Stripe instead, and verified below
@api_view("POST")
def webhook(request: HttpRequest) -> HttpResponse:
    config = settings.BILLING
    if config.webhook_secret is None:
        raise ApiError(503, "billing_unavailable", "STRIPE_WEBHOOK_SECRET is not configured")
    try:
        payload = request.body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_event", "the body is not UTF-8") from None
    # Defence in depth: Wardent verifies the signature before forwarding, and the app
    # verifies it again with Stripe's own verifier (HMAC-SHA256 of "t.payload",
    # timestamp within the tolerance).
    try:
        stripe.WebhookSignature.verify_header(
            payload,
            request.headers.get("Stripe-Signature"),
            config.webhook_secret,
            config.webhook_tolerance,
        )
    except stripe.SignatureVerificationError as exc:
        raise ApiError(400, "signature_invalid", str(exc).split(".")[0]) from None
    try:
        event = rules.parse_event(json.loads(payload))
    except ValueError as exc:  # json.JSONDecodeError and rules.InvalidEvent
        raise ApiError(400, "invalid_event", str(exc)) from None
    try:
        result = rules.handle(event)
    except rules.InvalidEvent as exc:
        raise ApiError(400, "invalid_event", str(exc)) from None
    return JsonResponse(
        {
            "received": True,
            "id": event.id,
            "duplicate": result.duplicate,
            "outcome": result.outcome,
        }
    )
