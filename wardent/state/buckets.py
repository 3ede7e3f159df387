"""Rate-limit state: GCRA ("virtual scheduling"), one float per client key.

The float is the theoretical arrival time (TAT) of the key's next request.
An entry whose TAT has passed carries no information (the key is back to a
full burst), so the sweep that deletes it loses nothing. The dict is split
into shards only so that sweeping and the memory cap work a shard at a time
instead of stopping the loop on one huge dict.

The request path reads and writes its own entry with no await in between:
on one event loop that is atomic, and no lock exists to deadlock on.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

SHARDS = 64
EVICT_FRACTION = 8  # a full shard drops its oldest 1/EVICT_FRACTION at once


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    remaining: int  # requests left in the burst after this one (0 when refused)
    retry_after: int  # whole seconds until one more request would pass (0 when allowed)
    reset: int  # whole seconds until the burst is full again


class GcraLimiter:
    """One rule's buckets: `rate` per second with bursts of `burst`."""

    __slots__ = ("burst", "cap", "evicted", "interval", "shards", "tolerance")

    def __init__(self, rate_per_second: float, burst: int, max_keys: int) -> None:
        self.interval = 1.0 / rate_per_second  # T: time one request "costs"
        self.burst = burst
        self.tolerance = self.interval * burst  # how far ahead of now the TAT may run
        self.shards: list[dict[str, float]] = [{} for _ in range(SHARDS)]
        self.cap = max(1, max_keys // SHARDS)
        self.evicted = 0

    def peek(self, key: str, now: float) -> tuple[dict[str, float], float, bool]:
        """(shard, the TAT this request would set, whether it is within the burst)."""
        shard = self.shards[hash(key) % SHARDS]
        tat = shard.get(key, now)
        new_tat = (tat if tat > now else now) + self.interval
        # The epsilon keeps float sums (0.1 five times) from refusing the last of a burst.
        return shard, new_tat, new_tat - now <= self.tolerance + 1e-9

    def commit(self, shard: dict[str, float], key: str, new_tat: float) -> None:
        if key in shard:
            # Re-inserting moves the key to the end: a full shard evicts the least
            # recently seen keys, so a flood of new keys (each seen once) never
            # pushes out a client that keeps coming back (at least once every
            # 7/8 of a shard's cap of new keys in its shard).
            del shard[key]
        elif len(shard) >= self.cap:
            self._evict_oldest(shard)
        shard[key] = new_tat

    def _evict_oldest(self, shard: dict[str, float]) -> None:
        """Drop the least recently seen eighth of a full shard at once.

        One key at a time, every eviction walked past the slots the ones before
        it had emptied at the dict's front (CPython compacts a dict only when it
        grows): at the default cap a new key cost 11 µs instead of 0.8 once a
        flood had filled a slow rule's buckets (`loadtests/bucket_bench.py`).
        """
        count = max(1, self.cap // EVICT_FRACTION)
        for key in list(itertools.islice(shard, count)):
            del shard[key]
        self.evicted += count

    @staticmethod
    def touch(shard: dict[str, float], key: str) -> None:
        """A refused request keeps its key recent too (its exhausted bucket must
        outlive a flood, or the flood would hand it a fresh burst)."""
        tat = shard.pop(key, None)
        if tat is not None:
            shard[key] = tat

    def decide(self, key: str, now: float) -> Decision:
        shard, new_tat, allowed = self.peek(key, now)
        if allowed:
            self.commit(shard, key, new_tat)
        else:
            self.touch(shard, key)
        return self.decision(allowed, new_tat, now)

    def decision(self, allowed: bool, new_tat: float, now: float) -> Decision:
        if allowed:
            remaining = int((self.tolerance - (new_tat - now)) / self.interval + 1e-9)
            return Decision(True, max(remaining, 0), 0, math.ceil(new_tat - now))
        wait = new_tat - self.tolerance - now  # how long until this request would fit
        return Decision(False, 0, max(1, math.ceil(wait)), math.ceil(new_tat - self.interval - now))

    def sweep(self, now: float, shard_index: int) -> int:
        """Delete one shard's entries whose TAT has passed; how many went."""
        shard = self.shards[shard_index % SHARDS]
        expired = [key for key, tat in shard.items() if tat <= now]
        for key in expired:
            del shard[key]
        return len(expired)

    def __len__(self) -> int:
        return sum(len(shard) for shard in self.shards)

    def state(self, key: str, now: float) -> dict[str, float | int]:
        """What an operator sees for one key (`wardent why`)."""
        tat = self.shards[hash(key) % SHARDS].get(key)
        if tat is None or tat <= now:
            return {"remaining": self.burst, "reset_seconds": 0}
        used = (tat - now) / self.interval
        return {"remaining": max(0, int(self.burst - used)), "reset_seconds": math.ceil(tat - now)}
