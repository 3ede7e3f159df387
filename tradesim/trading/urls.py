from __future__ import annotations

from django.urls import URLPattern, path

from tradesim.trading import views

urlpatterns: list[URLPattern] = [
    path("api/quotes", views.quotes),
    path("api/trades", views.trades),
    path("api/portfolio", views.portfolio),
]
