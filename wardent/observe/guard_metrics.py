"""Each guard's own statistics, read from its plain counters at scrape time
(Envoy's model: every filter publishes under its own name)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from wardent.gateway import Gateway


class GuardCollector(Collector):
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def collect(self) -> Iterator[Metric]:
        gateway = self.gateway
        runtime = gateway.runtime
        checked = CounterMetricFamily(
            "wardent_guard_checked", "Requests each guard examined.", labels=["guard"]
        )
        rejected = CounterMetricFamily(
            "wardent_guard_rejected", "Requests each enforcing guard refused.", labels=["guard"]
        )
        shadow = CounterMetricFamily(
            "wardent_guard_shadow_rejected",
            "Requests a guard in shadow mode would have refused (they passed).",
            labels=["guard"],
        )
        for guard in runtime.chain.guards:
            checked.add_metric([guard.name], guard.checked)
            rejected.add_metric([guard.name], guard.rejected)
            shadow.add_metric([guard.name], guard.shadow_rejected)
        yield checked
        yield rejected
        yield shadow

        built = runtime.built
        if built is not None and built.crawlers is not None:
            bots = CounterMetricFamily(
                "wardent_crawler_matched",
                "AI crawler requests matched, by bot (shadow-mode matches included).",
                labels=["bot"],
            )
            for bot, count in sorted(built.crawlers.blocked.items()):
                bots.add_metric([bot], count)
            yield bots
        if built is not None and built.rate_rules:
            limited = CounterMetricFamily(
                "wardent_rate_limit_rejected", "Requests refused, by rule.", labels=["rule"]
            )
            limited_shadow = CounterMetricFamily(
                "wardent_rate_limit_shadow_rejected",
                "Requests a shadow-mode rule would have refused, by rule.",
                labels=["rule"],
            )
            for rule in built.rate_rules:
                limited.add_metric([rule.name], rule.rejected)
                limited_shadow.add_metric([rule.name], rule.shadow_rejected)
            yield limited
            yield limited_shadow
        keys = GaugeMetricFamily(
            "wardent_rate_limit_keys", "Client keys with rate-limit state.", labels=["rule"]
        )
        evicted = CounterMetricFamily(
            "wardent_rate_limit_evicted",
            "Keys dropped because a shard reached its cap (flood protection).",
            labels=["rule"],
        )
        for name, limiter in gateway.guard_state.limiters.limiters.items():
            keys.add_metric([name], len(limiter))
            evicted.add_metric([name], limiter.evicted)
        yield keys
        yield evicted
        if built is not None and built.stripe is not None:
            stripe = CounterMetricFamily(
                "wardent_stripe_signature_failures",
                "Stripe webhooks refused, by reason.",
                labels=["reason"],
            )
            for reason, count in built.stripe.failures.items():
                stripe.add_metric([reason], count)
            yield stripe
            yield CounterMetricFamily(
                "wardent_stripe_signature_verified",
                "Stripe webhooks whose signature Wardent verified.",
                value=built.stripe.verified,
            )
        yield GaugeMetricFamily(
            "wardent_bans_active", "Entries in the ban table.", value=len(gateway.guard_state.bans)
        )
        yield CounterMetricFamily(
            "wardent_watchdog_pings",
            "WATCHDOG=1 notifications sent to systemd.",
            value=gateway.watchdog.pings,
        )
        yield CounterMetricFamily(
            "wardent_watchdog_withheld",
            "Watchdog ticks with no ping because a part failed to prove it is alive.",
            value=gateway.watchdog.withheld,
        )
        keeper = gateway.keeper
        if keeper is not None:
            for name, documentation in (
                ("violations_received", "Violations the ban keeper received."),
                ("violations_dropped", "Violations dropped because the keeper's queue was full."),
                ("violations_ignored", "Violations from never_ban addresses."),
                ("bans_added", "Bans the keeper added (automatic and operator)."),
                ("bans_expired", "Bans that ran out."),
                ("bans_removed", "Bans operators removed."),
                ("restarts", "Times the keeper task died and was restarted."),
                ("store_errors", "Ban store (SQLite) operations that failed."),
            ):
                yield CounterMetricFamily(
                    f"wardent_keeper_{name}", documentation, value=getattr(keeper, name)
                )
            yield GaugeMetricFamily(
                "wardent_keeper_queue_depth",
                "Violations waiting for the keeper.",
                value=keeper.queue_depth,
            )
            yield GaugeMetricFamily(
                "wardent_keeper_heartbeat_age_seconds",
                "Seconds since the keeper last proved it is alive.",
                value=max(0.0, gateway.loop.time() - keeper.heartbeat),
            )
            yield GaugeMetricFamily(
                "wardent_keeper_healthy",
                "1 while the keeper runs, 0 once it gave up.",
                value=1.0 if keeper.healthy else 0.0,
            )
