"""loadtests/bench.py in its smoke mode: every row runs and produces numbers.

A proof that the harness works (servers start, wrk drives them, the JSON is
complete), never a timing assertion: the quick mode's numbers mean nothing.
Without wrk, nginx or taskset (and no root to install them) it skips and says
why; under CI=true it fails instead.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import ROOT

BENCH = ROOT / "loadtests" / "bench.py"
EXIT_MISSING_TOOLS = 3  # bench.py's exit status when wrk, nginx or taskset cannot be had
TARGETS = ("direct", "nginx", "wardent")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true requires the benchmark smoke test to run: {reason}")
    pytest.skip(reason)


def _tool(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/sbin") / name) if p.exists()), None
    )


def _positive(row: dict[str, Any], *keys: str) -> None:
    for key in keys:
        assert isinstance(row[key], int | float) and row[key] > 0, (key, row)


def _wrk_row(row: dict[str, Any]) -> None:
    _positive(row, "requests", "rps", "p50_ms", "p99_ms", "p999_ms", "rss_mib")
    assert row["p50_ms"] <= row["p99_ms"] <= row["p999_ms"] <= row["max_ms"], row
    assert row["cpu_s_per_10k"] >= 0, row
    # Every request answered as intended: no socket errors, no refusal by a guard.
    assert row["errors"] == dict.fromkeys(("connect", "read", "write", "status", "timeout"), 0), row


@pytest.mark.timeout(150)
def test_bench_quick_mode_writes_every_row(tmp_path: Path) -> None:
    missing = [name for name in ("wrk", "nginx", "taskset") if _tool(name) is None]
    if missing and os.geteuid() != 0:
        _unavailable(f"{', '.join(missing)} not installed (scripts/test installs them as root)")
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--rounds", "2", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=140,
        check=False,
    )
    if result.returncode == EXIT_MISSING_TOOLS:
        _unavailable(result.stderr.strip())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert "Wardent/nginx" in result.stdout  # the table was printed
    data = json.loads(out.read_text())

    assert data["meta"]["mode"] == "quick"
    main = data["main"]
    for name in TARGETS:
        _wrk_row(main["rows"][name])
    assert main["rows"]["wardent"]["cpu_s_per_10k"] > 0
    assert main["rows"]["nginx"]["upstream_cpu_s_per_10k"] is not None
    _positive(main["ratios"], "wardent_over_nginx_rps", "wardent_over_direct_rps")
    assert len(main["rounds"]) == data["meta"]["plan"]["rounds"] >= 1
    assert main["ratios"]["wardent_over_nginx_rps_each_round"] == [
        round(r["wardent"]["rps"] / r["nginx"]["rps"], 3) for r in main["rounds"]
    ]
    for noise in (main["rows"][name]["other_cpu_percent"] for name in TARGETS):
        assert noise is None or set(noise) == {"servers_core", "load_core", "servers_core_steal"}

    # Every wrk run is logged with its disturbance, non-median rounds included: the
    # main table and half load run each target once a round, the sweep and bodies once.
    logged = data["measurements"]
    rounds = data["meta"]["plan"]["rounds"]
    expected = (
        len(TARGETS)
        * (
            2 * rounds
            + len(data["meta"]["plan"]["sweep"])
            + 2 * len(data["meta"]["plan"]["bodies"])
        )
        + 2 * rounds
    )  # the half-load control: direct and nginx at half of nginx's peak
    assert len(logged) == expected, [entry["what"] for entry in logged]
    assert all("other_cpu_percent" in entry and entry["what"] for entry in logged)

    half = data["half_load"]
    _positive(half, "offered_rps")
    assert len(half["added_p99_ms_each_round"]["wardent"]) == len(main["rounds"])
    for name in TARGETS:
        _wrk_row(half["rows"][name])
        assert 0 < half["rows"][name]["servers_core_busy_percent"] <= 110, half["rows"][name]
    control = half["nginx_at_its_own_half_peak"]
    assert control["offered_rps"] == pytest.approx(main["rows"]["nginx"]["rps"] / 2, abs=0.1)
    assert len(control["added_p99_ms_each_round"]) == len(main["rounds"])
    assert control["added_p99_ms_over_direct"] == round(
        statistics.median_low(control["added_p99_ms_each_round"]), 3
    )
    for name in ("direct", "nginx"):
        _wrk_row(control["rows"][name])

    assert [entry["connections"] for entry in data["sweep"]] == data["meta"]["plan"]["sweep"]
    for entry in data["sweep"]:
        for name in TARGETS:
            _wrk_row(entry[name])

    bodies = data["bodies"]
    assert {(b["body"], b["direction"]) for b in bodies} == {
        (label, direction)
        for label in data["meta"]["plan"]["bodies"]
        for direction in ("down", "up")
    }
    for entry in bodies:
        for name in TARGETS:
            _wrk_row(entry[name])
            if entry["bytes"]:
                _positive(entry[name], "body_mib_per_s")

    sse = data["sse"]
    for name in TARGETS:
        row = sse[name]
        assert row["connected"] == row["streams"] == data["meta"]["plan"]["sse_streams"], row
        _positive(row, "events_per_stream", "events_received", "complete_streams")
        _positive(row, "latency_p50_ms", "latency_p99_ms", "rss_streaming_mib")

    flood = data["flood"]
    assert flood["distinct_ips"] == data["meta"]["plan"]["flood_ips"]
    assert flood["rounds"] == data["meta"]["plan"]["rounds"]
    each = flood["good_client"]["p99_flood_over_control_each_round"]
    assert len(each) == flood["rounds"]
    assert flood["good_client"]["p99_flood_over_control"] in each
    assert flood["flood"]["requests"] >= flood["distinct_ips"]
    _positive(flood["flood"], "rps", "p99_ms")
    _positive(flood["control"], "rps", "p99_ms")
    _positive(flood, "rss_before_mib", "rss_after_mib")
    assert flood["flood"]["errors"]["status"] == 0  # a new IP is never refused
    for key in ("alone", "beside_control", "beside_flood"):
        _positive(flood["good_client"][key], "rps", "p50_ms", "p99_ms")
