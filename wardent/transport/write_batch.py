"""Writes held until every event of a loop iteration has been handled.

Both sides of the proxy collect what they write and send it once an iteration,
with one writev a connection: sent at once, each request to the upstream woke
it (on a core it shares with Wardent it then preempted us: 0.87 context
switches a request, 0.52 held; `bench.py`'s preempted/req), and each response
woke the client's reader instead of once for a burst.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol


class HeldWrites(Protocol):
    def flush_now(self) -> None: ...


class WriteBatch:
    """Connections with writes held; `flush` runs once at the end of the iteration."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._held: list[HeldWrites] = []
        # How the flush is scheduled; the in-process benchmark runs it itself.
        self.call_soon: Callable[[Callable[[], object]], object] = loop.call_soon

    def add(self, conn: HeldWrites) -> None:
        held = self._held
        if not held:
            self.call_soon(self.flush)
        held.append(conn)

    def flush(self) -> None:
        held = self._held
        self._held = []
        for conn in held:
            conn.flush_now()
