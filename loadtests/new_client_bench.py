"""Micro-benchmark of what a request from a never-seen client IP costs to identify
and to look up in the ban table (the per-request work an IP flood adds).

    .venv/bin/python -m loadtests.new_client_bench

`ClientIdentifier.from_header` for 100,000 distinct CF-Connecting-IP values (each
a cache miss: parse, canonical text, a new Client), then `BanTable.lookup` of
those clients with operator network bans in the table (the network walk on the
address identify already parsed).
"""

from __future__ import annotations

import sys
import time

from wardent.config.schema import ClientIP
from wardent.identify import ClientIdentifier
from wardent.state.bans import Ban, BanTable

COUNT = 100_000
NETWORK_BANS = ("203.0.113.128/25", "2001:db8::/48")


def run(count: int = COUNT) -> dict[str, float]:
    """µs per new client: identify, and the ban lookup of the clients it made."""
    raws = [f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}".encode() for n in range(count)]
    identifier = ClientIdentifier(ClientIP.model_validate({"trusted_proxies": ["127.0.0.1"]}))
    started = time.perf_counter()
    found = [identifier.from_header(raw) for raw in raws]
    identify = (time.perf_counter() - started) / count * 1e6
    clients = [client for client in found if client is not None]
    table = BanTable()
    now = time.time()
    for target in NETWORK_BANS:
        table._set(Ban(target, now + 3600, "bench", "operator", now, 1))
    lookup = table.lookup
    started = time.perf_counter()
    banned = sum(1 for client in clients if lookup(client) is not None)
    ban = (time.perf_counter() - started) / count * 1e6
    return {
        "identify_us": identify,
        "ban_lookup_us": ban,
        "clients": len(clients),
        "banned": banned,
    }


def main() -> int:
    found = run()
    print(
        f"python {sys.version.split()[0]}, {COUNT:,} new client IPs: "
        f"identify {found['identify_us']:.2f} µs, ban lookup with "
        f"{len(NETWORK_BANS)} network bans {found['ban_lookup_us']:.2f} µs a client"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
