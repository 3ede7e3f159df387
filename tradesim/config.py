"""The simulator's own settings, one typed and immutable object (`settings.TRADESIM`).

Read once from the environment by settings.py; tests replace it whole with
`override_settings(TRADESIM=dataclasses.replace(settings.TRADESIM, ...))`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from tradesim.env import Env

FEED_SOURCES = ("simulated", "binance")
BINANCE_STREAMS = ("aggTrade", "trade")


@dataclass(frozen=True)
class AppConfig:
    # Cookies without the Secure flag, for plain-HTTP local development only.
    local_http: bool
    access_ttl: float
    refresh_ttl: float
    # The JWT signing key is loaded lazily (tradesim.accounts.keys) so that
    # `manage.py gen_jwt_key` can run before any key exists; the ASGI app and the
    # system checks load it at start-up and refuse to start without it.
    jwt_private_key: str | None
    jwt_private_key_file: str | None
    jwt_default_key_file: Path
    jwt_issuer: str
    starting_cash: Decimal
    quote_ttl: float
    max_price_age: float
    symbols: tuple[str, ...]
    feed_source: str
    binance_url: str
    binance_stream: str
    sim_interval: float
    sim_volatility: float
    flush_interval: float
    stream_poll_interval: float
    stream_keepalive: float
    event_retention: float
    candle_max_gap: int


def load_app_config(env: Env, data_dir: Path) -> AppConfig:
    feed_source = env.text("TRADESIM_FEED_SOURCE", "simulated")
    if feed_source not in FEED_SOURCES:
        raise ImproperlyConfigured(
            f"TRADESIM_FEED_SOURCE: expected one of {', '.join(FEED_SOURCES)}, got {feed_source!r}"
        )
    binance_stream = env.text("TRADESIM_BINANCE_STREAM", "aggTrade")
    if binance_stream not in BINANCE_STREAMS:
        raise ImproperlyConfigured(
            f"TRADESIM_BINANCE_STREAM: expected one of {', '.join(BINANCE_STREAMS)}, "
            f"got {binance_stream!r}"
        )
    symbols = tuple(s.upper() for s in env.items("TRADESIM_SYMBOLS", "BTCUSDT,ETHUSDT,SOLUSDT"))
    for symbol in symbols:
        if not symbol.isalnum() or len(symbol) > 20:
            raise ImproperlyConfigured(f"TRADESIM_SYMBOLS: {symbol!r} is not a symbol like BTCUSDT")
    return AppConfig(
        local_http=env.flag("TRADESIM_LOCAL_HTTP", False),
        access_ttl=env.number("TRADESIM_ACCESS_TTL", 300.0, minimum=1.0),
        refresh_ttl=env.number("TRADESIM_REFRESH_TTL", 7 * 24 * 3600.0, minimum=1.0),
        jwt_private_key=env.raw("TRADESIM_JWT_PRIVATE_KEY"),
        jwt_private_key_file=env.raw("TRADESIM_JWT_PRIVATE_KEY_FILE"),
        jwt_default_key_file=data_dir / "jwt-private.pem",
        jwt_issuer=env.text("TRADESIM_JWT_ISSUER", "tradesim"),
        starting_cash=env.decimal("TRADESIM_STARTING_CASH", "100000.00"),
        quote_ttl=env.number("TRADESIM_QUOTE_TTL", 5.0, minimum=0.1),
        max_price_age=env.number("TRADESIM_MAX_PRICE_AGE", 60.0, minimum=0.1),
        symbols=symbols,
        feed_source=feed_source,
        binance_url=env.text("TRADESIM_BINANCE_URL", "wss://stream.binance.com:9443"),
        binance_stream=binance_stream,
        sim_interval=env.number("TRADESIM_SIM_INTERVAL", 0.5, minimum=0.001),
        sim_volatility=env.number("TRADESIM_SIM_VOLATILITY", 0.8),
        flush_interval=env.number("TRADESIM_FLUSH_INTERVAL", 0.25, minimum=0.01),
        stream_poll_interval=env.number("TRADESIM_STREAM_POLL_INTERVAL", 0.25, minimum=0.01),
        stream_keepalive=env.number("TRADESIM_STREAM_KEEPALIVE", 15.0, minimum=0.1),
        event_retention=env.number("TRADESIM_EVENT_RETENTION", 600.0, minimum=10.0),
        candle_max_gap=int(env.number("TRADESIM_CANDLE_MAX_GAP", 360, minimum=0)),
    )
