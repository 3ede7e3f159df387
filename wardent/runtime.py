"""Everything the request path reads, compiled once per configuration.

A reload builds a new Runtime and swaps one reference; a request reads the
runtime once at its start, so it sees one whole configuration, never a mix.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence

from wardent.config.schema import Settings
from wardent.guards.build import GuardState, build_guards
from wardent.guards.chain import Guard, GuardChain, Rejection
from wardent.identify import ClientIdentifier, RouteTable
from wardent.transport.http import HOP_BY_HOP, REPLACED_REQUEST_HEADERS

# Kinds of request field (Runtime.request_field): bits.
NOT_FORWARDED = 1  # set by Wardent or hop-by-hop: not copied upstream as sent
SINGLE_VALUED = 2  # a second copy is an attack or an accident, never a list
# Kinds of response field (Runtime.response_field); 0: copied as it comes.
FIELD_LENGTH = 1  # Content-Length: copied, and the body is framed by it
FIELD_CONNECTION = 2  # read for the fields it names, not copied
FIELD_ENCODING = 3  # Transfer-Encoding: the body is re-framed, not copied
FIELD_UPGRADE = 4  # copied only on 101 Switching Protocols
FIELD_DROPPED = 5  # other hop-by-hop fields, and the request id Wardent sets
_FIELD_CACHE_SIZE = 1024


class Runtime:
    __slots__ = (
        "body_limit_guard",
        "body_timeout",
        "body_too_large",
        "built",
        "chain",
        "client_ip_header",
        "client_ip_line",
        "debug_headers",
        "header_timeout",
        "identifier",
        "keepalive_timeout",
        "max_header_count",
        "max_header_size",
        "max_pipelined",
        "read_timeout",
        "request_fields",
        "request_id_header",
        "request_id_prefix",
        "request_skip",
        "response_fields",
        "robots_txt",
        "routes",
        "send_timeout",
        "settings",
        "single_valued",
        "stripe",
        "trust_request_id",
    )

    def __init__(
        self,
        settings: Settings,
        state: GuardState | None = None,
        guards: Sequence[Guard] | None = None,
    ) -> None:
        """Guards come from the settings (with `state`), or are given (tests)."""
        self.settings = settings
        self.identifier = ClientIdentifier(settings.client_ip)
        self.routes = RouteTable(settings.routes)
        self.built = build_guards(settings, state) if state is not None else None
        if guards is None:
            guards = self.built.guards if self.built is not None else ()
        self.chain = GuardChain(guards)
        self.robots_txt = self.built.robots_txt if self.built is not None else None
        self.stripe = self.built.stripe if self.built is not None else None
        self.body_too_large = (
            self.built.body_too_large if self.built is not None else Rejection(413, "too_large")
        )
        self.body_limit_guard = next((g for g in self.chain.guards if g.name == "body_limit"), None)
        origin_header = self.built.origin_header if self.built is not None else None
        self.client_ip_header = settings.client_ip.header.lower().encode()
        self.client_ip_line = b"\r\n" + settings.client_ip.header.encode() + b": "
        self.request_id_header = settings.http.request_id_header.lower().encode()
        self.request_id_prefix = settings.http.request_id_header.encode() + b": "
        # Request fields not copied as they come: set by Wardent, or hop-by-hop.
        self.request_skip = (
            HOP_BY_HOP
            | REPLACED_REQUEST_HEADERS
            | {self.request_id_header, self.client_ip_header}
            | ({origin_header} if origin_header else set())
        )
        # Fields where a second copy is an attack or an accident, never a list.
        self.single_valued = frozenset(
            {b"host", b"content-length", b"stripe-signature", b"x-wardent-secret"}
            | {self.client_ip_header, self.request_id_header}
            | ({origin_header} if origin_header else set())
            | {route.stripe_header for route in self.routes.routes}
        )
        # What on_header needs of a field name, by the name as sent (bounded: names
        # are few in practice, but a client may send any).
        self.request_fields: dict[bytes, tuple[bytes, int]] = {}
        # Response fields by the name as sent: their kind (FIELD_*, 0 for most).
        self.response_fields: dict[bytes, int] = {}
        self.trust_request_id = settings.http.trust_request_id
        self.max_header_size = settings.http.max_header_size
        self.max_header_count = settings.http.max_header_count
        self.max_pipelined = settings.http.max_pipelined
        self.header_timeout = settings.http.header_timeout
        self.keepalive_timeout = settings.http.keepalive_timeout
        self.read_timeout = settings.upstream.read_timeout
        self.send_timeout = settings.upstream.send_timeout
        self.body_timeout = settings.http.body_timeout
        self.debug_headers = settings.debug_headers

    def request_field(self, name: bytes) -> tuple[bytes, int]:
        """A request field's lower-cased name and kind (NOT_FORWARDED, SINGLE_VALUED)."""
        lname = name.lower()
        kind = (NOT_FORWARDED if lname in self.request_skip else 0) | (
            SINGLE_VALUED if lname in self.single_valued else 0
        )
        if len(self.request_fields) < _FIELD_CACHE_SIZE:
            self.request_fields[name] = (lname, kind)
        return lname, kind

    def response_field(self, name: bytes) -> int:
        """What response_head does with a response field (a FIELD_* kind, or 0: copy it)."""
        lname = name.lower()
        if lname == b"content-length":
            kind = FIELD_LENGTH
        elif lname == b"connection":
            kind = FIELD_CONNECTION
        elif lname == b"transfer-encoding":
            kind = FIELD_ENCODING
        elif lname == b"upgrade":
            kind = FIELD_UPGRADE
        elif lname in HOP_BY_HOP or lname == self.request_id_header:
            kind = FIELD_DROPPED
        else:
            kind = 0
        if len(self.response_fields) < _FIELD_CACHE_SIZE:
            self.response_fields[name] = kind
        return kind

    def count_streamed_body_limit(self, shadow: bool) -> None:
        """A chunked body crossed the limit after the chain ran: the guard's counters."""
        guard = self.body_limit_guard
        if guard is not None:
            if shadow:
                guard.shadow_rejected += 1
            else:
                guard.rejected += 1


class RequestIds:
    """Process prefix + counter: unique across restarts, 0.1 µs instead of uuid4's 1.5."""

    def __init__(self) -> None:
        self.prefix = os.urandom(6).hex().encode() + b"-"
        self.counter = itertools.count(1)

    def next(self) -> bytes:
        return b"%s%x" % (self.prefix, next(self.counter))
