"""A flood of 1,000,000 distinct client IPs: memory stays bounded and a
well-behaved client's bucket is neither lost nor reset."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.processes import ROOT

STATED_RSS_MIB = 300  # README and docs/configuration.md (guards.rate_limit_max_keys)


def test_million_ip_flood_bounded_and_fair() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.support.flood", "1000000", "1000000"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        text=True,
        timeout=240,
    )
    report = json.loads(result.stdout)
    assert report["rss_after_mib"] < STATED_RSS_MIB, report
    assert report["keys"] <= 1_000_000
    assert report["evicted"] > 0  # the cap was reached and enforced
    # 15 of its burst of 20 used before, the last 5 during the flood, none after:
    # its exhausted bucket survived (a reset one would pass again).
    assert report["good_used_before"] == 15
    assert report["good_allowed_during"] == 5
    assert report["good_allowed_after"] == 0
