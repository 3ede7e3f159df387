"""The upstream's response head as the client gets it.

Wardent relays every field as it came, less the ones it must not relay
(hop-by-hop fields, the fields Connection names, the request id it sets itself):
case, order and duplicates kept, framing redone, interim responses dropped, a
head split across reads put together; a head that never ends, and a transfer
coding other than chunked, refused with a 502.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from tests.integration.test_guard_path import public_port, start_gateway
from tests.support.fake_upstream import FakeConnection, FakeUpstream
from wardent.gateway import Gateway
from wardent.transport.upstream import MAX_RESPONSE_HEAD


class Scripted:
    """An upstream that answers every request with the next scripted list of writes."""

    def __init__(self) -> None:
        self.writes: list[Sequence[bytes]] = []

    async def __call__(self, conn: FakeConnection) -> None:
        while True:
            await conn.read_request()
            for index, data in enumerate(self.writes.pop(0)):
                if index:
                    await asyncio.sleep(0.05)  # a separate read on Wardent's side
                conn.writer.write(data)
                await conn.writer.drain()


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[tuple[Scripted, Gateway]]:
    script = Scripted()
    async with FakeUpstream(script) as fake:
        gateway = await start_gateway(tmp_path, fake.url, [])
        try:
            yield script, gateway
        finally:
            await gateway.stop()


async def relayed(relay: tuple[Scripted, Gateway], *writes: bytes) -> tuple[list[bytes], bytes]:
    """The status line and field lines the client got, and the rest of what it read."""
    script, gateway = relay
    script.writes.append(writes)
    reader, writer = await asyncio.open_connection("127.0.0.1", public_port(gateway))
    try:
        # Closed after the answer: the rest is whatever comes before the end.
        writer.write(b"GET / HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
        rest = await asyncio.wait_for(reader.read(), 3)
    finally:
        writer.close()
    return head[:-4].split(b"\r\n"), rest


def names(lines: list[bytes]) -> list[bytes]:
    return [line.split(b":", 1)[0].lower() for line in lines[1:]]


def assert_refused_as_protocol_error(relay: tuple[Scripted, Gateway], lines: list[bytes]) -> None:
    assert lines[0].startswith(b"HTTP/1.1 502 "), lines
    metrics = relay[1].render_metrics().decode()
    assert 'wardent_upstream_errors_total{kind="protocol"} 1.0' in metrics


async def test_fields_pass_as_sent_and_hop_by_hop_ones_are_cut(
    relay: tuple[Scripted, Gateway],
) -> None:
    lines, body = await relayed(
        relay,
        b"HTTP/1.1 200 Fine\r\n"
        b"set-cookie: a=1\r\n"
        b"KEEP-ALIVE: timeout=5\r\n"
        b"Set-Cookie: b=2\r\n"
        b"Connection: keep-alive, X-Hop\r\n"
        b"X-Hop: secret\r\n"
        b"X-Hopper: kept\r\n"
        b"x-request-id: from-the-app\r\n"
        b"Trailer: X-T\r\n"
        b"Proxy-Connection: keep-alive\r\n"
        b"TE: trailers\r\n"
        b"Upgrade: h2c\r\n"
        b"Content-Length: 2\r\n"
        b"X-Spaces:\t  padded \t\r\n"
        b"keep-alive: max=100\r\n"
        b"\r\nok",
    )
    assert lines[0] == b"HTTP/1.1 200 Fine"
    assert lines[1:4] == [b"set-cookie: a=1", b"Set-Cookie: b=2", b"X-Hopper: kept"]
    assert b"Content-Length: 2" in lines
    assert [line for line in lines if line.startswith(b"X-Spaces:")] == [b"X-Spaces: padded \t"]
    request_ids = [line for line in lines if line.lower().startswith(b"x-request-id:")]
    assert len(request_ids) == 1 and b"from-the-app" not in request_ids[0]
    for name in (b"keep-alive", b"proxy-connection", b"x-hop", b"trailer", b"te", b"upgrade"):
        assert name not in names(lines), lines
    # Only Wardent's own (the client asked to close).
    assert [line for line in lines if line.lower().startswith(b"connection")] == [
        b"Connection: close"
    ]
    assert body == b"ok"


async def test_a_head_without_fields_and_an_http_10_status_line(
    relay: tuple[Scripted, Gateway],
) -> None:
    lines, body = await relayed(relay, b"HTTP/1.0 204 No Content\r\n\r\n")
    assert lines[0] == b"HTTP/1.1 204 No Content"
    assert body == b""
    lines, body = await relayed(relay, b"HTTP/1.1 200\r\nContent-Length: 3\r\n\r\nabc")
    assert lines[0] == b"HTTP/1.1 200 "  # RFC 9112: the space before the reason is not optional
    assert body == b"abc"


async def test_a_chunked_body_is_reframed_once(
    relay: tuple[Scripted, Gateway],
) -> None:
    lines, body = await relayed(
        relay,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    )
    assert names(lines).count(b"transfer-encoding") == 1
    assert b"Transfer-Encoding: chunked" in lines
    assert b"X-A: 1" in lines
    assert body == b"3\r\nabc\r\n0\r\n\r\n"


async def test_an_interim_response_then_the_head_in_the_same_read(
    relay: tuple[Scripted, Gateway],
) -> None:
    lines, body = await relayed(
        relay,
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Final: yes\r\n\r\nok",
    )
    assert lines[0] == b"HTTP/1.1 200 OK"
    assert b"X-Final: yes" in lines
    assert b"link" not in names(lines)
    assert body == b"ok"


async def test_a_head_split_across_reads(relay: tuple[Scripted, Gateway]) -> None:
    lines, body = await relayed(
        relay,
        b"HTTP/1.1 100 Continue\r",
        b"\n\r\nHTTP/1.1 201 Created\r\nX-Long: ",
        b"x" * 3000 + b"\r\nConnec",
        b"tion: keep-alive\r\nContent-Length: 4\r\n\r",
        b"\nbody",
    )
    assert lines[0] == b"HTTP/1.1 201 Created"
    assert b"X-Long: " + b"x" * 3000 in lines
    assert b"Connection: keep-alive" not in lines
    assert body == b"body"


async def test_the_bound_is_each_head_s_and_near_it_a_head_passes(
    relay: tuple[Scripted, Gateway],
) -> None:
    """~40 KB of 103 Early Hints, then a ~60 KB final head, in several reads: no one
    head reaches MAX_RESPONSE_HEAD, so the response is relayed (twice, over the same
    pooled connection: the count starts again with each exchange)."""
    hint = b"Link: </" + b"a" * 9000 + b">; rel=preload\r\n"
    field = b"X-Big: " + b"y" * 9000 + b"\r\n"
    for _ in range(2):
        lines, body = await relayed(
            relay,
            b"HTTP/1.1 103 Early Hints\r\n" + hint * 4 + b"\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n",
            *[field] * 6,
            b"\r\nok",
        )
        assert lines[0] == b"HTTP/1.1 200 OK", lines[0]
        assert len([line for line in lines if line.startswith(b"X-Big:")]) == 6
        assert body == b"ok"


async def test_a_head_that_never_ends_is_refused(relay: tuple[Scripted, Gateway]) -> None:
    field = b"X-Big: " + b"y" * 8000 + b"\r\n"
    lines, _ = await relayed(
        relay, b"HTTP/1.1 200 OK\r\n", *[field] * (MAX_RESPONSE_HEAD // len(field) + 2)
    )
    assert_refused_as_protocol_error(relay, lines)


@pytest.mark.parametrize("coding", [b"gzip", b"gzip, chunked", b"identity"])
async def test_a_transfer_coding_other_than_chunked_is_refused(
    relay: tuple[Scripted, Gateway], coding: bytes
) -> None:
    """Re-framing drops Transfer-Encoding: any coding but chunked would reach the
    client undone and unannounced, so, as nginx does, the response is a 502."""
    body = b"3\r\nabc\r\n0\r\n\r\n" if coding.endswith(b"chunked") else b"abc"
    lines, rest = await relayed(
        relay, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: " + coding + b"\r\n\r\n" + body
    )
    assert_refused_as_protocol_error(relay, lines)
    assert b"abc" not in rest
