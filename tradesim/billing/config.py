"""Billing settings (`settings.BILLING`), all from the environment.

Billing is optional: without STRIPE_SECRET_KEY upgrading answers 503
`billing_unavailable`, and without STRIPE_WEBHOOK_SECRET so does the webhook. Half a
configuration (a key but no price) is a start-up error naming what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from tradesim.env import Env

DEFAULT_API_BASE = "https://api.stripe.com"


@dataclass(frozen=True)
class BillingConfig:
    # Where the stripe client sends its requests: Stripe itself, or (in tests) a
    # local server speaking the same API.
    api_base: str
    secret_key: str | None
    webhook_secret: str | None
    price_pro: str | None
    # Seconds between a webhook's signed timestamp and now, either way (Stripe's 300).
    webhook_tolerance: int
    timeout: float
    # The browser-facing origin for Checkout's success and cancel URLs; None = the
    # request's own (right behind Wardent + nginx with TRADESIM_TRUST_X_FORWARDED_PROTO).
    public_url: str | None
    # What a free account may buy; pro buys every active symbol.
    free_symbols: tuple[str, ...]
    pro_price_label: str

    @property
    def checkout_enabled(self) -> bool:
        return self.secret_key is not None and self.price_pro is not None

    @property
    def webhook_enabled(self) -> bool:
        return self.webhook_secret is not None


def _url(env: Env, name: str, default: str | None) -> str | None:
    value = env.text(name, default or "")
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ImproperlyConfigured(f"{name}: expected an http(s) URL, got {value!r}")
    return value.rstrip("/")


def load_billing_config(env: Env) -> BillingConfig:
    secret_key = env.secret("STRIPE_SECRET_KEY")
    price_pro = env.text("STRIPE_PRICE_PRO", "") or None
    if secret_key is not None and price_pro is None:
        raise ImproperlyConfigured(
            "STRIPE_PRICE_PRO: required with STRIPE_SECRET_KEY (the price id of the pro plan)"
        )
    api_base = _url(env, "STRIPE_API_BASE", DEFAULT_API_BASE)
    assert api_base is not None
    free_symbols = tuple(s.upper() for s in env.items("TRADESIM_FREE_SYMBOLS", "BTCUSDT,ETHUSDT"))
    return BillingConfig(
        api_base=api_base,
        secret_key=secret_key.strip() if secret_key else None,
        webhook_secret=(env.secret("STRIPE_WEBHOOK_SECRET") or "").strip() or None,
        price_pro=price_pro,
        webhook_tolerance=int(env.number("STRIPE_WEBHOOK_TOLERANCE", 300, minimum=1)),
        timeout=env.number("STRIPE_TIMEOUT", 10.0, minimum=0.1),
        public_url=_url(env, "TRADESIM_PUBLIC_URL", None),
        free_symbols=free_symbols,
        pro_price_label=env.text("TRADESIM_PRO_PRICE_LABEL", "$9 a month"),
    )
