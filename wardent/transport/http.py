"""HTTP/1.1 wire helpers shared by both sides of the proxy: the proxy's own rules
(hop-by-hop headers, bare responses) on top of what httptools already validates."""

from __future__ import annotations

from http import HTTPStatus

# RFC 9110 7.6.1: a proxy removes Connection, the fields it names, and these.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)

# Request fields the proxy replaces or consumes instead of forwarding as sent.
REPLACED_REQUEST_HEADERS = frozenset(
    {b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-real-ip", b"expect"}
)

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})

_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}


def status_line(status: int) -> bytes:
    return b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Unknown"))


def connection_tokens(value: bytes) -> set[bytes]:
    """The lower-cased field names listed in a Connection header."""
    return {token.strip().lower() for token in value.split(b",") if token.strip()}


def bare_response(
    status: int,
    *,
    retry_after: int | None = None,
    request_id: bytes | None = None,
    reason_header: bytes | None = None,
    close: bool = False,
) -> bytes:
    """The one renderer of Wardent's own answers: status line, Content-Length: 0, no body.

    nginx turns the status into the static error page; the reason stays in our
    log and metrics unless `debug_headers` asked for it as Wardent-Reason.
    """
    parts = [status_line(status), b"Content-Length: 0\r\n"]
    if retry_after is not None:
        parts.append(b"Retry-After: %d\r\n" % retry_after)
    if request_id is not None:
        parts.append(b"X-Request-ID: " + request_id + b"\r\n")
    if reason_header is not None:
        parts.append(b"Wardent-Reason: " + reason_header + b"\r\n")
    if close:
        parts.append(b"Connection: close\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def chunk(data: bytes) -> list[bytes]:
    """One chunk of a chunked body, as pieces for writelines (no copy of the data)."""
    return [b"%x\r\n" % len(data), data, b"\r\n"]


LAST_CHUNK = b"0\r\n\r\n"
