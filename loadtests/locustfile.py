"""Realistic journeys through Wardent next to abusive ones, for locust.

    WARDENT_ORIGIN_SECRET=... STRIPE_WEBHOOK_SECRET=whsec_... \\
      locust -f loadtests/locustfile.py --headless -u 20 -r 5 -t 30s \\
        --host http://127.0.0.1:8080

`--host` is Wardent's public listener, in front of tradesim; `-t` bounds the run.
Wardent must trust the load generator's address (`client_ip.trusted_proxies`
with 127.0.0.1) and take the client from `CF-Connecting-IP`, as behind
Cloudflare and nginx: every simulated user is a client IP of its own
(198.18.0.0/15, the benchmarking range), so rate limits and bans hit the user
that earns them and nobody else.

Environment:

- `WARDENT_ORIGIN_SECRET` (required): the value of Wardent's `secrets.origin`,
  sent as `X-Wardent-Secret` as Cloudflare's Transform Rule would;
- `STRIPE_WEBHOOK_SECRET`: the webhook signing secret of Wardent's
  `secrets.stripe_webhook` (and tradesim's); without it the Stripe user stops
  at start and says so;
- `WARDENT_ORIGIN_HEADER` (default `X-Wardent-Secret`).

Users (the abusive ones are one each, whatever `-u`):

- `Trader` (the rest): registers (CSRF token from `GET /api/auth/csrf`), opens
  the market (`/api/symbols`, `/api/candles`, `/api/stream` (SSE) held open for a
  few seconds), places a first order (quote, then trade), then at random:
  browses, reads `/api/me` and `/api/portfolio`, trades, watches the stream;
- `StripeWebhook`: Stripe's deliveries to `/stripe/webhook`, signed with the
  webhook secret (200), and now and then a forged one that Wardent must refuse
  (400) before it reaches the app;
- `AICrawler`: an AI crawler's User-Agent: refused (403), though `/robots.txt`
  (answered by Wardent) tells it so;
- `Flooder`: as fast as it can on `/api/symbols`: served, then rate limited
  (429), then banned (403);
- `NoSecret`: a client that found the origin and skips Cloudflare: refused (403).

An abusive user's expected refusal counts as a success, under a request name in
brackets that says what happened (`[flooder banned] /api/symbols`); anything else
it gets is a failure. locust exits 1 when any request failed.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import secrets
import threading
import time
from decimal import ROUND_DOWN, Decimal
from typing import Any

from locust import HttpUser, between, constant, task
from locust.exception import StopUser

from wardent.guards.stripe_signature import sign_for_tests

ORIGIN_SECRET = os.environ.get("WARDENT_ORIGIN_SECRET", "")
ORIGIN_HEADER = os.environ.get("WARDENT_ORIGIN_HEADER", "X-Wardent-Secret")
STRIPE_SECRET = os.environ.get("STRIPE_WEBHOOK_SECRET", "")

BROWSER_UA = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
)
CRAWLER_UA = (
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; "
    "+https://openai.com/gptbot)"
)
FREE_SYMBOLS = ("BTCUSDT", "ETHUSDT")  # what a free account may buy
ORDER_VALUE = Decimal("150")  # quote currency per order: above the minimum of 1.00

_ips = itertools.count(random.randrange(0, 2**16))
_ips_lock = threading.Lock()


def client_ip() -> str:
    """A distinct address of 198.18.0.0/15 for each user of this process."""
    with _ips_lock:
        n = next(_ips) % (2**17 - 2) + 1
    return f"198.{18 + (n >> 16)}.{(n >> 8) & 0xFF}.{n & 0xFF}"


def require_origin_secret() -> str:
    if not ORIGIN_SECRET:
        raise StopUser("WARDENT_ORIGIN_SECRET is not set: the value of Wardent's secrets.origin")
    return ORIGIN_SECRET


class Trader(HttpUser):
    """A browser user: market data, a price stream, quotes and trades."""

    weight = 10
    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        self.client.headers.update(
            {
                ORIGIN_HEADER: require_origin_secret(),
                "CF-Connecting-IP": client_ip(),
                "User-Agent": BROWSER_UA,
                "Accept": "application/json",
            }
        )
        self.prices: dict[str, Decimal] = {}
        self.holdings: dict[str, Decimal] = {}
        response = self.client.get("/api/auth/csrf")
        token = response.json()["csrf_token"] if response.ok else ""
        username = f"load-{secrets.token_hex(6)}"
        password = f"locust {secrets.token_hex(8)}"
        self.client.post(
            "/api/auth/register",
            json={"username": username, "password": password},
            headers={"X-CSRFToken": token},
        )
        # The market page: prices, the chart's candles and its live stream; then a
        # first order. Every trader does each once; the tasks below repeat them.
        self.browse()
        self.watch_prices()
        self.trade()

    def csrf(self) -> dict[str, str]:
        """Django rotates the token at login: echo the current cookie."""
        return {"X-CSRFToken": self.client.cookies.get("csrftoken") or ""}

    @task(4)
    def browse(self) -> None:
        response = self.client.get("/api/symbols")
        if response.ok:
            for entry in response.json()["symbols"]:
                if entry.get("price"):
                    self.prices[entry["symbol"]] = Decimal(entry["price"])
        symbol = random.choice(FREE_SYMBOLS)
        self.client.get(f"/api/candles?symbol={symbol}&limit=100", name="/api/candles")

    @task(2)
    def account(self) -> None:
        self.client.get("/api/me")
        self.client.get("/api/portfolio")

    @task(2)
    def trade(self) -> None:
        held = [symbol for symbol, quantity in self.holdings.items() if quantity > 0]
        if held and random.random() < 0.4:
            symbol, side = random.choice(held), "sell"
            quantity = self.holdings[symbol]
        else:
            symbol, side = random.choice(FREE_SYMBOLS), "buy"
            price = self.prices.get(symbol)
            if not price:
                return
            quantity = (ORDER_VALUE / price).quantize(Decimal("0.00000001"), ROUND_DOWN)
        order = {"symbol": symbol, "side": side, "quantity": str(quantity)}
        response = self.client.post("/api/quotes", json=order, headers=self.csrf())
        if response.status_code != 201:
            return
        quote = response.json()
        response = self.client.post(
            "/api/trades", json={"quote_id": quote["id"]}, headers=self.csrf()
        )
        if response.status_code == 201:
            change = Decimal(quote["quantity"]) * (1 if side == "buy" else -1)
            self.holdings[symbol] = self.holdings.get(symbol, Decimal(0)) + change

    @task(1)
    def watch_prices(self) -> None:
        """Holds the price stream open for a few seconds, as an open chart does."""
        hold = random.uniform(2.0, 4.0)
        events = 0
        with self.client.get(
            "/api/stream?symbols=BTCUSDT,ETHUSDT",
            name="/api/stream (SSE, held 2-4 s)",
            headers={"Accept": "text/event-stream"},
            stream=True,
            catch_response=True,
            timeout=(5, 20),
        ) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")
                return
            started = time.monotonic()
            for line in response.iter_lines():
                if line.startswith(b"event:"):
                    events += 1
                if time.monotonic() - started > hold:
                    break
            if events:
                response.success()
            else:
                response.failure(f"no event within {hold:.1f} s")


class StripeWebhook(HttpUser):
    """Stripe delivering events: signed ones pass Wardent's check, forged ones never do."""

    fixed_count = 1
    wait_time = between(0.5, 1.5)

    def on_start(self) -> None:
        if not STRIPE_SECRET:
            raise StopUser("STRIPE_WEBHOOK_SECRET is not set: no Stripe deliveries")
        # Stripe's requests reach the origin through Cloudflare but carry no origin
        # secret: the webhook route is exempt, its signature checked instead.
        self.client.headers.update(
            {
                "CF-Connecting-IP": client_ip(),
                "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                "Content-Type": "application/json; charset=utf-8",
            }
        )

    def event(self) -> bytes:
        now = int(time.time())
        payload: dict[str, Any] = {
            "id": f"evt_load_{secrets.token_hex(10)}",
            "object": "event",
            "type": random.choice(("customer.updated", "charge.succeeded", "invoice.created")),
            "created": now,
            "livemode": False,
            "data": {"object": {"id": f"obj_{secrets.token_hex(6)}", "customer": "cus_load"}},
        }
        return json.dumps(payload).encode()

    @task(5)
    def deliver(self) -> None:
        body = self.event()
        signature = sign_for_tests(body, STRIPE_SECRET.encode(), int(time.time()))
        self.client.post(
            "/stripe/webhook",
            data=body,
            headers={"Stripe-Signature": signature.decode()},
            name="[stripe signed] /stripe/webhook",
        )

    @task(1)
    def forged(self) -> None:
        body = self.event()
        signature = sign_for_tests(body, b"whsec_not_the_secret", int(time.time()))
        with self.client.post(
            "/stripe/webhook",
            data=body,
            headers={"Stripe-Signature": signature.decode()},
            name="[stripe forged → 400] /stripe/webhook",
            catch_response=True,
        ) as response:
            if response.status_code == 400:
                response.success()
            else:
                response.failure(f"a forged signature got {response.status_code}, not 400")


class AICrawler(HttpUser):
    """An AI crawler: refused everywhere but Wardent's robots.txt."""

    fixed_count = 1
    wait_time = between(0.5, 1.5)

    def on_start(self) -> None:
        self.client.headers.update(
            {
                ORIGIN_HEADER: require_origin_secret(),  # it came through Cloudflare
                "CF-Connecting-IP": client_ip(),
                "User-Agent": CRAWLER_UA,
            }
        )
        self.robots()  # a crawler reads robots.txt first (and ignores it, this one)

    @task(1)
    def robots(self) -> None:
        with self.client.get(
            "/robots.txt", name="[crawler] /robots.txt", catch_response=True
        ) as response:
            if response.status_code == 200 and "GPTBot" in response.text:
                response.success()
            else:
                response.failure(f"robots.txt: {response.status_code}, GPTBot not disallowed")

    @task(4)
    def crawl(self) -> None:
        path = random.choice(("/", "/market", "/api/symbols", "/api/candles?symbol=BTCUSDT"))
        with self.client.get(
            path, name="[crawler → 403] pages and API", catch_response=True
        ) as response:
            expect_status(response, 403)


class Flooder(HttpUser):
    """A runaway client: served, then rate limited (429), then banned (403)."""

    fixed_count = 1

    def wait_time(self) -> float:
        return 1.0 if self.phase == "banned" else 0.002

    def on_start(self) -> None:
        self.phase = "served"
        self.client.headers.update(
            {
                ORIGIN_HEADER: require_origin_secret(),
                "CF-Connecting-IP": client_ip(),
                "User-Agent": BROWSER_UA,
            }
        )

    @task
    def flood(self) -> None:
        with self.client.get("/api/symbols", catch_response=True) as response:
            status = response.status_code
            if status == 200 and self.phase in ("served", "limited"):
                pass  # GCRA lets one through now and then while it is limited
            elif status == 429 and self.phase in ("served", "limited"):
                self.phase = "limited"
            elif status == 403:
                self.phase = "banned"
            else:
                response.failure(f"a flooder {self.phase} so far got {status}")
                return
            response.request_meta["name"] = f"[flooder {self.phase} → {status}] /api/symbols"
            response.success()


class NoSecret(HttpUser):
    """A client that skips Cloudflare: no origin secret, refused."""

    fixed_count = 1
    wait_time = constant(0.5)

    def on_start(self) -> None:
        self.client.headers.update({"User-Agent": BROWSER_UA, "CF-Connecting-IP": client_ip()})

    @task
    def direct_hit(self) -> None:
        path = random.choice(("/", "/api/symbols", "/api/me"))
        with self.client.get(
            path, name="[no origin secret → 403] pages and API", catch_response=True
        ) as response:
            expect_status(response, 403)


def expect_status(response: Any, status: int) -> None:
    if response.status_code == status:
        response.success()
    else:
        response.failure(f"expected {status}, got {response.status_code}")
