from __future__ import annotations

import math

import pytest

from loadtests import bucket_bench
from wardent.state.buckets import SHARDS, GcraLimiter


def test_burst_then_steady_rate() -> None:
    limiter = GcraLimiter(rate_per_second=10, burst=5, max_keys=10_000)
    now = 1000.0
    decisions = [limiter.decide("a", now) for _ in range(6)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0]
    # One emission interval later exactly one more fits.
    assert limiter.decide("a", now + 0.1).allowed
    assert not limiter.decide("a", now + 0.1).allowed


def test_retry_after_is_whole_seconds_rounded_up_and_never_zero() -> None:
    limiter = GcraLimiter(rate_per_second=1 / 60, burst=1, max_keys=1000)  # 1/m
    assert limiter.decide("k", 0.0).allowed
    refused = limiter.decide("k", 0.5)
    assert not refused.allowed
    assert refused.retry_after == math.ceil(60 - 0.5) == 60
    fast = GcraLimiter(rate_per_second=100, burst=1, max_keys=1000)
    assert fast.decide("k", 0.0).allowed
    almost = fast.decide("k", 0.0)
    assert not almost.allowed and almost.retry_after == 1  # 10 ms away still says 1


def test_refusal_does_not_consume() -> None:
    limiter = GcraLimiter(rate_per_second=1, burst=1, max_keys=1000)
    assert limiter.decide("k", 0.0).allowed
    for _ in range(100):
        assert not limiter.decide("k", 0.5).allowed
    assert limiter.decide("k", 1.0).allowed


def test_keys_are_independent() -> None:
    limiter = GcraLimiter(rate_per_second=1, burst=1, max_keys=1000)
    assert limiter.decide("a", 0.0).allowed
    assert limiter.decide("b", 0.0).allowed
    assert not limiter.decide("a", 0.0).allowed


def test_sweep_deletes_only_expired_entries() -> None:
    limiter = GcraLimiter(rate_per_second=1, burst=1, max_keys=100_000)
    for index in range(1000):
        limiter.decide(f"old{index}", 0.0)
    limiter.decide("fresh", 100.0)
    removed = sum(limiter.sweep(100.0, shard) for shard in range(SHARDS))
    assert removed == 1000
    assert len(limiter) == 1
    # A swept key starts again with a full burst: nothing was lost.
    assert limiter.decide("old1", 100.0).allowed


def test_cap_bounds_memory_and_keeps_a_returning_client() -> None:
    limiter = GcraLimiter(rate_per_second=1, burst=2, max_keys=SHARDS * 100)
    now = 0.0
    assert limiter.decide("good", now).allowed
    assert limiter.decide("good", now).allowed
    assert not limiter.decide("good", now).allowed  # its burst is used up
    for index in range(200_000):
        limiter.decide(f"flood{index}", now)
        if index % 50 == 0:
            # The client keeps asking during the flood (and keeps being refused).
            assert not limiter.decide("good", now).allowed
    assert len(limiter) <= SHARDS * 100
    assert limiter.evicted > 0
    # Its exhausted bucket was not reset by the flood...
    assert not limiter.decide("good", now).allowed
    # ...and it is allowed again exactly when its own rate says so.
    assert limiter.decide("good", now + 1.0).allowed


@pytest.mark.parametrize("burst", [1, 3, 40])
def test_remaining_and_reset_are_consistent(burst: int) -> None:
    limiter = GcraLimiter(rate_per_second=20, burst=burst, max_keys=1000)
    first = limiter.decide("k", 0.0)
    assert first.remaining == burst - 1
    assert first.reset == 1  # 50 ms rounded up


def test_a_full_shard_drops_its_least_recently_seen_eighth() -> None:
    """Eviction comes in batches (one at a time cost O(cap) a key in CPython's
    dicts): the oldest eighth of the shard goes, the recently seen stay."""
    limiter = GcraLimiter(rate_per_second=1, burst=5, max_keys=SHARDS * 80)
    shard_keys: dict[int, list[str]] = {}
    index = 0
    while len(shard_keys.get(0, [])) < 81:  # one more than shard 0 holds
        key = f"k{index}"
        shard_keys.setdefault(hash(key) % SHARDS, []).append(key)
        index += 1
    keys = shard_keys[0]
    for key in keys[:80]:
        limiter.decide(key, 0.0)
    limiter.decide(keys[0], 0.0)  # seen again: now the most recent
    limiter.decide(keys[80], 0.0)  # the shard is full: the oldest 10 go
    shard = limiter.shards[0]
    assert limiter.evicted == 10
    assert list(shard) == [*keys[11:80], keys[0], keys[80]]


def test_the_bucket_benchmark_runs() -> None:
    """loadtests/bucket_bench.py works (its timings are not asserted: never timed tests)."""
    found = bucket_bench.run(max_keys=SHARDS * 100)
    assert found["evicted"] + found["kept"] == 3 * SHARDS * 100  # every key went in
    assert SHARDS * 100 * 7 // 8 <= found["kept"] <= SHARDS * 100
    assert found["below_us"] > 0 and found["full_us"] > 0
