from __future__ import annotations

from django.urls import URLPattern, path, re_path

from tradesim.web import views

urlpatterns: list[URLPattern] = [
    path("", views.home),
    path("login", views.login),
    path("register", views.register),
    path("market", views.market),
    path("portfolio", views.portfolio),
    path("billing", views.billing),
    re_path(r"^static/(?P<path>.+)$", views.static),
]
