"""Liveness: the watchdog pings only while the loop and the ban keeper prove they
are alive; a keeper that keeps dying stops the pings and fails /readyz."""

from __future__ import annotations

import asyncio
import socket
import tempfile
from pathlib import Path

import aiohttp
import pytest

from wardent.config.schema import Settings
from wardent.gateway import Gateway
from wardent.state.keeper import Violation

TOKEN = "liveness-token"


def settings(tmp_path: Path) -> Settings:
    data = {
        "listen": {"public": "127.0.0.1:0", "admin": "127.0.0.1:0"},
        "upstream": {"url": "http://127.0.0.1:1"},
        "secrets": {"admin_token": {"env": "TOKEN"}},
        "telemetry": {"access_log": "off"},
        "bans": {"store": str(tmp_path / "bans.sqlite3")},
        "liveness": {"max_keeper_silence": "2s"},
    }
    return Settings.model_validate(data, context={"environ": {"TOKEN": TOKEN}})


async def readyz(gateway: Gateway) -> dict[str, bool]:
    """/readyz's checks (the upstream is down in these tests: only `keeper` matters)."""
    assert gateway.admin is not None
    host, port = gateway.admin.addresses[0][:2]
    async with aiohttp.ClientSession() as session:
        async with session.get(
            f"http://{host}:{port}/readyz", headers={"Authorization": f"Bearer {TOKEN}"}
        ) as response:
            checks: dict[str, bool] = (await response.json())["checks"]
            assert response.status == (200 if all(checks.values()) else 503)
            return checks


async def test_pings_stop_when_the_keeper_keeps_dying(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with tempfile.TemporaryDirectory(prefix="wd-", dir="/tmp") as short:
        address = str(Path(short) / "notify")
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        receiver.bind(address)
        receiver.setblocking(False)
        monkeypatch.setenv("NOTIFY_SOCKET", address)
        monkeypatch.setenv("WATCHDOG_USEC", "100000")  # ping every 50 ms
        gateway = Gateway(tmp_path / "unused.yaml", settings(tmp_path))
        gateway.keeper.restart_delay = 0.0
        await gateway.start()
        try:
            await asyncio.sleep(0.4)
            messages = []
            while True:
                try:
                    messages.append(receiver.recv(4096).decode())
                except BlockingIOError:
                    break
            assert any("READY=1" in message for message in messages)
            assert sum(message == "WATCHDOG=1" for message in messages) >= 3
            assert (await readyz(gateway))["keeper"] is True

            async def die(violation: Violation) -> None:
                raise RuntimeError("simulated keeper crash")

            monkeypatch.setattr(gateway.keeper, "_handle_violation", die)
            for index in range(20):
                gateway.keeper.report(f"198.51.100.{index}", f"198.51.100.{index}", "test")
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)
            assert not gateway.keeper.healthy
            assert gateway.keeper.restarts >= 5
            assert (await readyz(gateway))["keeper"] is False
            # Drain what was sent, then no more pings arrive.
            await asyncio.sleep(0.2)
            while True:
                try:
                    receiver.recv(4096)
                except BlockingIOError:
                    break
            await asyncio.sleep(0.4)
            late = []
            while True:
                try:
                    late.append(receiver.recv(4096).decode())
                except BlockingIOError:
                    break
            assert "WATCHDOG=1" not in late
            assert gateway.watchdog.withheld > 0
            assert "keeper" in gateway.watchdog.why_not
            metrics = gateway.render_metrics().decode()
            assert "wardent_keeper_healthy 0.0" in metrics
        finally:
            await gateway.stop()
            receiver.close()


async def test_a_stalled_loop_withholds_the_ping(tmp_path: Path) -> None:
    gateway = Gateway(tmp_path / "unused.yaml", settings(tmp_path))
    await gateway.start()
    try:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0.3)
        assert gateway.watchdog.alive(loop.time())
        gateway.metrics.loop_lag_seconds = 5.0  # what the probe reports after a stall
        assert not gateway.watchdog.alive(loop.time())
        assert "lag" in gateway.watchdog.why_not
    finally:
        await gateway.stop()
