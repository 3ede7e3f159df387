"""A flood of distinct client IPs through the real identify + rate-limit path, in a
process of its own so its RSS can be read (python -m tests.support.flood N)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from tests.support.contexts import request_context
from wardent.config.guard_settings import RateLimitRule
from wardent.config.schema import ClientIP
from wardent.guards.rate_limit import LimiterRegistry, rate_limit_guard
from wardent.identify import DEFAULT_ROUTE, ClientIdentifier


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def main(count: int, max_keys: int) -> dict[str, Any]:
    identifier = ClientIdentifier(ClientIP())
    registry = LimiterRegistry(max_keys)
    rule = RateLimitRule.model_validate({"name": "all", "rate": "10/s", "burst": 20})
    # A frozen clock: nothing refills, so a reset bucket would show as extra passes.
    check = rate_limit_guard(registry.compile([rule]), clock=lambda: 1000.0)

    def request(ip: bytes) -> bool:
        ctx = request_context(
            client=identifier.from_header(ip),
            route=DEFAULT_ROUTE,
            method="GET",
            path="/",
            host=b"x",
            host_name="x",
        )
        return check(ctx) is None

    before = rss_mib()
    good = b"198.51.100.77"
    used = sum(request(good) for _ in range(15))  # 15 of its 20 used
    started = time.perf_counter()
    during = 0
    for index in range(count):
        request(b"10.%d.%d.%d" % (index >> 16 & 255, index >> 8 & 255, index & 255))
        if index % (count // 5) == 0:
            during += request(good)  # it keeps coming back, as a real client does
    elapsed = time.perf_counter() - started
    after = sum(request(good) for _ in range(10))
    return {
        "count": count,
        "rss_before_mib": round(before, 1),
        "rss_after_mib": round(rss_mib(), 1),
        "keys": registry.keys(),
        "evicted": registry.limiters["all"].evicted,
        "good_used_before": used,
        "good_allowed_during": during,
        "good_allowed_after": after,
        "us_per_request": round(elapsed / count * 1e6, 2),
    }


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]), int(sys.argv[2]))))
