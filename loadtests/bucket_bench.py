"""Micro-benchmark of a rate limit's buckets as a flood of new keys fills them.

    .venv/bin/python -m loadtests.bucket_bench

For the default cap (`guards.rate_limit_max_keys`, 1,000,000) and a small one,
µs per new key while the shards fill, then once they are full and every new key
evicts old ones. A rule whose buckets outlive the flood's pace (5/h: each entry
lives 12 minutes) reaches its cap under ~1,400 new IPs a second, so the full
case is the one such a flood pays for every request.
"""

from __future__ import annotations

import sys
import time

from wardent.state.buckets import SHARDS, GcraLimiter


def _keys(start: int, count: int) -> list[str]:
    return [f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}" for n in range(start, start + count)]


def fill(limiter: GcraLimiter, keys: list[str], now: float) -> float:
    """µs per new key, peek and commit as the rate-limit guard does."""
    started = time.perf_counter()
    for key in keys:
        shard, new_tat, _ = limiter.peek(key, now)
        limiter.commit(shard, key, new_tat)
    return (time.perf_counter() - started) / len(keys) * 1e6


def run(max_keys: int) -> dict[str, float]:
    """Fill a 5/h rule's buckets to their cap, then twice as many new keys past it."""
    limiter = GcraLimiter(rate_per_second=5 / 3600, burst=5, max_keys=max_keys)
    capacity = limiter.cap * SHARDS
    now = time.monotonic()
    below = fill(limiter, _keys(0, capacity), now)
    full = fill(limiter, _keys(capacity, 2 * capacity), now)
    return {"below_us": below, "full_us": full, "evicted": limiter.evicted, "kept": len(limiter)}


def main() -> int:
    print(f"python {sys.version.split()[0]}, {SHARDS} shards")
    for max_keys in (64_000, 1_000_000):
        found = run(max_keys)
        print(
            f"max_keys {max_keys:>9,}: {found['below_us']:5.2f} µs a new key below the cap, "
            f"{found['full_us']:5.2f} µs at the cap ({found['evicted']:,} evicted, "
            f"{found['kept']:,} kept)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
