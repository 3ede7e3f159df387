"""The client side: one Protocol per accepted connection, driving every phase.

accept → identify → admit → forward → record, on httptools callbacks. The
parser decides what is valid HTTP; this module adds the proxy's own rules
(smuggling, header limits, timeouts) and moves bytes with flow control so
bodies stream both ways without being buffered.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, cast

import httptools

from wardent.context import RequestContext
from wardent.guards.chain import Rejection
from wardent.identify import Client, normalise_path
from wardent.observe.exchange import record_exchange
from wardent.runtime import (
    FIELD_CONNECTION,
    FIELD_ENCODING,
    FIELD_LENGTH,
    FIELD_UPGRADE,
    NOT_FORWARDED,
    SINGLE_VALUED,
)
from wardent.transport.http import (
    IDEMPOTENT_METHODS,
    LAST_CHUNK,
    bare_response,
    chunk,
    connection_tokens,
    status_line,
)
from wardent.transport.upstream import (
    BadUpstreamResponse,
    UpstreamConnection,
    UpstreamUnavailable,
)

if TYPE_CHECKING:
    from wardent.gateway import Gateway
    from wardent.runtime import Runtime

log = logging.getLogger("wardent.transport")

# Final: compiled, a static, not `time` looked up then its attribute (~240
# instructions a call, several calls a request; loadtests/instructions.py).
_perf_counter: Final = time.perf_counter

_WRITE_HIGH_WATER = 256 * 1024
_BODY_BUFFER_LIMIT = 256 * 1024

# Why client reading is paused: a bit each, reading resumes when none is left.
_PAUSE_UPSTREAM = 1  # the upstream socket cannot take more body yet
_PAUSE_BUFFER = 2  # body buffered while the upstream connection is being made
_PAUSE_PIPELINE = 4  # http.max_pipelined requests wait behind the one in flight
_PAUSE_UPGRADE = 8  # waiting for the upstream's answer to an Upgrade
_PAUSE_LAST = 16  # the last request the connection may carry has been read
_PIPELINE_SLACK = 8

# What a connection's deadline is for.
_NOTHING, _HEADERS, _IDLE, _EXCHANGE, _LINGER = 0, 1, 2, 3, 4
_LINGER_SECONDS = 5.0
_LINGER_BYTES = 64 * 1024 * 1024  # read and dropped, never kept

# Response framing towards the client.
_NO_BODY, _LENGTH, _CHUNKED, _UNTIL_CLOSE = 0, 1, 2, 3

_REQUEST_ID_RE = re.compile(rb"[A-Za-z0-9._:@/+=-]{1,128}")
_METHODS: dict[bytes, str] = {}
UNKNOWN_PEER = Client("", "")
_READS = frozenset({"GET", "HEAD"})
_STATUS_LINES: dict[tuple[int, bytes], bytes] = {}


class _StopParsing(Exception):
    """Raised inside a parser callback: the connection is closing, parse no further."""


class _Refuse(Exception):
    """Raised inside a parser callback to refuse the request being parsed."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class ClientConnection(asyncio.Protocol):
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        self.loop = gateway.loop
        self.loop_time: Callable[[], float] = gateway.loop.time  # bound once: no lookup a call
        # The gateway's parts that never change, held here: an attribute of the
        # (interpreted) Gateway is a dict lookup a time, several a request.
        self.metrics = gateway.metrics
        self.writes = gateway.writes
        self.request_ids = gateway.request_ids
        self.rt: Runtime = gateway.runtime
        self.transport: asyncio.Transport | None = None
        self.parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)
        self.peer = UNKNOWN_PEER  # the socket peer as a client; set on connect
        self.peer_ip = ""
        self.peer_trusted = False
        self.parsing: RequestContext | None = None
        self.current: RequestContext | None = None
        self.pipeline: deque[RequestContext] = deque()
        self.paused = 0
        self.closed = False
        # One deadline per connection, checked by the gateway's sweeper
        # (Gateway.sweep): a uvloop TimerHandle costs ~2 µs to make and cancel,
        # and a request would need three.
        self.deadline = 0.0
        self.waiting_for = _NOTHING
        self.splice: UpstreamConnection | None = None
        self.eof = False
        self.lingering = 0  # > 0: answered and closing; bytes still to read and drop
        self.writing_paused = False
        self._out: list[bytes] = []
        self.flush_queued = False

    # -- connection lifecycle ---------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=_WRITE_HIGH_WATER)
        peer = transport.get_extra_info("peername")
        peer_ip = peer[0] if isinstance(peer, tuple) and peer else None
        self.peer, self.peer_trusted = self.rt.identifier.peer(peer_ip)
        self.peer_ip = self.peer.ip
        self.gw.connections.add(self)
        self.metrics.connections_open += 1
        self._arm(self.rt.header_timeout, _HEADERS)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed:
            return
        self.closed = True
        # Nothing more is parsed, and the parser's bound callbacks make a cycle
        # with this protocol that only a full collection would free.
        self.parser = None
        self._disarm()
        self.gw.forget(self)
        self.metrics.connections_open -= 1
        if self.splice is not None:
            upstream, self.splice = self.splice, None
            self.metrics.websocket_open -= 1
            upstream.abort()  # clears its ctx: splice_closed will not run for it
        ctx = self.current
        if ctx is not None and not ctx.done:
            # The client left: cancel the upstream request and never reuse its connection.
            self._cancel_upstream(ctx)
            if not ctx.response_started:
                ctx.status = 499
                ctx.reason = "client_closed"
            self._finish(ctx)
        self.pipeline.clear()
        self.parsing = None

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            self.lingering -= len(data)
            if self.lingering <= 0:
                self._close()
            return
        if self.splice is not None:
            self.splice.write(data)
            if self.current is not None:
                self.current.bytes_in += len(data)
            return
        parser = self.parser
        if parser is None:
            # After an Upgrade request: hold what arrives until the upstream answers.
            if self.current is not None and self.current.upgrade:
                self.current.upgrade_buffer.append(data)
                self.pause_reading(_PAUSE_UPGRADE)
            return
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self.parser = None
            rest = data[upgrade.args[0] :]
            ctx = self.current
            if ctx is not None and ctx.upgrade:
                if rest:
                    ctx.upgrade_buffer.append(rest)
                self.pause_reading(_PAUSE_UPGRADE)
        except httptools.HttpParserCallbackError as error:
            cause = error.__context__
            if isinstance(cause, _StopParsing):
                return  # closing: what followed the answered request is dropped
            if isinstance(cause, _Refuse):
                self._refuse(cause.status, cause.reason)
            else:
                log.error("request callback failed", exc_info=cause or error)
                self._refuse(500, "internal_error")
        except httptools.HttpParserError as error:
            self._refuse(400, _parse_error_reason(error))

    def eof_received(self) -> bool | None:
        # As nginx does: a client that closes its side has abandoned its request (499),
        # so the upstream request is cancelled rather than left running.
        self.eof = True
        return False

    def pause_writing(self) -> None:
        # Remembered: it may fire between exchanges, and the next upstream must
        # start paused (pause_writing is not repeated).
        self.writing_paused = True
        upstream = self.splice or (self.current.upstream if self.current else None)
        if upstream is not None:
            upstream.pause_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        upstream = self.splice or (self.current.upstream if self.current else None)
        if upstream is not None:
            upstream.resume_reading()

    def pause_reading(self, reason: int) -> None:
        if not self.paused and self.transport is not None and not self.closed:
            self.transport.pause_reading()
        self.paused |= reason

    def resume_reading(self, reason: int) -> None:
        if not self.paused & reason:
            return
        self.paused &= ~reason
        if not self.paused and self.transport is not None and not self.closed:
            self.transport.resume_reading()

    # -- timeouts: slowloris, keep-alive idle, upstream and body stalls ------
    def _arm(self, delay: float, waiting_for: int) -> None:
        self.deadline = self.loop_time() + delay
        self.waiting_for = waiting_for

    def _disarm(self) -> None:
        self.deadline = 0.0
        self.waiting_for = _NOTHING

    def expire(self, now: float) -> None:
        """Called by the sweeper once `deadline` has passed."""
        waiting_for = self.waiting_for
        self._disarm()
        if self.closed:
            return
        if waiting_for == _HEADERS:
            self._header_timeout()
        elif waiting_for == _IDLE:
            self._idle_timeout()
        elif waiting_for == _EXCHANGE and self.current is not None:
            self._check_timeout(self.current, now)
        elif waiting_for == _LINGER:
            self._close()

    def _header_timeout(self) -> None:
        if self.current is None and not self.closed:
            started = self.parsing is not None
            self.metrics.count_bad_request("header_timeout")
            if started and self.transport is not None:
                self._write(bare_response(408, close=True))
            self._close()

    def _idle_timeout(self) -> None:
        if self.current is None and self.parsing is None:
            self._close()

    def _close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.flush_now()
            self.transport.close()

    def _linger(self) -> None:
        """Close after answering before the body was read, as nginx's lingering_close
        does: closing with unread input sends a reset that can destroy the answer
        before the client reads it. So: send FIN, then read and drop what is still
        coming, for a bounded time and size."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self.flush_now()
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self.lingering = _LINGER_BYTES
        self.parser = None
        self.pipeline.clear()
        self.paused = 0
        transport.resume_reading()
        self._arm(_LINGER_SECONDS, _LINGER)

    # -- httptools callbacks: the request as it is parsed ------------------
    def on_message_begin(self) -> None:
        if self.parser is None:
            # Answered and closing (a lingering close, a refusal): a request that
            # came pipelined in the same read is not parsed, let alone answered.
            raise _StopParsing
        ctx = RequestContext(self, _perf_counter())
        self.parsing = ctx
        if self.current is None:
            self._arm(self.rt.header_timeout, _HEADERS)

    def on_url(self, url: bytes) -> None:
        ctx = self.parsing
        assert ctx is not None
        ctx.target += url
        ctx.header_bytes += len(url)
        if ctx.header_bytes > self.rt.max_header_size:
            raise _Refuse(414, "uri_too_long")

    def on_header(self, name: bytes, value: bytes) -> None:
        # Each field is read as it comes (no second pass over a list): by
        # lower-cased name into `values`, and into the lines to forward.
        ctx = self.parsing
        assert ctx is not None
        rt = self.rt
        size = ctx.header_bytes + len(name) + len(value) + 4
        ctx.header_bytes = size
        if size > rt.max_header_size:
            raise _Refuse(431, "headers_too_large")
        count = ctx.header_count = ctx.header_count + 1
        if count > rt.max_header_count:
            raise _Refuse(431, "too_many_headers")
        field = rt.request_fields.get(name)
        if field is None:
            field = rt.request_field(name)
        lname, kind = field
        values = ctx.values
        previous = values.get(lname)
        if previous is None:
            values[lname] = value
        elif kind & SINGLE_VALUED:
            if lname == b"content-length":
                # Two Content-Lengths are a smuggling attempt even when they agree.
                raise _Refuse(400, "duplicate_content_length")
            values[lname] = b"\x00"  # two values: never believed
        else:
            values[lname] = previous + b", " + value
        if not kind & NOT_FORWARDED:
            ctx.forward.append(name + b": " + value + b"\r\n")

    def on_headers_complete(self) -> None:
        ctx = self.parsing
        parser = self.parser
        assert ctx is not None and parser is not None
        self._disarm()
        raw_method = parser.get_method()
        method = _METHODS.get(raw_method)
        if method is None:
            method = _METHODS.setdefault(raw_method, raw_method.decode("ascii"))
        ctx.method_raw = raw_method
        ctx.method = method
        keep_alive = ctx.keep_alive = parser.should_keep_alive()
        ctx.upgrade = parser.should_upgrade()
        values = ctx.values
        connection = values.get(b"connection")
        if connection is None:
            # llhttp accepts 0.9, 1.0, 1.1 and 2.0, and without a Connection header
            # keeps only 1.1 alive: the same answer as get_http_version(), whose
            # string formatting cost ~2 % of the request's instructions.
            ctx.http_11 = keep_alive
        else:
            ctx.http_11 = parser.get_http_version() == "1.1"
        length = values.get(b"content-length")
        encoding = values.get(b"transfer-encoding")
        if length is not None and encoding is not None:
            raise _Refuse(400, "content_length_with_transfer_encoding")
        if encoding is not None:
            if encoding.strip().lower() != b"chunked":
                raise _Refuse(400, "unsupported_transfer_encoding")
            ctx.chunked = ctx.has_body = True
        elif length is not None:
            if not length.isdigit() or len(length) > 18:
                raise _Refuse(400, "bad_content_length")
            ctx.content_length = int(length)
            ctx.has_body = ctx.content_length > 0
        host = values.get(b"host")
        if host is None:
            if ctx.http_11:
                raise _Refuse(400, "missing_host")
        elif host == b"\x00":
            raise _Refuse(400, "duplicate_host")
        else:
            ctx.host = host
        if method == "CONNECT":
            raise _Refuse(405, "connect_not_allowed")
        if connection is not None:
            # `Connection: content-length` must not strip the framing of a body
            # that is still forwarded (request smuggling): never-hop fields stay.
            tokens = connection_tokens(connection) - _NEVER_HOP_BY_HOP
            ctx.conn_tokens = tokens or None
        expect = values.get(b"expect")
        if expect is not None:
            if expect.strip().lower() != b"100-continue":
                raise _Refuse(417, "unsupported_expectation")
            ctx.expect_continue = ctx.has_body and ctx.http_11  # 1.0 has no 100
        ctx.user_agent = values.get(b"user-agent")
        if self.current is None and not self.pipeline:
            self.current = ctx
            self._dispatch(ctx)
        else:
            # Answered in order after the one in flight. A single read can hold
            # more than the bound (httptools parses it whole); reading stops there,
            # and far past it the rest is dropped and the connection closes after
            # the queued answers (a client's retry, not our memory, pays for it).
            if len(self.pipeline) >= self.rt.max_pipelined * _PIPELINE_SLACK:
                ctx.done = True
                self.pipeline[-1].close_after = True
                self.pause_reading(_PAUSE_LAST)
                return
            self.pipeline.append(ctx)
            if len(self.pipeline) >= self.rt.max_pipelined:
                self.pause_reading(_PAUSE_PIPELINE)

    def on_body(self, body: bytes) -> None:
        ctx = self.parsing
        assert ctx is not None
        ctx.bytes_in += len(body)
        ctx.last_client_read = self.loop_time()
        if ctx.done:
            return  # answered already (rejected or failed): the rest is discarded
        if ctx.body_limit and ctx.bytes_in > ctx.body_limit:
            self._body_too_large(ctx)
            if ctx.done:
                return
        upstream = ctx.upstream
        if upstream is not None and ctx is self.current:
            if ctx.chunked:
                upstream.writelines(chunk(body))
            else:
                upstream.write(body)
            return
        ctx.body_buffer.append(body)
        ctx.body_buffered += len(body)
        # A body held for a signature check is read whole (the body limit bounds it).
        if ctx.body_buffered > _BODY_BUFFER_LIMIT and not ctx.awaiting_body:
            self.pause_reading(_PAUSE_BUFFER)

    def on_message_complete(self) -> None:
        ctx = self.parsing
        assert ctx is not None
        self.parsing = None
        ctx.request_done = True
        if ctx.done:
            return
        if ctx.awaiting_body and ctx is self.current:
            # Forwarding (if the signature holds) sends the whole body, last chunk too.
            self._check_stripe_signature(ctx)
            return
        upstream = ctx.upstream
        if upstream is not None and ctx is self.current and ctx.chunked:
            upstream.write(LAST_CHUNK)
        if not ctx.keep_alive or ctx.upgrade:
            # Nothing after this request is ours to parse.
            self.pause_reading(_PAUSE_LAST)

    # -- refusing bad HTTP ---------------------------------------------------
    def _refuse(self, status: int, reason: str) -> None:
        """Answer a request the parser or the proxy rules refused, then close."""
        self.metrics.count_bad_request(_BAD_REQUEST_LABEL.get(reason, "bad_header"))
        ctx = self.parsing
        self.parser = None
        self.parsing = None
        self.pipeline.clear()
        current = self.current
        if current is not None and current is not ctx:
            # A request in flight ahead of the bad one still gets its answer, then we close.
            current.close_after = True
            self.pause_reading(_PAUSE_LAST)
            return
        if ctx is None:
            ctx = RequestContext(self, _perf_counter())
        if ctx.done:
            self._close()
            return
        if ctx is current:
            self._cancel_upstream(ctx)
        else:
            self.current = ctx
            self.metrics.in_flight += 1
            ctx.client = self.peer
            ctx.request_id = self.request_ids.next()
        ctx.close_after = True
        ctx.reason = reason
        self._answer(ctx, status)

    # -- identify and admit ---------------------------------------------
    def _dispatch(self, ctx: RequestContext) -> None:
        rt = self.rt = self.gw.runtime
        self.metrics.in_flight += 1
        self._identify(ctx, rt)
        ctx.path = normalise_path(ctx.target)
        if rt.robots_txt is not None and ctx.path == "/robots.txt" and ctx.method in _READS:
            # Answered before the guards: a blocked crawler must be able to read it.
            self._answer_with_body(ctx, rt.robots_txt, b"text/plain; charset=utf-8")
            return
        ctx.host_name = ctx.host.decode("latin-1").lower()
        ctx.route = rt.routes.match(ctx.method, ctx.path, ctx.host_name)
        verdict = rt.chain.admit(ctx)
        if verdict is not None:
            guard, rejection = verdict
            if guard.is_violation(rejection):
                self.gw.report_violation(ctx, guard.name)
            self._reject(ctx, guard.name, rejection)
            return
        if ctx.route.stripe_tolerance is not None:
            # Nothing is forwarded before Wardent has verified the Stripe signature,
            # and the body it must hold is bounded even where body_limit is skipped.
            cap = ctx.route.body_limit or rt.settings.guards.body_limit.max
            if (ctx.content_length or 0) > cap:
                self._reject(ctx, "body_limit", rt.body_too_large)
                return
            ctx.body_limit = cap
            ctx.body_limit_shadow = False
            ctx.awaiting_body = True
            if ctx.request_done:
                self._check_stripe_signature(ctx)
                return
            self.resume_reading(_PAUSE_BUFFER)  # read whole, however it was buffering
            if ctx.expect_continue and not ctx.bytes_in and self.transport is not None:
                self._write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self._arm(rt.body_timeout, _EXCHANGE)
            return
        self._forward(ctx)

    def _forward(self, ctx: RequestContext) -> None:
        if self.gw.stopping:
            ctx.close_after = True
        upstream = self.gw.pool.acquire_nowait()
        if upstream is not None:
            self._send(ctx, upstream)
        else:
            ctx.task = self.loop.create_task(self._connect_and_send(ctx))

    def _identify(self, ctx: RequestContext, rt: Runtime) -> None:
        identifier = rt.identifier
        client = self.peer
        if self.peer_trusted:
            values = ctx.values
            raw = values.get(rt.client_ip_header)
            if raw is not None:
                named = identifier.from_header(raw)
                if named is None:
                    self.metrics.count_client_ip_malformed(rt.settings.client_ip.header.lower())
                else:
                    client = named
            elif identifier.forwarded_for:
                raw = values.get(b"x-forwarded-for")
                if raw is not None:
                    named = identifier.from_forwarded_for(raw)
                    if named is None:
                        self.metrics.count_client_ip_malformed("x-forwarded-for")
                    else:
                        client = named
        ctx.client = client
        if rt.trust_request_id and self.peer_trusted:
            incoming = ctx.values.get(rt.request_id_header)
            if incoming is not None and _REQUEST_ID_RE.fullmatch(incoming):
                ctx.request_id = incoming
        if not ctx.request_id:
            ctx.request_id = self.request_ids.next()

    def _body_too_large(self, ctx: RequestContext) -> None:
        """A chunked body passed the limit while streaming: cut it, abort the upstream."""
        if ctx.body_limit_shadow:
            ctx.body_limit = 0  # counted once, then let through
            ctx.shadow_reasons.append("body_limit:too_large")
            self.rt.count_streamed_body_limit(shadow=True)
            return
        self.rt.count_streamed_body_limit(shadow=False)
        self._cancel_upstream(ctx)
        ctx.close_after = True
        self._reject(ctx, "body_limit", self.rt.body_too_large)

    def _check_stripe_signature(self, ctx: RequestContext) -> None:
        ctx.awaiting_body = False
        body = b"".join(ctx.body_buffer)
        ctx.body_buffer = [body] if body else []
        stripe = self.rt.stripe
        assert stripe is not None  # the settings refuse a Stripe route without its secret
        failure = stripe.verify(ctx.header(ctx.route.stripe_header), body, ctx.route)
        if failure is not None:
            self._reject(ctx, "stripe_signature", failure)
            return
        self._forward(ctx)

    def _answer_with_body(self, ctx: RequestContext, body: bytes, content_type: bytes) -> None:
        """Wardent's own small answers that carry a body (robots.txt)."""
        if self.transport is None:
            return
        ctx.status = 200
        ctx.response_started = True
        close = ctx.close_after = self._own_answer_closes(ctx) or ctx.has_body
        head = [
            status_line(200),
            b"Content-Type: " + content_type + b"\r\n",
            b"Content-Length: %d\r\n" % len(body),
            self.rt.request_id_prefix + ctx.request_id + b"\r\n",
            b"Connection: close\r\n\r\n" if close else b"\r\n",
        ]
        if ctx.method != "HEAD":
            head.append(body)
            ctx.bytes_out = len(body)
        self._out.extend(head)
        self._finish(ctx)

    def _reject(self, ctx: RequestContext, guard: str, rejection: Rejection) -> None:
        ctx.reason = f"{guard}:{rejection.reason}"
        self.metrics.count_rejection(guard, rejection.status)
        if ctx.has_body and not ctx.request_done:
            ctx.close_after = True  # the unread body would be parsed as the next request
        self._answer(
            ctx,
            rejection.status,
            retry_after=rejection.retry_after,
            reason_header=guard.encode() if self.rt.debug_headers else None,
        )

    def _own_answer_closes(self, ctx: RequestContext) -> bool:
        """Whether an answer Wardent gives itself ends the connection, as it must say.

        An unread body would be parsed as the next request, and after an Upgrade
        request the parser stops: either way nothing more is read.
        """
        return (
            ctx.close_after
            or not ctx.keep_alive
            or self.gw.stopping
            or ctx.upgrade
            or (ctx.has_body and not ctx.request_done)
        )

    def _answer(
        self,
        ctx: RequestContext,
        status: int,
        *,
        retry_after: int | None = None,
        reason_header: bytes | None = None,
    ) -> None:
        """Wardent's own response (a rejection or a failure): always bare."""
        if ctx.response_started or self.transport is None:
            self._abort_client(ctx)
            return
        close = ctx.close_after = self._own_answer_closes(ctx)
        ctx.status = status
        ctx.response_started = True
        self._write(
            bare_response(
                status,
                retry_after=retry_after,
                request_id=ctx.request_id or None,
                reason_header=reason_header,
                close=close,
            )
        )
        self._finish(ctx)

    # -- forward --------------------------------------------------------------
    async def _connect_and_send(self, ctx: RequestContext) -> None:
        try:
            upstream = await self.gw.pool.connect()
        except UpstreamUnavailable as error:
            ctx.task = None
            if not ctx.done:
                self.metrics.count_upstream_error(error.kind)
                ctx.reason = f"upstream:{error.kind}"
                self._answer(ctx, error.status, retry_after=1 if error.status == 503 else None)
            return
        ctx.task = None
        if ctx.done or self.closed:
            self.gw.pool.release(upstream)
            return
        self._send(ctx, upstream)

    def _send(self, ctx: RequestContext, upstream: UpstreamConnection) -> None:
        ctx.upstream = upstream
        upstream.attach(ctx)
        if self.writing_paused:
            upstream.pause_reading()
        ctx.upstream_start = _perf_counter()
        upstream.write(self._request_head(ctx))
        if ctx.expect_continue and not ctx.bytes_in and self.transport is not None:
            # Answered by us once admitted: the upstream never sees Expect.
            self._write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if ctx.body_buffer:
            body = b"".join(ctx.body_buffer)
            ctx.body_buffer.clear()
            ctx.body_buffered = 0
            if ctx.chunked:
                upstream.writelines(chunk(body))
            else:
                upstream.write(body)
            self.resume_reading(_PAUSE_BUFFER)
        if ctx.request_done and ctx.chunked:
            upstream.write(LAST_CHUNK)
        # The first check comes at whichever can expire first; _check_timeout
        # then works out the real deadline from the last activity.
        rt = self.rt
        self._arm(
            rt.read_timeout if ctx.request_done else min(rt.body_timeout, rt.send_timeout),
            _EXCHANGE,
        )

    def _request_head(self, ctx: RequestContext) -> bytes:
        rt = self.rt
        forward = ctx.forward
        tokens = ctx.conn_tokens
        if tokens is not None:
            # Fields the client's Connection header named are hop-by-hop too (rare).
            forward = [line for line in forward if line.split(b":", 1)[0].lower() not in tokens]
        parts = [ctx.method_raw, b" ", ctx.target, b" HTTP/1.1\r\n", *forward]
        if ctx.upgrade:
            parts.append(b"Connection: upgrade\r\nUpgrade: ")
            parts.append(ctx.values.get(b"upgrade", b""))
            parts.append(b"\r\n")
        if ctx.chunked:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        assert ctx.client is not None
        ip = ctx.client.ip.encode()
        parts.append(b"X-Forwarded-For: ")
        parts.append(ip)
        parts.append(b"\r\nX-Real-IP: ")
        parts.append(ip)
        # The client-IP header too says who Wardent decided the client is: an
        # upstream reading it must never see a value spoofed by an untrusted peer.
        parts.append(rt.client_ip_line)
        parts.append(ip)
        proto = ctx.values.get(b"x-forwarded-proto") if self.peer_trusted else None
        parts.append(b"\r\nX-Forwarded-Proto: ")
        parts.append(proto if proto is not None and proto in (b"https", b"http") else b"http")
        if ctx.host:
            parts.append(b"\r\nX-Forwarded-Host: ")
            parts.append(ctx.host)
        parts.append(b"\r\n")
        parts.append(rt.request_id_prefix)
        parts.append(ctx.request_id)
        parts.append(b"\r\n\r\n")
        return b"".join(parts)

    def _check_timeout(self, ctx: RequestContext, now: float) -> None:
        """An exchange that stopped moving: the client's body stalls (408), the
        upstream stops taking the body (504) or stops answering (504)."""
        if ctx.done or self.splice is not None:
            return
        rt = self.rt
        upstream = ctx.upstream
        if not ctx.request_done:
            if self.paused & _PAUSE_UPSTREAM and upstream is not None:
                deadline = upstream.last_active + rt.send_timeout
                kind, status = "send_timeout", 504
            else:
                deadline = ctx.last_client_read + rt.body_timeout
                kind, status = "body_timeout", 408
        elif upstream is not None:
            deadline = upstream.last_active + rt.read_timeout
            kind, status = "read_timeout", 504
        else:
            return  # connecting: the pool's connect_timeout ends that
        if now < deadline:
            self._arm(deadline - now, _EXCHANGE)
            return
        if status == 408:
            ctx.reason = "client_body_timeout"
            self.metrics.count_bad_request("body_timeout")
        else:
            ctx.reason = f"upstream:{kind}"
            self.metrics.count_upstream_error(kind)
        self._cancel_upstream(ctx)
        self._answer(ctx, status)

    def _cancel_upstream(self, ctx: RequestContext) -> None:
        if ctx.task is not None:
            ctx.task.cancel()
            ctx.task = None
        if ctx.upstream is not None:
            upstream, ctx.upstream = ctx.upstream, None
            upstream.abort()
        self._disarm()

    # -- the upstream's answer (called by UpstreamConnection) ---------------
    # Everything written to the client is collected in `_out` and sent with one
    # writev once every event of this loop iteration has been handled
    # (wardent/transport/write_batch.py): one syscall per connection and iteration,
    # not one per head, chunk and terminator, and the reader woken once for a burst
    # of responses (measured: 8% less CPU a request). Closing sends what is held
    # first (`flush_now`).
    def _write(self, data: bytes) -> None:
        self._out.append(data)
        self.flush()

    def flush(self) -> None:
        if self._out and not self.flush_queued:
            self.flush_queued = True
            self.writes.add(self)

    def flush_now(self) -> None:
        self.flush_queued = False
        out = self._out
        if out:
            if self.transport is not None and not self.closed:
                self.transport.writelines(out)
            out.clear()

    def response_head(
        self,
        ctx: RequestContext,
        upstream: UpstreamConnection,
        status: int,
        phrase: bytes,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        if ctx.done or self.transport is None:
            return
        first = _STATUS_LINES.get((status, phrase))
        if first is None:
            first = b"HTTP/1.1 %d " % status + phrase + b"\r\n"
            if len(_STATUS_LINES) < 256:
                _STATUS_LINES[(status, phrase)] = first
        lines = [first]
        upgrading = status == 101
        has_length = chunked = False
        drop: frozenset[bytes] = _NO_TOKENS
        rt = self.rt
        fields = rt.response_fields
        for name, value in headers:
            kind = fields.get(name)
            if kind is None:
                kind = rt.response_field(name)
            if kind:
                if kind == FIELD_LENGTH:
                    has_length = True
                elif kind == FIELD_CONNECTION:
                    drop = _connection_tokens(value)
                    continue
                elif kind == FIELD_ENCODING:
                    if value.strip().lower() != b"chunked":
                        # As nginx: any other coding would reach the client undone,
                        # its header gone (re-framing drops it).
                        raise BadUpstreamResponse(f"unsupported Transfer-Encoding {value!r}")
                    chunked = True
                    continue
                elif not (upgrading and kind == FIELD_UPGRADE):
                    continue  # hop-by-hop, or the request id we set ourselves
            lines.append(name + b": " + value + b"\r\n")
        ctx.status = status
        ctx.response_started = True
        ctx.upstream_duration = _perf_counter() - ctx.upstream_start
        if drop:
            # Fields named by the upstream's Connection header are hop-by-hop too (rare).
            lines = [lines[0]] + [
                line for line in lines[1:] if line.split(b":", 1)[0].lower() not in drop
            ]
        if upgrading:
            lines.append(b"Connection: upgrade\r\n")
            framing = _NO_BODY
        elif ctx.method == "HEAD" or status in (204, 304):
            framing = _NO_BODY
        elif has_length and not chunked:
            framing = _LENGTH
        elif ctx.http_11:
            lines.append(b"Transfer-Encoding: chunked\r\n")
            framing = _CHUNKED
        else:
            framing = _UNTIL_CLOSE
            ctx.close_after = True
        ctx.framing = framing
        ctx.until_close = framing != _NO_BODY and not has_length and not chunked
        if ctx.upgrade and not upgrading:
            ctx.close_after = True  # the client's parser stopped at the Upgrade
        if not ctx.keep_alive or self.gw.stopping or (not ctx.request_done and not upgrading):
            ctx.close_after = True
        if ctx.close_after and not upgrading:
            lines.append(b"Connection: close\r\n")
        if ctx.response_headers is not None:
            for line in ctx.response_headers:
                lines.append(line + b"\r\n")
        lines.append(self.rt.request_id_prefix + ctx.request_id + b"\r\n\r\n")
        self._out.append(b"".join(lines))

    def response_body(self, ctx: RequestContext, body: bytes) -> None:
        if ctx.done or self.transport is None:
            return
        ctx.bytes_out += len(body)
        if ctx.framing == _CHUNKED:
            self._out.extend(chunk(body))
        else:
            self._out.append(body)

    def response_complete(self, ctx: RequestContext, upstream: UpstreamConnection) -> None:
        if ctx.done:
            return
        if ctx.framing == _CHUNKED:
            self._out.append(LAST_CHUNK)
        ctx.upstream = None
        ctx.upstream_duration = _perf_counter() - ctx.upstream_start
        self._disarm()
        if upstream.keep_alive and ctx.request_done and not upstream.closed:
            upstream.pool.release(upstream)
        else:
            upstream.abort()
        self._finish(ctx)

    def upstream_lost(
        self, ctx: RequestContext, upstream: UpstreamConnection, error: Exception | None
    ) -> None:
        """The upstream closed the connection while it served this request."""
        if ctx.done or ctx.upstream is not upstream:
            return
        ctx.upstream = None
        if ctx.response_started:
            if ctx.until_close and error is None:
                # A close-delimited body ends with the connection.
                if ctx.framing == _CHUNKED:
                    self._out.append(LAST_CHUNK)
                self._finish(ctx)
                return
            # Broke mid-response (a reset is never a clean end): the client must see a
            # broken response, not a short one.
            self.metrics.count_upstream_error("reset")
            ctx.reason = "upstream:reset"
            self._abort_client(ctx)
            return
        if (
            upstream.reused
            and not upstream.got_bytes
            and not ctx.retried
            and not ctx.has_body
            and ctx.method in IDEMPOTENT_METHODS
            and self.rt.settings.upstream.retry_idempotent
        ):
            # A pooled connection the upstream had closed while idle: once, on a fresh one.
            ctx.retried = True
            self.metrics.upstream_retries += 1
            ctx.task = self.loop.create_task(self._connect_and_send(ctx))
            return
        self.upstream_failed(ctx, upstream, "reset", "upstream closed the connection")

    def upstream_failed(
        self, ctx: RequestContext, upstream: UpstreamConnection, kind: str, detail: str
    ) -> None:
        if ctx.done:
            return
        self.metrics.count_upstream_error(kind)
        ctx.reason = f"upstream:{kind}"
        log.warning("upstream failed", extra={"kind": kind, "detail": detail})
        if ctx.upstream is upstream:
            ctx.upstream = None
        upstream.abort()
        self._disarm()
        if ctx.response_started:
            self._abort_client(ctx)
        else:
            self._answer(ctx, 502)

    def upstream_upgraded(
        self, ctx: RequestContext, upstream: UpstreamConnection, rest: bytes
    ) -> None:
        """101 Switching Protocols: from now on the two sockets are simply spliced."""
        if ctx.done or self.transport is None:
            upstream.abort()
            return
        self._disarm()
        self.flush_now()  # the 101 head, before any spliced byte
        self.splice = upstream
        upstream.splice = self.transport
        if rest:
            self.transport.write(rest)
        for data in ctx.upgrade_buffer:
            upstream.write(data)
        ctx.upgrade_buffer.clear()
        self.metrics.websocket_open += 1
        self.resume_reading(_PAUSE_UPGRADE | _PAUSE_PIPELINE | _PAUSE_LAST)

    def splice_closed(self, ctx: RequestContext) -> None:
        """One side of a spliced connection closed: close the other, record the exchange."""
        self.splice = None
        self.metrics.websocket_open -= 1
        if self.transport is not None and not self.transport.is_closing():
            self.flush_now()
            if self.transport.can_write_eof():
                self.transport.write_eof()
            self.transport.close()
        if not ctx.done:
            self._finish(ctx)

    def _abort_client(self, ctx: RequestContext) -> None:
        self._out.clear()  # a broken response must stay visibly broken
        self._cancel_upstream(ctx)
        if self.transport is not None:
            self.transport.abort()
        if not ctx.done:
            self._finish(ctx)

    # -- record, then the next request --------------------------------------
    def _finish(self, ctx: RequestContext) -> None:
        self.flush()
        ctx.done = True
        # Pauses owed to this exchange's upstream or body buffer end with it (its
        # upstream may be detached before it could say resume).
        self.resume_reading(_PAUSE_UPSTREAM | _PAUSE_BUFFER)
        self._disarm()
        record_exchange(self.metrics, self.gw.access_log, ctx)
        if self.splice is not None and self.current is ctx and not self.closed:
            return  # a spliced exchange is recorded when the splice ends
        if self.current is not ctx:
            return
        self.current = None
        if self.closed:
            return
        # Answered from inside on_headers_complete (a rejection, robots.txt), a
        # request without a body is not `request_done` yet, but nothing of it is
        # left to read: the connection stays open, as its answer told the client.
        # Only a body still unread forces the close (and `_answer` said so).
        if (
            ctx.close_after
            or not ctx.keep_alive
            or self.gw.stopping
            or (ctx.has_body and not ctx.request_done)
            or self.eof
        ):
            if ctx.request_done or self.eof:
                self._close()
            else:
                self._linger()
            return
        if self.pipeline:
            self.loop.call_soon(self._next)
        else:
            self.resume_reading(_PAUSE_PIPELINE)
            if self.parsing is None or self.parsing is ctx:
                # Idle until the next request (`parsing is ctx`: this request's own
                # message is about to complete; it is not a next request begun).
                self._arm(self.rt.keepalive_timeout, _IDLE)
            else:
                self._arm(self.rt.header_timeout, _HEADERS)

    def _next(self) -> None:
        if self.closed or self.current is not None or not self.pipeline:
            return
        ctx = self.current = self.pipeline.popleft()
        if len(self.pipeline) < self.rt.max_pipelined:
            self.resume_reading(_PAUSE_PIPELINE)
        try:
            self._dispatch(ctx)
        except Exception:
            # Outside the parser's callbacks nothing else would catch this.
            log.exception("dispatching a pipelined request failed")
            self._abort_client(ctx)

    def shutdown(self) -> None:
        """Graceful stop: idle connections close now, busy ones after their answer."""
        if self.current is None and self.parsing is None:
            self._close()


_NO_TOKENS: frozenset[bytes] = frozenset()
# Connection header tokens that name no field to drop, or a field that frames the
# message or routes it: whatever the Connection header says, these stay.
_NEVER_HOP_BY_HOP = frozenset(
    {b"close", b"keep-alive", b"upgrade", b"content-length", b"transfer-encoding", b"host"}
)
_TOKENS_CACHE: dict[bytes, frozenset[bytes]] = {}


def _connection_tokens(value: bytes) -> frozenset[bytes]:
    """The field names a Connection header lists, besides the usual keep-alive/close."""
    tokens = _TOKENS_CACHE.get(value)
    if tokens is None:
        found = connection_tokens(value) - _NEVER_HOP_BY_HOP
        tokens = frozenset(found)
        if len(_TOKENS_CACHE) < 1024:
            _TOKENS_CACHE[value] = tokens
    return tokens


def _parse_error_reason(error: Exception) -> str:
    text = str(error).lower()
    if "content-length" in text and "transfer-encoding" in text:
        return "content_length_with_transfer_encoding"
    if "content-length" in text or "transfer-encoding" in text or "chunk" in text:
        return "smuggling"
    if "header" in text:
        return "bad_header"
    return "parse_error"


_BAD_REQUEST_LABEL = {
    "content_length_with_transfer_encoding": "smuggling",
    "duplicate_content_length": "smuggling",
    "unsupported_transfer_encoding": "smuggling",
    "bad_content_length": "smuggling",
    "smuggling": "smuggling",
    "headers_too_large": "headers_too_large",
    "uri_too_long": "headers_too_large",
    "too_many_headers": "too_many_headers",
    "parse_error": "parse_error",
    "internal_error": "parse_error",
}
