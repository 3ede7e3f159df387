"""One thread that owns one database connection, for asyncio code that needs the ORM.

Django's ORM is synchronous and its connections are per thread. The feed worker and
the stream's poller each run their queries on a DbThread: one long-lived connection
instead of one per query, and never a blocking query on the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from django.db import connection

P = ParamSpec("P")
T = TypeVar("T")


def _close_connection() -> None:
    # `connection` resolves to the calling thread's connection when it is used,
    # which is why this runs inside the thread rather than being passed in.
    connection.close()


class DbThread:
    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=name)

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    async def reset(self) -> None:
        """Drops the connection (after an error: the next query reconnects)."""
        await self.run(_close_connection)

    async def close(self) -> None:
        await self.reset()
        self._executor.shutdown(wait=True)
