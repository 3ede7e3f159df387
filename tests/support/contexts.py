"""Real RequestContexts for unit tests of guards and the chain.

The request path is compiled (setup.py, wardent/native.py), and compiled code
checks the types it is handed: a stand-in object is refused where a
RequestContext is declared. So tests build the real thing, on a real
ClientConnection of a Gateway that is never started.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from wardent.config.schema import Settings
from wardent.context import RequestContext
from wardent.gateway import Gateway
from wardent.transport.server import ClientConnection

_SETTINGS = {
    "listen": {"public": "127.0.0.1:0", "admin": "127.0.0.1:0"},
    "upstream": {"url": "http://127.0.0.1:1"},
    "telemetry": {"access_log": "off"},
}


def _connection() -> ClientConnection:
    directory = Path(tempfile.mkdtemp(prefix="wardent-ctx-"))
    data = {**_SETTINGS, "bans": {"store": str(directory / "bans.sqlite3")}}
    settings = Settings.model_validate(data, context={"environ": {}, "base_dir": directory})

    async def build() -> ClientConnection:
        return ClientConnection(Gateway(directory / "unused.yaml", settings))

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(build())
    raise RuntimeError("request_context() is for synchronous tests")


_connection_cache: list[ClientConnection] = []


def request_context(**fields: Any) -> RequestContext:
    """A RequestContext as a parsed request leaves it, with `fields` set on it."""
    if not _connection_cache:
        _connection_cache.append(_connection())
    ctx = RequestContext(_connection_cache[0], time.perf_counter())
    for name, value in fields.items():
        setattr(ctx, name, value)
    return ctx
