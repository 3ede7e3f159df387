"""Micro-benchmark of BanTable.lookup, the ban guard's whole cost per request.

    .venv/bin/python -m loadtests.ban_lookup_bench

Prints µs per lookup for the cases the request path meets: nobody banned,
a miss in a table of many automatic bans, exact hits, and the network path
(only taken while operator network bans exist).
"""

from __future__ import annotations

import sys
import time
import timeit

from wardent.identify import Client, parse_ip
from wardent.state.bans import Ban, BanTable

NUMBER = 1_000_000


def _ban(target: str, source: str) -> Ban:
    now = time.time()
    return Ban(target, now + 3600, "bench", source, now, 1)  # type: ignore[arg-type]


def _auto_table(count: int) -> BanTable:
    table = BanTable()
    for number in range(count):
        table._set(_ban(f"10.{number >> 16 & 255}.{number >> 8 & 255}.{number & 255}", "auto"))
    return table


def _network_table(count: int) -> BanTable:
    table = _auto_table(10_000)
    for number in range(count):
        table._set(_ban(f"172.{16 + number % 16}.{number // 16 % 256}.0/24", "operator"))
    table._set(_ban("2001:db8::/32", "operator"))
    table._set(_ban("198.51.100.0/24", "operator"))
    return table


def client_of(ip: str, key: str) -> Client:
    """A client as identify makes it: with its address as an integer (no parse per lookup)."""
    parsed = parse_ip(ip)
    assert parsed is not None
    return Client(ip, key, *parsed)


def measure(table: BanTable, client: Client, expect_ban: bool) -> float:
    lookup = table.lookup
    assert (lookup(client) is not None) == expect_ban
    best = min(timeit.repeat(lambda: lookup(client), number=NUMBER, repeat=5))
    return best / NUMBER * 1e6


def main() -> int:
    empty = BanTable()
    auto = _auto_table(10_000)
    networks = _network_table(100)
    clean = client_of("203.0.113.7", "203.0.113.7")
    clean_v6 = client_of("2001:db9:1:2::7", "2001:db9:1:2::/64")
    cases = [
        ("no ban, empty table", empty, clean, False),
        ("no ban, 10k automatic bans", auto, clean, False),
        ("no ban, IPv6 key, 10k automatic bans", auto, clean_v6, False),
        ("exact hit on the key", auto, client_of("10.0.1.2", "10.0.1.2"), True),
        ("hit on the address (coarser key)", auto, client_of("10.0.1.2", "10.0.1.0/24"), True),
        ("network path, miss (102 operator networks)", networks, clean, False),
        ("network path, IPv6 miss", networks, clean_v6, False),
        ("network path, hit", networks, client_of("198.51.100.9", "198.51.100.9"), True),
        ("network path, IPv6 hit", networks, client_of("2001:db8:5::1", "2001:db8:5::/64"), True),
    ]
    print(f"python {sys.version.split()[0]}, best of 5 x {NUMBER:,} lookups")
    for name, table, client, expect in cases:
        print(f"{measure(table, client, expect):7.3f} µs  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
