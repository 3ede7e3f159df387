from __future__ import annotations

from django.urls import URLPattern, path

from tradesim.accounts import views

urlpatterns: list[URLPattern] = [
    path("api/auth/csrf", views.csrf),
    path("api/auth/register", views.register),
    path("api/auth/login", views.login),
    path("api/auth/refresh", views.refresh),
    path("api/auth/logout", views.logout),
    path("api/me", views.me),
]
