from __future__ import annotations

from django.urls import URLPattern, path

from tradesim.billing import views

urlpatterns: list[URLPattern] = [
    path("api/billing", views.billing),
    path("api/billing/checkout", views.checkout),
    path("stripe/webhook", views.webhook),
]
