"""GET /api/stream: server-sent events of ticks and closed candles.

How ticks reach this process: the feed worker (another process) appends them to the
MarketEvent table; one Broadcaster per web process tails that table every
`stream_poll_interval` seconds and fans each new row out to its subscribers' queues.
That works the same on SQLite and PostgreSQL and across any number of processes and
machines, costs one indexed query per poll per process however many browsers are
connected, and gives every event a durable id, which is what makes Last-Event-ID
resumption possible (docs/tradesim.md weighs the alternatives).

Resuming: a client that reconnects with Last-Event-ID gets the candles that closed
while it was away, then only the newest tick per symbol (older ticks are stale
prices, not worth replaying), then the live stream.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db.models import Max
from django.http import HttpRequest, StreamingHttpResponse
from django.http.response import HttpResponseBase

from tradesim.api import error_response
from tradesim.dbthread import DbThread
from tradesim.market.models import MarketEvent, Symbol

log = logging.getLogger("tradesim.stream")

QUEUE_SIZE = 1000
POLL_BATCH = 500
REPLAY_LIMIT = 1000


@dataclass(frozen=True)
class Event:
    id: int
    kind: str
    symbol: str
    payload: dict[str, object]

    def encode(self) -> bytes:
        data = json.dumps(self.payload, separators=(",", ":"))
        return f"id: {self.id}\nevent: {self.kind}\ndata: {data}\n\n".encode()


def _event(row: MarketEvent) -> Event:
    return Event(id=row.id, kind=row.kind, symbol=row.symbol, payload=dict(row.payload))


@dataclass(eq=False)
class Subscription:
    start: int  # events after this id arrive through the queue
    queue: asyncio.Queue[Event | None] = field(
        default_factory=lambda: asyncio.Queue(maxsize=QUEUE_SIZE)
    )
    overflowed: bool = False

    def offer(self, event: Event) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            # A reader this slow is cut off rather than allowed to hold memory; its
            # browser reconnects with Last-Event-ID and catches up on the candles.
            self.overflowed = True
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)


def _max_event_id() -> int:
    return int(MarketEvent.objects.aggregate(top=Max("id"))["top"] or 0)


def _events_after(cursor: int) -> list[Event]:
    rows = MarketEvent.objects.filter(id__gt=cursor).order_by("id")[:POLL_BATCH]
    return [_event(row) for row in rows]


def _replay(after: int, upto: int) -> list[Event]:
    in_range = MarketEvent.objects.filter(id__gt=after, id__lte=upto)
    candles = list(in_range.filter(kind=MarketEvent.KIND_CANDLE).order_by("-id")[:REPLAY_LIMIT])
    ticks = []
    for symbol in Symbol.objects.filter(active=True).values_list("name", flat=True):
        newest = in_range.filter(kind=MarketEvent.KIND_TICK, symbol=symbol).order_by("-id").first()
        if newest is not None:
            ticks.append(newest)
    return sorted((_event(row) for row in [*candles, *ticks]), key=lambda event: event.id)


class Broadcaster:
    """Tails MarketEvent for one event loop and fans out to its subscriptions."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.subscriptions: set[Subscription] = set()
        self.cursor = 0
        self.task: asyncio.Task[None] | None = None
        self.started = asyncio.Event()
        # One thread, one long-lived connection: the poll is one query, not a
        # connection set-up per poll.
        self.db = DbThread("stream-db")

    async def subscribe(self) -> Subscription:
        loop = asyncio.get_running_loop()
        if self.loop is not loop or self.task is None or self.task.done():
            # First subscriber (or a new event loop, as in tests). No await between
            # the check and create_task: concurrent first subscribers share one poller.
            self.loop = loop
            self.subscriptions = set()
            self.started = asyncio.Event()
            # A fresh context: the poller must not inherit the first request's
            # (asgiref binds sync work to the request that created a task).
            self.task = loop.create_task(self._poll(), context=contextvars.Context())
        await self.started.wait()
        # Synchronous from here: the cursor cannot move between reading it and
        # joining, so events after `start` come through the queue, none twice.
        subscription = Subscription(start=self.cursor)
        self.subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self.subscriptions.discard(subscription)

    async def _poll(self) -> None:
        try:
            while not self.started.is_set():
                try:
                    self.cursor = await self.db.run(_max_event_id)  # start from "now"
                    self.started.set()
                except Exception:
                    log.exception("stream start failed; retrying")
                    await self.db.reset()
                    await asyncio.sleep(1.0)
            while True:
                await asyncio.sleep(settings.TRADESIM.stream_poll_interval)
                if not self.subscriptions:
                    return
                try:
                    events = await self.db.run(_events_after, self.cursor)
                except Exception:
                    log.exception("stream poll failed; retrying")
                    await self.db.reset()
                    continue
                for event in events:
                    self.cursor = event.id
                    for subscription in list(self.subscriptions):
                        subscription.offer(event)
        finally:
            await self.db.reset()


broadcaster = Broadcaster()


def _last_event_id(request: HttpRequest) -> int | None:
    raw = request.headers.get("Last-Event-ID") or request.GET.get("last_event_id")
    if raw is None or not raw.strip().isdigit():
        return None
    return int(raw.strip())


async def _events(
    after: int | None, symbols: frozenset[str] | None, keepalive: float
) -> AsyncIterator[bytes]:
    subscription = await broadcaster.subscribe()
    try:
        yield b"retry: 2000\n\n"
        if after is not None and after < subscription.start:
            for old in await broadcaster.db.run(_replay, after, subscription.start):
                if symbols is None or old.symbol in symbols:
                    yield old.encode()
        while True:
            try:
                event = await asyncio.wait_for(subscription.queue.get(), keepalive)
            except TimeoutError:
                # A comment line: keeps proxies from closing an idle stream.
                yield b": keepalive\n\n"
                continue
            if event is None:
                return
            if symbols is None or event.symbol in symbols:
                yield event.encode()
    finally:
        broadcaster.unsubscribe(subscription)


async def stream(request: HttpRequest) -> HttpResponseBase:
    if request.method != "GET":
        refusal = error_response(405, "method_not_allowed", "use GET")
        refusal["Allow"] = "GET"
        return refusal
    symbols: frozenset[str] | None = None
    raw = request.GET.get("symbols")
    if raw:
        symbols = frozenset(s.strip().upper() for s in raw.split(",") if s.strip())
        known = await sync_to_async(
            lambda: set(Symbol.objects.filter(active=True).values_list("name", flat=True))
        )()
        unknown = sorted(symbols - known)
        if unknown:
            return error_response(400, "unknown_symbol", f"not traded: {', '.join(unknown)}")
    response = StreamingHttpResponse(
        _events(_last_event_id(request), symbols, settings.TRADESIM.stream_keepalive),
        content_type="text/event-stream",
    )
    response["Cache-Control"] = "no-cache"
    # nginx buffers proxied responses by default; an event stream must not wait.
    response["X-Accel-Buffering"] = "no"
    return response
