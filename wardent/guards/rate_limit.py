"""Rate limits: GCRA per (rule, client key); every matching rule must allow.

Rules are checked first and committed only if all allow, so a request refused
by one rule costs nothing in the others.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from wardent.config.guard_settings import RateLimitRule
from wardent.guards.chain import GuardCheck, Rejection
from wardent.identify import CompiledRoute
from wardent.state.buckets import SHARDS, GcraLimiter

if TYPE_CHECKING:
    from wardent.context import RequestContext


class CompiledRule:
    __slots__ = (
        "everything",
        "header",
        "limiter",
        "match",
        "name",
        "plain",
        "policy",
        "rejected",
        "route",
        "send_headers",
        "shadow",
        "shadow_rejected",
        "status",
        "violation",
    )

    def __init__(self, rule: RateLimitRule, limiter: GcraLimiter) -> None:
        self.name = rule.name
        self.limiter = limiter
        self.match = CompiledRoute(
            name=rule.name,
            path_prefix=rule.match.path_prefix,
            path_regex=_compile(rule.match.path_regex),
            methods=frozenset(rule.match.methods),
            host=rule.match.host.lower() if rule.match.host else None,
        )
        self.route = rule.route
        match = self.match
        self.everything = not (match.path_prefix or match.path_regex or match.methods or match.host)
        # Matches every request and is keyed by the client: no call needed per request.
        self.plain = self.everything and self.route is None
        self.header = (
            rule.key[len("header:") :].lower().encode() if rule.key != "client_ip" else None
        )
        self.shadow = rule.mode == "shadow"
        self.status = rule.status
        self.violation = rule.violation
        self.send_headers = rule.headers
        window = max(1, round(limiter.tolerance))
        # IETF RateLimit-Policy (draft-ietf-httpapi-ratelimit-headers): quota per window.
        self.policy = f'"{rule.name}";q={limiter.burst};w={window}'.encode()
        self.rejected = 0
        self.shadow_rejected = 0

    def applies(self, ctx: RequestContext) -> bool:
        if self.route is not None and ctx.route.name != self.route:
            return False
        return self.everything or self.match.matches(ctx.method, ctx.path, ctx.host_name)

    def key(self, ctx: RequestContext) -> str:
        assert ctx.client is not None
        if self.header is not None:
            value = ctx.header(self.header)
            if value:
                return "h:" + value.decode("latin-1")
        return ctx.client.key


def _compile(pattern: str | None) -> re.Pattern[str] | None:
    return re.compile(pattern) if pattern else None


class LimiterRegistry:
    """Limiters by rule name, kept across reloads so buckets survive them."""

    def __init__(self, max_keys: int) -> None:
        self.max_keys = max_keys
        self.limiters: dict[str, GcraLimiter] = {}

    def compile(self, rules: Sequence[RateLimitRule]) -> list[CompiledRule]:
        kept: dict[str, GcraLimiter] = {}
        compiled = []
        for rule in rules:
            limiter = self.limiters.get(rule.name)
            rate, burst = rule.rate.per_second, rule.effective_burst
            if limiter is None:
                limiter = GcraLimiter(rate, burst, self.max_keys)
            elif (limiter.interval, limiter.burst) != (1.0 / rate, burst):
                limiter.interval = 1.0 / rate
                limiter.burst = burst
                limiter.tolerance = limiter.interval * burst
            kept[rule.name] = limiter
            compiled.append(CompiledRule(rule, limiter))
        self.limiters = kept
        return compiled

    def sweep(self, now: float, shard_index: int) -> int:
        return sum(limiter.sweep(now, shard_index) for limiter in self.limiters.values())

    def keys(self) -> int:
        return sum(len(limiter) for limiter in self.limiters.values())


def rate_limit_guard(
    rules: Sequence[CompiledRule], clock: Callable[[], float] = time.monotonic
) -> GuardCheck:
    rules = tuple(rules)

    def check(ctx: RequestContext) -> Rejection | None:
        # GcraLimiter.peek, inlined: this runs for every request and every rule.
        now = clock()
        passing: list[tuple[CompiledRule, dict[str, float], str, float]] = []
        for rule in rules:
            if rule.plain:
                assert ctx.client is not None
                key = ctx.client.key
            elif rule.applies(ctx):
                key = rule.key(ctx)
            else:
                continue
            limiter = rule.limiter
            shard = limiter.shards[hash(key) % SHARDS]
            tat = shard.get(key, now)
            new_tat = (tat if tat > now else now) + limiter.interval
            # The epsilon keeps float sums (0.1 five times) from refusing the last of a burst.
            if new_tat - now <= limiter.tolerance + 1e-9:
                passing.append((rule, shard, key, new_tat))
                continue
            limiter.touch(shard, key)
            decision = limiter.decision(False, new_tat, now)
            if rule.shadow:
                rule.shadow_rejected += 1
                ctx.shadow_reasons.append(f"rate_limit:{rule.name}")
                continue
            rule.rejected += 1
            return Rejection(rule.status, rule.name, decision.retry_after, rule.violation)
        for rule, shard, key, new_tat in passing:
            limiter = rule.limiter
            limiter.commit(shard, key, new_tat)
            if rule.send_headers:
                decision = limiter.decision(True, new_tat, now)
                ctx.add_response_header(b"RateLimit-Policy: " + rule.policy)
                ctx.add_response_header(
                    b'RateLimit: "%s";r=%d;t=%d'
                    % (rule.name.encode(), decision.remaining, decision.reset)
                )
        return None

    return check
