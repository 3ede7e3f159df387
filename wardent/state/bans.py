"""The ban table: what the request path reads to refuse a banned client.

The request path only ever calls `BanTable.lookup`; the ban keeper
(`wardent.state.keeper`) is the one task that changes the table. On one event
loop there is no await between a lookup's reads, so no lock exists.

A ban's target is one of:

- a client key, as `wardent.identify` makes it: an IPv4 address, or an IPv6
  /64 such as "2001:db8:1:2::/64" (automatic bans are always of a key);
- an IP address ("203.0.113.7"), matched against the client's own address;
- an operator's network ("203.0.113.0/24"), matched by prefix membership.

Targets are kept in canonical text (`normalise_target`), so the lookups are
plain dict hits and the network path runs only while operator network bans
exist.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from wardent.config.types import Network
from wardent.identify import Client, _PrefixSet, parse_ip

__all__ = [
    "Ban",
    "BanTable",
    "Source",
    "ban_json",
    "iso_utc",
    "normalise_ip",
    "normalise_target",
]

Source = Literal["auto", "operator"]


@dataclass(frozen=True, slots=True)
class Ban:
    target: str  # a client key, an IP address, or a CIDR "203.0.113.0/24"
    until: float  # wall-clock epoch seconds
    reason: str
    source: Source
    created: float
    count: int  # how many times this target has been banned; 1 = the first time


def normalise_ip(text: str) -> str:
    """The canonical text of one IP address (IPv4-mapped IPv6 folded to IPv4).

    Raises ValueError, saying what was expected, when `text` is not an address.
    """
    parsed = parse_ip(text.strip())
    if parsed is None:
        raise ValueError(f"{text!r} is not an IP address: expected e.g. 203.0.113.7 or 2001:db8::7")
    bits, value = parsed
    if bits == 32:
        return str(ipaddress.IPv4Address(value))
    return str(ipaddress.IPv6Address(value))


def normalise_target(text: str) -> str:
    """The canonical text of a ban target: an IP address or a network in CIDR notation.

    A /32 (IPv4) or /128 (IPv6) network is the address itself. Raises ValueError
    with what to fix for anything else, host bits set, or a /0.
    """
    text = text.strip()
    if "/" not in text:
        return normalise_ip(text)
    address, _, length = text.partition("/")
    try:
        base = normalise_ip(address)
    except ValueError:
        raise ValueError(
            f"{text!r} is not an IP address or CIDR: expected e.g. 203.0.113.7, "
            "203.0.113.0/24 or 2001:db8:1:2::/64"
        ) from None
    try:
        network = ipaddress.ip_network(f"{base}/{length}", strict=True)
    except ValueError as error:
        if "host bits set" in str(error):
            loose = ipaddress.ip_network(f"{base}/{length}", strict=False)
            raise ValueError(
                f"{text!r} has host bits set: did you mean {loose.compressed}?"
            ) from None
        raise ValueError(
            f"{text!r} is not a valid CIDR: the prefix length after / must be a whole "
            f"number from 1 to {32 if ':' not in base else 128}"
        ) from None
    if network.prefixlen == 0:
        raise ValueError(f"{text!r} would ban every client: give a longer prefix")
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return network.compressed


def iso_utc(epoch: float) -> str:
    """Epoch seconds as ISO 8601 UTC, to the second: 2025-01-31T12:00:00Z."""
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def ban_json(ban: Ban, now: float) -> dict[str, Any]:
    """A ban as the admin API shows it."""
    return {
        "target": ban.target,
        "until": iso_utc(ban.until),
        "remaining_seconds": max(0, math.ceil(ban.until - now)),
        "reason": ban.reason,
        "source": ban.source,
        "count": ban.count,
        "created": iso_utc(ban.created),
    }


class BanTable:
    """Active bans: read by the request path, written only by the ban keeper.

    `lookup` is the only method the request path may call. The methods whose
    names start with an underscore (`_set`, `_remove`) belong to the ban keeper,
    the table's single writer: nothing else may call them.
    """

    __slots__ = ("_bans", "_net_bans", "_net_index", "_networks", "_v4", "_v6")

    def __init__(self) -> None:
        self._bans: dict[str, Ban] = {}
        # Operator network bans, also in _bans: by target, and by
        # (family bits, shift, address >> shift) for the prefix walk.
        self._net_bans: dict[str, tuple[Network, Ban]] = {}
        self._net_index: dict[tuple[int, int, int], Ban] = {}
        self._v4: list[tuple[int, set[int]]] = []
        self._v6: list[tuple[int, set[int]]] = []
        self._networks = False

    # -- the request path ---------------------------------------------------
    def lookup(self, client: Client, now: float | None = None) -> Ban | None:
        """The ban that applies to `client` now, or None.

        An exact hit on the client key, then on the client's address, then (only
        while operator network bans exist) network membership of the address. A
        ban whose `until` has passed no longer applies, even before the keeper
        sweeps it. `now` is a wall clock the caller already has; it defaults to
        time.time(), read only when a ban is found.
        """
        bans = self._bans
        ban = bans.get(client.key)
        if ban is None:
            ban = bans.get(client.ip)
            if ban is None:
                if self._networks:
                    return self._in_networks(client, time.time() if now is None else now)
                return None
        if now is None:
            now = time.time()
        if ban.until > now:
            return ban
        return self._full_lookup(client, now)

    def _full_lookup(self, client: Client, now: float) -> Ban | None:
        """Every path, each checked for expiry (the rare case of an expired exact hit)."""
        for target in (client.key, client.ip):
            ban = self._bans.get(target)
            if ban is not None and ban.until > now:
                return ban
        return self._in_networks(client, now) if self._networks else None

    def _in_networks(self, client: Client, now: float) -> Ban | None:
        bits, value = client.bits, client.value
        if not bits:
            # Made outside identify (the keeper, the admin API): parse its text.
            parsed = parse_ip(client.ip)
            if parsed is None:
                return None
            bits, value = parsed
        index = self._net_index
        for shift, prefixes in self._v4 if bits == 32 else self._v6:
            prefix = value >> shift
            if prefix in prefixes:
                ban = index[(bits, shift, prefix)]
                if ban.until > now:
                    return ban
        return None

    # -- reading, for the keeper and the admin API --------------------------
    def get(self, target: str) -> Ban | None:
        """The ban stored under exactly `target` (canonical text), expired or not."""
        return self._bans.get(target)

    def __len__(self) -> int:
        return len(self._bans)

    def __iter__(self) -> Iterator[Ban]:
        return iter(list(self._bans.values()))

    @property
    def network_bans(self) -> int:
        """How many operator network bans force the network path of `lookup`."""
        return len(self._net_bans)

    # -- the keeper's: the table's only writer ------------------------------
    def _set(self, ban: Ban) -> None:
        """Add or replace the ban of `ban.target`. The ban keeper's only; nothing else calls it."""
        old_network = self._net_bans.pop(ban.target, None)
        self._bans[ban.target] = ban
        if ban.source == "operator" and "/" in ban.target:
            # Automatic bans are of client keys, found by the exact hit on the
            # key; only an operator's network needs the prefix walk.
            self._net_bans[ban.target] = (ipaddress.ip_network(ban.target), ban)
            self._rebuild_networks()
        elif old_network is not None:
            self._rebuild_networks()

    def _remove(self, target: str) -> Ban | None:
        """Remove the ban of `target`, returning it. The ban keeper's only."""
        ban = self._bans.pop(target, None)
        if self._net_bans.pop(target, None) is not None:
            self._rebuild_networks()
        return ban

    def _rebuild_networks(self) -> None:
        entries = list(self._net_bans.values())
        index: dict[tuple[int, int, int], Ban] = {}
        for network, ban in entries:
            bits = network.max_prefixlen
            shift = bits - network.prefixlen
            key = (bits, shift, int(network.network_address) >> shift)
            # Two bans of one network cannot exist (one target, one entry).
            index[key] = ban
        self._net_index = index
        self._v4 = _PrefixSet(32, (n for n, _ in entries if n.version == 4)).by_length
        self._v6 = _PrefixSet(128, (n for n, _ in entries if n.version == 6)).by_length
        self._networks = bool(entries)
