"""Instructions per request, counted by valgrind's callgrind: a figure noise cannot move.

    python loadtests/instructions.py [--requests N] [--json OUT] [--keep DIR]

On this virtual machine the same binary's CPU time per request drifts by 30%
within minutes (loadtests/README.md), so a change worth 2% of the hot path
cannot be timed. callgrind counts the instructions the CPU executes instead:
the same code, build and input give the same count, whatever else the machine
is doing. This runs guard_chain_bench.py's in-process request path (a real
Gateway; a ClientConnection and a pooled UpstreamConnection on fake
transports) under `valgrind --tool=callgrind`, and reports instructions per
request for:

- the guard chain alone (`chain.admit`, a passing browser request, 1,000 bans);
- the whole path, guards on and off, for wrk's request and a browser's.

Only the measured loops are counted: each runs inside `sys.call_tracing`, the
one C function nothing else on the path calls, which callgrind is told to
count inside (`--toggle-collect`) and to dump a profile after
(`--dump-after`), one profile per phase. The loop's own cost (a phase of the
same shape calling no-ops) is subtracted. Counts are user-space instructions:
the kernel's share (syscalls, context switches) and the cost of cache misses
are not in them, which is what bench.py measures. Compare counts of one
build mode (compiled or source) only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `wardent` importable from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# The symbol valgrind must find; Debian's stripped python3 binary lacks it.
TOGGLE = "sys_call_tracing"
PHASES = (
    "harness",
    "chain",
    "wrk_guards_on",
    "wrk_guards_off",
    "browser_guards_on",
    "browser_guards_off",
)
_TOTALS = re.compile(r"^totals:\s+(\d+)", re.MULTILINE)


class InstructionsError(Exception):
    """valgrind is missing, failed, or could not find what to count."""


def _noop(*args: object) -> None:
    pass


def _loop(calls: Sequence[Callable[..., object]], args: Sequence[tuple[Any, ...]], n: int) -> None:
    """The measured loop: the same shape for every phase, so `harness` is its own cost."""
    first, second, third, fourth = calls
    a, b, c, d = args
    for _ in range(n):
        first(*a)
        second(*b)
        third(*c)
        fourth(*d)


def run_phases(requests: int) -> dict[str, Any]:
    """In the child, under valgrind: every phase once, each in one sys.call_tracing."""
    import uvloop

    from loadtests import guard_chain_bench as bench
    from wardent import native
    from wardent.gateway import Gateway
    from wardent.runtime import Runtime

    async def phases() -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="wardent-instructions-") as directory:
            settings = bench.make_settings(Path(directory))
            gateway = Gateway(Path(directory) / "unused.yaml", settings)
            gateway.access_log.start(gateway.loop)
            try:
                bench.add_bans(gateway, network=False)
                harness = bench.Harness(gateway)
                on = gateway.runtime
                off = Runtime(on.settings, gateway.guard_state, guards=[])
                flush = gateway.writes.flush
                client, upstream = harness.client, harness.upstream

                def path(runtime: Runtime, request: bytes) -> tuple[Any, ...]:
                    gateway.runtime = runtime
                    client.rt = runtime
                    for _ in range(200):  # warm: caches filled, buckets made, ids cached
                        if bench._status(harness.exchange(request)) != 200:
                            raise SystemExit("the request did not pass: not 200")
                    calls = (client.data_received, flush, upstream.data_received, flush)
                    return calls, ((request,), (), (bench.RESPONSE,), ())

                def chain() -> tuple[Any, ...]:
                    gateway.runtime = on
                    client.rt = on
                    ctx = bench.recorded_context(gateway, harness)
                    admit = on.chain.admit
                    if admit(ctx) is not None:
                        raise SystemExit("the recorded request does not pass the chain")
                    return (admit, _noop, _noop, _noop), ((ctx,), (), (), ())

                plans: dict[str, Callable[[], tuple[Any, ...]]] = {
                    "harness": lambda: ((_noop,) * 4, ((b"",), (), (b"",), ())),
                    "chain": chain,
                    "wrk_guards_on": lambda: path(on, bench.WRK_REQUEST),
                    "wrk_guards_off": lambda: path(off, bench.WRK_REQUEST),
                    "browser_guards_on": lambda: path(on, bench.BROWSER_REQUEST),
                    "browser_guards_off": lambda: path(off, bench.BROWSER_REQUEST),
                }
                for name in PHASES:
                    calls, args = plans[name]()
                    sys.call_tracing(_loop, (calls, args, requests))
                status = bench._status(harness.client_transport.last)
                if status != 200:
                    raise SystemExit(f"the last request ended with status {status}, not 200")
            finally:
                gateway.access_log.close()
        return {"hot_path": native.running(), "phases": list(PHASES)}

    result: dict[str, Any] = uvloop.run(phases())
    return result


def _valgrind() -> str:
    found = shutil.which("valgrind")
    if found is None:
        raise InstructionsError(
            "valgrind is not installed: run `apt-get install valgrind` (Debian's package)"
        )
    return found


def count(requests: int, keep: Path | None = None) -> dict[str, Any]:
    """Run the phases under callgrind and return instructions per request of each;
    with `keep`, each phase's profile is copied there (for callgrind_annotate)."""
    valgrind = _valgrind()
    with tempfile.TemporaryDirectory(prefix="wardent-callgrind-") as directory:
        out = Path(directory) / "callgrind.out"
        command = [
            valgrind,
            "--tool=callgrind",
            "--collect-atstart=no",
            f"--toggle-collect={TOGGLE}",
            f"--dump-after={TOGGLE}",
            f"--callgrind-out-file={out}",
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            "--requests",
            str(requests),
        ]
        # The same hash seed every run: dict layouts, so counts, repeat exactly.
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        result = subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=1800, check=False
        )
        if result.returncode != 0:
            raise InstructionsError(
                f"valgrind exited with {result.returncode}:\n{result.stderr[-3000:]}"
            )
        child = json.loads(result.stdout.strip().splitlines()[-1])
        # One profile per phase, numbered in the order the phases ran.
        dumps = sorted(
            Path(directory).glob("callgrind.out.*"), key=lambda p: int(p.name.rpartition(".")[2])
        )
        totals = []
        for dump in dumps:
            found = _TOTALS.search(dump.read_text(errors="replace"))
            totals.append(int(found.group(1)) if found else 0)
        phases: list[str] = child["phases"]
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            for name, dump in zip(phases, dumps, strict=False):
                shutil.copyfile(dump, keep / f"{name}.callgrind")
    if len(totals) != len(phases) or not all(totals):
        raise InstructionsError(
            f"callgrind counted nothing inside {TOGGLE} ({len(totals)} profiles for "
            f"{len(phases)} phases): this Python's binary has no symbol table (Debian's "
            "python3 is stripped); run it with a Python built from source (pyenv, python.org)"
        )
    per_request = {name: total / requests for name, total in zip(phases, totals, strict=True)}
    loop = per_request.pop("harness")
    figures = {name: round(value - loop) for name, value in per_request.items()}
    return {
        "requests": requests,
        "hot_path": child["hot_path"],
        "loop_instructions": round(loop),
        "instructions_per_request": figures,
    }


def report(results: dict[str, Any]) -> str:
    figures = results["instructions_per_request"]
    lines = [
        f"instructions per request (callgrind, user space, {results['requests']:,} requests "
        f"a phase, request path {results['hot_path']}; the loop's own "
        f"{results['loop_instructions']:,} subtracted):",
        f"  guard chain alone:  {figures['chain']:>9,}",
        f"  wrk's request:      guards on {figures['wrk_guards_on']:>9,}   "
        f"off {figures['wrk_guards_off']:>9,}",
        f"  browser's request:  guards on {figures['browser_guards_on']:>9,}   "
        f"off {figures['browser_guards_off']:>9,}",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--requests", type=int, default=2000, help="requests a phase (2,000; ~1 min in all)"
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the figures here")
    parser.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="keep each phase's profile there (`callgrind_annotate DIR/chain.callgrind`)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.requests < 1:
        parser.error("--requests must be at least 1")
    if args.child:
        print(json.dumps(run_phases(args.requests)))
        return 0
    try:
        results = count(args.requests, args.keep)
    except InstructionsError as error:
        print(f"instructions: {error}", file=sys.stderr)
        return 2
    print(report(results))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
