"""The identify phase: who sent this request, and which route rule it falls under.

The socket peer is the client unless the peer is a trusted proxy; only then
are the forwarding headers believed. Every lookup here runs per request, so
the trust test is integer prefix sets (no `ip_network` scans) and parsed
header values are cached by their raw bytes (DESIGN.md, "The hot-path budget").
"""

from __future__ import annotations

import ipaddress
import itertools
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from wardent.config.schema import ClientIP, Route
from wardent.config.types import Network

_CACHE_LIMIT = 65536
_MAX_IP_TEXT = 64  # the longest IPv6 text with a zone is well below this


class Client:
    """Who sent a request, as identify decided; never changed once made.

    `ip` is the address's canonical text and `key` what limits and bans key on
    (the IPv4 address, or the IPv6 /64). `bits` and `value` are the address as
    (32 or 128, integer), for the ban table's network walk; (0, 0) where there is
    no IP address (a unix-socket peer). A plain class, not a frozen dataclass: a
    flood of new IPs makes one per request, and the frozen __init__ was a third
    of what a new client cost.
    """

    __slots__ = ("bits", "ip", "key", "value")

    def __init__(self, ip: str, key: str, bits: int = 0, value: int = 0) -> None:
        self.ip: Final = ip
        self.key: Final = key
        self.bits: Final = bits
        self.value: Final = value

    def __repr__(self) -> str:
        return f"Client(ip={self.ip!r}, key={self.key!r})"


class _PrefixSet:
    """Membership of an address (as an int) in a set of networks of one family."""

    __slots__ = ("bits", "by_length")

    def __init__(self, bits: int, networks: Iterable[Network]) -> None:
        self.bits = bits
        by_length: dict[int, set[int]] = {}
        for network in networks:
            shift = bits - network.prefixlen
            by_length.setdefault(shift, set()).add(int(network.network_address) >> shift)
        # Longest prefixes are the most common (single hosts); order does not matter
        # for correctness, only for how soon a hit returns.
        self.by_length = sorted(by_length.items())

    def __contains__(self, address: int) -> bool:
        return any((address >> shift) in prefixes for shift, prefixes in self.by_length)


def parse_ip(text: str) -> tuple[int, int] | None:
    """(family bits, integer) of an IP text, IPv4-mapped IPv6 folded to IPv4; None if invalid."""
    if not text or len(text) > _MAX_IP_TEXT:
        return None
    try:
        if ":" in text:
            value = int.from_bytes(socket.inet_pton(socket.AF_INET6, text), "big")
            if value >> 32 == 0xFFFF:
                return 32, value & 0xFFFFFFFF
            return 128, value
        return 32, int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
    except (OSError, ValueError):
        return None


class ClientIdentifier:
    """Works out the client of a request from its peer and, if trusted, its headers."""

    def __init__(self, settings: ClientIP) -> None:
        self.header = settings.header.lower().encode()
        self.forwarded_for = settings.forwarded_for
        self.trust_unix = settings.trust_unix_socket
        self.v4 = _PrefixSet(32, (n for n in settings.networks if n.version == 4))
        self.v6 = _PrefixSet(128, (n for n in settings.networks if n.version == 6))
        self.v6_mask_shift = 128 - settings.ipv6_prefix
        self.v4_mask_shift = 32 - settings.ipv4_prefix
        self.v6_prefix = settings.ipv6_prefix
        self.v4_prefix = settings.ipv4_prefix
        self._peers: dict[str, tuple[Client, bool]] = {}
        # Header values parsed before, as plain tuples (ip, key, bits, value), not
        # Clients: the collector untracks a tuple of strs and ints at its first
        # young pass, where a Client, a compiled class, stays tracked. Cached
        # Clients from a flood of new IPs aged into the oldest generation, and
        # every full collection walked them while requests waited
        # (loadtests/README.md, "That morning").
        self._values: dict[bytes, _Parsed] = {}
        self._xff: dict[bytes, _Parsed] = {}
        self.unix_client = Client("unix", "unix")

    # -- the peer -----------------------------------------------------------
    def peer(self, peer_ip: str | None) -> tuple[Client, bool]:
        """The peer as a client, and whether it is a trusted proxy (cached per peer)."""
        if peer_ip is None:
            return self.unix_client, self.trust_unix
        cached = self._peers.get(peer_ip)
        if cached is not None:
            return cached
        parsed = parse_ip(peer_ip)
        if parsed is None:  # cannot happen for a real socket; trust nothing odd
            result = (Client(peer_ip, peer_ip), False)
        else:
            bits, value = parsed
            result = (self._client(bits, value), self._trusted(bits, value))
        if len(self._peers) >= _CACHE_LIMIT:
            self._peers.clear()
        self._peers[peer_ip] = result
        return result

    def _trusted(self, bits: int, value: int) -> bool:
        return value in (self.v4 if bits == 32 else self.v6)

    def _client(self, bits: int, value: int, text: str | None = None) -> Client:
        """The client of an address; `text` is its canonical text when the caller has it."""
        if bits == 32:
            # inet_ntop: a third of str(IPv4Address)'s cost, paid by every new client
            # of a flood; the same dotted-quad text.
            ip = text or socket.inet_ntop(socket.AF_INET, value.to_bytes(4, "big"))
            if self.v4_mask_shift == 0:
                return Client(ip, ip, 32, value)
            masked = (value >> self.v4_mask_shift) << self.v4_mask_shift
            network = socket.inet_ntop(socket.AF_INET, masked.to_bytes(4, "big"))
            return Client(ip, f"{network}/{self.v4_prefix}", 32, value)
        ip = str(ipaddress.IPv6Address(value))
        if self.v6_mask_shift == 0:
            return Client(ip, ip, 128, value)
        masked = (value >> self.v6_mask_shift) << self.v6_mask_shift
        return Client(ip, f"{ipaddress.IPv6Address(masked)}/{self.v6_prefix}", 128, value)

    # -- the forwarding headers --------------------------------------------
    def from_header(self, raw: bytes) -> Client | None:
        """The client named by the configured header (one IP), None if malformed."""
        cached = self._values.get(raw)
        if cached is not None:
            return _from_parsed(cached)
        result = None
        if len(raw) <= _MAX_IP_TEXT:
            text = _ascii(raw).strip()
            parsed = parse_ip(text)
            if parsed is not None:
                bits, value = parsed
                # IPv4 text that inet_pton took is canonical already (four decimal
                # parts, no leading zeros): no inet_ntop for a new client.
                result = self._client(bits, value, text if ":" not in text else None)
        _remember(self._values, raw, result)
        return result

    def from_forwarded_for(self, raw: bytes) -> Client | None:
        """X-Forwarded-For walked right to left past trusted hops (real_ip_recursive)."""
        cached = self._xff.get(raw)
        if cached is not None:
            return _from_parsed(cached)
        result = None
        if len(raw) <= 2048:
            hops = _ascii(raw).split(",")
            for index in range(len(hops) - 1, -1, -1):
                parsed = parse_ip(hops[index].strip())
                if parsed is None:
                    result = None
                    break
                bits, value = parsed
                result = self._client(bits, value)
                if not self._trusted(bits, value):
                    break
        _remember(self._xff, raw, result)
        return result


# (ip, key, bits, value) of a Client; bits -1: the value was malformed.
_Parsed = tuple[str, str, int, int]
_MALFORMED: Final[_Parsed] = ("", "", -1, 0)


def _from_parsed(parsed: _Parsed) -> Client | None:
    ip, key, bits, value = parsed
    return Client(ip, key, bits, value) if bits >= 0 else None


def _remember(cache: dict[bytes, _Parsed], raw: bytes, client: Client | None) -> None:
    if len(cache) >= _CACHE_LIMIT:
        # The oldest eighth, not all: clearing 65,536 entries at once stopped the
        # loop for milliseconds, once every 65,536 new IPs of a flood.
        for stale in list(itertools.islice(cache, _CACHE_LIMIT // 8)):
            del cache[stale]
    cache[raw] = (
        _MALFORMED if client is None else (client.ip, client.key, client.bits, client.value)
    )


def _ascii(raw: bytes) -> str:
    return raw.decode("latin-1")


@dataclass(frozen=True, slots=True)
class CompiledRoute:
    name: str
    path_prefix: str | None = None
    path_regex: re.Pattern[str] | None = None
    methods: frozenset[str] = frozenset()
    host: str | None = None
    skip: frozenset[str] = field(default_factory=frozenset)
    shadow: frozenset[str] = field(default_factory=frozenset)
    body_limit: int | None = None
    stripe_tolerance: float | None = None  # set on a Stripe webhook route
    stripe_header: bytes = b"stripe-signature"

    def matches(self, method: str, path: str, host: str) -> bool:
        if self.methods and method not in self.methods:
            return False
        if self.host is not None and host != self.host:
            return False
        if self.path_prefix is not None and not path.startswith(self.path_prefix):
            return False
        return self.path_regex is None or self.path_regex.match(path) is not None


DEFAULT_ROUTE = CompiledRoute(name="default")


class RouteTable:
    """First matching rule wins; requests matching none fall under `default`."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = tuple(
            CompiledRoute(
                name=route.name,
                path_prefix=route.match.path_prefix,
                path_regex=re.compile(route.match.path_regex) if route.match.path_regex else None,
                methods=frozenset(route.match.methods),
                host=route.match.host.lower() if route.match.host else None,
                skip=route.skipped,
                shadow=frozenset(route.shadow),
                body_limit=route.body_limit.max if route.body_limit else None,
                stripe_tolerance=(
                    route.stripe_signature.tolerance if route.stripe_signature else None
                ),
                stripe_header=(
                    route.stripe_signature.header.lower().encode()
                    if route.stripe_signature
                    else b"stripe-signature"
                ),
            )
            for route in routes
        )

    def match(self, method: str, path: str, host: str) -> CompiledRoute:
        for route in self.routes:
            if route.matches(method, path, host):
                return route
        return DEFAULT_ROUTE


def normalise_path(target: bytes) -> str:
    """The path a route rule sees: no query, percent-decoded unreserved chars, dot-segments
    resolved, duplicate slashes folded, so `/a/../stripe//webhook` cannot dodge a rule."""
    # Searched as str: on bytes, `in` first tries its argument as an int and formats
    # a TypeError it then drops (~1,500 instructions) and find() parses its
    # arguments as a tuple (~1,200); str's `in` costs ~150 (loadtests/instructions.py).
    raw = target.decode("latin-1")
    if "?" in raw:
        raw = raw.split("?", 1)[0]
    if "#" in raw:
        raw = raw.split("#", 1)[0]
    if not raw.startswith("/"):
        # absolute-form (http://host/path) or asterisk-form
        if raw.startswith(("http://", "https://")):
            slash = raw.find("/", raw.find("//") + 2)
            raw = raw[slash:] if slash != -1 else "/"
        else:
            return raw
    if "%" in raw:
        raw = _PERCENT_UNRESERVED.sub(lambda m: chr(int(m.group(1), 16)), raw)
    if "//" not in raw and "/." not in raw:
        return raw
    segments: list[str] = []
    for segment in raw.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    path = "/" + "/".join(segments)
    if raw.endswith("/") and path != "/":
        path += "/"
    return path


# Only unreserved characters are decoded: %2F stays a literal, as nginx keeps it.
_PERCENT_UNRESERVED = re.compile(
    r"%(2[dDeE]|3[0-9]|4[1-9a-fA-F]|5[0-9aA]|5[fF]|6[1-9a-fA-F]|7[0-9aA]|7[eE])"
)
