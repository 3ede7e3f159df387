"""Where Wardent's CPU goes under load: py-spy samples it while wrk drives it.

    python loadtests/profile_wardent.py [--duration S] [--connections N] [--native] [--top K]

Starts the benchmark's upstream and its Wardent (every guard on, the same
config as `bench.py`'s main row), runs wrk against Wardent and records Wardent
with `py-spy record --format raw` at the same time, then prints the functions
with the most samples of their own (self) and with the most in total
(inclusive). `--native` adds C frames (uvloop, httptools, the kernel entry
points) to the stacks. `--raw OUT` keeps the collapsed stacks, for a flame graph
(`flamegraph.pl OUT > out.svg` or speedscope.app).

Needs what `bench.py` needs, plus py-spy (`pip install py-spy`).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtests import bench


def summarise(raw: str, top: int) -> str:
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        frames = stack.split(";")
        # Threads other than the event loop's (the log writer, the ban store) are
        # kept: their CPU is Wardent's too.
        own[_short(frames[-1])] += count
        for frame in set(map(_short, frames)):
            total[frame] += count
    if not samples:
        return "no samples (is py-spy allowed to ptrace? run as root)"
    lines = [f"{samples} samples", "", "self %  function"]
    for frame, count in own.most_common(top):
        lines.append(f"{100 * count / samples:6.1f}  {frame}")
    lines += ["", "total %  function"]
    for frame, count in total.most_common(top):
        lines.append(f"{100 * count / samples:7.1f}  {frame}")
    return "\n".join(lines)


def _short(frame: str) -> str:
    # "name (path/to/module.py:123)" → "name (module.py)": lines vary, functions do not.
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({Path(path).name})" if path else name


def _perf(stack: bench.Stack, wrk: bench.Wrk, args: argparse.Namespace, directory: Path) -> int:
    """py-spy samples wall-clock time: a send() that wakes the upstream on the same
    core is charged with the time the upstream then runs. perf counts CPU only."""
    perf = shutil.which("perf")
    if perf is None:
        print("perf is missing: apt-get install linux-perf", file=sys.stderr)
        return int(bench.EXIT_MISSING_TOOLS)
    data = directory / "perf.data"
    pid = str(stack.wardent.proc.pid)
    record = [perf, "record", "-F", str(args.rate), "-o", str(data), "-p", pid]
    spy = subprocess.Popen(
        [*record, "--", "sleep", str(args.duration)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.5)
    script = wrk.script(bench.lua_get())
    result = wrk.run(
        stack.wardent.url + "/ok", args.connections, args.duration, script, stack.headers()
    )
    _, err = spy.communicate(timeout=args.duration + 60)
    if spy.returncode != 0:
        print(f"perf failed ({spy.returncode}): {err}", file=sys.stderr)
        return 1
    print(f"wrk: {result.rps:,.0f} req/s while sampled")
    report = subprocess.run(
        [perf, "report", "-i", str(data), "--stdio", "--no-children", "--sort", "dso,sym"],
        capture_output=True,
        text=True,
        check=False,
    )
    rows = [line for line in report.stdout.splitlines() if line and not line.startswith("#")]
    print("\n".join(rows[: args.top]))
    dsos = subprocess.run(
        [perf, "report", "-i", str(data), "--stdio", "--no-children", "--sort", "dso"],
        capture_output=True,
        text=True,
        check=False,
    )
    print("\n".join(line for line in dsos.stdout.splitlines() if line and line[0] != "#"))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds of load (10)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (64)")
    parser.add_argument("--rate", type=int, default=997, help="py-spy samples per second")
    parser.add_argument("--native", action="store_true", help="C frames too")
    parser.add_argument("--top", type=int, default=40, help="rows per list (40)")
    parser.add_argument("--raw", type=Path, help="keep the collapsed stacks here")
    parser.add_argument(
        "--perf",
        action="store_true",
        help="sample CPU with perf instead (true CPU time, kernel and C symbols, no Python names)",
    )
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        print("py-spy is missing: pip install py-spy", file=sys.stderr)
        return int(bench.EXIT_MISSING_TOOLS)
    tools = bench.ensure_tools(install=False)
    cores, pinning = bench._cores()
    bench._raise_fd_limit()
    children = bench.Children()
    directory = Path(tempfile.mkdtemp(prefix="wardent-profile-", dir="/dev/shm"))
    try:
        stack = bench.Stack(directory, tools, children, cores)
        bench.log(f"working in {directory}; {pinning}")
        stack.start_upstream(())
        stack.start_main_wardent()
        wrk = bench.Wrk(stack)
        script = wrk.script(bench.lua_get())
        url = stack.wardent.url + "/ok"
        wrk.run(url, args.connections, 2, script, stack.headers())  # warm up
        raw_path = args.raw or directory / "stacks.txt"
        if args.perf:
            return _perf(stack, wrk, args, directory)
        record = [py_spy, "record", "--format", "raw", "--rate", str(args.rate)]
        record += ["--duration", str(args.duration), "--output", str(raw_path)]
        # py-spy reads native stacks only from a stopped process; Python stacks it can
        # read without stopping Wardent, which disturbs it less.
        record.append("--native" if args.native else "--nonblocking")
        spy = subprocess.Popen(
            [*record, "--pid", str(stack.wardent.proc.pid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(0.5)
        result = wrk.run(url, args.connections, args.duration, script, stack.headers())
        _, err = spy.communicate(timeout=args.duration + 60)
        if spy.returncode != 0:
            print(f"py-spy failed ({spy.returncode}): {err}", file=sys.stderr)
            return 1
        print(f"wrk: {result.rps:,.0f} req/s while sampled (sampling costs some)")
        print(summarise(raw_path.read_text(), args.top))
        return 0
    finally:
        children.stop_all()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
