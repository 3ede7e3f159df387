"""Closed connections are freed when they close, not by the garbage collector.

A protocol and its httptools parser point at each other (the parser's callbacks
are the protocol's bound methods). Left alone, every closed connection is a
cycle that only a full collection frees: after upstream-connection churn
(past `max_idle`, or an app closing idle connections) ~10,000 at a time, and a
15-25 ms stall of every request while the collector walks them. The request
path breaks the cycle on close; here the collector is off, and nothing of the
closed connections may be left behind.
"""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

from tests.integration.test_guard_path import exchange, public_port, start_gateway
from tests.support.fake_upstream import FakeConnection, FakeUpstream

EXCHANGES = 30


def live(type_name: str) -> int:
    return sum(1 for obj in gc.get_objects() if type(obj).__name__ == type_name)


async def test_closed_client_and_upstream_connections_leave_no_cycles(tmp_path: Path) -> None:
    async def answer_then_close(conn: FakeConnection) -> None:
        await conn.read_request()
        conn.writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await conn.writer.drain()

    async with FakeUpstream(answer_then_close) as fake:
        gateway = await start_gateway(tmp_path, fake.url, [])
        port = public_port(gateway)
        gc.collect()
        before = {name: live(name) for name in ("ClientConnection", "UpstreamConnection")}
        gc.disable()
        try:
            for index in range(EXCHANGES):
                answer = await exchange(port, b"GET /%d HTTP/1.1\r\nHost: a\r\n\r\n" % index)
                assert answer.startswith(b"HTTP/1.1 200 "), answer
            # connection_lost runs a loop iteration or two after each close.
            for _ in range(50):
                if not gateway.connections and not gateway.pool.open:
                    break
                await asyncio.sleep(0.02)
            after = {name: live(name) for name in before}
        finally:
            gc.enable()
            await gateway.stop()
    assert fake.accepted == EXCHANGES  # every upstream connection was closed after use
    assert after == before, (before, after)
