"""A local server speaking the part of Stripe's API that tradesim uses, with Stripe's
request encoding (form bodies with bracketed keys), Bearer-key auth, idempotency
keys, error shapes and object shapes, plus the part of Stripe a person sees: a
hosted checkout page whose "Pay" button creates the subscription and delivers the
signed webhooks (`customer.subscription.created`, `invoice.paid`, ...) to the
configured endpoint, then redirects to the session's success_url.

It runs on its own event loop in a thread, so synchronous tests (Django's) and the
browser tests can both use it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import html
import json
import re
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

API_VERSION = "2026-10-28.endive"
MONTH = 30 * 24 * 3600
_KEY_PART = re.compile(r"\[([^\]]*)\]")


def decode_form(pairs: Mapping[str, str] | list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's form encoding back to JSON-like data:
    `line_items[0][price]=p&metadata[user_id]=7` → {"line_items": [{"price": "p"}], ...}."""
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    root: dict[str, Any] = {}
    for key, value in items:
        head = key.split("[", 1)[0]
        path = [head, *_KEY_PART.findall(key[len(head) :])]
        node = root
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value

    def listify(value: Any) -> Any:
        if isinstance(value, dict):
            converted = {k: listify(v) for k, v in value.items()}
            if converted and all(k.isdigit() for k in converted):
                return [converted[k] for k in sorted(converted, key=int)]
            return converted
        return value

    result: dict[str, Any] = listify(root)
    return result


def signature_header(payload: str, secret: str, timestamp: int | None = None) -> str:
    """`Stripe-Signature` exactly as Stripe computes it: HMAC-SHA256 over `t.payload`."""
    stamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{stamp}.{payload}".encode(), hashlib.sha256)
    return f"t={stamp},v1={mac.hexdigest()}"


def new_id(prefix: str) -> str:
    return f"{prefix}_test_{secrets.token_hex(12)}"


def event(kind: str, obj: Mapping[str, Any], created: int | None = None) -> dict[str, Any]:
    """An event as Stripe sends it to a webhook endpoint."""
    return {
        "id": new_id("evt"),
        "object": "event",
        "api_version": API_VERSION,
        "created": int(time.time()) if created is None else created,
        "data": {"object": dict(obj)},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": kind,
    }


def subscription_object(
    sub_id: str,
    customer: str,
    price: str,
    *,
    user_id: str | None,
    status: str = "active",
    start: int | None = None,
) -> dict[str, Any]:
    begin = int(time.time()) if start is None else start
    return {
        "id": sub_id,
        "object": "subscription",
        "customer": customer,
        "status": status,
        "created": begin,
        "livemode": False,
        "cancel_at_period_end": False,
        "metadata": {"user_id": user_id} if user_id is not None else {},
        "items": {
            "object": "list",
            "data": [
                {
                    "id": new_id("si"),
                    "object": "subscription_item",
                    "price": {"id": price, "object": "price"},
                    "quantity": 1,
                    "current_period_start": begin,
                    "current_period_end": begin + MONTH,
                }
            ],
        },
    }


def invoice_object(
    sub_id: str,
    customer: str,
    price: str,
    *,
    period_start: int,
    status: str = "paid",
    user_id: str | None = None,
    billing_reason: str = "subscription_create",
) -> dict[str, Any]:
    """An invoice in the current API shape: its subscription under
    parent.subscription_details, the paid period on its line."""
    return {
        "id": new_id("in"),
        "object": "invoice",
        "customer": customer,
        "status": status,
        "currency": "usd",
        "amount_due": 900,
        "amount_paid": 900 if status == "paid" else 0,
        "billing_reason": billing_reason,
        "created": period_start,
        "livemode": False,
        "period_start": period_start,
        "period_end": period_start,
        "parent": {
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {
                "subscription": sub_id,
                "metadata": {"user_id": user_id} if user_id is not None else {},
            },
        },
        "lines": {
            "object": "list",
            "data": [
                {
                    "id": new_id("il"),
                    "object": "line_item",
                    "amount": 900,
                    "period": {"start": period_start, "end": period_start + MONTH},
                    "pricing": {"type": "price_details", "price_details": {"price": price}},
                }
            ],
        },
    }


@dataclass
class Delivery:
    event: dict[str, Any]
    status: int
    body: str


@dataclass
class FakeStripe:
    secret_key: str = "sk_test_fake_0123456789"
    webhook_secret: str = "whsec_test_fake_0123456789"
    prices: tuple[str, ...] = ("price_test_pro",)
    # Where "Pay" delivers the webhooks; None = keep them for the test to deliver.
    webhook_url: str | None = None
    requests: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)
    pending: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    def __post_init__(self) -> None:
        self._idempotent: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {}
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # --- lifecycle ---------------------------------------------------------------

    def start(self) -> FakeStripe:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._serve())
            except BaseException as exc:  # reported to start()'s caller
                failure.append(exc)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fake-stripe", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/customers", self._create_customer)
        app.router.add_post("/v1/checkout/sessions", self._create_session)
        app.router.add_get("/v1/checkout/sessions/{id}", self._retrieve_session)
        app.router.add_get("/checkout/{id}", self._checkout_page)
        app.router.add_post("/checkout/{id}/pay", self._pay)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    def stop(self) -> None:
        if self._thread is None:
            return
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._thread = None

    def __enter__(self) -> FakeStripe:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the API -----------------------------------------------------------------

    @staticmethod
    def _error(
        status: int, message: str, kind: str = "invalid_request_error", **extra: Any
    ) -> web.Response:
        return web.json_response(
            {"error": {"type": kind, "message": message, **extra}}, status=status
        )

    async def _authorized(self, request: web.Request) -> dict[str, Any] | web.Response:
        auth = request.headers.get("Authorization", "")
        if auth != f"Bearer {self.secret_key}":
            return self._error(
                401,
                "Invalid API Key provided.",
                code="api_key_invalid" if auth else "api_key_missing",
            )
        form = await request.post()
        params = decode_form([(key, str(value)) for key, value in form.items()])
        self.requests.append((request.method, request.path, params))
        return params

    def _replayed(self, request: web.Request) -> web.Response | None:
        key = request.headers.get("Idempotency-Key")
        if key is not None and (request.path, key) in self._idempotent:
            status, body = self._idempotent[(request.path, key)]
            return web.json_response(body, status=status, headers={"Idempotent-Replayed": "true"})
        return None

    def _answer(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        key = request.headers.get("Idempotency-Key")
        if key is not None:
            self._idempotent[(request.path, key)] = (200, body)
        return web.json_response(body, headers={"Request-Id": new_id("req")})

    async def _create_customer(self, request: web.Request) -> web.Response:
        params = await self._authorized(request)
        if isinstance(params, web.Response):
            return params
        replay = self._replayed(request)
        if replay is not None:
            return replay
        customer = {
            "id": new_id("cus"),
            "object": "customer",
            "created": int(time.time()),
            "description": params.get("description"),
            "email": params.get("email"),
            "livemode": False,
            "metadata": params.get("metadata", {}),
        }
        self.customers[customer["id"]] = customer
        return self._answer(request, customer)

    async def _create_session(self, request: web.Request) -> web.Response:
        params = await self._authorized(request)
        if isinstance(params, web.Response):
            return params
        replay = self._replayed(request)
        if replay is not None:
            return replay
        for name in ("mode", "success_url", "cancel_url", "line_items"):
            if name not in params:
                return self._error(400, f"Missing required param: {name}.", param=name)
        items = params["line_items"]
        if params["mode"] != "subscription" or not isinstance(items, list):
            return self._error(400, "This fake supports subscription sessions only.")
        price = items[0].get("price")
        if price not in self.prices:
            return self._error(
                400,
                f"No such price: '{price}'",
                code="resource_missing",
                param="line_items[0][price]",
            )
        customer = params.get("customer")
        if customer is not None and customer not in self.customers:
            return self._error(400, f"No such customer: '{customer}'", code="resource_missing")
        session_id = new_id("cs")
        now = int(time.time())
        session = {
            "id": session_id,
            "object": "checkout.session",
            "mode": "subscription",
            "status": "open",
            "payment_status": "unpaid",
            "url": f"{self.url}/checkout/{session_id}",
            "customer": customer,
            "client_reference_id": params.get("client_reference_id"),
            "metadata": params.get("metadata", {}),
            "success_url": params["success_url"],
            "cancel_url": params["cancel_url"],
            "subscription": None,
            "created": now,
            "expires_at": now + 24 * 3600,
            "livemode": False,
            # Not part of Stripe's object; kept so that "Pay" knows what was bought.
            "_price": price,
            "_subscription_metadata": params.get("subscription_data", {}).get("metadata", {}),
        }
        self.sessions[session_id] = session
        return self._answer(request, self._public(session))

    @staticmethod
    def _public(session: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in session.items() if not k.startswith("_")}

    async def _retrieve_session(self, request: web.Request) -> web.Response:
        params = await self._authorized(request)
        if isinstance(params, web.Response):
            return params
        session = self.sessions.get(request.match_info["id"])
        if session is None:
            return self._error(404, "No such checkout.session", code="resource_missing")
        return web.json_response(self._public(session))

    # --- the hosted checkout page --------------------------------------------------

    async def _checkout_page(self, request: web.Request) -> web.Response:
        session = self.sessions.get(request.match_info["id"])
        if session is None:
            return web.Response(status=404, text="no such checkout session")
        sid = html.escape(session["id"])
        cancel = html.escape(session["cancel_url"])
        page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Checkout · Fake Stripe</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 420px; margin: 3rem auto">
<h1>Tradesim Pro</h1><p id="amount">$9.00 per month</p>
<p>Test mode: no card is charged.</p>
<form method="post" action="/checkout/{sid}/pay">
<label>Card number <input name="card" value="4242 4242 4242 4242"></label>
<button id="pay" type="submit">Pay and subscribe</button></form>
<p><a id="cancel" href="{cancel}">Cancel</a></p></body></html>"""
        return web.Response(text=page, content_type="text/html")

    def complete(self, session_id: str) -> list[dict[str, Any]]:
        """Marks the session paid; returns the events Stripe would send, in order."""
        session = self.sessions[session_id]
        now = int(time.time())
        customer = session["customer"] or new_id("cus")
        sub_id = new_id("sub")
        user_id = session["_subscription_metadata"].get("user_id")
        price = session["_price"]
        session.update(
            status="complete", payment_status="paid", subscription=sub_id, customer=customer
        )
        sub = subscription_object(sub_id, customer, price, user_id=user_id, start=now)
        invoice = invoice_object(sub_id, customer, price, period_start=now, user_id=user_id)
        return [
            event("customer.subscription.created", sub, now),
            event("checkout.session.completed", self._public(session), now),
            event("invoice.paid", invoice, now),
        ]

    async def deliver(self, events: list[dict[str, Any]]) -> list[Delivery]:
        assert self.webhook_url is not None
        done: list[Delivery] = []
        async with aiohttp.ClientSession() as client:
            for item in events:
                payload = json.dumps(item, separators=(",", ":"))
                headers = {
                    "Content-Type": "application/json; charset=utf-8",
                    "Stripe-Signature": signature_header(payload, self.webhook_secret),
                    "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                }
                async with client.post(self.webhook_url, data=payload, headers=headers) as response:
                    delivery = Delivery(item, response.status, await response.text())
                done.append(delivery)
                self.deliveries.append(delivery)
        return done

    async def _pay(self, request: web.Request) -> web.Response:
        session = self.sessions.get(request.match_info["id"])
        if session is None or session["status"] != "open":
            return web.Response(status=404, text="no open checkout session")
        events = self.complete(session["id"])
        if self.webhook_url is None:
            self.pending.extend(events)
        else:
            failed = [d for d in await self.deliver(events) if not 200 <= d.status < 300]
            if failed:
                lines = "".join(
                    f"<li>{html.escape(d.event['type'])}: {d.status} "
                    f"{html.escape(d.body[:200])}</li>"
                    for d in failed
                )
                return web.Response(
                    status=502,
                    text=f"<h1 id='webhook-failed'>Webhook delivery failed</h1><ul>{lines}</ul>",
                    content_type="text/html",
                )
        success = session["success_url"].replace("{CHECKOUT_SESSION_ID}", session["id"])
        raise web.HTTPSeeOther(success)
