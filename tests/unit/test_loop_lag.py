from __future__ import annotations

import asyncio
import time

from wardent.observe.loop_lag import LoopLagMonitor
from wardent.observe.metrics import GatewayMetrics


async def test_blocking_the_loop_shows_as_lag() -> None:
    metrics = GatewayMetrics(process_metrics=False)
    monitor = LoopLagMonitor(metrics, interval=0.01)
    monitor.start()
    try:
        await asyncio.sleep(0.05)
        assert metrics.loop_lag_seconds < 0.25
        time.sleep(0.3)  # noqa: ASYNC251 - a handler that blocks the loop, on purpose
        await asyncio.sleep(0.001)  # the probe runs first: its timer is overdue
        await asyncio.sleep(0.001)
        assert metrics.loop_lag_seconds >= 0.25
        assert monitor.max_lag >= 0.25
    finally:
        await monitor.stop()


async def test_last_beat_advances_and_stop_ends_the_task() -> None:
    loop = asyncio.get_running_loop()
    metrics = GatewayMetrics(process_metrics=False)
    monitor = LoopLagMonitor(metrics, interval=0.01)
    monitor.start()
    first = monitor.last_beat
    await asyncio.sleep(0.05)
    assert monitor.last_beat > first
    assert loop.time() - monitor.last_beat < 0.05
    await monitor.stop()
    beat = monitor.last_beat
    await asyncio.sleep(0.03)
    assert monitor.last_beat == beat
    await monitor.stop()  # stopping twice is harmless


async def test_idle_loop_has_little_lag() -> None:
    metrics = GatewayMetrics(process_metrics=False)
    monitor = LoopLagMonitor(metrics, interval=0.01)
    monitor.start()
    await asyncio.sleep(0.1)
    await monitor.stop()
    assert 0.0 <= metrics.loop_lag_seconds < 0.1
