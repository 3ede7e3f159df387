from __future__ import annotations

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "tradesim.accounts"
    label = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the start-up check that refuses to run without a signing key.
        from tradesim.accounts import checks  # noqa: F401
