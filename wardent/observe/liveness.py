"""systemd's notify protocol: one datagram to $NOTIFY_SOCKET per state change.

The protocol is a single `sendto` of `KEY=VALUE` lines, so it is spoken
directly rather than through a library. Without NOTIFY_SOCKET (not started by
systemd, or Type=simple) every call is a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wardent.observe.loop_lag import LoopLagMonitor
    from wardent.state.keeper import BanKeeper

log = logging.getLogger("wardent.liveness")


class SystemdNotifier:
    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        self.address: str | None = None
        if address:
            # "@name" is a socket in the abstract namespace: a leading NUL byte.
            self.address = "\0" + address[1:] if address.startswith("@") else address
        self._socket: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, state: str) -> bool:
        """Send `state` (e.g. "READY=1"); False if it could not be delivered."""
        if self.address is None:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                )
                self._socket.setblocking(False)
            self._socket.sendto(state.encode(), self.address)
        except OSError as error:
            log.warning("sd_notify failed", extra={"state": state, "error": str(error)})
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.notify(f"READY=1\nSTATUS={status}\nMAINPID={os.getpid()}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1\nSTATUS=stopping: finishing in-flight requests")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


class Watchdog:
    """Pings systemd's watchdog only while the process can prove it is alive.

    A ping needs three proofs: this task ran (the event loop turns), the loop
    lag probe ran recently and saw little lag, and the ban keeper's heartbeat
    is fresh and it has not given up. Any stall stops the pings; systemd then
    restarts the service after WatchdogSec. Without WATCHDOG_USEC (no
    watchdog configured) nothing is sent.
    """

    def __init__(
        self,
        notifier: SystemdNotifier,
        lag: LoopLagMonitor,
        keeper: BanKeeper,
        *,
        max_loop_lag: float,
        max_keeper_silence: float,
        interval: float | None = None,
    ) -> None:
        self.notifier = notifier
        self.lag = lag
        self.keeper = keeper
        self.max_loop_lag = max_loop_lag
        self.max_keeper_silence = max_keeper_silence
        self.interval = interval if interval is not None else _watchdog_interval()
        self.pings = 0
        self.withheld = 0
        self.why_not = ""
        self._task: asyncio.Task[None] | None = None

    def alive(self, now: float) -> bool:
        """Whether every part proves it is alive now; `why_not` says what failed."""
        lag = self.lag.metrics.loop_lag_seconds
        if lag > self.max_loop_lag:
            self.why_not = f"event loop lag {lag:.3f}s over {self.max_loop_lag}s"
        elif now - self.lag.last_beat > self.max_loop_lag + self.lag.interval:
            self.why_not = "the loop lag probe has not run"
        elif not self.keeper.healthy:
            self.why_not = "the ban keeper died too often and was not restarted"
        elif now - self.keeper.heartbeat > self.max_keeper_silence:
            self.why_not = f"no keeper heartbeat for {now - self.keeper.heartbeat:.1f}s"
        else:
            self.why_not = ""
            return True
        return False

    def start(self) -> None:
        if self.interval is not None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="wardent-watchdog"
            )

    async def _run(self) -> None:
        assert self.interval is not None
        loop = asyncio.get_running_loop()
        reported = False
        while True:
            await asyncio.sleep(self.interval)
            if self.alive(loop.time()):
                self.notifier.notify("WATCHDOG=1")
                self.pings += 1
                reported = False
            else:
                self.withheld += 1
                if not reported:
                    log.error("watchdog pings withheld", extra={"why": self.why_not})
                    reported = True

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _watchdog_interval() -> float | None:
    """Half of WATCHDOG_USEC (as sd_watchdog_enabled advises), if it is meant for us."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(int(usec) / 2_000_000, 0.05)
    except ValueError:
        return None
