"""A person's first session, in a real browser, through Wardent: register, watch the
live chart (candles, both EMA lines, the ticking price), buy, see the portfolio's
allocation change, upgrade through Stripe's checkout (the local one) whose signed
webhooks pass Wardent's signature check, and trade a pro-only market."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from decimal import Decimal

from playwright.sync_api import Page, expect

from tests.browser.conftest import ConsoleLog
from tests.browser.stack import Stack
from tests.tradesim.fake_stripe import event, signature_header

PASSWORD = "correct horse battery"


def wait_until(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Polls from Python: the pages' CSP forbids the eval that page.wait_for_function needs."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def chart_number(page: Page, name: str) -> int:
    return int(page.get_attribute("#chart", f"data-{name}") or 0)


def allocation(page: Page) -> dict[str, Decimal]:
    raw = page.get_attribute("#allocation-chart", "data-allocation") or "{}"
    return {asset: Decimal(percent) for asset, percent in json.loads(raw).items()}


def open_portfolio(page: Page, stack: Stack) -> dict[str, Decimal]:
    page.goto(f"{stack.url}/portfolio")
    wait_until(lambda: "cash" in allocation(page), "the allocation chart")
    return allocation(page)


def quote_and_confirm(page: Page, quantity: str) -> None:
    page.fill("#quantity", quantity)
    page.click("#get-quote")
    expect(page.locator("#quote-box")).to_be_visible()
    expect(page.locator("#countdown-text")).to_contain_text("Valid for")
    page.click("#confirm-trade")
    expect(page.locator("#trade-result")).to_be_visible()


def test_register_watch_buy_and_upgrade_through_wardent(
    page: Page, stack: Stack, console: ConsoleLog
) -> None:
    username = f"alice{int(time.time() * 1000) % 10**8}"

    # Register.
    page.goto(f"{stack.url}/register")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/market*")
    expect(page.locator("#account-username")).to_have_text(username)
    expect(page.locator("#tier-badge")).to_have_text("Free")

    # The chart: seeded candles with both EMAs at once, then live ticks and candles.
    expect(page.locator("#chart canvas").first).to_be_visible()
    wait_until(lambda: chart_number(page, "candles") >= 30, "the candles")
    wait_until(lambda: chart_number(page, "ema12") > 0, "the EMA 12 line")
    wait_until(lambda: chart_number(page, "ema26") > 0, "the EMA 26 line")
    expect(page.locator("#ema12-value")).not_to_have_text("—")
    expect(page.locator("#ema26-value")).not_to_have_text("—")
    wait_until(lambda: chart_number(page, "ticks") >= 5, "the price to tick")
    expect(page.locator("#stream-state")).to_have_attribute("data-state", "live")
    candles_before = chart_number(page, "candles")
    ema26_before = chart_number(page, "ema26")
    # A 10 s candle closes on the server and arrives over the stream (≤ 12 s).
    wait_until(lambda: chart_number(page, "live-candles") >= 1, "a live candle", timeout=25)
    wait_until(lambda: chart_number(page, "ema26") > ema26_before, "the EMA 26 line to grow")
    assert chart_number(page, "candles") >= candles_before
    assert Decimal(page.get_attribute("#chart", "data-last-price") or "0") > 0

    # Before buying: all cash.
    assert open_portfolio(page, stack) == {"cash": Decimal("100.00")}
    expect(page.locator("#holdings-body")).to_contain_text("No holdings yet")

    # A free account cannot buy a pro market, and is told why.
    page.goto(f"{stack.url}/market?symbol=SOLUSDT")
    expect(page.locator("#symbol-name")).to_have_text("SOLUSDT")
    page.fill("#quantity", "1")
    page.click("#get-quote")
    expect(page.locator("#trade-result")).to_contain_text("This market needs the pro plan")
    expect(page.locator("#trade-result a")).to_have_attribute("href", "/billing")

    # Buy BTC.
    page.click(".symbol-tab[data-symbol=BTCUSDT]")
    expect(page.locator("#symbol-name")).to_have_text("BTCUSDT")
    quote_and_confirm(page, "0.5")
    expect(page.locator("#trade-result")).to_contain_text("Bought 0.5 BTC")

    # The allocation changed: about a third in BTC now.
    after = open_portfolio(page, stack)
    assert set(after) == {"BTC", "cash"}, after
    assert Decimal("15") < after["BTC"] < Decimal("60"), after
    assert abs(after["BTC"] + after["cash"] - 100) <= Decimal("0.02")
    expect(page.locator("#holdings-body tr[data-symbol=BTCUSDT]")).to_contain_text("0.5")

    # Upgrade: our billing page → the local Stripe's checkout page → pay.
    page.goto(f"{stack.url}/billing")
    expect(page.locator("#current-tier")).to_have_text("Free")
    page.click("#upgrade")
    page.wait_for_url(f"{stack.stripe.url}/checkout/*")
    page.click("#pay")
    # Stripe's webhooks went through Wardent's public port, signature checked there.
    page.wait_for_url(f"{stack.url}/billing?checkout=success*")
    expect(page.locator("#current-tier")).to_have_attribute("data-tier", "pro", timeout=20_000)
    expect(page.locator("#tier-badge")).to_have_text("Pro")
    expect(page.locator("#notice")).to_contain_text("Welcome to Pro")
    kinds = [(d.event["type"], d.status) for d in stack.stripe.deliveries]
    assert ("invoice.paid", 200) in kinds and ("customer.subscription.created", 200) in kinds
    assert all(status == 200 for _, status in kinds), kinds
    assert stack.wardent.wait_access(
        lambda entry: entry.get("path") == "/stripe/webhook" and entry.get("status") == 200,
        timeout=5,
    )

    # Pro unlocks every market.
    page.goto(f"{stack.url}/market?symbol=SOLUSDT")
    expect(page.locator("#symbol-name")).to_have_text("SOLUSDT")
    quote_and_confirm(page, "2")
    expect(page.locator("#trade-result")).to_contain_text("Bought 2 SOL")
    assert set(open_portfolio(page, stack)) == {"BTC", "SOL", "cash"}

    errors = [
        line for line in console if line.startswith("pageerror") or "Content Security" in line
    ]
    assert not errors, errors


def post_webhook(url: str, payload: str, signature: str) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url,
        data=payload.encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Stripe-Signature": signature},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_wardent_refuses_a_forged_webhook_before_the_app_sees_it(stack: Stack) -> None:
    payload = json.dumps(event("invoice.paid", {"id": "in_forged", "customer": "cus_x"}))
    forged = signature_header(payload, "whsec_not_the_secret")
    status, body = post_webhook(f"{stack.url}/stripe/webhook", payload, forged)
    # Wardent's rejection is bare (no body); the app's own would be JSON.
    assert (status, body) == (400, b"")
    # The app checks too (defence in depth), if something reaches it directly.
    status, body = post_webhook(f"{stack.app_url}/stripe/webhook", payload, forged)
    assert status == 400 and json.loads(body)["error"] == "signature_invalid"
    # A valid one passes both.
    good = signature_header(payload, stack.stripe.webhook_secret)
    status, body = post_webhook(f"{stack.url}/stripe/webhook", payload, good)
    assert status == 200 and json.loads(body)["received"] is True


def test_every_page_fits_a_phone(page: Page, stack: Stack) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    for path in ("/login", "/register"):
        page.goto(f"{stack.url}{path}")
        assert_no_sideways_scroll(page, path)
    page.fill("input[name=username]", f"phone{int(time.time() * 1000) % 10**8}")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/market*")
    wait_until(lambda: chart_number(page, "candles") > 0, "the chart")
    assert_no_sideways_scroll(page, "/market")
    open_portfolio(page, stack)
    assert_no_sideways_scroll(page, "/portfolio")
    page.goto(f"{stack.url}/billing")
    expect(page.locator("#plans .plan")).to_have_count(2)
    assert_no_sideways_scroll(page, "/billing")


def assert_no_sideways_scroll(page: Page, path: str) -> None:
    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{path} scrolls sideways on a phone by {overflow}px"
