"""Edge cases found in review, each pinned: smuggling through the Connection
header, pipelining order and bounds, stalled bodies, misbehaving upstreams,
lingering close, the Stripe route's body handling, the WebSocket gauge."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import websockets

from tests.support.fake_upstream import FakeConnection, FakeUpstream
from tests.support.processes import ADMIN_TOKEN, Upstream, free_port, running_wardent
from wardent.guards.stripe_signature import sign_for_tests

STRIPE = "whsec_edge_0a1b2c"


async def read_head_and_body(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + await reader.readexactly(length)


async def pump(writer: asyncio.StreamWriter, size: int) -> None:
    """Send `size` body bytes as fast as the peer takes them, until it closes."""
    block = b"x" * 65536
    try:
        for _ in range(size // len(block)):
            writer.write(block)
            await writer.drain()
    except ConnectionError:
        pass


async def test_connection_header_cannot_strip_content_length(tmp_path: Path) -> None:
    """`Connection: content-length` must not turn a body into a second request."""
    heads: list[bytes] = []

    async def record(conn: FakeConnection) -> None:
        while True:
            head = await conn.read_request()
            heads.append(head)
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await conn.reader.readexactly(length)
            await conn.respond(b"ok")

    async with FakeUpstream(record) as fake:
        with running_wardent(tmp_path, fake.url) as wardent:
            smuggled = b"GET /admin HTTP/1.1\r\nHost: internal\r\n\r\n"
            reader, writer = await asyncio.open_connection(wardent.host, wardent.port)
            writer.write(
                b"POST /a HTTP/1.1\r\nHost: a\r\nConnection: content-length\r\n"
                b"Content-Length: %d\r\n\r\n" % len(smuggled) + smuggled
            )
            answer = await asyncio.wait_for(read_head_and_body(reader), 3)
            writer.close()
    assert answer.startswith(b"HTTP/1.1 200")
    assert len(heads) == 1
    assert b"Content-Length: %d" % len(smuggled) in heads[0]


async def test_pipelined_answers_keep_order_behind_a_slow_request(
    tmp_path: Path, upstream: Upstream
) -> None:
    with running_wardent(tmp_path, upstream.url) as wardent:
        reader, writer = await asyncio.open_connection(wardent.host, wardent.port)
        writer.write(b"GET /slow?s=0.3 HTTP/1.1\r\nHost: a\r\n\r\n")
        await asyncio.sleep(0.05)
        writer.write(
            b"GET /echo/2 HTTP/1.1\r\nHost: a\r\n\r\nGET /echo/3 HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        bodies = [await asyncio.wait_for(read_head_and_body(reader), 5) for _ in range(3)]
        writer.close()
    assert bodies[0].endswith(b"slow done")
    assert b'"path": "/echo/2"' in bodies[1]
    assert b'"path": "/echo/3"' in bodies[2]


async def test_pipelined_answers_of_wardent_and_upstream_interleave_in_order(
    tmp_path: Path, upstream: Upstream
) -> None:
    """Responses are held until the loop iteration ends; Wardent's own answers
    (robots.txt, a rejection) must still go out in request order between them,
    and a closing answer must not drop what was held before it."""
    with running_wardent(tmp_path, upstream.url) as wardent:
        reader, writer = await asyncio.open_connection(wardent.host, wardent.port)
        writer.write(
            b"GET /echo/1 HTTP/1.1\r\nHost: a\r\n\r\n"
            b"GET /robots.txt HTTP/1.1\r\nHost: a\r\n\r\n"
            b"GET /echo/3 HTTP/1.1\r\nHost: a\r\n\r\n"
            b"GET /echo/4 HTTP/1.1\r\nHost: a\r\nUser-Agent: GPTBot/1.2\r\n"
            b"Connection: close\r\n\r\n"
        )
        data = await asyncio.wait_for(reader.read(), 10)  # to EOF: the last one closes
        writer.close()
    heads = [part.split(b"\r\n", 1)[0] for part in data.split(b"HTTP/1.1 ")[1:]]
    assert heads == [b"200 OK", b"200 OK", b"200 OK", b"403 Forbidden"], data
    first, robots, third = data.index(b"/echo/1"), data.index(b"User-agent"), data.index(b"/echo/3")
    assert first < robots < third


async def test_pipeline_far_past_its_bound_answers_the_queue_then_closes(
    tmp_path: Path, upstream: Upstream
) -> None:
    with running_wardent(tmp_path, upstream.url, http={"max_pipelined": 2}) as wardent:
        reader, writer = await asyncio.open_connection(wardent.host, wardent.port)
        writer.write(b"".join(b"GET /echo/p%d HTTP/1.1\r\nHost: a\r\n\r\n" % i for i in range(100)))
        data = await asyncio.wait_for(reader.read(), 10)  # to EOF: the server closes
        writer.close()
    answered = data.count(b"HTTP/1.1 200 OK")
    assert 3 <= answered <= 2 * 8 + 1  # the one in flight + the bounded queue


async def test_rejected_body_gets_its_answer_not_a_reset(
    tmp_path: Path, upstream: Upstream
) -> None:
    """Answering before the body is read, then closing, would reset the connection and
    destroy the answer: Wardent lingers, reading and dropping the rest."""
    with running_wardent(tmp_path, upstream.url, guards={"body_limit": {"max": "1MiB"}}) as wardent:
        for _ in range(5):
            reader, writer = await asyncio.open_connection(wardent.host, wardent.port)
            size = 8 * 1024 * 1024
            writer.write(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % size)

            task = asyncio.ensure_future(pump(writer, size))
            answer = await asyncio.wait_for(reader.read(200), 5)
            task.cancel()
            writer.close()
            assert answer.startswith(b"HTTP/1.1 413 ")


async def test_request_pipelined_behind_a_refused_body_is_dropped_quietly(
    tmp_path: Path, upstream: Upstream
) -> None:
    """A refused request with a body, its body and a second request in one read: the
    refusal arrives whole, the connection closes, and the second request is neither
    answered nor an internal error (it was parsed after the close had begun)."""
    with running_wardent(tmp_path, upstream.url, guards={"body_limit": {"max": "10B"}}) as wardent:
        reader, writer = await asyncio.open_connection(wardent.host, wardent.port)
        writer.write(
            b"POST /echo/a HTTP/1.1\r\nHost: a\r\nContent-Length: 20\r\n\r\n"
            + b"x" * 20
            + b"GET /echo/b HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        data = await asyncio.wait_for(reader.read(), 5)  # to EOF: it closes
        writer.close()
        log = wardent.output()
    assert data.startswith(b"HTTP/1.1 413 "), data
    assert data.count(b"HTTP/1.1 ") == 1, data
    assert "request callback failed" not in log, log
    assert "Traceback" not in log, log


async def test_stalled_request_body_is_answered_408(tmp_path: Path) -> None:
    async def wait_for_body(conn: FakeConnection) -> None:
        await conn.read_request()
        await conn.reader.read()

    async with FakeUpstream(wait_for_body) as fake:
        with running_wardent(tmp_path, fake.url, http={"body_timeout": "500ms"}) as wardent:
            reader, writer = await asyncio.open_connection(wardent.host, wardent.port)
            writer.write(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nhalf")
            started = time.monotonic()
            answer = await asyncio.wait_for(reader.read(200), 5)
            elapsed = time.monotonic() - started
            writer.close()
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert elapsed < 3


async def test_upstream_that_stops_reading_the_body_times_out(tmp_path: Path) -> None:
    async def never_read(conn: FakeConnection) -> None:
        await conn.read_request()
        await asyncio.sleep(30)

    async with FakeUpstream(never_read) as fake:
        with running_wardent(
            tmp_path,
            fake.url,
            upstream={"send_timeout": "1s"},
            guards={"body_limit": {"max": "1GiB"}},
        ) as wardent:
            reader, writer = await asyncio.open_connection(wardent.host, wardent.port)
            size = 64 * 1024 * 1024
            writer.write(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % size)

            task = asyncio.ensure_future(pump(writer, size))
            answer = await asyncio.wait_for(reader.read(200), 10)
            task.cancel()
            writer.close()
            entry = wardent.wait_access(lambda e: e["path"] == "/upload")
    assert answer.startswith(b"HTTP/1.1 504 ")
    assert entry["reason"] == "upstream:send_timeout"


async def test_unsolicited_bytes_never_reach_the_next_client(tmp_path: Path) -> None:
    async def chatty(conn: FakeConnection) -> None:
        while True:
            await conn.read_request()
            conn.writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nextra"
            )
            await conn.writer.drain()

    async with FakeUpstream(chatty) as fake:
        with running_wardent(tmp_path, fake.url) as wardent:
            async with aiohttp.ClientSession() as session:
                for _ in range(3):
                    async with session.get(wardent.url + "/x") as response:
                        assert response.status == 200
                        assert await response.read() == b"ok"


async def test_a_101_nobody_asked_for_is_a_502(tmp_path: Path) -> None:
    async def tunnel(conn: FakeConnection) -> None:
        await conn.read_request()
        conn.writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n"
        )
        await conn.writer.drain()
        await asyncio.sleep(5)

    async with FakeUpstream(tunnel) as fake:
        with running_wardent(tmp_path, fake.url) as wardent:
            async with aiohttp.ClientSession() as session:
                async with session.get(wardent.url + "/plain") as response:
                    assert response.status == 502


async def test_stripe_route_chunked_body_forwarded_once_and_stall_times_out(
    tmp_path: Path, upstream: Upstream
) -> None:
    with running_wardent(
        tmp_path,
        upstream.url,
        env={"STRIPE_SECRET": STRIPE},
        secrets={
            "admin_token": {"env": "WARDENT_ADMIN_TOKEN"},
            "stripe_webhook": {"env": "STRIPE_SECRET"},
        },
        routes=[
            {"name": "stripe", "match": {"path_prefix": "/echo/stripe"}, "stripe_signature": {}}
        ],
        http={"body_timeout": "500ms"},
    ) as wardent:
        payload = b'{"id": "evt_chunked"}'
        signature = sign_for_tests(payload, STRIPE.encode(), int(time.time()))

        async def chunks() -> object:
            yield payload[:5]
            await asyncio.sleep(0.05)
            yield payload[5:]

        async with aiohttp.ClientSession() as session:
            # Warm the pool so forwarding happens synchronously in the last callback.
            async with session.get(wardent.url + "/echo/warm") as response:
                await response.read()
            async with session.post(
                wardent.url + "/echo/stripe",
                data=chunks(),
                headers={"Stripe-Signature": signature.decode()},
            ) as response:
                assert response.status == 200
                assert (await response.json())["body_bytes"] == len(payload)
        # A body that never completes is answered 408 after body_timeout.
        reader, writer = await asyncio.open_connection(wardent.host, wardent.port)
        writer.write(
            b"POST /echo/stripe HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
            b"Stripe-Signature: %s\r\nContent-Length: 50\r\n\r\n" % signature
        )
        first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
        assert first.startswith(b"HTTP/1.1 100 Continue")
        writer.write(b"partial")
        answer = await asyncio.wait_for(reader.read(200), 5)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 408 ")


async def test_websocket_gauge_returns_to_zero_when_clients_drop(
    tmp_path: Path, upstream: Upstream
) -> None:
    with running_wardent(tmp_path, upstream.url) as wardent:
        for _ in range(3):
            socket = await websockets.connect(f"ws://{wardent.public}/ws")
            await socket.send("hi")
            assert await socket.recv() == "echo:hi"
            socket.transport.abort()  # the client vanishes, no close handshake
        await asyncio.sleep(0.5)
        async with aiohttp.ClientSession() as session:
            async with session.get(
                wardent.admin_url + "/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
            ) as response:
                text = await response.text()
    assert "wardent_websocket_connections_open 0.0" in text
    assert "wardent_requests_in_flight 0.0" in text


async def test_http_10_expect_gets_no_100_continue(tmp_path: Path, upstream: Upstream) -> None:
    with running_wardent(tmp_path, upstream.url) as wardent:
        reader, writer = await asyncio.open_connection(wardent.host, wardent.port)
        writer.write(
            b"POST /echo HTTP/1.0\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"
        )
        await asyncio.sleep(0.3)
        writer.write(b"abc")
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert b"100 Continue" not in answer


async def test_a_failed_connect_wakes_the_request_waiting_for_its_slot(tmp_path: Path) -> None:
    """With one slot and a dead upstream, the second request must not sit out the
    whole connect_timeout waiting for a slot the first attempt already gave up."""
    dead = f"http://127.0.0.1:{free_port()}"
    with running_wardent(
        tmp_path, dead, upstream={"max_connections": 1, "connect_timeout": "3s"}
    ) as wardent:
        async with aiohttp.ClientSession() as session:

            async def status() -> int:
                async with session.get(wardent.url + "/x") as response:
                    return response.status

            started = time.monotonic()
            statuses = await asyncio.gather(status(), status(), status())
            elapsed = time.monotonic() - started
    assert list(statuses) == [502, 502, 502]
    assert elapsed < 2
