"""Symbols with their last price, persisted 10-second candles, and the event log that
carries ticks and closed candles from the feed worker to every web process."""

from __future__ import annotations

from django.db import models

PRICE_DIGITS = 24
PRICE_PLACES = 8


class Symbol(models.Model):
    name = models.CharField(max_length=20, primary_key=True)  # "BTCUSDT"
    base = models.CharField(max_length=10)  # "BTC"
    quote = models.CharField(max_length=10)  # "USDT"
    active = models.BooleanField(default=True)
    last_price = models.DecimalField(
        max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES, null=True, blank=True
    )
    last_trade_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Candle(models.Model):
    symbol = models.ForeignKey(Symbol, on_delete=models.CASCADE, related_name="candles")
    start = models.DateTimeField()  # bucket start, a multiple of 10 s of trade time
    open = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES)
    high = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES)
    low = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES)
    close = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES)
    volume = models.DecimalField(max_digits=32, decimal_places=PRICE_PLACES)
    trades = models.PositiveIntegerField()
    # Null until the segment has 12 (26) candles: the EMA is seeded with their SMA.
    ema12 = models.DecimalField(
        max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES, null=True, blank=True
    )
    ema26 = models.DecimalField(
        max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES, null=True, blank=True
    )
    closed = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["symbol", "start"], name="candle_symbol_start"),
        ]
        indexes = [models.Index(fields=["symbol", "-start"], name="candle_symbol_recent")]


class MarketEvent(models.Model):
    """An append-only log: the id is the SSE event id (Last-Event-ID), and every web
    process tails it. Old rows are pruned by the feed worker."""

    KIND_TICK = "tick"
    KIND_CANDLE = "candle"
    KINDS = ((KIND_TICK, "tick"), (KIND_CANDLE, "candle"))

    id = models.BigAutoField(primary_key=True)
    kind = models.CharField(max_length=8, choices=KINDS)
    symbol = models.CharField(max_length=20)
    payload = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
