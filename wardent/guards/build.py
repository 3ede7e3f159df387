"""Turns the guard settings into the ordered chain, once per configuration.

The state the guards read (the ban table, the rate-limit buckets) lives
longer than any configuration and is passed in, so it survives a reload.
"""

from __future__ import annotations

from dataclasses import dataclass

from wardent.config.schema import Settings
from wardent.guards.ban import ban_guard
from wardent.guards.body_limit import body_limit_guard
from wardent.guards.chain import Guard, Rejection
from wardent.guards.crawlers import CrawlerMatcher, crawler_guard, robots_txt
from wardent.guards.origin_secret import origin_secret_guard
from wardent.guards.rate_limit import CompiledRule, LimiterRegistry, rate_limit_guard
from wardent.guards.stripe_check import StripeCheck
from wardent.state.bans import BanTable


@dataclass
class GuardState:
    """What outlives a reload: the keeper's ban table and the buckets."""

    bans: BanTable
    limiters: LimiterRegistry


@dataclass
class BuiltGuards:
    guards: list[Guard]
    crawlers: CrawlerMatcher | None
    rate_rules: list[CompiledRule]
    robots_txt: bytes | None
    stripe: StripeCheck | None
    body_too_large: Rejection
    origin_header: bytes | None


def build_guards(settings: Settings, state: GuardState) -> BuiltGuards:
    config = settings.guards
    guards = [
        Guard("ban", ban_guard(state.bans, config.ban.status), config.ban.mode, violation=False)
    ]

    crawlers = None
    robots = None
    if config.crawlers.enabled:
        crawlers = CrawlerMatcher(config.crawlers.block, config.crawlers.add, config.crawlers.allow)
        guards.append(
            Guard(
                "crawlers",
                crawler_guard(crawlers, config.crawlers.status),
                config.crawlers.mode,
                config.crawlers.violation,
            )
        )
        if config.crawlers.robots_txt:
            robots = robots_txt(crawlers, config.crawlers.robots_tokens)

    origin_header = None
    if settings.origin_secret_on:
        assert settings.secrets.origin is not None
        origin = config.origin_secret
        origin_header = origin.header.lower().encode()
        guards.append(
            Guard(
                "origin_secret",
                origin_secret_guard(
                    origin.header, [s.value for s in settings.secrets.origin], origin.status
                ),
                origin.mode,
                origin.violation,
            )
        )

    body = config.body_limit
    if body.enabled:
        guards.append(
            Guard(
                "body_limit",
                body_limit_guard(body.max, body.status, body.mode == "shadow"),
                body.mode,
                body.violation,
            )
        )

    rules = state.limiters.compile(config.rate_limits)
    if rules:
        # Each rule carries its own mode and violation flag; the guard enforces.
        guards.append(Guard("rate_limit", rate_limit_guard(rules), "enforce", violation=True))

    stripe = None
    if settings.secrets.stripe_webhook is not None:
        stripe = StripeCheck([s.value for s in settings.secrets.stripe_webhook])

    return BuiltGuards(
        guards=guards,
        crawlers=crawlers,
        rate_rules=rules,
        robots_txt=robots,
        stripe=stripe,
        body_too_large=Rejection(body.status, "too_large", violation=body.violation),
        origin_header=origin_header,
    )
