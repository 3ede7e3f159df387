"""scripts/run-app for real: migrations, dev key, the feed worker and uvicorn as
separate processes on SQLite. Ticks must cross from the feed process to the web
process's event stream; a browser-like client registers, trades and resumes a stream."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def app(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADESIM_", "DATABASE_URL"))}
    env.update(
        TRADESIM_DATA_DIR=str(tmp_path / "data"),
        TRADESIM_PORT=str(port),
        TRADESIM_SIM_INTERVAL="0.1",
        TRADESIM_FLUSH_INTERVAL="0.05",
        TRADESIM_STREAM_POLL_INTERVAL="0.05",
    )
    log = (tmp_path / "run-app.log").open("wb")
    proc = subprocess.Popen(
        ["bash", str(ROOT / "scripts" / "run-app")],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield f"http://127.0.0.1:{port}"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) in (143, 0), (tmp_path / "run-app.log").read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    # Both children are gone with the script.
    assert (tmp_path / "data" / "jwt-private.pem").stat().st_mode & 0o777 == 0o600


async def wait_for_prices(session: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        try:
            async with session.get(f"{base}/api/symbols") as response:
                if response.status == 200:
                    body: dict[str, Any] = await response.json()
                    if all(s["price"] for s in body["symbols"]):
                        return body
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.2)
    raise AssertionError("the app did not serve prices within 40 s")


async def sse_events(response: aiohttp.ClientResponse) -> AsyncIterator[dict[str, str]]:
    fields: dict[str, str] = {}
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if "event" in fields:
                yield fields
            fields = {}
            continue
        name, _, value = line.partition(": ")
        fields[name] = value


async def first_events(
    session: aiohttp.ClientSession, url: str, count: int, **headers: str
) -> list[dict[str, str]]:
    events: list[dict[str, str]] = []
    async with session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=15)) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        async for event in sse_events(resp):
            events.append(event)
            if len(events) == count:
                break
    return events


@pytest.mark.timeout(120)
async def test_run_app_serves_the_api_with_live_prices_from_the_feed_process(app: str) -> None:
    jar = aiohttp.CookieJar(unsafe=True)  # cookies for a bare IP address
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        symbols = await wait_for_prices(session, app)
        assert {s["symbol"] for s in symbols["symbols"]} >= {"BTCUSDT", "ETHUSDT"}

        ticks = await first_events(session, f"{app}/api/stream?symbols=BTCUSDT", 3)
        assert all(e["event"] == "tick" for e in ticks)
        assert all(json.loads(e["data"])["symbol"] == "BTCUSDT" for e in ticks)
        ids = [int(e["id"]) for e in ticks]
        assert ids == sorted(ids)

        # Back after a disconnect: the stream resumes after the last id it saw.
        resumed = await first_events(
            session, f"{app}/api/stream", 2, **{"Last-Event-ID": str(ids[-1])}
        )
        assert all(int(e["id"]) > ids[-1] for e in resumed)

        async with session.get(f"{app}/api/auth/csrf") as response:
            token = (await response.json())["csrf_token"]
        headers = {"X-CSRFToken": token}
        credentials = {"username": "runner", "password": "a long password"}
        async with session.post(f"{app}/api/auth/register", json=credentials, headers=headers) as r:
            assert r.status == 201, await r.text()
        token = jar.filter_cookies(URL(app))["csrftoken"].value  # rotated at login
        headers = {"X-CSRFToken": token}
        order = {"symbol": "ETHUSDT", "side": "buy", "quantity": "0.5"}
        async with session.post(f"{app}/api/quotes", json=order, headers=headers) as r:
            assert r.status == 201, await r.text()
            quote_id = (await r.json())["id"]
        async with session.post(
            f"{app}/api/trades", json={"quote_id": quote_id}, headers=headers
        ) as r:
            assert r.status == 201, await r.text()
            assert (await r.json())["trade"]["symbol"] == "ETHUSDT"
        async with session.get(f"{app}/api/portfolio") as r:
            portfolio = await r.json()
        assert [h["asset"] for h in portfolio["holdings"]] == ["ETH"]

        async with session.get(f"{app}/api/candles?symbol=BTCUSDT&limit=5") as r:
            candles = (await r.json())["candles"]
        assert candles and Decimal(candles[-1]["close"]) > 0
