"""The symbols a fresh install trades (run_feed adds any others it is told to feed)."""

from __future__ import annotations

from typing import Any

from django.db import migrations

DEFAULTS = [("BTCUSDT", "BTC", "USDT"), ("ETHUSDT", "ETH", "USDT"), ("SOLUSDT", "SOL", "USDT")]


def add_symbols(apps: Any, schema_editor: Any) -> None:
    symbol = apps.get_model("market", "Symbol")
    for name, base, quote in DEFAULTS:
        symbol.objects.get_or_create(name=name, defaults={"base": base, "quote": quote})


class Migration(migrations.Migration):
    dependencies = [("market", "0001_initial")]
    operations = [migrations.RunPython(add_symbols, migrations.RunPython.noop)]
