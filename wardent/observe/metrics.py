"""Hot-path metrics: plain Python numbers, exported at scrape time.

prometheus-client's `.labels(...).inc()` takes a lock and a label lookup on
every call, which is a fifth of the per-request budget (DESIGN.md, "The
hot-path budget"). So the request path only adds to ints and floats on a
`__slots__` object, and a custom Collector turns them into metric families
when Prometheus scrapes /metrics. One process is one event loop, so nothing
here needs a lock: the collector runs on the same loop as the requests.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

__all__ = ["BUCKETS", "GatewayMetrics", "Histogram"]

BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

_STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")


def _installed_version() -> str:
    # The distribution's version, not `wardent.__version__`: an editable
    # install made before wardent/__init__.py existed imports wardent as a
    # namespace package, without that attribute.
    try:
        return version("wardent")
    except PackageNotFoundError:
        return "unknown"


VERSION = _installed_version()


class Histogram:
    """Fixed buckets in seconds; `counts[i]` is the non-cumulative count of bucket i.

    The last slot counts values above the largest bound (the +Inf bucket).
    """

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # A value equal to a bound belongs to that bound's bucket (le is <=). A scan
        # from the smallest bound, compiled: most requests stop in the first few
        # buckets, sooner than bisect_left's call and its boxed comparisons.
        index = 0
        for bound in self.bounds:
            if value <= bound:
                break
            index += 1
        self.counts[index] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, float]]:
        """(le, cumulative count) pairs ending with +Inf, as Prometheus wants them."""
        buckets: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            running += count
            buckets.append((repr(float(bound)), running))
        running += self.counts[-1]
        buckets.append(("+Inf", running))
        return buckets


class GatewayMetrics:
    """Everything the gateway counts; the transport bumps these directly.

    Gauges and label-less counters are plain attributes (`metrics.in_flight
    += 1`); labelled counters go through the `count_*` methods, which add to a
    dict keyed by the tuple of label values.
    """

    __slots__ = (
        "bad_requests",
        "client_ip_malformed",
        "config_reloads_failed",
        "config_reloads_ok",
        "connections_open",
        "in_flight",
        "loop_lag_seconds",
        "registry",
        "rejections",
        "request_duration",
        "requests",
        "upstream_connections_idle",
        "upstream_connections_open",
        "upstream_duration",
        "upstream_errors",
        "upstream_retries",
        "version",
        "websocket_open",
    )

    def __init__(self, version: str = VERSION, *, process_metrics: bool = True) -> None:
        self.version = version
        self.requests: dict[tuple[str, str], int] = {}
        self.request_duration = Histogram()
        self.upstream_duration = Histogram()
        self.upstream_errors: dict[tuple[str], int] = {}
        self.rejections: dict[tuple[str, int], int] = {}
        self.bad_requests: dict[tuple[str], int] = {}
        self.client_ip_malformed: dict[tuple[str], int] = {}
        self.in_flight = 0
        self.connections_open = 0
        self.upstream_connections_open = 0
        self.upstream_connections_idle = 0
        self.upstream_retries = 0
        self.websocket_open = 0
        self.loop_lag_seconds = 0.0
        self.config_reloads_ok = 0
        self.config_reloads_failed = 0
        self.registry = CollectorRegistry()
        self.registry.register(_GatewayCollector(self))
        if process_metrics:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)

    # -- the request path -------------------------------------------------

    def count_request(
        self, route: str, status: int, duration: float, upstream_duration: float | None
    ) -> None:
        index = status // 100 - 1
        key = (route, _STATUS_CLASSES[index] if 0 <= index < 5 else "other")
        requests = self.requests
        requests[key] = requests.get(key, 0) + 1
        self.request_duration.observe(duration)
        if upstream_duration is not None:
            self.upstream_duration.observe(upstream_duration)

    def count_upstream_error(self, kind: str) -> None:
        key = (kind,)
        self.upstream_errors[key] = self.upstream_errors.get(key, 0) + 1

    def count_rejection(self, guard: str, status: int) -> None:
        key = (guard, status)
        self.rejections[key] = self.rejections.get(key, 0) + 1

    def count_bad_request(self, reason: str) -> None:
        key = (reason,)
        self.bad_requests[key] = self.bad_requests.get(key, 0) + 1

    def count_client_ip_malformed(self, source: str) -> None:
        key = (source,)
        self.client_ip_malformed[key] = self.client_ip_malformed.get(key, 0) + 1

    # -- scrape time -------------------------------------------------------

    def render(self) -> bytes:
        """The Prometheus text exposition of every collector in `registry`."""
        return generate_latest(self.registry)


class _GatewayCollector(Collector):
    def __init__(self, metrics: GatewayMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Metric]:
        # The names are fixed; returning them lets the registry catch a clash
        # with another collector at registration instead of at scrape time.
        return list(self.collect())

    def collect(self) -> Iterator[Metric]:
        m = self.metrics

        info = GaugeMetricFamily(
            "wardent_build_info", "Wardent's version; always 1.", labels=["version"]
        )
        info.add_metric([m.version], 1)
        yield info

        yield _counter(
            "wardent_requests",
            "Requests answered, by route and status class.",
            ["route", "status_class"],
            m.requests.items(),
        )
        yield _histogram(
            "wardent_request_duration_seconds",
            "Time from the request's first byte to the response's last byte.",
            m.request_duration,
        )
        yield _histogram(
            "wardent_upstream_duration_seconds",
            "Time from sending the request upstream to the upstream's last response byte.",
            m.upstream_duration,
        )
        yield _counter(
            "wardent_upstream_errors",
            "Upstream failures, by kind (connect_refused, read_timeout, reset, ...).",
            ["kind"],
            m.upstream_errors.items(),
        )
        yield _counter(
            "wardent_rejections",
            "Requests a guard rejected, by guard and status.",
            ["guard", "status"],
            m.rejections.items(),
        )
        yield _counter(
            "wardent_bad_requests",
            "Requests refused before the guards as malformed HTTP, by reason.",
            ["reason"],
            m.bad_requests.items(),
        )
        yield _counter(
            "wardent_client_ip_malformed",
            "Client-IP headers from trusted proxies that did not parse, by header.",
            ["source"],
            m.client_ip_malformed.items(),
        )
        reloads = CounterMetricFamily(
            "wardent_config_reloads", "Configuration reloads, by result.", labels=["result"]
        )
        reloads.add_metric(["ok"], m.config_reloads_ok)
        reloads.add_metric(["failed"], m.config_reloads_failed)
        yield reloads
        yield CounterMetricFamily(
            "wardent_upstream_retries",
            "Idempotent requests retried on a fresh upstream connection.",
            value=m.upstream_retries,
        )
        for name, documentation, value in (
            ("wardent_requests_in_flight", "Requests being handled now.", m.in_flight),
            (
                "wardent_client_connections_open",
                "Client connections open now.",
                m.connections_open,
            ),
            (
                "wardent_upstream_connections_open",
                "Upstream connections open now, busy or idle.",
                m.upstream_connections_open,
            ),
            (
                "wardent_upstream_connections_idle",
                "Upstream connections idle in the keep-alive pool.",
                m.upstream_connections_idle,
            ),
            (
                "wardent_websocket_connections_open",
                "Upgraded (WebSocket) connections spliced now.",
                m.websocket_open,
            ),
            (
                "wardent_event_loop_lag_seconds",
                "How late the event loop ran the last lag probe.",
                m.loop_lag_seconds,
            ),
        ):
            yield GaugeMetricFamily(name, documentation, value=value)


def _counter(
    name: str,
    documentation: str,
    labels: list[str],
    values: ItemsView[tuple[object, ...], int],
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=labels)
    rows = sorted(([str(part) for part in key], value) for key, value in values)
    for labels_values, value in rows:
        family.add_metric(labels_values, value)
    return family


def _histogram(name: str, documentation: str, histogram: Histogram) -> HistogramMetricFamily:
    return HistogramMetricFamily(
        name, documentation, buckets=histogram.cumulative(), sum_value=histogram.sum
    )
