"""System check: manage.py commands (migrate, check, run_feed) refuse to start without a
usable JWT signing key, with the same message the ASGI app gives."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.core.checks import CheckMessage, Error, register
from django.core.exceptions import ImproperlyConfigured

from tradesim.accounts.keys import signing_keys


@register()
def jwt_signing_key(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> Sequence[CheckMessage]:
    try:
        signing_keys()
    except ImproperlyConfigured as exc:
        return [Error(str(exc), id="tradesim.E001")]
    return []
