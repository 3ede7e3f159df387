"""A scriptable raw-socket upstream for failure tests: what a real app does wrong."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

Handler = Callable[["FakeConnection"], Awaitable[None]]


class FakeConnection:
    def __init__(self, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.index = index
        self.reader = reader
        self.writer = writer

    async def read_request(self) -> bytes:
        """The head of the next request (bodies are not used by these tests)."""
        return await self.reader.readuntil(b"\r\n\r\n")

    async def respond(self, body: bytes = b"ok", status: int = 200) -> None:
        self.writer.write(
            b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body)
        )
        await self.writer.drain()


class FakeUpstream:
    """Calls `handler` for every accepted connection and records what happened."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.accepted = 0
        self.closed_by_peer = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> FakeUpstream:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            await self.handler(FakeConnection(self.accepted, reader, writer))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
