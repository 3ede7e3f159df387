from __future__ import annotations

from django.apps import AppConfig


class TradingConfig(AppConfig):
    name = "tradesim.trading"
    label = "trading"
    default_auto_field = "django.db.models.BigAutoField"
