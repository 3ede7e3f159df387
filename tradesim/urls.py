"""The API's routes (DESIGN.md's "Layout" fixes the paths); each app owns its own."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, include, path

urlpatterns: list[URLPattern | URLResolver] = [
    path("", include("tradesim.accounts.urls")),
    path("", include("tradesim.market.urls")),
    path("", include("tradesim.trading.urls")),
    path("", include("tradesim.billing.urls")),
    path("", include("tradesim.web.urls")),
]

handler404 = "tradesim.api.not_found"
handler500 = "tradesim.api.server_error"
