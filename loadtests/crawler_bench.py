"""Micro-benchmark of the crawler matcher against one big regex alternation.

    python loadtests/crawler_bench.py [--iterations N]

Prints µs per lookup for a cache hit, a cache miss on a browser User-Agent and
a cache miss on a bot User-Agent, then the same User-Agents through
``re.compile("|".join(map(re.escape, names)), re.I)`` (how most proxies match
a bot list), and the ratios. Misses are measured on distinct User-Agents (a
version number varies), so every lookup tokenises and caches afresh, as it
does for a client that rotates its User-Agent (the cache clears every 4096).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `wardent` importable from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wardent.guards.crawlers import CrawlerMatcher, builtin_crawlers

BROWSER = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.{i}.0 Safari/537.36"
)
BOT = (
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.{i}; "
    "+https://openai.com/gptbot)"
)


def _per_call_us(
    function: Callable[[bytes], object],
    inputs: Sequence[bytes],
    before_pass: Callable[[], object] = lambda: None,
) -> float:
    """Best of three passes over the inputs, in µs per call."""
    best = float("inf")
    for _ in range(3):
        before_pass()
        start = time.perf_counter()
        for value in inputs:
            function(value)
        best = min(best, time.perf_counter() - start)
    return best / len(inputs) * 1e6


def regex_for(names: Sequence[str]) -> re.Pattern[bytes]:
    """One alternation of every name, as a bytes pattern (the baseline)."""
    return re.compile(b"|".join(re.escape(name.encode()) for name in names), re.IGNORECASE)


def run(iterations: int = 20_000) -> dict[str, float]:
    """The µs-per-lookup figures, keyed by case; ``iterations`` distinct UAs per miss case."""
    names = [entry.name for entry in builtin_crawlers() if entry.kind == "user_agent"]
    browsers = [BROWSER.format(i=i).encode() for i in range(iterations)]
    bots = [BOT.format(i=i).encode() for i in range(iterations)]
    hit_ua = browsers[0]
    pattern = regex_for(names)

    def miss(inputs: Sequence[bytes]) -> float:
        # Distinct User-Agents: every call tokenises, caches, and clears when full.
        matcher = CrawlerMatcher()
        return _per_call_us(matcher.match, inputs, matcher._cache.clear)

    hit_matcher = CrawlerMatcher()
    hit_matcher.match(hit_ua)
    results = {
        "cache hit": _per_call_us(hit_matcher.match, [hit_ua] * iterations),
        "miss, browser UA": miss(browsers),
        "miss, bot UA": miss(bots),
        "regex, browser UA": _per_call_us(pattern.search, browsers),
        "regex, bot UA": _per_call_us(pattern.search, bots),
    }
    assert hit_matcher.match(hit_ua) is None
    assert hit_matcher.match(bots[0]) == "GPTBot"
    assert pattern.search(bots[0]) is not None
    return results


def report(results: dict[str, float], names: int) -> str:
    lines = [f"crawler matcher, {names} names, µs per lookup (best of 3)"]
    lines += [f"  {case:<20} {value:8.3f}" for case, value in results.items()]
    lines.append(
        "  regex / miss: browser {:.0f}x, bot {:.0f}x; regex / hit: {:.0f}x".format(
            results["regex, browser UA"] / results["miss, browser UA"],
            results["regex, bot UA"] / results["miss, bot UA"],
            results["regex, browser UA"] / results["cache hit"],
        )
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--iterations", type=int, default=20_000)
    args = parser.parse_args(argv)
    names = sum(1 for entry in builtin_crawlers() if entry.kind == "user_agent")
    print(report(run(args.iterations), names))


if __name__ == "__main__":
    main()
