"""wardent/observe/exchange.py: an ended exchange leaves its metrics and one log line."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.support.contexts import request_context
from wardent.identify import Client
from wardent.observe.access_log import AccessLog, NullAccessLog
from wardent.observe.exchange import record_exchange
from wardent.observe.metrics import GatewayMetrics


def _logged(path: Path, log: AccessLog) -> list[dict[str, object]]:
    log.close()
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_forwarded_exchange_is_counted_and_logged(tmp_path: Path) -> None:
    metrics = GatewayMetrics()
    metrics.in_flight = 1
    path = tmp_path / "access.log"
    log = AccessLog(str(path))
    ctx = request_context(
        method="GET",
        target=b"/api/me?x=1",
        status=200,
        bytes_out=42,
        request_id=b"abc-1",
        client=Client("203.0.113.7", "203.0.113.7"),
        user_agent=b"curl/8.5",
        upstream_duration=0.002,
    )
    ctx.start = time.perf_counter() - 0.005
    record_exchange(metrics, log, ctx)
    assert metrics.in_flight == 0
    assert metrics.requests == {("default", "2xx"): 1}
    (line,) = _logged(path, log)
    assert line["client_ip"] == "203.0.113.7"
    assert line["path"] == "/api/me?x=1"
    assert line["request_id"] == "abc-1"
    assert line["user_agent"] == "curl/8.5"
    assert line["upstream_ms"] == 2.0
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 5.0
    assert line["shadow"] is None


def test_an_unanswered_exchange_is_499_with_the_peer_and_shadow_verdicts(tmp_path: Path) -> None:
    metrics = GatewayMetrics()
    path = tmp_path / "access.log"
    log = AccessLog(str(path))
    ctx = request_context(method="POST", target=b"/x", request_id=b"r")
    ctx.conn.peer_ip = "192.0.2.1"
    ctx.shadow_reasons.extend(["crawlers:gptbot", "rate_limit:global"])
    record_exchange(metrics, log, ctx)
    assert metrics.requests == {("default", "4xx"): 1}
    (line,) = _logged(path, log)
    assert line["status"] == 499
    assert line["client_ip"] == line["peer"] == "192.0.2.1"
    assert line["upstream_ms"] is None
    assert line["user_agent"] is None
    assert line["shadow"] == "crawlers:gptbot,rate_limit:global"


def test_with_the_access_log_off_only_metrics_are_kept() -> None:
    metrics = GatewayMetrics()
    record_exchange(metrics, NullAccessLog(), request_context(status=503, request_id=b"r"))
    assert metrics.requests == {("default", "5xx"): 1}
