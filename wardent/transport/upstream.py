"""The upstream side: one Protocol per keep-alive connection, and a bounded pool.

A connection serves one request context at a time and hands every parsed event
to that context's client connection; it knows nothing of guards or logs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import httptools

from wardent.config.schema import Address
from wardent.transport.write_batch import WriteBatch

if TYPE_CHECKING:
    from wardent.context import RequestContext

_WRITE_HIGH_WATER = 256 * 1024
# A response whose head is still unfinished after this many bytes is refused
# (nginx: "upstream sent too big header"): llhttp sets no bound, and the fields
# are held until the head ends.
MAX_RESPONSE_HEAD = 64 * 1024


class BadUpstreamResponse(Exception):
    """Raised in a parser callback: a response llhttp took that Wardent cannot relay."""


class UpstreamUnavailable(Exception):
    """The upstream could not be reached; `kind` is the metrics label and `status` the answer."""

    def __init__(self, kind: str, status: int, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.status = status


class UpstreamConnection(asyncio.Protocol):
    __slots__ = (
        "closed",
        "ctx",
        "got_bytes",
        "head_bytes",
        "head_done",
        "headers",
        "idle_since",
        "keep_alive",
        "last_active",
        "loop",
        "loop_time",
        "out",
        "parser",
        "phrase",
        "pool",
        "reading_paused",
        "reused",
        "skip_body",
        "splice",
        "status",
        "transport",
    )

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.loop_time: Callable[[], float] = pool.loop.time  # bound once: no lookup a call
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.ctx: RequestContext | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.phrase = b""
        # Bytes read before the final response's head ended (counted a read, not a field).
        self.head_bytes = 0
        self.head_done = False
        self.status = 0
        self.keep_alive = True
        self.skip_body = False
        self.splice: asyncio.Transport | None = None
        self.reused = False
        self.closed = False
        self.got_bytes = False
        self.reading_paused = False
        self.idle_since = 0.0
        self.last_active = 0.0
        self.out: list[bytes] = []  # written at the end of this loop iteration (see write)

    # -- asyncio.Protocol ---------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=_WRITE_HIGH_WATER)

    def data_received(self, data: bytes) -> None:
        if self.splice is not None:
            self.splice.write(data)
            ctx = self.ctx
            if ctx is not None:
                ctx.bytes_out += len(data)
            return
        ctx = self.ctx
        if ctx is None:
            # Bytes on an idle connection mean it is out of step: never reuse it.
            self.abort()
            return
        self.last_active = self.loop_time()
        self.got_bytes = True
        client = ctx.conn
        if not self.head_done:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            client.flush()
            if self.ctx is ctx and self.status == 101:
                if ctx.upgrade:
                    client.upstream_upgraded(ctx, self, data[upgrade.args[0] :])
                else:
                    # A tunnel the client never asked for would skip every guard.
                    client.upstream_failed(ctx, self, "protocol", "101 without an Upgrade")
            else:
                self.abort()
            return
        except httptools.HttpParserError as error:
            if self.ctx is ctx:
                cause = error.__context__
                detail = cause if isinstance(cause, BadUpstreamResponse) else error
                client.upstream_failed(ctx, self, "protocol", f"bad response: {detail}")
            else:
                # Garbage after a finished response: this connection is out of step,
                # never reuse it (it may already sit in the idle pool).
                self.abort()
            return
        if not self.head_done and self.head_bytes > MAX_RESPONSE_HEAD and self.ctx is ctx:
            client.upstream_failed(
                ctx, self, "protocol", f"response head unfinished after {MAX_RESPONSE_HEAD} bytes"
            )
            return
        client.flush()
        if self.skip_body:
            # A response to HEAD ends at its headers whatever its Content-Length says;
            # httptools cannot be told so, so the next response gets a fresh parser.
            self.skip_body = False
            self.parser = httptools.HttpResponseParser(self)
            if self.ctx is ctx:
                ctx.conn.response_complete(ctx, self)

    def eof_received(self) -> bool | None:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        # The parser's callbacks are bound methods of this protocol: a cycle that
        # only the collector's full passes would free. Upstream connections churn
        # (past max_idle, or the app closing idle ones): thousands of dead ones
        # waited for a full collection, a stall of tens of ms (bench.py's sweep row).
        self.parser = _CLOSED_PARSER
        ctx = self.ctx
        if ctx is not None:
            if self.splice is not None:
                ctx.conn.splice_closed(ctx)
            else:
                ctx.conn.upstream_lost(ctx, self, exc)
        self.ctx = None

    def pause_writing(self) -> None:
        if self.ctx is not None:
            self.ctx.conn.pause_reading(_UPSTREAM_BACKPRESSURE)

    def resume_writing(self) -> None:
        if self.ctx is not None:
            self.ctx.conn.resume_reading(_UPSTREAM_BACKPRESSURE)

    # -- httptools callbacks ------------------------------------------------
    def on_message_begin(self) -> None:
        if self.ctx is None:
            raise _Unsolicited  # a response nobody asked for: see data_received
        self.headers = []
        self.phrase = b""

    def on_status(self, status: bytes) -> None:
        self.phrase += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        self.status = status
        if 100 <= status < 200 and status != 101:
            self.head_bytes = 0  # the bound is a head's, and this one ended
            return  # interim responses (100, 103) are not relayed
        ctx = self.ctx
        if ctx is None or (status == 101 and not ctx.upgrade):
            return  # an unasked-for 101 fails in data_received, before any byte is relayed
        self.head_done = True
        self.keep_alive = self.parser.should_keep_alive()
        ctx.conn.response_head(ctx, self, status, self.phrase, self.headers)
        if ctx.method == "HEAD":
            self.skip_body = True

    def on_body(self, body: bytes) -> None:
        ctx = self.ctx
        if ctx is not None and not self.skip_body:
            ctx.conn.response_body(ctx, body)

    def on_message_complete(self) -> None:
        status = self.status
        if (100 <= status < 200) or self.skip_body:
            return
        ctx = self.ctx
        if ctx is not None:
            ctx.conn.response_complete(ctx, self)

    # -- used by the client side ------------------------------------------
    def attach(self, ctx: RequestContext) -> None:
        self.ctx = ctx
        self.head_bytes = 0
        self.head_done = False
        self.status = 0
        self.got_bytes = False
        self.last_active = self.loop_time()

    # Writes are held until every event of this loop iteration has been handled
    # (wardent/transport/write_batch.py), then sent with one writev.
    def write(self, data: bytes) -> None:
        out = self.out
        if not out:
            self.last_active = self.loop_time()
            self.pool.writes.add(self)
        out.append(data)

    def writelines(self, data: list[bytes]) -> None:
        out = self.out
        if not out:
            self.last_active = self.loop_time()
            self.pool.writes.add(self)
        out.extend(data)

    def flush_now(self) -> None:
        out = self.out
        if out:
            transport = self.transport
            if transport is not None and not self.closed:
                transport.writelines(out)
            out.clear()

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed and self.reading_paused:
            self.reading_paused = False
            self.transport.resume_reading()

    def abort(self) -> None:
        """Close now and never reuse (a half-read response cannot be resynchronised)."""
        self.ctx = None
        self.out.clear()
        if self.transport is not None and not self.closed:
            self.transport.abort()
        self.closed = True
        self.pool.forget(self)


_UPSTREAM_BACKPRESSURE = 1

# What a lost connection's `parser` is: it holds no protocol, so no cycle.
_CLOSED_PARSER = httptools.HttpResponseParser(object())


class _Unsolicited(Exception):
    """Raised in a parser callback: the upstream sent a message after its answer."""


class UpstreamPool:
    """A bounded keep-alive pool: at most `max_connections` open, `max_idle` kept warm."""

    def __init__(
        self,
        address: Address,
        *,
        connect_timeout: float,
        max_connections: int,
        max_idle: int,
        idle_timeout: float,
        writes: WriteBatch | None = None,
    ) -> None:
        self.address = address
        self.connect_timeout = connect_timeout
        self.max_connections = max_connections
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self.loop = asyncio.get_running_loop()
        self.idle: deque[UpstreamConnection] = deque()
        self.open: set[UpstreamConnection] = set()
        self.connecting = 0
        self.waiters: deque[asyncio.Future[UpstreamConnection | None]] = deque()
        self.closed = False
        self.writes = writes or WriteBatch(self.loop)
        self._sweeper = self.loop.call_later(max(idle_timeout / 2, 0.5), self._sweep)

    def acquire_nowait(self) -> UpstreamConnection | None:
        """A warm idle connection, or None (the caller then awaits `connect`)."""
        idle = self.idle
        while idle:
            conn = idle.pop()
            if not conn.closed:
                conn.reused = True
                return conn
        return None

    async def connect(self) -> UpstreamConnection:
        """A fresh connection, waiting for a free slot if the pool is at its bound."""
        deadline = self.loop.time() + self.connect_timeout
        while len(self.open) + self.connecting >= self.max_connections:
            if self.idle:
                # Over the bound only because of idle ones: make room.
                self.idle.popleft().abort()
                continue
            waiter: asyncio.Future[UpstreamConnection | None] = self.loop.create_future()
            self.waiters.append(waiter)
            try:
                handed = await asyncio.wait_for(waiter, max(deadline - self.loop.time(), 0))
            except BaseException as error:
                if waiter in self.waiters:
                    self.waiters.remove(waiter)
                elif waiter.done() and not waiter.cancelled():
                    # Handed a connection in the very iteration we were cancelled or
                    # timed out (Python 3.12+ then drops it): give it back.
                    late = waiter.result()
                    if late is not None:
                        self.release(late)
                if isinstance(error, TimeoutError):
                    raise UpstreamUnavailable(
                        "pool_exhausted", 503, "all upstream connections busy"
                    ) from None
                raise
            if handed is not None and not handed.closed:
                return handed
        self.connecting += 1
        connected = False
        try:
            remaining = max(deadline - self.loop.time(), 0.001)
            async with asyncio.timeout(remaining):
                if self.address.unix_path is not None:
                    _, conn = await self.loop.create_unix_connection(
                        lambda: UpstreamConnection(self), self.address.unix_path
                    )
                else:
                    _, conn = await self.loop.create_connection(
                        lambda: UpstreamConnection(self), self.address.host, self.address.port
                    )
            connected = True
        except TimeoutError:
            raise UpstreamUnavailable(
                "connect_timeout", 504, f"connecting to {self.address} timed out"
            ) from None
        except OSError as error:
            raise UpstreamUnavailable(
                "connect_refused", 502, f"connecting to {self.address}: {error.strerror or error}"
            ) from None
        finally:
            self.connecting -= 1
            if not connected:
                self._wake_one()  # the slot this attempt held is free again
        if self.closed:
            conn.abort()
            raise UpstreamUnavailable("connect_refused", 502, "the pool is closing")
        self.open.add(conn)
        return conn

    def release(self, conn: UpstreamConnection) -> None:
        """Give back a connection whose exchange ended cleanly; it may be reused."""
        conn.ctx = None
        if conn.closed:
            return
        conn.resume_reading()  # the client it served may have paused it
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                conn.reused = True
                waiter.set_result(conn)
                return
        if self.closed or len(self.idle) >= self.max_idle:
            conn.abort()
            return
        conn.idle_since = conn.loop_time()
        self.idle.append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        """A connection is gone: free its slot for someone waiting."""
        if conn in self.open:
            self.open.discard(conn)
            with contextlib.suppress(ValueError):
                self.idle.remove(conn)
            self._wake_one()

    def _wake_one(self) -> None:
        """A slot came free: the first waiter may connect (it is handed None)."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break

    def _sweep(self) -> None:
        now = self.loop.time()
        while self.idle and now - self.idle[0].idle_since > self.idle_timeout:
            self.idle.popleft().abort()
        if not self.closed:
            self._sweeper = self.loop.call_later(max(self.idle_timeout / 2, 0.5), self._sweep)

    def close(self) -> None:
        """Stop keeping connections: idle ones close now, busy ones when they finish."""
        self.closed = True
        self._sweeper.cancel()
        while self.idle:
            self.idle.pop().abort()
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(None)
