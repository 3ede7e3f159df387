"""Micro-benchmarks of the hot path, in-process: the guard chain, then the whole request.

    python loadtests/guard_chain_bench.py [--iterations N] [--repeat R] [--json OUT]

1. **The guard chain** with every guard on: ban (1,000 banned addresses in the
   table, plus, in a second figure, an operator's network ban, which puts the
   prefix walk on every lookup), AI crawlers (the built-in list), the origin
   secret, the body limit and two rate-limit rules that match, built by the real
   code (`Runtime(settings, GuardState(...))`). It times `runtime.chain.admit(ctx)`
   for a passing request from a browser (cache-warm: the same request again and
   again), best of R passes of N, in µs per request, against the budget of
   DESIGN.md ("The hot-path budget": < 5 µs), then each guard's check alone.
   The RequestContext is the one the transport itself fills (recorded while the
   request goes through a real ClientConnection), so whatever the transport sets
   (client, route, path, method, host, headers, values, user agent, lengths) is
   set exactly as in production.
2. **The whole request path** per request, transport included: a Gateway in a
   running uvloop loop, a ClientConnection and a pooled UpstreamConnection on fake
   transports, fed raw bytes (`client.data_received(request)`,
   `upstream.data_received(response)`): parse, identify, admit, rewrite,
   forward, parse the answer, write it, record (JSON access log to /dev/null),
   with the guards on and off, for what wrk sends and for a browser's request
   through Cloudflare and nginx. No socket, no syscall: the CPU of Wardent's own
   Python per request.

Timing never fails anything: the numbers are printed, and written with `--json`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `wardent` importable from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvloop

from wardent import native
from wardent.config.schema import Settings
from wardent.context import RequestContext
from wardent.gateway import Gateway
from wardent.guards.chain import Guard, GuardChain, Rejection
from wardent.runtime import Runtime
from wardent.state.bans import Ban
from wardent.transport.server import ClientConnection
from wardent.transport.upstream import UpstreamConnection

BUDGET_US = 5.0
ROOT = Path(__file__).resolve().parent.parent
ORIGIN_SECRET = b"bench-origin-secret-6b1f0c2e"
ORIGIN_ENV = "BENCH_ORIGIN_SECRET"

# What wrk sends in loadtests/bench.py.
WRK_REQUEST = (
    b"GET /ok HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
    b"X-Wardent-Secret: " + ORIGIN_SECRET + b"\r\n"
    b"User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    b"(KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36\r\n"
    b"CF-Connecting-IP: 198.51.100.7\r\n\r\n"
)
# A browser's API call as nginx passes it on from Cloudflare.
BROWSER_REQUEST = (
    b"GET /api/candles?symbol=BTCUSDT&limit=100 HTTP/1.1\r\n"
    b"Host: trade.example.com\r\n"
    b"X-Real-IP: 172.68.10.20\r\n"
    b"X-Forwarded-For: 198.51.100.7, 172.68.10.20\r\n"
    b"X-Forwarded-Proto: https\r\n"
    b"X-Request-ID: 6f9d2c4be1a04d7c9a3f\r\n"
    b"CF-Connecting-IP: 198.51.100.7\r\n"
    b"CF-Ray: 8a1b2c3d4e5f6a7b-FRA\r\n"
    b"CF-IPCountry: DE\r\n"
    b"X-Wardent-Secret: " + ORIGIN_SECRET + b"\r\n"
    b"User-Agent: Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
    b"(KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36\r\n"
    b"Accept: application/json\r\n"
    b"Accept-Language: en-GB,en;q=0.9,de;q=0.8\r\n"
    b"Accept-Encoding: gzip, deflate, br, zstd\r\n"
    b"Referer: https://trade.example.com/market\r\n"
    b'Sec-Ch-Ua: "Chromium";v="126", "Google Chrome";v="126"\r\n'
    b"Sec-Fetch-Site: same-origin\r\nSec-Fetch-Mode: cors\r\nSec-Fetch-Dest: empty\r\n"
    b"Cookie: csrftoken=pQ3mX9vR2tY7uI1oP5aS8dF4gH6jK0lZ; "
    b"access=eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl\r\n\r\n"
)
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Wed, 25 Nov 2026 01:53:00 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"
)


def settings_data(directory: Path) -> dict[str, Any]:
    """Every guard on, as in production (Cloudflare's ranges trusted, from the shipped file)."""
    return {
        "listen": {"public": "127.0.0.1:0", "admin": "127.0.0.1:0"},
        "upstream": {"url": "http://127.0.0.1:1"},
        "client_ip": {
            "header": "CF-Connecting-IP",
            "trusted_proxies": ["127.0.0.1/32", "file:config/cloudflare-ips.txt"],
        },
        "secrets": {"origin": {"env": ORIGIN_ENV}},
        "guards": {
            "origin_secret": {"enabled": True, "header": "X-Wardent-Secret"},
            "crawlers": {"block": "builtin-ai", "allow": ["Applebot"]},
            "body_limit": {"max": "10MiB"},
            "rate_limits": [
                # Both match every request of the benchmark; far above what it sends.
                {"name": "global", "rate": "1000000/s", "burst": 10_000_000},
                {
                    "name": "reads",
                    "match": {"methods": ["GET", "HEAD"]},
                    "rate": "1000000/s",
                    "burst": 10_000_000,
                },
            ],
        },
        "bans": {"store": str(directory / "bans.sqlite3")},
        "telemetry": {"access_log": "json", "access_log_path": os.devnull},
    }


def make_settings(directory: Path) -> Settings:
    return Settings.model_validate(
        settings_data(directory),
        context={"environ": {ORIGIN_ENV: ORIGIN_SECRET.decode()}, "base_dir": ROOT},
    )


class FakeTransport:
    """What ClientConnection and UpstreamConnection call on a uvloop transport."""

    def __init__(self, peer: tuple[str, int] = ("127.0.0.1", 50000)) -> None:
        self.peer = peer
        self.writes = 0
        self.last = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.last = bytes(data)

    def writelines(self, data: Sequence[bytes]) -> None:
        self.writes += 1
        self.last = b"".join(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.peer if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return False


class Recorder:
    """A last guard that passes everything and remembers the context it saw.

    (Not a GuardChain subclass: the chain is compiled, and interpreted classes
    cannot inherit from compiled ones.)"""

    def __init__(self) -> None:
        self.last: RequestContext | None = None

    def check(self, ctx: RequestContext) -> Rejection | None:
        self.last = ctx
        return None


def _unscheduled(callback: Callable[[], object]) -> None:
    pass


class Harness:
    """One ClientConnection and one pooled UpstreamConnection of a real Gateway."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.client_transport = FakeTransport()
        self.client = ClientConnection(gateway)
        self.client.connection_made(self.client_transport)  # type: ignore[arg-type]
        self.upstream_transport = FakeTransport()
        self.upstream = UpstreamConnection(gateway.pool)
        self.upstream.connection_made(self.upstream_transport)  # type: ignore[arg-type]
        gateway.pool.open.add(self.upstream)
        gateway.pool.idle.append(self.upstream)
        # The loop never runs between the harness's requests: held writes are
        # flushed by the harness itself (once a request, as the loop does once an
        # iteration), not by callbacks that would pile up unrun.
        gateway.writes.call_soon = _unscheduled

    def exchange(self, request: bytes) -> bytes:
        """One request through, and what the client got back (checked by the caller)."""
        self.client.data_received(request)
        self.gateway.writes.flush()  # what the loop does once an iteration
        if self.upstream.ctx is not None:
            self.upstream.data_received(RESPONSE)
        self.gateway.writes.flush()
        return self.client_transport.last

    def per_request_us(self, request: bytes, iterations: int, repeat: int) -> float:
        client = self.client.data_received
        upstream = self.upstream.data_received
        flush = self.gateway.writes.flush
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            for _ in range(iterations):
                client(request)
                flush()
                upstream(RESPONSE)
                flush()
            best = min(best, time.perf_counter() - start)
        return best / iterations * 1e6


def best_us(function: Callable[[], object], iterations: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(iterations):
            function()
        best = min(best, time.perf_counter() - start)
    return best / iterations * 1e6


def _status(response: bytes) -> int:
    try:
        return int(response.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0


def add_bans(gateway: Gateway, network: bool) -> None:
    """1,000 banned addresses (what the ban keeper would have written), and an operator
    network ban if `network`. The bench writes the table the way the keeper does."""
    table = gateway.guard_state.bans
    now = time.time()
    for i in range(1000):
        target = f"203.0.{i // 256}.{i % 256}"
        table._set(Ban(target, now + 3600, "bench", "auto", now, 1))
    if network:
        table._set(Ban("192.0.2.0/24", now + 3600, "bench", "operator", now, 1))


def recorded_context(gateway: Gateway, harness: Harness) -> RequestContext:
    """The RequestContext the transport fills for the browser's request, as the chain
    sees it (the runtime's chain is rebuilt with the same guards afterwards)."""
    runtime = gateway.runtime
    guards = runtime.chain.guards
    recorder = Recorder()
    runtime.chain = GuardChain([*guards, Guard("recorder", recorder.check)])
    response = harness.exchange(BROWSER_REQUEST)
    runtime.chain = GuardChain(guards)
    if _status(response) != 200 or recorder.last is None:
        raise SystemExit(
            "the browser request did not pass the guards: "
            f"{response[:200]!r} (reason {recorder.last and recorder.last.reason})"
        )
    return recorder.last


def chain_figures(
    gateway: Gateway, harness: Harness, iterations: int, repeat: int
) -> dict[str, Any]:
    ctx = recorded_context(gateway, harness)
    chain = gateway.runtime.chain
    if chain.admit(ctx) is not None:
        raise SystemExit("the recorded request does not pass the chain")
    admit = chain.admit
    figures: dict[str, Any] = {
        "guards": [guard.name for guard in chain.guards],
        "chain_us": round(best_us(lambda: admit(ctx), iterations, repeat), 3),
        "per_guard_us": {
            guard.name: round(best_us(partial(guard.check, ctx), iterations, repeat), 3)
            for guard in chain.guards
        },
    }
    figures["bans_in_table"] = len(gateway.guard_state.bans)
    add_bans(gateway, network=True)
    figures["chain_with_network_ban_us"] = round(best_us(lambda: admit(ctx), iterations, repeat), 3)
    return figures


def path_figures(
    gateway: Gateway, harness: Harness, iterations: int, repeat: int, in_situ: bool
) -> dict[str, float]:
    """µs per request through the whole path: guards on, and off (the same runtime with
    an empty chain); with `in_situ`, each guard alone on the browser's request too."""
    on_runtime = gateway.runtime
    settings, state = on_runtime.settings, gateway.guard_state

    def timed(runtime: Runtime, request: bytes, what: str) -> float:
        gateway.runtime = runtime
        harness.client.rt = runtime
        status = _status(harness.exchange(request))
        if status != 200:
            raise SystemExit(f"{what}: status {status}, not 200")
        us = harness.per_request_us(request, iterations, repeat)
        status = _status(harness.client_transport.last)
        if status != 200:
            raise SystemExit(f"{what}: ended with status {status}")
        return round(us, 3)

    off_runtime = Runtime(settings, state, guards=[])
    out: dict[str, float] = {}
    try:
        for label, request in (("wrk", WRK_REQUEST), ("browser", BROWSER_REQUEST)):
            for switch, runtime in (("on", on_runtime), ("off", off_runtime)):
                out[f"{label}_guards_{switch}_us"] = timed(
                    runtime, request, f"{label} request, guards {switch}"
                )
        if in_situ:
            for guard in on_runtime.chain.guards:
                alone = Runtime(settings, state, guards=[guard])
                us = timed(alone, BROWSER_REQUEST, f"browser request, {guard.name} alone")
                out[f"browser_only_{guard.name}_us"] = us
    finally:
        gateway.runtime = on_runtime
        harness.client.rt = on_runtime
    return out


async def measure(iterations: int, repeat: int, in_situ: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="wardent-chain-bench-") as directory:
        settings = make_settings(Path(directory))
        gateway = Gateway(Path(directory) / "unused.yaml", settings)
        gateway.access_log.start(gateway.loop)
        try:
            add_bans(gateway, network=False)
            harness = Harness(gateway)
            results: dict[str, Any] = {"budget_us": BUDGET_US, "hot_path": native.running()}
            results["chain"] = chain_figures(gateway, harness, iterations, repeat)
            # The path figures start from the 1,000 address bans only.
            gateway.guard_state.bans._remove("192.0.2.0/24")
            results["path"] = path_figures(
                gateway, harness, max(iterations // 5, 1), repeat, in_situ
            )
            results["path"]["guards_cost_us"] = round(
                results["path"]["browser_guards_on_us"] - results["path"]["browser_guards_off_us"],
                3,
            )
        finally:
            gateway.access_log.close()
        return results


def report(results: dict[str, Any]) -> str:
    chain = results["chain"]
    path = results["path"]
    verdict = "within" if chain["chain_us"] < results["budget_us"] else "OVER"
    lines = [
        f"request path: {results['hot_path']} (wardent/native.py)",
        f"guard chain ({' → '.join(chain['guards'])}), a passing browser request, "
        f"{chain['bans_in_table']:,} bans in the table:",
        f"  {chain['chain_us']:.2f} µs/request (best of passes; target < "
        f"{results['budget_us']:.0f} µs: {verdict})",
        f"  {chain['chain_with_network_ban_us']:.2f} µs/request with an operator network "
        "ban as well (prefix walk on every lookup)",
        "  each guard alone: "
        + ", ".join(f"{name} {us:.2f}" for name, us in chain["per_guard_us"].items())
        + " µs",
        "whole request path in-process (fake transports, no syscalls), µs/request:",
        f"  wrk's request:     guards on {path['wrk_guards_on_us']:.2f}, "
        f"off {path['wrk_guards_off_us']:.2f}",
        f"  browser's request: guards on {path['browser_guards_on_us']:.2f}, "
        f"off {path['browser_guards_off_us']:.2f} "
        f"(the guards add {path['guards_cost_us']:.2f})",
    ]
    alone = {k: v for k, v in path.items() if k.startswith("browser_only_")}
    if alone:
        off = path["browser_guards_off_us"]
        lines.append(
            "  each guard alone in place, on the browser's request (added µs): "
            + ", ".join(
                f"{key.removeprefix('browser_only_').removesuffix('_us')} {us - off:+.2f}"
                for key, us in alone.items()
            )
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--iterations",
        type=int,
        default=100_000,
        help="requests per pass of the chain (the whole path: a fifth of it)",
    )
    parser.add_argument("--repeat", type=int, default=5, help="passes; the best one counts")
    parser.add_argument(
        "--in-situ",
        action="store_true",
        help="also time the whole path with each guard alone (what each costs in place)",
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the figures here")
    args = parser.parse_args(argv)
    if args.iterations < 1 or args.repeat < 1:
        parser.error("--iterations and --repeat must be at least 1")
    results = uvloop.run(measure(args.iterations, args.repeat, args.in_situ))
    print(report(results))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
