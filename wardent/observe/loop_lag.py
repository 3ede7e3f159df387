"""Event-loop lag: how late a timer that should fire every `interval` really fires.

A request handler that blocks the loop (a slow disk write, a CPU-bound call)
delays every other connection; this shows it as the gauge
`wardent_event_loop_lag_seconds`, and `last_beat` lets a watchdog see that
the loop is alive at all (DESIGN.md, "Liveness").
"""

from __future__ import annotations

import asyncio
import contextlib

from wardent.observe.metrics import GatewayMetrics

__all__ = ["LoopLagMonitor"]


class LoopLagMonitor:
    def __init__(self, metrics: GatewayMetrics, interval: float = 0.25) -> None:
        self.metrics = metrics
        self.interval = interval
        self.last_beat = 0.0  # loop.time() of the last wake-up: the loop's heartbeat
        self.max_lag = 0.0  # the largest lag seen since start
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start probing; call from inside the running loop."""
        if self._task is not None and not self._task.done():
            return
        loop = asyncio.get_running_loop()
        self.last_beat = loop.time()
        self._task = loop.create_task(self._run(loop), name="wardent-loop-lag")

    async def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        interval = self.interval
        metrics = self.metrics
        while True:
            due = loop.time() + interval
            await asyncio.sleep(interval)
            now = loop.time()
            lag = max(0.0, now - due)
            metrics.loop_lag_seconds = lag
            self.max_lag = max(self.max_lag, lag)
            self.last_beat = now

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
