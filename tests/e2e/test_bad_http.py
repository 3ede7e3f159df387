"""Bad HTTP never reaches the upstream: a bare 400 (431 for size), then the connection closes.

Wardent runs in front of a recording upstream that keeps every byte it is sent,
so "never reached the upstream" is checked where it matters: on the upstream's
side of the wire. Each test writes a unique marker into the bad request's path;
after the refusal a sentinel request proves the upstream and the access log are
live, then neither may have seen the marker forwarded.
"""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httptools
import pytest

from tests.support.processes import Wardent, running_wardent

pytestmark = pytest.mark.e2e

HEADER_TIMEOUT = 1.0


# -- a recording upstream ------------------------------------------------------


class Recorder:
    """An HTTP/1.1 upstream on a thread that answers 200 "ok" and keeps every byte received."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received = bytearray()
        self.paths: list[str] = []
        recorder = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                recorder.serve(self.request)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def serve(self, sock: socket.socket) -> None:
        sock.settimeout(30)
        recorder = self

        class Callbacks:
            def __init__(self) -> None:
                self.url = b""

            def on_url(self, url: bytes) -> None:
                self.url += url

            def on_message_complete(self) -> None:
                with recorder.lock:
                    recorder.paths.append(self.url.decode("latin-1"))
                self.url = b""
                sock.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
                )

        parser: Any = httptools.HttpRequestParser(Callbacks())
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    return
                with self.lock:
                    self.received += data
                parser.feed_data(data)
        except (OSError, httptools.HttpParserError):
            return

    def saw(self, marker: str) -> bool:
        with self.lock:
            return marker.encode() in bytes(self.received)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    upstream = Recorder()
    yield upstream
    upstream.close()


@pytest.fixture
def gateway(tmp_path: Path, recorder: Recorder) -> Iterator[Wardent]:
    with running_wardent(
        tmp_path,
        recorder.url,
        http={"max_header_size": "2KiB", "header_timeout": f"{HEADER_TIMEOUT:g}s"},
    ) as process:
        yield process


# -- the wire ------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes  # everything after the head until the server closed
    closed: bool
    raw: bytes = field(repr=False)

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


def connect(gateway: Wardent) -> socket.socket:
    sock = socket.create_connection((gateway.host, gateway.port), timeout=3)
    sock.settimeout(3)
    return sock


def send_and_read_to_close(gateway: Wardent, payload: bytes, wait: float = 3.0) -> Answer:
    """Send `payload`, then read until the server closes (or `wait` passes)."""
    with connect(gateway) as sock:
        # The server may close before reading everything; its answer is still there.
        with contextlib.suppress(OSError):
            sock.sendall(payload)
        data = b""
        closed = False
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                piece = sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                closed = True
                break
            if not piece:
                closed = True
                break
            data += piece
    return parse_answer(data, closed)


def parse_answer(data: bytes, closed: bool) -> Answer:
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, f"no complete response head, got {data!r}"
    lines = head.decode("latin-1").split("\r\n")
    version, status, *_ = lines[0].split(" ", 2)
    assert version == "HTTP/1.1", lines[0]
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return Answer(int(status), headers, body, closed, data)


def marker() -> str:
    return f"smuggle-{uuid.uuid4().hex}"


def assert_bare_refusal(answer: Answer, status: int) -> None:
    assert answer.status == status, answer.raw
    assert answer.header("Content-Length") == "0", answer.raw
    assert answer.header("Transfer-Encoding") is None, answer.raw
    assert answer.header("Content-Type") is None, answer.raw
    assert answer.body == b"", f"a bare refusal has no body, and nothing follows it: {answer.raw!r}"
    assert answer.closed, f"the connection must be closed after a refused request: {answer.raw!r}"


def wait_for_log(gateway: Wardent, predicate: Any, timeout: float = 3.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        entries = gateway.access_log()
        if any(predicate(entry) for entry in entries):
            return entries
        if time.monotonic() > deadline:
            raise AssertionError(f"no matching access log line in {timeout}s: {entries}")
        time.sleep(0.05)


def assert_never_forwarded(gateway: Wardent, recorder: Recorder, *markers: str) -> None:
    """A sentinel request reaches the upstream and the log; no marker ever does."""
    sentinel = f"/sentinel-{uuid.uuid4().hex}"
    with connect(gateway) as sock:
        sock.sendall(f"GET {sentinel} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while piece := sock.recv(65536):
            data += piece
    assert data.startswith(b"HTTP/1.1 200"), f"the sentinel request failed: {data!r}"
    assert recorder.saw(sentinel), "the recording upstream did not see the sentinel"
    entries = wait_for_log(gateway, lambda entry: entry.get("path") == sentinel)
    for mark in markers:
        assert not recorder.saw(mark), f"{mark} reached the upstream: {bytes(recorder.received)!r}"
        forwarded = [e for e in entries if mark in str(e.get("path")) and e.get("status") == 200]
        assert not forwarded, f"{mark} was answered 200: {forwarded}"


# -- framing: Content-Length and Transfer-Encoding -----------------------------


@pytest.mark.parametrize(
    "framing",
    [
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
    ],
    ids=["cl-then-te", "te-then-cl"],
)
def test_content_length_and_transfer_encoding_together(
    gateway: Wardent, recorder: Recorder, framing: bytes
) -> None:
    mark = marker()
    request = (
        f"POST /echo/{mark} HTTP/1.1\r\nHost: x\r\n".encode()
        + framing
        + b"\r\n5\r\nhello\r\n0\r\n\r\n"
    )
    assert_bare_refusal(send_and_read_to_close(gateway, request), 400)
    assert_never_forwarded(gateway, recorder, mark)


@pytest.mark.parametrize(
    "lengths",
    [(b"5", b"6"), (b"5", b"5")],
    ids=["different", "equal"],
)
def test_two_content_lengths(
    gateway: Wardent, recorder: Recorder, lengths: tuple[bytes, bytes]
) -> None:
    mark = marker()
    request = (
        f"POST /echo/{mark} HTTP/1.1\r\nHost: x\r\n".encode()
        + b"Content-Length: "
        + lengths[0]
        + b"\r\nContent-Length: "
        + lengths[1]
        + b"\r\n\r\nhello!"
    )
    assert_bare_refusal(send_and_read_to_close(gateway, request), 400)
    assert_never_forwarded(gateway, recorder, mark)


@pytest.mark.parametrize(
    "encoding",
    [b"xchunked", b"chunked, identity", b"identity", b"gzip, chunked"],
)
def test_transfer_encoding_other_than_chunked(
    gateway: Wardent, recorder: Recorder, encoding: bytes
) -> None:
    mark = marker()
    request = (
        f"POST /echo/{mark} HTTP/1.1\r\nHost: x\r\n".encode()
        + b"Transfer-Encoding: "
        + encoding
        + b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    )
    assert_bare_refusal(send_and_read_to_close(gateway, request), 400)
    assert_never_forwarded(gateway, recorder, mark)


def test_classic_cl_te_smuggle(gateway: Wardent, recorder: Recorder) -> None:
    """The front end trusts Content-Length (6), the back end chunked: `G` would prefix the
    next request. Wardent must refuse it, and neither request may reach the upstream."""
    mark = marker()
    victim = marker()
    request = (
        f"POST /echo/{mark} HTTP/1.1\r\nHost: x\r\n".encode()
        + b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG"
        + f"POST /echo/{victim} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode()
    )
    answer = send_and_read_to_close(gateway, request)
    assert_bare_refusal(answer, 400)
    assert answer.raw.count(b"HTTP/1.1 ") == 1, f"one answer, then close: {answer.raw!r}"
    assert_never_forwarded(gateway, recorder, mark, victim)
    assert not any(path.startswith("G") or "GPOST" in path for path in recorder.paths)
    assert b"GPOST" not in bytes(recorder.received)


def test_te_cl_smuggle_with_a_whole_request_in_the_body(
    gateway: Wardent, recorder: Recorder
) -> None:
    """The front end trusts chunked (ends at 0), the back end Content-Length: a whole
    request hides after the last chunk."""
    mark = marker()
    hidden = marker()
    smuggled = f"GET /echo/{hidden} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    body = b"0\r\n\r\n" + smuggled
    request = (
        f"POST /echo/{mark} HTTP/1.1\r\nHost: x\r\n".encode()
        + b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"
        + body
    )
    answer = send_and_read_to_close(gateway, request)
    assert_bare_refusal(answer, 400)
    assert answer.raw.count(b"HTTP/1.1 ") == 1, f"one answer, then close: {answer.raw!r}"
    assert_never_forwarded(gateway, recorder, mark, hidden)


def test_space_before_colon_in_transfer_encoding(gateway: Wardent, recorder: Recorder) -> None:
    mark = marker()
    request = (
        f"POST /echo/{mark} HTTP/1.1\r\nHost: x\r\n".encode()
        + b"Content-Length: 5\r\nTransfer-Encoding : chunked\r\n\r\nhello"
    )
    assert_bare_refusal(send_and_read_to_close(gateway, request), 400)
    assert_never_forwarded(gateway, recorder, mark)


# -- header syntax -----------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [b"Bad Header: x", b"X\x01: y", b"X-Ok : y", b"(X): y"],
    ids=["space-in-name", "control-char", "space-before-colon", "separator-in-name"],
)
def test_invalid_header_name(gateway: Wardent, recorder: Recorder, line: bytes) -> None:
    mark = marker()
    request = f"GET /echo/{mark} HTTP/1.1\r\nHost: x\r\n".encode() + line + b"\r\n\r\n"
    assert_bare_refusal(send_and_read_to_close(gateway, request), 400)
    assert_never_forwarded(gateway, recorder, mark)


@pytest.mark.parametrize(
    "value",
    [b"a\rb", b"a\x00b", b"a\x7fb"],
    ids=["bare-cr", "nul", "del"],
)
def test_invalid_header_value(gateway: Wardent, recorder: Recorder, value: bytes) -> None:
    mark = marker()
    request = (
        f"GET /echo/{mark} HTTP/1.1\r\nHost: x\r\n".encode() + b"X-Bad: " + value + b"\r\n\r\n"
    )
    assert_bare_refusal(send_and_read_to_close(gateway, request), 400)
    assert_never_forwarded(gateway, recorder, mark)


def test_obs_fold_header(gateway: Wardent, recorder: Recorder) -> None:
    mark = marker()
    request = (
        f"GET /echo/{mark} HTTP/1.1\r\nHost: x\r\n".encode() + b"X-Folded: first\r\n second\r\n\r\n"
    )
    assert_bare_refusal(send_and_read_to_close(gateway, request), 400)
    assert_never_forwarded(gateway, recorder, mark)


@pytest.mark.parametrize(
    "shape",
    ["many", "one-huge"],
)
def test_headers_past_max_header_size(gateway: Wardent, recorder: Recorder, shape: str) -> None:
    mark = marker()
    if shape == "many":
        extra = b"".join(b"X-Pad-%02d: %s\r\n" % (i, b"p" * 90) for i in range(30))  # ~3 KiB
    else:
        extra = b"X-Huge: " + b"h" * 3000 + b"\r\n"
    request = f"GET /echo/{mark} HTTP/1.1\r\nHost: x\r\n".encode() + extra + b"\r\n"
    assert_bare_refusal(send_and_read_to_close(gateway, request), 431)
    assert_never_forwarded(gateway, recorder, mark)


def test_headers_just_under_max_header_size_pass(gateway: Wardent, recorder: Recorder) -> None:
    """The limit is the configured one, not something smaller: 1.5 KiB of headers is fine."""
    mark = marker()
    extra = b"".join(b"X-Pad-%02d: %s\r\n" % (i, b"p" * 90) for i in range(15))
    request = (
        f"GET /echo/{mark} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".encode() + extra + b"\r\n"
    )
    answer = send_and_read_to_close(gateway, request)
    assert answer.status == 200, answer.raw
    assert recorder.saw(mark)


# -- the request line and Host ---------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "GET /echo/{mark} HTXP/1.1\r\nHost: x\r\n\r\n",
        "GET /echo/{mark}\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET  /echo/{mark} HTTP/1.1 extra\r\nHost: x\r\n\r\n",
        "G\x01T /echo/{mark} HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
    ids=["bad-version", "nul-in-target", "extra-tokens", "control-in-method"],
)
def test_garbage_request_line(gateway: Wardent, recorder: Recorder, template: str) -> None:
    mark = marker()
    request = template.format(mark=mark).encode("latin-1")
    assert_bare_refusal(send_and_read_to_close(gateway, request), 400)
    assert_never_forwarded(gateway, recorder, mark)


def test_tls_handshake_on_the_plain_port(gateway: Wardent, recorder: Recorder) -> None:
    client_hello = bytes.fromhex("16030100a5010000a10303") + b"\x00" * 32
    assert_bare_refusal(send_and_read_to_close(gateway, client_hello), 400)
    assert_never_forwarded(gateway, recorder)


def test_missing_host_on_http_11(gateway: Wardent, recorder: Recorder) -> None:
    mark = marker()
    request = f"GET /echo/{mark} HTTP/1.1\r\nX-Other: y\r\n\r\n".encode()
    assert_bare_refusal(send_and_read_to_close(gateway, request), 400)
    assert_never_forwarded(gateway, recorder, mark)


def test_two_host_headers(gateway: Wardent, recorder: Recorder) -> None:
    mark = marker()
    request = f"GET /echo/{mark} HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n".encode()
    assert_bare_refusal(send_and_read_to_close(gateway, request), 400)
    assert_never_forwarded(gateway, recorder, mark)


def test_refusal_is_counted_and_logged(gateway: Wardent, recorder: Recorder) -> None:
    """The refused request has its own access-log line (status 400, a reason) and metric."""
    mark = marker()
    request = (
        f"POST /echo/{mark} HTTP/1.1\r\nHost: x\r\n".encode()
        + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    )
    assert_bare_refusal(send_and_read_to_close(gateway, request), 400)
    entries = wait_for_log(gateway, lambda entry: mark in str(entry.get("path")))
    line = next(entry for entry in entries if mark in str(entry.get("path")))
    assert line["status"] == 400
    assert line["reason"], line
    assert line["upstream_ms"] is None, line
    assert not recorder.saw(mark)


# -- slow and idle clients ---------------------------------------------------------


def test_slowloris_is_cut_after_header_timeout(gateway: Wardent) -> None:
    """A client dripping one header byte every 0.3 s never finishes its head: cut at ~1 s."""
    with connect(gateway) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /echo/slowloris HTTP/1.1\r\nHost: x\r\n")
        drip = iter(b"X-Slow: " + b"a" * 100)
        answer = b""
        closed = False
        while time.monotonic() - started < 3.0:
            try:
                sock.sendall(bytes([next(drip)]))
            except OSError:
                closed = True
                break
            sock.settimeout(0.3)
            try:
                piece = sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                closed = True
                break
            if not piece:
                closed = True
                break
            answer += piece
        elapsed = time.monotonic() - started
    assert closed, f"still open after {elapsed:.2f}s of dripping (header_timeout is 1s)"
    assert elapsed < HEADER_TIMEOUT + 0.7, f"cut after {elapsed:.2f}s, header_timeout is 1s"
    assert elapsed > HEADER_TIMEOUT - 0.2, f"cut after {elapsed:.2f}s, before header_timeout"
    if answer:
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert b"Content-Length: 0\r\n" in answer, answer
        assert answer.endswith(b"\r\n\r\n"), answer


def test_idle_connection_is_closed_after_header_timeout(gateway: Wardent) -> None:
    with connect(gateway) as sock:
        started = time.monotonic()
        sock.settimeout(3.0)
        data = b""
        try:
            while piece := sock.recv(65536):
                data += piece
        except TimeoutError:
            pytest.fail("an idle connection was still open after 3 s (header_timeout 1 s)")
        except ConnectionResetError:
            pass
        elapsed = time.monotonic() - started
    assert HEADER_TIMEOUT - 0.2 < elapsed < HEADER_TIMEOUT + 0.7, elapsed
    assert data == b"" or data.startswith(b"HTTP/1.1 408 "), data


def test_idle_after_wardents_own_answer_is_not_cut_at_header_timeout(gateway: Wardent) -> None:
    """A keep-alive connection idle after a refusal waits for keepalive_timeout (75 s),
    not header_timeout (1 s): the refusal is given while its request is still being
    parsed, and that must not arm the deadline of a next request's headers."""
    with connect(gateway) as sock:
        sock.sendall(b"GET /echo/bot HTTP/1.1\r\nHost: x\r\nUser-Agent: GPTBot/1.2\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer:
            piece = sock.recv(65536)
            assert piece, answer
            answer += piece
        assert answer.startswith(b"HTTP/1.1 403 "), answer
        sock.settimeout(HEADER_TIMEOUT + 1.0)
        with pytest.raises(TimeoutError):
            piece = sock.recv(65536)
            pytest.fail(f"closed {piece!r} within header_timeout + 1 s of a keep-alive 403")


def test_good_request_still_served(gateway: Wardent, recorder: Recorder) -> None:
    """The control: the same gateway forwards a well-formed request (the checks can fail)."""
    mark = marker()
    request = f"POST /echo/{mark} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello".encode()
    with connect(gateway) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\nok" not in data:
            piece = sock.recv(65536)
            if not piece:
                break
            data += piece
    assert data.startswith(b"HTTP/1.1 200 "), data
    assert recorder.saw(mark)
    entries = wait_for_log(gateway, lambda entry: mark in str(entry.get("path")))
    assert any(e["status"] == 200 for e in entries if mark in str(e.get("path")))
    assert json.dumps(entries)  # the log lines are plain JSON
