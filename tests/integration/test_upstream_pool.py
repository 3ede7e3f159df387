"""The keep-alive pool is bounded: at most `max_connections` to the upstream."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from tests.support.fake_upstream import FakeConnection, FakeUpstream
from tests.support.processes import running_wardent


async def test_pool_bound_queues_then_503s_and_reuses_connections(tmp_path: Path) -> None:
    release = asyncio.Event()

    async def slow_until_released(conn: FakeConnection) -> None:
        while True:
            head = await conn.read_request()
            if b"/hold" in head:
                await release.wait()
            await conn.respond(b"done")

    async with FakeUpstream(slow_until_released) as fake:
        with running_wardent(
            tmp_path,
            fake.url,
            upstream={"max_connections": 2, "max_idle": 2, "connect_timeout": "700ms"},
        ) as wardent:
            async with aiohttp.ClientSession() as session:

                async def get(path: str) -> int:
                    async with session.get(wardent.url + path) as response:
                        await response.read()
                        return response.status

                held = [asyncio.ensure_future(get(f"/hold/{i}")) for i in range(2)]
                await asyncio.sleep(0.3)
                # Both connections are busy: a third request waits, then gets a 503.
                assert await get("/third") == 503
                # A fourth waits and is handed a connection as soon as one frees up.
                waiting = asyncio.ensure_future(get("/fourth"))
                await asyncio.sleep(0.2)
                release.set()
                assert await asyncio.gather(*held) == [200, 200]
                assert await waiting == 200
                for _ in range(5):
                    assert await get("/more") == 200
    # Never more than two upstream connections, reused for every later request.
    assert fake.accepted == 2
