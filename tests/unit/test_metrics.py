from __future__ import annotations

import math

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from wardent.observe.metrics import BUCKETS, GatewayMetrics, Histogram


def scrape(metrics: GatewayMetrics) -> dict[str, list[Sample]]:
    text = metrics.render().decode()
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def value(samples: list[Sample], name: str, **labels: str) -> float:
    matches = [s.value for s in samples if s.name == name and s.labels == labels]
    assert len(matches) == 1, (name, labels, samples)
    return matches[0]


def test_histogram_puts_every_bound_and_its_neighbours_in_the_right_bucket() -> None:
    for index, bound in enumerate(BUCKETS):
        for value, expected in (
            (math.nextafter(bound, 0.0), index),
            (bound, index),  # le is <=
            (math.nextafter(bound, math.inf), index + 1),
        ):
            histogram = Histogram()
            histogram.observe(value)
            assert histogram.counts[expected] == 1, (bound, value, histogram.counts)


def test_histogram_buckets_are_inclusive_and_cumulative() -> None:
    histogram = Histogram()
    for seconds in (0.0001, 0.0005, 0.0006, 0.3, 61.0):
        histogram.observe(seconds)
    assert histogram.count == 5
    assert histogram.sum == sum((0.0001, 0.0005, 0.0006, 0.3, 61.0))
    buckets = dict(histogram.cumulative())
    assert buckets["0.0005"] == 2  # le is <=: 0.0005 counts in its own bucket
    assert buckets["0.001"] == 3
    assert buckets["0.25"] == 3
    assert buckets["0.5"] == 4
    assert buckets["60.0"] == 4
    assert buckets["+Inf"] == 5
    assert len(buckets) == len(BUCKETS) + 1


def test_requests_by_route_and_status_class() -> None:
    metrics = GatewayMetrics(process_metrics=False)
    metrics.count_request("api", 200, 0.002, 0.001)
    metrics.count_request("api", 204, 0.003, 0.002)
    metrics.count_request("api", 503, 0.004, None)
    metrics.count_request("static", 404, 0.0001, 0.00005)
    families = scrape(metrics)

    requests = families["wardent_requests"]
    assert value(requests, "wardent_requests_total", route="api", status_class="2xx") == 2
    assert value(requests, "wardent_requests_total", route="api", status_class="5xx") == 1
    assert value(requests, "wardent_requests_total", route="static", status_class="4xx") == 1

    duration = families["wardent_request_duration_seconds"]
    assert value(duration, "wardent_request_duration_seconds_count") == 4
    assert value(duration, "wardent_request_duration_seconds_bucket", le="0.0025") == 2
    assert value(duration, "wardent_request_duration_seconds_bucket", le="+Inf") == 4
    upstream = families["wardent_upstream_duration_seconds"]
    assert value(upstream, "wardent_upstream_duration_seconds_count") == 3
    assert abs(value(upstream, "wardent_upstream_duration_seconds_sum") - 0.00305) < 1e-9

    bucket_counts = [
        s.value for s in duration if s.name == "wardent_request_duration_seconds_bucket"
    ]
    assert bucket_counts == sorted(bucket_counts), "buckets must be cumulative"


def test_labelled_counters() -> None:
    metrics = GatewayMetrics(process_metrics=False)
    metrics.count_upstream_error("connect_refused")
    metrics.count_upstream_error("connect_refused")
    metrics.count_upstream_error("read_timeout")
    metrics.count_rejection("rate_limit", 429)
    metrics.count_rejection("crawlers", 403)
    metrics.count_bad_request("smuggling")
    metrics.count_client_ip_malformed("cf-connecting-ip")
    families = scrape(metrics)

    errors = families["wardent_upstream_errors"]
    assert value(errors, "wardent_upstream_errors_total", kind="connect_refused") == 2
    assert value(errors, "wardent_upstream_errors_total", kind="read_timeout") == 1
    rejections = families["wardent_rejections"]
    assert value(rejections, "wardent_rejections_total", guard="rate_limit", status="429") == 1
    assert value(rejections, "wardent_rejections_total", guard="crawlers", status="403") == 1
    bad = families["wardent_bad_requests"]
    assert value(bad, "wardent_bad_requests_total", reason="smuggling") == 1
    malformed = families["wardent_client_ip_malformed"]
    assert value(malformed, "wardent_client_ip_malformed_total", source="cf-connecting-ip") == 1


def test_gauges_and_plain_counters() -> None:
    metrics = GatewayMetrics(version="9.9.9", process_metrics=False)
    metrics.in_flight = 3
    metrics.connections_open = 7
    metrics.upstream_connections_open = 5
    metrics.upstream_connections_idle = 2
    metrics.websocket_open = 1
    metrics.upstream_retries += 4
    metrics.loop_lag_seconds = 0.125
    metrics.config_reloads_ok = 2
    metrics.config_reloads_failed = 1
    families = scrape(metrics)

    assert value(families["wardent_requests_in_flight"], "wardent_requests_in_flight") == 3
    assert (
        value(families["wardent_client_connections_open"], "wardent_client_connections_open") == 7
    )
    assert (
        value(families["wardent_upstream_connections_open"], "wardent_upstream_connections_open")
        == 5
    )
    assert (
        value(families["wardent_upstream_connections_idle"], "wardent_upstream_connections_idle")
        == 2
    )
    assert (
        value(families["wardent_websocket_connections_open"], "wardent_websocket_connections_open")
        == 1
    )
    assert value(families["wardent_upstream_retries"], "wardent_upstream_retries_total") == 4
    lag = families["wardent_event_loop_lag_seconds"]
    assert value(lag, "wardent_event_loop_lag_seconds") == 0.125
    reloads = families["wardent_config_reloads"]
    assert value(reloads, "wardent_config_reloads_total", result="ok") == 2
    assert value(reloads, "wardent_config_reloads_total", result="failed") == 1
    assert value(families["wardent_build_info"], "wardent_build_info", version="9.9.9") == 1


def test_families_have_the_right_types() -> None:
    metrics = GatewayMetrics(process_metrics=False)
    text = metrics.render().decode()
    types = {family.name: family.type for family in text_string_to_metric_families(text)}
    assert types["wardent_requests"] == "counter"
    assert types["wardent_request_duration_seconds"] == "histogram"
    assert types["wardent_requests_in_flight"] == "gauge"
    assert "# TYPE wardent_requests_total counter" in text


def test_process_and_platform_collectors_are_registered() -> None:
    families = scrape(GatewayMetrics())
    assert "python_info" in families
    assert "python_gc_objects_collected" in families
    # process_* needs /proc: present on Linux, where Wardent runs.
    assert "process_cpu_seconds" in families


def test_status_outside_1xx_5xx_is_other() -> None:
    metrics = GatewayMetrics(process_metrics=False)
    metrics.count_request("api", 0, 0.001, None)
    assert metrics.requests == {("api", "other"): 1}
