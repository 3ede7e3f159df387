"""What ClientConnection.on_headers_complete relies on to skip get_http_version():
without a Connection header, llhttp keeps a request alive exactly when it is HTTP/1.1.

If an httptools upgrade ever accepts another version with a minor number (1.2) or
changes keep-alive rules, this fails before a 1.0 client is sent chunked framing.
"""

from __future__ import annotations

import httptools
import pytest


class _Seen:
    def __init__(self) -> None:
        self.parser: httptools.HttpRequestParser | None = None
        self.found: tuple[bool, str] | None = None

    def on_headers_complete(self) -> None:
        assert self.parser is not None
        self.found = (self.parser.should_keep_alive(), self.parser.get_http_version())


@pytest.mark.parametrize("version", ["0.9", "1.0", "1.1", "2.0", "1.2", "3.0", "1.9"])
def test_keep_alive_without_connection_header_means_http_11(version: str) -> None:
    seen = _Seen()
    parser = seen.parser = httptools.HttpRequestParser(seen)
    try:
        parser.feed_data(f"GET / HTTP/{version}\r\nHost: a\r\n\r\n".encode())
    except httptools.HttpParserError:
        assert seen.found is None  # refused before its headers: never forwarded
        return
    assert seen.found is not None
    keep_alive, parsed = seen.found
    assert parsed == version
    assert keep_alive == (version == "1.1"), (version, keep_alive)
