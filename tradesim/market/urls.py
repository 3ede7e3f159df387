from __future__ import annotations

from django.urls import URLPattern, path

from tradesim.market import stream, views

urlpatterns: list[URLPattern] = [
    path("api/symbols", views.symbols),
    path("api/candles", views.candles),
    path("api/stream", stream.stream),
]
