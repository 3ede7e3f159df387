"""The whole stack for a browser, on loopback ports the kernel picks:

    browser → Wardent (public port) → tradesim (uvicorn) ← feed worker (simulated, fast)
                 ↑ signed webhooks            ↓ stripe client
              local Stripe (tests/tradesim/fake_stripe.py) ← checkout page in the browser

tradesim runs on SQLite in a temporary directory, with a few minutes of seeded
candle history (so both EMAs exist at once) and a simulated feed ticking every
0.1 s. Wardent verifies the Stripe signature on /stripe/webhook itself.
"""

from __future__ import annotations

import re
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import Process, Wardent, manage, write_config
from tests.tradesim.fake_stripe import FakeStripe

PRICE = "price_test_pro"
WEBHOOK_SECRET_VARIABLE = "WARDENT_TEST_STRIPE_WEBHOOK_SECRET"
_LISTENING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


@dataclass
class Stack:
    url: str  # Wardent's public origin: what the browser opens
    app_url: str  # tradesim directly (for checks that must bypass Wardent)
    stripe: FakeStripe
    wardent: Wardent
    web: Process
    feed: Process

    def logs(self) -> str:
        parts = [
            ("wardent", self.wardent.output()),
            ("tradesim web", self.web.output()),
            ("feed", self.feed.output()),
        ]
        return "\n".join(f"--- {name}\n{text[-3000:]}" for name, text in parts)


def tradesim_env(data_dir: Path, stripe: FakeStripe) -> dict[str, str]:
    return {
        "DJANGO_SETTINGS_MODULE": "tradesim.settings",
        "TRADESIM_DATA_DIR": str(data_dir),
        "DATABASE_URL": f"sqlite:///{data_dir / 'tradesim.sqlite3'}",
        "TRADESIM_LOCAL_HTTP": "1",
        "TRADESIM_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "TRADESIM_SYMBOLS": "BTCUSDT,ETHUSDT,SOLUSDT",
        "TRADESIM_SIM_INTERVAL": "0.1",
        "TRADESIM_SIM_VOLATILITY": "3",
        "TRADESIM_FLUSH_INTERVAL": "0.1",
        "TRADESIM_STREAM_POLL_INTERVAL": "0.1",
        "TRADESIM_STREAM_KEEPALIVE": "5",
        "TRADESIM_QUOTE_TTL": "10",
        "TRADESIM_LOG_LEVEL": "INFO",
        "STRIPE_API_BASE": stripe.url,
        "STRIPE_SECRET_KEY": stripe.secret_key,
        "STRIPE_WEBHOOK_SECRET": stripe.webhook_secret,
        "STRIPE_PRICE_PRO": PRICE,
        "TRADESIM_JWT_PRIVATE_KEY_FILE": str(data_dir / "jwt-private.pem"),
    }


def _wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer 200 within {timeout}s")
        time.sleep(0.1)


@contextmanager
def running_stack(directory: Path) -> Iterator[Stack]:
    data_dir = directory / "tradesim"
    data_dir.mkdir()
    with ExitStack() as cleanup:
        stripe = FakeStripe(prices=(PRICE,)).start()
        cleanup.callback(stripe.stop)
        env = tradesim_env(data_dir, stripe)
        # A key file of its own: TRADESIM_JWT_PRIVATE_KEY(_FILE) from the outer
        # environment must not leak in (the env dict overrides them).
        env_without_key = {**env}
        del env_without_key["TRADESIM_JWT_PRIVATE_KEY_FILE"]
        manage(env_without_key, "gen_jwt_key")
        manage(env, "migrate", "--noinput")
        manage(env, "seed_history", "--minutes", "6")

        feed = Process([sys.executable, "-m", "tradesim.manage", "run_feed"], env=env)
        cleanup.callback(feed.stop)
        web = Process(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "tradesim.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--timeout-graceful-shutdown",
                "2",
                "--no-server-header",
            ],
            env=env,
        )
        cleanup.callback(web.stop)
        line = web.wait_for(lambda text: _LISTENING.search(text) is not None, timeout=30)
        match = _LISTENING.search(line)
        assert match is not None
        app_url = f"http://127.0.0.1:{match.group(1)}"
        _wait_http(f"{app_url}/api/symbols")

        config = write_config(
            directory,
            app_url,
            upstream={"url": app_url, "connect_timeout": "2s", "read_timeout": "60s"},
            secrets={"stripe_webhook": {"env": WEBHOOK_SECRET_VARIABLE}},
            routes=[
                {
                    "name": "stripe",
                    "match": {"path_prefix": "/stripe/webhook"},
                    "stripe_signature": {"tolerance": "5m"},
                }
            ],
            debug_headers=True,
        )
        wardent = Wardent(config, env={WEBHOOK_SECRET_VARIABLE: stripe.webhook_secret})
        cleanup.callback(wardent.stop)
        stripe.webhook_url = f"{wardent.url}/stripe/webhook"
        _wait_http(f"{wardent.url}/api/symbols")
        yield Stack(
            url=wardent.url, app_url=app_url, stripe=stripe, wardent=wardent, web=web, feed=feed
        )
