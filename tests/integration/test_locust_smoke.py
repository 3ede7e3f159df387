"""loadtests/locustfile.py for a few seconds, headless, against the whole stack:

    locust → Wardent (every guard on, Stripe route) → tradesim (uvicorn, SQLite) ← feed

A proof that the locustfile works: every user class gets its requests through,
the realistic ones succeed, the abusive ones get exactly the refusals they earn
(the flooder is banned), and locust exits 0. Load numbers are not looked at.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from tests.support.processes import ADMIN_TOKEN, ROOT, Process, manage, write_config

ORIGIN_SECRET = "locust-smoke-origin-secret-51c2"
STRIPE_SECRET = "whsec_locust_smoke_0f3b9a"
ORIGIN_VARIABLE = "LOCUST_SMOKE_ORIGIN_SECRET"
STRIPE_VARIABLE = "LOCUST_SMOKE_STRIPE_SECRET"
_LISTENING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


def _tradesim_env(data_dir: Path) -> dict[str, str]:
    return {
        "DJANGO_SETTINGS_MODULE": "tradesim.settings",
        "TRADESIM_DATA_DIR": str(data_dir),
        "DATABASE_URL": f"sqlite:///{data_dir / 'tradesim.sqlite3'}",
        "TRADESIM_LOCAL_HTTP": "1",
        "TRADESIM_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "TRADESIM_SYMBOLS": "BTCUSDT,ETHUSDT,SOLUSDT",
        "TRADESIM_SIM_INTERVAL": "0.1",
        "TRADESIM_FLUSH_INTERVAL": "0.1",
        "TRADESIM_STREAM_POLL_INTERVAL": "0.1",
        "TRADESIM_QUOTE_TTL": "10",
        "TRADESIM_LOG_LEVEL": "WARNING",
        "STRIPE_WEBHOOK_SECRET": STRIPE_SECRET,
        "TRADESIM_JWT_PRIVATE_KEY_FILE": str(data_dir / "jwt-private.pem"),
    }


def _wait_for_prices(url: str, timeout: float = 30.0) -> None:
    """Through Wardent, as a client with the origin secret: every symbol has a price."""
    request = urllib.request.Request(
        f"{url}/api/symbols",
        headers={"X-Wardent-Secret": ORIGIN_SECRET, "CF-Connecting-IP": "192.0.2.1"},
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                symbols = json.load(response)["symbols"]
                if symbols and all(entry["price"] for entry in symbols):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"no prices through Wardent at {url} within {timeout} s")


@contextmanager
def running_stack(directory: Path) -> Iterator[str]:
    """Wardent's public URL, in front of tradesim and its feed."""
    data_dir = directory / "tradesim"
    data_dir.mkdir()
    env = _tradesim_env(data_dir)
    without_key = {k: v for k, v in env.items() if k != "TRADESIM_JWT_PRIVATE_KEY_FILE"}
    manage(without_key, "gen_jwt_key")
    manage(env, "migrate", "--noinput")
    with ExitStack() as stack:
        feed = Process([sys.executable, "-m", "tradesim.manage", "run_feed"], env=env)
        stack.callback(feed.stop)
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
                "1",
                "--no-server-header",
            ],
            env=env,
        )
        stack.callback(web.stop)
        match = _LISTENING.search(web.wait_for(lambda line: bool(_LISTENING.search(line)), 30))
        assert match is not None
        app_url = f"http://127.0.0.1:{match.group(1)}"
        config = write_config(
            directory,
            app_url,
            upstream={"url": app_url, "connect_timeout": "2s", "read_timeout": "60s"},
            secrets={
                "origin": {"env": ORIGIN_VARIABLE},
                "stripe_webhook": {"env": STRIPE_VARIABLE},
            },
            guards={
                "crawlers": {"block": "builtin-ai"},
                "body_limit": {"max": "1MiB"},
                "rate_limits": [
                    {
                        "name": "login",
                        "match": {"path_prefix": "/api/auth/login", "methods": ["POST"]},
                        "rate": "5/m",
                        "burst": 5,
                    },
                    {"name": "api", "match": {"path_prefix": "/api/"}, "rate": "20/s", "burst": 40},
                ],
            },
            routes=[
                {
                    "name": "stripe",
                    "match": {"path_prefix": "/stripe/webhook"},
                    "stripe_signature": {"tolerance": "5m"},
                }
            ],
            bans={"store": str(directory / "bans.sqlite3"), "max_violations": 30},
            telemetry={"access_log": "off", "log_level": "info"},
        )
        # Not tests.support's Wardent: its constructor waits for the serving line, and a
        # start that fails there would leave the process running with nothing to stop it.
        wardent = Process(
            [sys.executable, "-m", "wardent", "run", "-c", str(config)],
            env={
                "WARDENT_ADMIN_TOKEN": ADMIN_TOKEN,
                ORIGIN_VARIABLE: ORIGIN_SECRET,
                STRIPE_VARIABLE: STRIPE_SECRET,
            },
        )
        stack.callback(wardent.stop)
        serving = json.loads(wardent.wait_for(lambda line: '"wardent serving"' in line, 20))
        url = f"http://{serving['public']}"
        _wait_for_prices(url)
        yield url


def _locust() -> str:
    found = Path(sys.executable).with_name("locust")
    if not found.exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("locust is not installed: pip install -e '.[dev]'")
        pytest.skip("locust is not installed (pip install -e '.[dev]')")
    return str(found)


@pytest.mark.timeout(120)
def test_locustfile_runs_headless_against_the_whole_stack(tmp_path: Path) -> None:
    locust = _locust()
    with running_stack(tmp_path) as url:
        result = subprocess.run(
            [
                locust,
                "-f",
                str(ROOT / "loadtests" / "locustfile.py"),
                "--headless",
                "--users",
                "8",
                "--spawn-rate",
                "8",
                "--run-time",
                "8s",
                "--stop-timeout",
                "5",
                "--host",
                url,
                "--csv",
                str(tmp_path / "locust"),
                "--only-summary",
                "--loglevel",
                "WARNING",
            ],
            cwd=ROOT,
            env={
                **os.environ,
                "WARDENT_ORIGIN_SECRET": ORIGIN_SECRET,
                "STRIPE_WEBHOOK_SECRET": STRIPE_SECRET,
            },
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    output = result.stdout[-4000:] + result.stderr[-6000:]
    failures = (tmp_path / "locust_failures.csv").read_text()
    assert result.returncode == 0, f"{output}\n{failures}"

    with (tmp_path / "locust_stats.csv").open() as file:
        stats = {row["Name"]: row for row in csv.DictReader(file) if row["Name"] != "Aggregated"}
    counts = {name: int(row["Request Count"]) for name, row in stats.items()}
    assert all(int(row["Failure Count"]) == 0 for row in stats.values()), failures

    def seen(name: str) -> int:
        return sum(count for key, count in counts.items() if key.startswith(name))

    # Trader: the whole journey, once each at least.
    for name in (
        "/api/auth/csrf",
        "/api/auth/register",
        "/api/symbols",
        "/api/candles",
        "/api/stream (SSE",
        "/api/quotes",
        "/api/trades",
    ):
        assert seen(name) > 0, (name, counts)
    # The others, each refused (or passed) as it should be.
    assert seen("[stripe signed] /stripe/webhook") > 0, counts
    assert seen("[crawler → 403]") > 0, counts
    assert seen("[crawler] /robots.txt") > 0, counts
    assert seen("[no origin secret → 403]") > 0, counts
    assert seen("[flooder limited → 429]") > 0, counts
    assert seen("[flooder banned → 403]") > 0, counts
