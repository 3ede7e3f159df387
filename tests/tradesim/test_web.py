"""The pages and their static files (the browser tests in tests/browser drive them for
real), and the seed_history command that gives a fresh chart its EMAs."""

from __future__ import annotations

import itertools
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client

from tradesim.market.candles import INTERVAL_MS
from tradesim.market.feed.store import load_series, to_ms
from tradesim.market.models import Candle, Symbol
from tradesim.web.views import CONTENT_SECURITY_POLICY

PAGES = ["/login", "/register", "/market", "/portfolio", "/billing"]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_renders_with_its_security_headers(path: str) -> None:
    response = Client().get(path)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert response["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert response["X-Frame-Options"] == "DENY"
    html = response.content.decode()
    assert '<script src="/static/web/app.js?v=' in html
    assert 'href="/static/web/app.css?v=' in html
    assert 'name="viewport"' in html  # phones get the responsive layout
    # Nothing is ever loaded from another origin (no CDN).
    assert "https://cdn" not in html and "unpkg" not in html and "jsdelivr" not in html


def test_the_market_page_loads_the_chart_library_from_our_static_files() -> None:
    html = Client().get("/market").content.decode()
    assert "/static/vendor/lightweight-charts.standalone.production.js?v=" in html
    assert '<script src="/static/web/market.js?v=' in html


def test_the_home_page_is_the_market() -> None:
    response = Client().get("/")
    assert response.status_code == 302 and response["Location"] == "/market"


def test_pages_are_get_only() -> None:
    assert Client().post("/market").status_code in (403, 405)  # CSRF first, then the method


def test_static_files_are_served_with_validators() -> None:
    client = Client()
    response = client.get("/static/web/app.js")
    assert response.status_code == 200
    assert response["Content-Type"] in (
        "text/javascript; charset=utf-8",
        "application/javascript; charset=utf-8",
    )
    assert response["X-Content-Type-Options"] == "nosniff"
    again = client.get("/static/web/app.js", headers={"If-None-Match": response["ETag"]})
    assert again.status_code == 304


@pytest.mark.parametrize(
    "path",
    [
        "/static/../settings.py",
        "/static/web/../../settings.py",
        "/static/%2e%2e/settings.py",
        "/static/web/missing.js",
        "/static/web",
        "/static/vendor/.gitignore",
    ],
)
def test_static_files_stay_inside_the_static_folder(path: str) -> None:
    assert Client().get(path).status_code == 404


@pytest.mark.django_db
def test_seed_history_gives_every_symbol_candles_with_both_emas() -> None:
    out = StringIO()
    call_command("seed_history", minutes=6, seed=7, stdout=out)
    for symbol in Symbol.objects.filter(active=True):
        candles = list(Candle.objects.filter(symbol=symbol).order_by("start"))
        assert len(candles) == 36, symbol
        assert all(c.closed for c in candles)
        starts = [to_ms(c.start) for c in candles]
        assert all(b - a == INTERVAL_MS for a, b in itertools.pairwise(starts))
        assert candles[-1].ema12 is not None and candles[-1].ema26 is not None
        assert candles[24].ema26 is None and candles[25].ema26 is not None
        assert symbol.last_price is not None
        # The feed worker resumes exactly where the seed ended.
        series = load_series(symbol.name, 360)
        assert series.last_closed is not None and series.last_closed.start_ms == starts[-1]
        assert series.emas[26].value == candles[-1].ema26
    # Recorded history is never rewritten.
    before = Candle.objects.count()
    out = StringIO()
    call_command("seed_history", minutes=6, stdout=out)
    assert Candle.objects.count() == before
    assert "left alone" in out.getvalue()
