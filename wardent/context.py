"""The one object that travels through the phases of a request (like Pingora's CTX)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from wardent.identify import DEFAULT_ROUTE, Client, CompiledRoute

if TYPE_CHECKING:
    from wardent.transport.server import ClientConnection
    from wardent.transport.upstream import UpstreamConnection


class RequestContext:
    __slots__ = (
        "awaiting_body",
        "body_buffer",
        "body_buffered",
        "body_limit",
        "body_limit_shadow",
        "bytes_in",
        "bytes_out",
        "chunked",
        "client",
        "close_after",
        "conn",
        "conn_tokens",
        "content_length",
        "done",
        "expect_continue",
        "forward",
        "framing",
        "has_body",
        "header_bytes",
        "header_count",
        "host",
        "host_name",
        "http_11",
        "keep_alive",
        "last_client_read",
        "method",
        "method_raw",
        "path",
        "reason",
        "request_done",
        "request_id",
        "response_headers",
        "response_started",
        "retried",
        "route",
        "shadow_reasons",
        "start",
        "status",
        "target",
        "task",
        "until_close",
        "upgrade",
        "upgrade_buffer",
        "upstream",
        "upstream_duration",
        "upstream_start",
        "user_agent",
        "values",
    )

    def __init__(self, conn: ClientConnection, start: float) -> None:
        self.conn = conn
        self.start = start
        self.method = ""
        self.method_raw = b""
        self.target = b""
        self.path = ""
        self.host = b""
        self.host_name = ""  # lower-cased text of Host, for route and rule matching
        # The fields as parsed: `values` has them by lower-cased name (repeated
        # fields joined with ", ", or b"\x00" for fields that must be single) and
        # `forward` the lines sent upstream, the sender's case kept.
        self.forward: list[bytes] = []
        self.header_bytes = 0
        self.header_count = 0
        self.values: dict[bytes, bytes] = {}
        self.conn_tokens: set[bytes] | None = None
        self.content_length: int | None = None
        self.chunked = False
        self.has_body = False
        self.expect_continue = False
        self.upgrade = False
        self.keep_alive = True
        self.http_11 = True
        self.client: Client | None = None
        self.route: CompiledRoute = DEFAULT_ROUTE
        self.request_id = b""
        self.user_agent: bytes | None = None
        self.body_buffer: list[bytes] = []
        self.body_buffered = 0
        self.awaiting_body = False  # held until the whole body is read (signature check)
        self.body_limit = 0  # > 0: a chunked body is cut past this many bytes
        self.body_limit_shadow = False
        self.response_headers: list[bytes] | None = None
        self.upgrade_buffer: list[bytes] = []
        self.request_done = False
        self.bytes_in = 0
        self.bytes_out = 0
        self.last_client_read = conn.loop_time()
        self.status = 0
        self.framing = 0
        self.until_close = False
        self.response_started = False
        self.done = False
        self.close_after = False
        self.upstream: UpstreamConnection | None = None
        self.upstream_start = 0.0
        self.upstream_duration: float | None = None
        self.retried = False
        self.reason: str | None = None
        self.shadow_reasons: list[str] = []
        self.task: asyncio.Task[None] | None = None

    def header(self, lname: bytes) -> bytes | None:
        """A header's value by lower-cased name (b"\x00" if a single-valued one came twice)."""
        return self.values.get(lname)

    def add_response_header(self, line: bytes) -> None:
        """A `Name: value` line (no CRLF) for the upstream's answer, e.g. RateLimit."""
        if self.response_headers is None:
            self.response_headers = [line]
        else:
            self.response_headers.append(line)
