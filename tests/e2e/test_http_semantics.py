"""HTTP/1.1 done right through Wardent: bodies, framing, pipelining, connection handling,
hop-by-hop headers, forwarding headers and request IDs.

Wire-level behaviour is checked on raw sockets, where a stray byte of body or a
missing close is visible; the rest uses aiohttp.
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from tests.support.processes import Wardent

pytestmark = pytest.mark.e2e


NO_BODY_STATUSES = (204, 304)


# -- a small HTTP/1.1 response reader over a raw socket -------------------------


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    head: bytes = field(default=b"", repr=False)

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def json(self) -> Any:
        return json.loads(self.body)


class Wire:
    """A raw client connection that reads responses exactly as framed, nothing more."""

    def __init__(self, wardent: Wardent, timeout: float = 3.0) -> None:
        self.sock = socket.create_connection((wardent.host, wardent.port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buffer = b""

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError(f"connection closed; unread: {self.buffer!r}")
        self.buffer += data

    def read_until(self, separator: bytes) -> bytes:
        while separator not in self.buffer:
            self._fill()
        data, _, self.buffer = self.buffer.partition(separator)
        return data + separator

    def read_exact(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_head(self) -> Response:
        head = self.read_until(b"\r\n\r\n")
        lines = head[:-4].decode("latin-1").split("\r\n")
        version, status, *_ = lines[0].split(" ", 2)
        assert version == "HTTP/1.1", f"status line {lines[0]!r}"
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            assert sep, f"malformed header line {line!r}"
            headers.append((name, value.strip()))
        return Response(int(status), headers, head=head)

    def read_response(self, method: str = "GET") -> Response:
        response = self.read_head()
        if method == "HEAD" or response.status in NO_BODY_STATUSES or response.status < 200:
            return response
        encoding = response.header("Transfer-Encoding")
        length = response.header("Content-Length")
        if encoding is not None:
            assert encoding.lower() == "chunked", response.head
            assert length is None, f"both Content-Length and chunked: {response.head!r}"
            response.body = self.read_chunked()
        elif length is not None:
            response.body = self.read_exact(int(length))
        else:
            response.body = self.read_to_close()
        return response

    def read_chunked(self) -> bytes:
        body = b""
        while True:
            size_line = self.read_until(b"\r\n")[:-2]
            size = int(size_line.split(b";", 1)[0], 16)
            if size == 0:
                trailer = self.read_until(b"\r\n")
                while trailer != b"\r\n":
                    trailer = self.read_until(b"\r\n")
                return body
            body += self.read_exact(size)
            assert self.read_exact(2) == b"\r\n", "chunk not followed by CRLF"

    def read_to_close(self) -> bytes:
        while True:
            try:
                self._fill()
            except EOFError:
                data, self.buffer = self.buffer, b""
                return data

    def closed_by_server(self, timeout: float = 2.0) -> bool:
        """True if the server closes (EOF or reset) with nothing more to read."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
        assert not data and not self.buffer, f"unexpected bytes: {self.buffer + data!r}"
        return True


def get(path: str, *extra: str, host: str = "x", version: str = "1.1") -> bytes:
    lines = [f"GET {path} HTTP/{version}", f"Host: {host}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def headers_of(echo: Any) -> list[tuple[str, str]]:
    return [(name, value) for name, value in echo["headers"]]


def values(echo: Any, name: str) -> list[str]:
    return [value for key, value in echo["headers"] if key.lower() == name.lower()]


# -- bodies and framing -------------------------------------------------------------


@pytest.mark.parametrize("path", ["/echo/head", "/big?n=100000"], ids=["length", "chunked"])
def test_head_carries_no_body(wardent: Wardent, path: str) -> None:
    """The next pipelined answer starts right after the HEAD's head: no body in between.

    The upstream answers HEAD with the GET's Content-Length (/echo) or its
    Transfer-Encoding: chunked (/big); either way no body byte may follow.
    """
    with Wire(wardent) as wire:
        wire.send(
            f"HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            + b"GET /echo/after-head HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        head = wire.read_head()
        assert head.status == 200
        second = wire.read_response()
        assert second.status == 200, f"after HEAD: {head.head!r} then {second.head!r}"
        assert second.json()["path"] == "/echo/after-head"
        assert second.json()["method"] == "GET"
        assert wire.buffer == b""


@pytest.mark.parametrize("status", NO_BODY_STATUSES)
def test_no_body_statuses(wardent: Wardent, status: int) -> None:
    with Wire(wardent) as wire:
        wire.send(get(f"/status/{status}"))
        head = wire.read_head()
        assert head.status == status
        assert head.header("Transfer-Encoding") is None, head.head
        assert head.header("Content-Length") in (None, "0"), head.head
        # Nothing follows the head: the next answer on the connection starts at once.
        wire.send(get(f"/echo/after-{status}"))
        after = wire.read_response()
        assert after.status == 200, after.head
        assert after.json()["path"] == f"/echo/after-{status}"


def test_chunked_request_body_reaches_upstream(wardent: Wardent) -> None:
    pieces = [b"hello", b"0123456789" * 100, b"x" * 4096, b"!"]
    with Wire(wardent) as wire:
        wire.send(
            b"POST /echo/chunked-in HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        for piece in pieces:
            time.sleep(0.05)
            wire.send(b"%x\r\n" % len(piece))
            time.sleep(0.02)
            wire.send(piece + b"\r\n")
        time.sleep(0.05)
        wire.send(b"0\r\n\r\n")
        response = wire.read_response()
    assert response.status == 200, response.head
    echo = response.json()
    assert echo["method"] == "POST"
    assert echo["body_bytes"] == sum(len(piece) for piece in pieces)
    framing = (values(echo, "Content-Length"), values(echo, "Transfer-Encoding"))
    assert framing in (([], ["chunked"]), ([str(echo["body_bytes"])], [])), framing


@pytest.mark.parametrize("size", [200_000, 65536 * 3])
def test_chunked_response_is_complete(wardent: Wardent, size: int) -> None:
    with Wire(wardent) as wire:
        wire.send(get(f"/big?n={size}"))
        response = wire.read_response()
        assert response.status == 200
        assert len(response.body) == size
        assert response.body == b"x" * size
        # The connection is still usable: the framing ended exactly where it should.
        wire.send(get("/echo/after-big"))
        assert wire.read_response().json()["path"] == "/echo/after-big"


async def test_chunked_response_with_aiohttp(wardent: Wardent) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(wardent.url + "/big?n=1000000") as response,
    ):
        body = await response.read()
    assert response.status == 200
    assert len(body) == 1_000_000


def test_expect_100_continue(wardent: Wardent) -> None:
    body = b"hello world"
    with Wire(wardent) as wire:
        wire.send(
            b"POST /echo/expect HTTP/1.1\r\nHost: x\r\n"
            + b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % len(body)
        )
        interim = wire.read_head()  # before any body byte was sent
        assert interim.status == 100, interim.head
        assert interim.head.startswith(b"HTTP/1.1 100 Continue\r\n"), interim.head
        wire.send(body)
        response = wire.read_response()
        assert response.status == 200, response.head
        echo = response.json()
        assert echo["body_bytes"] == len(body)
        assert echo["path"] == "/echo/expect"
        assert wire.buffer == b"", "only one final response"


def test_pipelined_requests_answered_in_order(wardent: Wardent) -> None:
    paths = ["/echo/p1", "/echo/p2?q=2", "/echo/p3"]
    with Wire(wardent) as wire:
        wire.send(b"".join(get(path) for path in paths))
        answered = [wire.read_response().json()["path"] for _ in paths]
    assert answered == paths


def test_pipelined_burst_in_one_send_all_answered(wardent: Wardent) -> None:
    """32 small GETs arriving in one segment: every one is answered, in order.

    More requests than `http.max_pipelined` may arrive in one read; the proxy may stop
    reading to bound its queue, but a request it has parsed must not be dropped unanswered.
    """
    paths = [f"/echo/burst-{index}" for index in range(32)]
    answered: list[str] = []
    with Wire(wardent) as wire:
        wire.send(b"".join(get(path) for path in paths))
        try:
            for _ in paths:
                answered.append(wire.read_response().json()["path"])
        except EOFError:
            pass
    assert answered == paths, f"{len(answered)} of {len(paths)} answered, then the server closed"


def test_pipelined_slow_first_request_stays_first(wardent: Wardent) -> None:
    with Wire(wardent) as wire:
        wire.send(get("/slow?s=0.3") + get("/echo/fast-1") + get("/echo/fast-2"))
        first = wire.read_response()
        assert first.status == 200
        assert first.body == b"slow done"
        assert wire.read_response().json()["path"] == "/echo/fast-1"
        assert wire.read_response().json()["path"] == "/echo/fast-2"


def test_pipelined_post_bodies_stay_with_their_requests(wardent: Wardent) -> None:
    with Wire(wardent) as wire:
        wire.send(
            b"POST /echo/b1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
            + b"POST /echo/b2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"4\r\nwxyz\r\n1\r\n!\r\n0\r\n\r\n"
            + get("/echo/b3")
        )
        first, second, third = (wire.read_response().json() for _ in range(3))
    assert (first["path"], first["body_bytes"]) == ("/echo/b1", 3)
    assert (second["path"], second["body_bytes"]) == ("/echo/b2", 5)
    assert (third["path"], third["body_bytes"]) == ("/echo/b3", 0)


# -- connection handling ----------------------------------------------------------------


def test_connection_close_is_honoured(wardent: Wardent) -> None:
    with Wire(wardent) as wire:
        wire.send(get("/echo/close", "Connection: close"))
        response = wire.read_response()
        assert response.status == 200
        assert response.json()["path"] == "/echo/close"
        assert wire.closed_by_server(), (
            "the server kept the connection open after Connection: close"
        )


def test_connection_close_stops_the_pipeline(wardent: Wardent) -> None:
    """A request after one marked Connection: close is never answered."""
    with Wire(wardent) as wire:
        wire.send(get("/echo/last", "Connection: close") + get("/echo/never"))
        assert wire.read_response().json()["path"] == "/echo/last"
        assert wire.closed_by_server()


def test_http_10_without_keep_alive_is_closed(wardent: Wardent) -> None:
    with Wire(wardent) as wire:
        wire.send(get("/echo/h10", version="1.0"))
        response = wire.read_response()
        assert response.status == 200
        assert response.json()["path"] == "/echo/h10"
        assert wire.closed_by_server(), "an HTTP/1.0 request without keep-alive stays open"


@pytest.mark.parametrize("connection", [None, "Connection: keep-alive"])
def test_http_10_client_gets_no_chunked_framing(wardent: Wardent, connection: str | None) -> None:
    """An HTTP/1.0 client cannot read chunked: a chunked upstream answer ends at close.
    (Without a Connection header the version is read off keep-alive, with one it is
    asked of the parser: both ways.)"""
    headers = [connection] if connection else []
    with Wire(wardent) as wire:
        wire.send(get("/big?n=100000", *headers, version="1.0"))
        response = wire.read_response()
        assert response.status == 200
        assert response.header("Transfer-Encoding") is None, response.head
        assert response.body == b"x" * 100000


def test_keep_alive_connection_stays_open(wardent: Wardent) -> None:
    """The control for the close tests: without `close`, the connection is reused."""
    with Wire(wardent) as wire:
        for index in range(3):
            wire.send(get(f"/echo/ka-{index}"))
            assert wire.read_response().json()["path"] == f"/echo/ka-{index}"
        assert not wire.closed_by_server(timeout=0.3)


GPTBOT = "User-Agent: Mozilla/5.0 (compatible; GPTBot/1.2; +https://openai.com/gptbot)"


@pytest.mark.parametrize("path", ["/echo/bot", "/robots.txt"])
def test_wardents_own_answer_keeps_the_connection_open(wardent: Wardent, path: str) -> None:
    """Wardent answers a blocked crawler (403) or robots.txt itself, before the parser
    has finished the request. Without a body left to read and without `Connection:
    close`, the connection must stay open: once, it was closed silently, and a client
    reusing it (aiohttp, 429s and 403s under a flood) got `Server disconnected`."""
    with Wire(wardent) as wire:
        for index in range(3):
            wire.send(get(f"{path}?{index}", GPTBOT))
            response = wire.read_response()
            assert response.status == (403 if path == "/echo/bot" else 200)
            assert response.header("Connection") is None, response.head
        wire.send(get("/echo/after"))
        assert wire.read_response().json()["path"] == "/echo/after"
        assert not wire.closed_by_server(timeout=0.3)


def test_robots_txt_asked_with_an_upgrade_says_close_and_closes(wardent: Wardent) -> None:
    """Wardent answers robots.txt itself; after an Upgrade request nothing is parsed,
    so the answer must say it closes (a kept-open connection would hang)."""
    with Wire(wardent) as wire:
        wire.send(get("/robots.txt", "Connection: Upgrade", "Upgrade: websocket"))
        response = wire.read_response()
        assert response.status == 200
        assert response.header("Connection") == "close", response.head
        assert wire.closed_by_server()


def test_rejected_upgrade_says_close_and_closes(wardent: Wardent) -> None:
    """After an Upgrade request nothing more is parsed: a refusal must say it closes."""
    with Wire(wardent) as wire:
        wire.send(get("/ws", GPTBOT, "Connection: Upgrade", "Upgrade: websocket"))
        response = wire.read_response()
        assert response.status == 403
        assert response.header("Connection") == "close", response.head
        assert wire.closed_by_server()


async def test_fifty_requests_on_one_keep_alive_connection(wardent: Wardent) -> None:
    created = 0

    async def on_create(*_: object) -> None:
        nonlocal created
        created += 1

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(on_create)
    statuses = []
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=1), trace_configs=[trace]
    ) as session:
        for index in range(50):
            async with session.get(f"{wardent.url}/echo/ka-{index}") as response:
                statuses.append(response.status)
                assert (await response.json())["path"] == f"/echo/ka-{index}"
    assert statuses == [200] * 50
    assert created == 1, f"{created} connections for 50 keep-alive requests"


# -- hop-by-hop headers ------------------------------------------------------------------


def test_hop_by_hop_request_headers_never_reach_upstream(wardent: Wardent) -> None:
    with Wire(wardent) as wire:
        wire.send(
            get(
                "/echo/hop",
                "Connection: X-Secret-Hop, keep-alive",
                "X-Secret-Hop: 1",
                "Keep-Alive: 5",
                "TE: trailers",
                "Trailer: X-Later",
                "Proxy-Connection: keep-alive",
                "X-End-To-End: kept",
            )
        )
        echo = wire.read_response().json()
    names = {name.lower() for name, _ in headers_of(echo)}
    for hop in ("x-secret-hop", "keep-alive", "te", "trailer", "proxy-connection"):
        assert hop not in names, f"{hop} reached the upstream: {echo['headers']}"
    for value in values(echo, "Connection"):
        assert "x-secret-hop" not in value.lower(), echo["headers"]
    assert values(echo, "X-End-To-End") == ["kept"]


def test_hop_by_hop_response_headers_never_reach_client(wardent: Wardent) -> None:
    with Wire(wardent) as wire:
        wire.send(get("/headers"))
        response = wire.read_response()
    assert response.status == 200
    assert response.body == b"ok"
    assert response.header("X-Hop") is None, response.head
    assert response.header("Keep-Alive") is None, response.head
    for value in response.all("Connection"):
        assert "x-hop" not in value.lower(), response.head
    assert response.all("X-Kept") == ["yes"]


# -- forwarding headers and request IDs ------------------------------------------------------


def test_forwarded_proto_and_host(wardent: Wardent) -> None:
    with Wire(wardent) as wire:
        wire.send(get("/echo/fwd", "X-Forwarded-Host: evil.example", host="shop.example:8443"))
        echo = wire.read_response().json()
    assert values(echo, "X-Forwarded-Proto") == ["http"]
    assert values(echo, "X-Forwarded-Host") == ["shop.example:8443"]
    assert values(echo, "X-Forwarded-For") == ["127.0.0.1"]
    assert values(echo, "X-Real-IP") == ["127.0.0.1"]


def test_forwarded_proto_from_trusted_proxy_is_kept(wardent: Wardent) -> None:
    """nginx terminates TLS: its X-Forwarded-Proto: https is believed (127.0.0.1 is trusted)."""
    with Wire(wardent) as wire:
        wire.send(get("/echo/fwd-proto", "X-Forwarded-Proto: https"))
        echo = wire.read_response().json()
    assert values(echo, "X-Forwarded-Proto") == ["https"]


async def test_request_id_generated_returned_and_forwarded(wardent: Wardent) -> None:
    async with aiohttp.ClientSession() as session:
        ids = []
        for _ in range(2):
            async with session.get(wardent.url + "/echo/rid") as response:
                echo = await response.json()
                returned = response.headers.getall("X-Request-ID")
            assert len(returned) == 1, returned
            assert values(echo, "X-Request-ID") == returned
            ids.append(returned[0])
    assert ids[0] != ids[1], "request IDs must be unique"


async def test_incoming_request_id_from_trusted_peer_is_propagated(wardent: Wardent) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(wardent.url + "/echo/rid-in", headers={"X-Request-ID": "abc-123"}) as response,
    ):
        echo = await response.json()
        assert response.headers.getall("X-Request-ID") == ["abc-123"]
    assert values(echo, "X-Request-ID") == ["abc-123"]
    entry = await wardent.access_entry("abc-123")
    assert entry["path"] == "/echo/rid-in"


@pytest.mark.parametrize("incoming", ["has spaces in it", "a" * 300], ids=["spaces", "300"])
def test_malformed_request_id_is_replaced(wardent: Wardent, incoming: str) -> None:
    with Wire(wardent) as wire:
        wire.send(get("/echo/rid-bad", f"X-Request-ID: {incoming}"))
        response = wire.read_response()
    echo = response.json()
    returned = response.all("X-Request-ID")
    assert len(returned) == 1 and returned[0], response.head
    assert returned[0] != incoming
    assert values(echo, "X-Request-ID") == returned
