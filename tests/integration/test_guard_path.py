"""The admit phase on real sockets: a Rejection becomes a bare response and the
request never reaches the upstream. The guards themselves come later; a test
guard stands in for them here, run by the real Gateway in this process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.fake_upstream import FakeConnection, FakeUpstream
from wardent.config.schema import Settings
from wardent.context import RequestContext
from wardent.gateway import Gateway
from wardent.guards.chain import Guard, Rejection
from wardent.runtime import Runtime

SETTINGS = {
    "listen": {"public": "127.0.0.1:0", "admin": "127.0.0.1:0"},
    "upstream": {"url": "http://127.0.0.1:1"},
    "client_ip": {"trusted_proxies": ["127.0.0.1/32"]},
    "telemetry": {"access_log": "off"},
}


def deny_path_prefix(prefix: str, status: int, retry_after: int | None = None) -> Guard:
    def check(ctx: RequestContext) -> Rejection | None:
        if ctx.path.startswith(prefix):
            return Rejection(status, "test rule", retry_after)
        return None

    return Guard("test_guard", check)


@pytest.fixture
async def upstream_hits() -> AsyncIterator[tuple[FakeUpstream, list[bytes]]]:
    hits: list[bytes] = []

    async def answer(conn: FakeConnection) -> None:
        while True:
            head = await conn.read_request()
            hits.append(head)
            await conn.respond(b"upstream")

    async with FakeUpstream(answer) as fake:
        yield fake, hits


async def start_gateway(
    tmp_path: Path, upstream_url: str, guards: list[Guard], **extra: object
) -> Gateway:
    data = {
        **SETTINGS,
        "upstream": {"url": upstream_url},
        "bans": {"store": str(tmp_path / "bans.sqlite3")},
        **extra,
    }
    settings = Settings.model_validate(data, context={"environ": {}, "base_dir": tmp_path})
    gateway = Gateway(tmp_path / "unused.yaml", settings)
    gateway.runtime = Runtime(settings, guards=guards)
    await gateway.start()
    return gateway


async def exchange(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(65536), 3)
    writer.close()
    return data


def public_port(gateway: Gateway) -> int:
    assert gateway.server is not None
    return int(gateway.server.sockets[0].getsockname()[1])


async def test_rejection_is_bare_and_never_forwarded(
    tmp_path: Path, upstream_hits: tuple[FakeUpstream, list[bytes]]
) -> None:
    fake, hits = upstream_hits
    gateway = await start_gateway(tmp_path, fake.url, [deny_path_prefix("/deny", 429, 7)])
    try:
        port = public_port(gateway)
        answer = await exchange(port, b"GET /deny/x HTTP/1.1\r\nHost: a\r\n\r\n")
        head, _, body = answer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        assert lines[0] == b"HTTP/1.1 429 Too Many Requests"
        assert b"Content-Length: 0" in lines
        assert b"Retry-After: 7" in lines
        assert not any(line.startswith(b"Wardent-Reason") for line in lines)
        assert body == b""
        assert hits == []
        allowed = await exchange(port, b"GET /fine HTTP/1.1\r\nHost: a\r\n\r\n")
        assert allowed.startswith(b"HTTP/1.1 200")
        assert len(hits) == 1
        metrics = gateway.render_metrics().decode()
        assert 'wardent_rejections_total{guard="test_guard",status="429"} 1.0' in metrics
    finally:
        await gateway.stop()


async def test_rejected_request_with_a_body_closes_the_connection(
    tmp_path: Path, upstream_hits: tuple[FakeUpstream, list[bytes]]
) -> None:
    """An unread body must never be parsed as the next request (no smuggling by body)."""
    fake, hits = upstream_hits
    gateway = await start_gateway(tmp_path, fake.url, [deny_path_prefix("/deny", 403)])
    try:
        smuggled = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
        request = (
            b"POST /deny HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(smuggled)
            + smuggled
        )
        reader, writer = await asyncio.open_connection("127.0.0.1", public_port(gateway))
        writer.write(request)
        answer = await asyncio.wait_for(reader.read(), 3)  # read to EOF: the server closes
        writer.close()
        assert answer.startswith(b"HTTP/1.1 403 Forbidden\r\n")
        assert answer.count(b"HTTP/1.1") == 1
        assert hits == []
    finally:
        await gateway.stop()


async def test_debug_headers_name_the_guard(
    tmp_path: Path, upstream_hits: tuple[FakeUpstream, list[bytes]]
) -> None:
    fake, _ = upstream_hits
    gateway = await start_gateway(
        tmp_path, fake.url, [deny_path_prefix("/deny", 403)], debug_headers=True
    )
    try:
        answer = await exchange(public_port(gateway), b"GET /deny HTTP/1.1\r\nHost: a\r\n\r\n")
        assert b"\r\nWardent-Reason: test_guard\r\n" in answer
    finally:
        await gateway.stop()


async def test_guard_sees_identified_client_and_route(
    tmp_path: Path, upstream_hits: tuple[FakeUpstream, list[bytes]]
) -> None:
    fake, _ = upstream_hits
    seen: list[tuple[str, str, str]] = []

    def record(ctx: RequestContext) -> None:
        assert ctx.client is not None
        seen.append((ctx.client.ip, ctx.client.key, ctx.route.name))

    gateway = await start_gateway(
        tmp_path,
        fake.url,
        [Guard("observer", record)],
        routes=[{"name": "api", "match": {"path_prefix": "/api/"}}],
    )
    try:
        port = public_port(gateway)
        await exchange(
            port,
            b"GET /api/x HTTP/1.1\r\nHost: a\r\nCF-Connecting-IP: 2001:db8:5:6::7\r\n\r\n",
        )
        await exchange(port, b"GET /other HTTP/1.1\r\nHost: a\r\n\r\n")
    finally:
        await gateway.stop()
    assert seen == [
        ("2001:db8:5:6::7", "2001:db8:5:6::/64", "api"),
        ("127.0.0.1", "127.0.0.1", "default"),
    ]
