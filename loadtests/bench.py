"""Wardent against nginx and a direct hit, on one machine, in one command.

    python loadtests/bench.py [--quick] [--duration S] [--connections N] [--json OUT]

Starts, on loopback ports the kernel picks, in a temporary directory that is
removed afterwards:

- **upstream**: nginx (one worker) with `location = /ok { return 200 "ok"; }`,
  static files of 0 B, 64 KiB and 8 MiB under `/static/`, and `/upload/`, a
  WebDAV PUT location that reads a whole request body before it answers;
- **nginx**: nginx (one worker) proxying to it the usual way (upstream
  keepalive 64, HTTP/1.1, `Connection ""`, request and response buffering off
  so bodies stream as they do through Wardent, a buffered access log);
- **wardent**: `python -m wardent run` proxying to it with every guard on: the
  origin secret, the AI-crawler list, a 10 MiB body limit (16 MiB on the upload
  route), three rate-limit rules (one never matches, two match every request with
  limits high enough never to refuse the benchmark's single client), bans on with
  a few in the table, client IPs from `CF-Connecting-IP` of a trusted 127.0.0.1,
  and the JSON access log written to a file;
- **direct**: the upstream alone.

Every target is driven by the same wrk (`-t1`), same connections and duration,
with the same request headers (the origin secret, `CF-Connecting-IP`, a browser
User-Agent). CPU pinning, on a 2-core machine: every server (both nginx and
every Wardent, the SSE server) runs on core 0, every load generator (wrk, the
SSE client) on core 1, so generator and servers never fight over a core; a proxy
and its upstream do share core 0, as they share a host in production.

Rows: the main table (tiny response), half of Wardent's peak load (added
latency; with nginx at half of its own peak as the control), a concurrency sweep
(1, 16, 64, 256 connections), bodies of 0 B, 64 KiB and 8 MiB down and up, SSE
fan-out (1,000 streams, an event every 100 ms from a small SSE server) and an IP
flood through Wardent (one request each from 100,000 distinct client IPs, with a
well-behaved client measured at the same time).

CPU is read from /proc/PID/stat (utime + stime, all threads; for nginx the master
and its worker) before and after each run: the proxy's own and, apart, the
upstream's. RSS is VmRSS after the run. Latency percentiles come from wrk's
`done()` (p99.9 included). `--quick` is a smoke run for the test suite (about a
second a row, tiny sizes): its numbers mean nothing.

Needs wrk, nginx and taskset (Debian: `apt-get install wrk nginx util-linux`);
as root the harness installs the missing ones with apt-get.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import queue
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, cast

import yaml

ROOT = Path(__file__).resolve().parent.parent

BROWSER_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)
CLIENT_IP = "198.51.100.7"  # the benchmark's client, as Cloudflare would name it
GOOD_CLIENT_IP = "192.0.2.10"  # the well-behaved client of the flood row
CONTROL_IP = "198.51.100.200"  # the flood row's control load: the same volume from one IP
ORIGIN_SECRET_ENV = "BENCH_WARDENT_ORIGIN_SECRET"
ADMIN_TOKEN_ENV = "BENCH_WARDENT_ADMIN_TOKEN"
MIB = 1024 * 1024
EXIT_MISSING_TOOLS = 3
TARGETS = ("direct", "nginx", "wardent")
NOISY_PERCENT = 5.0  # CPU used by other processes on the servers' core that taints a run
QUIET_WINDOW = 0.3  # seconds: how the idle servers' core is checked before each run
QUIET_FRACTION = 0.1  # of that core: at most this busy counts as idle


class BenchError(Exception):
    """Something the person running the benchmark must fix; printed without a traceback."""


class MissingTools(BenchError):
    pass


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# -- what to run ---------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    quick: bool
    duration: int  # seconds of one main-table run
    rounds: int  # main-table and half-load rounds: every target once a round
    short: int  # seconds, every other wrk row
    warmup: int  # seconds of unmeasured load before each main-table run
    connections: int
    sweep: tuple[int, ...]
    bodies: tuple[tuple[str, int], ...]
    body_connections: int
    sse_streams: int
    sse_window: float
    flood_ips: int
    flood_connections: int
    good_connections: int
    good_rate: float  # requests a second of the flood row's well-behaved client


def make_plan(args: argparse.Namespace) -> Plan:
    if args.quick:
        return Plan(
            quick=True,
            duration=args.duration or 1,
            rounds=args.rounds or 1,
            short=1,
            warmup=0,
            connections=args.connections or 8,
            sweep=(1, 8),
            bodies=(("0B", 0), ("16KiB", 16 * 1024)),
            body_connections=4,
            sse_streams=20,
            sse_window=1.0,
            flood_ips=2_000,
            flood_connections=8,
            good_connections=2,
            good_rate=200,
        )
    return Plan(
        quick=False,
        duration=args.duration or 5,
        rounds=args.rounds or 3,
        short=3,
        warmup=1,
        connections=args.connections or 64,
        sweep=(1, 16, 64, 256),
        bodies=(("0B", 0), ("64KiB", 64 * 1024), ("8MiB", 8 * MIB)),
        body_connections=16,
        sse_streams=1_000,
        sse_window=5.0,
        flood_ips=100_000,
        flood_connections=64,
        good_connections=4,
        good_rate=500,
    )


# -- tools -----------------------------------------------------------------------

_TOOLS = (("wrk", "wrk"), ("nginx", "nginx"), ("taskset", "util-linux"))


def find_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for directory in ("/usr/sbin", "/sbin", "/usr/local/sbin"):
        candidate = Path(directory) / name
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def ensure_tools(install: bool) -> dict[str, str]:
    """The paths of wrk, nginx and taskset; as root, missing ones are installed with apt-get."""
    missing = [(name, package) for name, package in _TOOLS if find_tool(name) is None]
    if missing and install and os.geteuid() == 0 and shutil.which("apt-get"):
        packages = sorted({package for _, package in missing})
        log(f"installing {' '.join(packages)} with apt-get")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", *packages],
        ):
            result = subprocess.run(
                command, env=env, capture_output=True, text=True, timeout=900, check=False
            )
            if result.returncode != 0:
                log(f"{' '.join(command)} failed: {result.stderr.strip()[-500:]}")
                break
        missing = [(name, package) for name, package in _TOOLS if find_tool(name) is None]
    if missing:
        names = ", ".join(name for name, _ in missing)
        wanted = " ".join(sorted({package for _, package in missing}))
        raise MissingTools(
            f"the benchmark needs {names}, which is not installed: "
            f"run `apt-get install {wanted}` as root (or run this as root to have it done)"
        )
    return {name: str(find_tool(name)) for name, _ in _TOOLS}


# -- processes -------------------------------------------------------------------


class Children:
    """Every long-lived child process, each in a session of its own; stop_all() ends them all."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        args: Sequence[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        stdout_pipe: bool = False,
    ) -> subprocess.Popen[bytes]:
        with log_path.open("ab") as log_file:
            proc = subprocess.Popen(
                list(args),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if stdout_pipe else log_file,
                stderr=log_file,
                cwd=ROOT,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        # Whatever it left in its process group (nginx workers) goes with it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc.stdout is not None:
            proc.stdout.close()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            self.stop(proc)


def _raise_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_listening(port: int, proc: subprocess.Popen[bytes], log_path: Path, what: str) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{what} exited with {proc.returncode}:\n{tail(log_path)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise BenchError(f"{what} is not listening on 127.0.0.1:{port} after 15 s:\n{tail(log_path)}")


def tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


# -- /proc -------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text.rpartition(")")[2].split()  # fields from the 3rd (state) on


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if int(_stat_fields(int(entry.name))[1]) == pid:
                    found.append(int(entry.name))
    return found


def cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of every thread of these processes, in seconds."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = _stat_fields(pid)
            total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def preemptions(pids: Sequence[int]) -> int:
    """Involuntary context switches of every thread of these processes so far: a proxy
    sharing a core with its upstream is preempted each time a send wakes the upstream."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                for line in (task / "status").read_text().splitlines():
                    if line.startswith("nonvoluntary_ctxt_switches:"):
                        total += int(line.split()[1])
    return total


def core_busy_seconds(core: int) -> float:
    """Time CPU `core` spent running processes (user, nice, system; not irq or idle)."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            user, nice, system = (int(field) for field in line.split()[1:4])
            return (user + nice + system) / CLOCK_TICKS
    return 0.0


def core_steal_seconds(core: int) -> float:
    """Time a virtual machine's CPU `core` waited while the host ran someone else."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            fields = line.split()
            return int(fields[8]) / CLOCK_TICKS if len(fields) > 8 else 0.0
    return 0.0


def children_cpu_seconds() -> float:
    """CPU of the harness's children that have exited and been waited for (wrk)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def rss_mib(pids: Sequence[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


@dataclass
class Server:
    """A process (or an nginx master and its worker) whose CPU and RSS are read."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    pids: list[int]
    # Wardent only: "compiled" (mypyc) or "source", and why (wardent/native.py).
    hot_path: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu(self) -> float:
        return cpu_seconds(self.pids)

    def rss(self) -> float:
        return rss_mib(self.pids)


class NoiseMeter:
    """How much of the two cores processes outside the benchmark used meanwhile.

    Servers' core: its busy time less the servers' own CPU. Load core: its busy
    time less the CPU of the load generators (wrk) that ran and were waited for.
    Another job on the machine (a test suite, a build) shows up here, and a run it
    disturbed says so instead of passing off its numbers. On a virtual machine the
    host can take the servers' core away too (steal time, /proc/stat): counted apart.
    """

    def __init__(self, stack: Stack, servers: Sequence[Server]) -> None:
        self.stack = stack
        self.servers = list(servers)
        self.start = time.monotonic()
        self.busy = (
            core_busy_seconds(stack.server_core),
            core_busy_seconds(stack.load_core),
        )
        self.servers_cpu = sum(server.cpu() for server in self.servers)
        self.children_cpu = children_cpu_seconds()
        self.steal = core_steal_seconds(stack.server_core)

    def read(self, what: str) -> dict[str, float] | None:
        """{"servers_core": %, "load_core": %} of a core's time; a warning above NOISY_PERCENT."""
        stack = self.stack
        if not stack.pinned:
            return None
        wall = max(time.monotonic() - self.start, 1e-3)
        servers = (
            core_busy_seconds(stack.server_core)
            - self.busy[0]
            - (sum(server.cpu() for server in self.servers) - self.servers_cpu)
        )
        load = (
            core_busy_seconds(stack.load_core)
            - self.busy[1]
            - (children_cpu_seconds() - self.children_cpu)
        )
        steal = core_steal_seconds(stack.server_core) - self.steal
        noise = {
            "servers_core": round(max(0.0, servers) / wall * 100, 1),
            "load_core": round(max(0.0, load) / wall * 100, 1),
            "servers_core_steal": round(max(0.0, steal) / wall * 100, 1),
        }
        if max(noise.values()) > NOISY_PERCENT:
            log(
                f"warning: during {what}, other processes used {noise['servers_core']:.0f}% "
                f"of CPU {stack.server_core} (servers) and {noise['load_core']:.0f}% of CPU "
                f"{stack.load_core} (load generator), and the host took "
                f"{noise['servers_core_steal']:.0f}% of CPU {stack.server_core} (steal): "
                "its numbers are disturbed"
            )
        return noise


def noisy(noise: dict[str, float] | None) -> bool:
    return noise is not None and max(noise.values()) > NOISY_PERCENT


# -- the stack ---------------------------------------------------------------------


class Stack:
    """The servers of the benchmark, started in `directory`, pinned to `server_core`."""

    def __init__(
        self, directory: Path, tools: dict[str, str], children: Children, cores: tuple[int, int]
    ) -> None:
        self.dir = directory
        self.tools = tools
        self.children = children
        self.server_core, self.load_core = cores
        self.pinned = cores[0] != cores[1]
        self.origin_secret = secrets.token_hex(16)
        self.admin_token = secrets.token_hex(16)
        self.upstream: Server
        self.nginx: Server
        self.wardent: Server
        self.admin_url = ""
        self.sse: Server | None = None

    def wait_quiet(self, limit: float = 15.0) -> None:
        """Wait until the servers' core is idle, so that the tail of one row is not
        measured as the next row's latency: an 8 MiB upload that wrk's end cut off is
        still being written out by the upstream, which made 60-90 ms stalls in the
        light client measured next, whatever the proxy."""
        deadline = time.monotonic() + limit
        while True:
            busy, started = core_busy_seconds(self.server_core), time.monotonic()
            time.sleep(QUIET_WINDOW)
            used = (core_busy_seconds(self.server_core) - busy) / (time.monotonic() - started)
            if used < QUIET_FRACTION:
                return
            if time.monotonic() > deadline:
                log(
                    f"warning: CPU {self.server_core} stayed {used:.0%} busy between runs "
                    f"for {limit:.0f} s: the next numbers may be disturbed"
                )
                return

    def pin_server(self) -> list[str]:
        return [self.tools["taskset"], "-c", str(self.server_core)] if self.pinned else []

    def pin_load(self) -> list[str]:
        return [self.tools["taskset"], "-c", str(self.load_core)] if self.pinned else []

    # nginx ---------------------------------------------------------------
    def _nginx_conf(self, prefix: Path, port: int, body: str) -> str:
        temp = "\n".join(
            f"    {kind}_temp_path {prefix / kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        user = "user root;\n" if os.geteuid() == 0 else ""
        return f"""{user}worker_processes 1;
daemon off;
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} warn;
events {{ worker_connections 8192; }}
http {{
{temp}
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    server_tokens off;
{body}
}}
"""

    def _start_nginx(self, name: str, port: int, body: str) -> Server:
        prefix = self.dir / name
        prefix.mkdir()
        conf = prefix / "nginx.conf"
        conf.write_text(self._nginx_conf(prefix, port, body))
        log_path = prefix / "stderr.log"
        proc = self.children.start(
            [
                *self.pin_server(),
                self.tools["nginx"],
                "-p",
                str(prefix),
                "-e",
                str(prefix / "error.log"),
                "-c",
                str(conf),
            ],
            log_path,
        )
        wait_listening(port, proc, prefix / "error.log", f"nginx ({name})")
        deadline = time.monotonic() + 5
        workers = children_of(proc.pid)
        while not workers and time.monotonic() < deadline:
            time.sleep(0.05)
            workers = children_of(proc.pid)
        return Server(name, proc, port, [proc.pid, *workers])

    def start_upstream(self, body_sizes: Sequence[tuple[str, int]]) -> None:
        www = self.dir / "www"
        (www / "static").mkdir(parents=True)
        (www / "upload").mkdir()
        for name, size in body_sizes:
            (www / "static" / f"{name}.bin").write_bytes(b"x" * size)
        port = free_port()
        body = f"""    access_log off;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        client_max_body_size 0;
        location = /ok {{ default_type text/plain; return 200 "ok"; }}
        location /static/ {{ root {www}; }}
        # WebDAV PUT reads the whole request body before it answers (a `return`
        # would answer first and let the rest of the body arrive after the response).
        location /upload/ {{
            root {www};
            dav_methods PUT;
            client_body_buffer_size 16m;
            client_body_temp_path {www / "upload-temp"};
        }}
    }}"""
        self.upstream = self._start_nginx("upstream", port, body)

    def start_nginx_proxy(self) -> None:
        port = free_port()
        sse_upstream = (
            f"    upstream sse {{ server 127.0.0.1:{self.sse.port}; keepalive 64; }}\n"
            if self.sse is not None
            else ""
        )
        sse_location = (
            """        location /sse {
            proxy_pass http://sse;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 60s;
        }
"""
            if self.sse is not None
            else ""
        )
        access_log = self.dir / "nginx-proxy" / "access.log"
        body = f"""    access_log {access_log} combined buffer=256k flush=1s;
    upstream app {{
        server 127.0.0.1:{self.upstream.port};
        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 75s;
    }}
{sse_upstream}    server {{
        listen 127.0.0.1:{port} backlog=4096;
        client_max_body_size 0;
{sse_location}        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_request_buffering off;
            proxy_buffering off;
        }}
    }}"""
        self.nginx = self._start_nginx("nginx-proxy", port, body)

    # SSE -----------------------------------------------------------------
    def start_sse_server(self, period: float) -> None:
        log_path = self.dir / "sse-server.log"
        proc = self.children.start(
            [*self.pin_server(), sys.executable, __file__, "--serve-sse", str(period)],
            log_path,
            stdout_pipe=True,
        )
        assert proc.stdout is not None
        line = _readline(proc.stdout, 15)
        if not line.startswith("READY "):
            raise BenchError(f"the SSE server did not start: {line!r}\n{tail(log_path)}")
        port = int(line.split()[1])
        self.sse = Server("sse", proc, port, [proc.pid])

    # Wardent ---------------------------------------------------------------
    def wardent_config(self, name: str, upstream_url: str) -> dict[str, Any]:
        directory = self.dir / name
        return {
            "listen": {"public": "127.0.0.1:0", "admin": "127.0.0.1:0", "backlog": 4096},
            "upstream": {
                "url": upstream_url,
                "connect_timeout": "2s",
                "read_timeout": "60s",
                "max_connections": 4096,
                "max_idle": 64,
            },
            "client_ip": {"header": "CF-Connecting-IP", "trusted_proxies": ["127.0.0.1/32"]},
            "secrets": {
                "origin": {"env": ORIGIN_SECRET_ENV},
                "admin_token": {"env": ADMIN_TOKEN_ENV},
            },
            "guards": {
                "origin_secret": {"enabled": True, "header": "X-Wardent-Secret"},
                "crawlers": {"block": "builtin-ai"},
                "body_limit": {"max": "10MiB"},
                "rate_limits": [
                    # Never matched by the benchmark: its cost is the match test alone.
                    {
                        "name": "login",
                        "match": {"path_prefix": "/api/auth/login", "methods": ["POST"]},
                        "rate": "5/m",
                        "burst": 5,
                    },
                    # Matched by every request, far above what one core can serve.
                    {"name": "global", "rate": "1000000/s", "burst": 2000000},
                    {
                        "name": "reads",
                        "match": {"methods": ["GET", "HEAD"]},
                        "rate": "1000000/s",
                        "burst": 2000000,
                    },
                ],
            },
            "routes": [
                {
                    "name": "uploads",
                    "match": {"path_prefix": "/upload/", "methods": ["PUT", "POST"]},
                    "body_limit": {"max": "16MiB"},
                }
            ],
            "bans": {"store": str(directory / "bans.sqlite3")},
            "telemetry": {
                "access_log": "json",
                "access_log_path": str(directory / "access.log"),
                "log_level": "info",
            },
            "shutdown_timeout": "2s",
        }

    def start_wardent(self, name: str, upstream_url: str) -> tuple[Server, str]:
        directory = self.dir / name
        directory.mkdir()
        config = directory / "wardent.yaml"
        config.write_text(yaml.safe_dump(self.wardent_config(name, upstream_url), sort_keys=False))
        log_path = directory / "stderr.log"
        env = {ORIGIN_SECRET_ENV: self.origin_secret, ADMIN_TOKEN_ENV: self.admin_token}
        proc = self.children.start(
            [*self.pin_server(), sys.executable, "-m", "wardent", "run", "-c", str(config)],
            log_path,
            env=env,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for line in tail(log_path, 20000).splitlines():
                if '"wardent serving"' in line:
                    info = json.loads(line)
                    port = int(info["public"].rpartition(":")[2])
                    hot_path = info.get("hot_path", "?")
                    if hot_path != "compiled":
                        log(
                            f"warning: {name} runs its request path from source "
                            f"({info.get('hot_path_why', '?')}): about a third more CPU "
                            "a request than the build `pip install .` makes"
                        )
                    server = Server(name, proc, port, [proc.pid], hot_path)
                    return server, f"http://{info['admin']}"
            if proc.poll() is not None:
                raise BenchError(f"wardent exited with {proc.returncode}:\n{tail(log_path)}")
            time.sleep(0.05)
        raise BenchError(f"wardent did not log 'wardent serving' within 30 s:\n{tail(log_path)}")

    def start_main_wardent(self) -> None:
        self.wardent, self.admin_url = self.start_wardent("wardent", self.upstream.url)
        # Bans on, with a few in the table (an operator's network ban among them:
        # it puts the prefix walk on every lookup).
        for target in ("203.0.113.7", "203.0.113.8", "2001:db8::/48", "203.0.113.128/25"):
            self.admin_post("/bans", {"target": target, "duration": "1h", "reason": "bench"})

    def admin_post(self, path: str, body: dict[str, Any]) -> None:
        request = urllib.request.Request(
            self.admin_url + path,
            data=json.dumps(body).encode(),
            headers={
                "Authorization": f"Bearer {self.admin_token}",
                "Content-Type": "application/json",
            },
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()

    def headers(self, client_ip: str | None = CLIENT_IP) -> list[str]:
        found = [f"X-Wardent-Secret: {self.origin_secret}", f"User-Agent: {BROWSER_UA}"]
        if client_ip is not None:
            found.append(f"CF-Connecting-IP: {client_ip}")
        return found

    def truncate_logs(self) -> None:
        """Access logs grow by ~100 MB a main row: emptied between rows (both append)."""
        for path in (self.dir / "wardent" / "access.log", self.dir / "nginx-proxy" / "access.log"):
            with contextlib.suppress(OSError):
                os.truncate(path, 0)


def _readline(stream: IO[bytes], timeout: float) -> str:
    """One line from a child's stdout, or "" after `timeout` seconds."""
    lines: queue.Queue[bytes] = queue.Queue()
    thread = threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True)
    thread.start()
    try:
        return lines.get(timeout=timeout).decode(errors="replace").strip()
    except queue.Empty:
        return ""


# -- wrk ------------------------------------------------------------------------

_DONE = r"""
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests": %.0f, "duration_us": %.0f, "bytes": %.0f, "connect": %.0f, ' ..
    '"read": %.0f, "write": %.0f, "status": %.0f, "timeout": %.0f, "p50": %.0f, ' ..
    '"p75": %.0f, "p90": %.0f, "p99": %.0f, "p999": %.0f, "max": %.0f, "mean": %.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(75),
    latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end
"""


def lua_get() -> str:
    return "-- GET with the command line's headers, one request built once\n" + _DONE


def lua_upload(size: int) -> str:
    return f'wrk.method = "PUT"\nwrk.body = string.rep("x", {size})\n' + _DONE


def lua_paced(rate: float) -> str:
    """`rate` requests a second in all, whatever the connections: each response waits for
    the next free slot of a 1/rate grid (wrk's delay() is in whole ms; the grid is not)."""
    return (
        f"""local ffi = require("ffi")
ffi.cdef[[
typedef struct {{ long tv_sec; long tv_nsec; }} bench_timespec;
int clock_gettime(int clock_id, bench_timespec *tp);
]]
local now_ts = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, now_ts)  -- CLOCK_MONOTONIC
  return tonumber(now_ts.tv_sec) * 1000 + tonumber(now_ts.tv_nsec) / 1e6
end
local gap = {1000 / rate:.6f}
local slot = 0
function delay()
  local now = now_ms()
  if slot < now then slot = now end
  slot = slot + gap
  return math.floor(slot - now)
end
"""
        + _DONE
    )


def lua_flood(limit: int, distinct: bool, first_octet: int = 10) -> str:
    """`limit` requests, then FLOOD_DONE; with `distinct`, each from a new client IP
    (first_octet.x.y.z)."""
    return (
        f"""local limit = {limit}
local first_octet = {first_octet}
local distinct = {"true" if distinct else "false"}
local sent = 0
local answered = 0
local headers = wrk.headers
function request()
  sent = sent + 1
  if distinct then
    local i = sent
    if i > limit then i = limit end
    headers["CF-Connecting-IP"] = string.format("%d.%d.%d.%d", first_octet,
      math.floor(i / 65536) % 256, math.floor(i / 256) % 256, i % 256)
  end
  return wrk.format(nil, nil, headers)
end
function response(status, hdrs, body)
  answered = answered + 1
  if answered == limit then
    -- The harness stops wrk on this line (SIGINT), so the duration is the flood's own.
    io.write("FLOOD_DONE\\n")
    io.flush()
  end
end
"""
        + _DONE
    )


@dataclass
class WrkResult:
    requests: int
    seconds: float
    bytes: int
    errors: dict[str, int]
    latency_us: dict[str, float]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def ms(self, key: str) -> float:
        return round(self.latency_us[key] / 1000, 3)


class Wrk:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.scripts = stack.dir / "lua"
        self.scripts.mkdir()
        self._count = 0

    def script(self, text: str) -> Path:
        self._count += 1
        path = self.scripts / f"s{self._count}.lua"
        path.write_text(text)
        return path

    def args(
        self, url: str, connections: int, duration: int, script: Path, headers: Sequence[str]
    ) -> list[str]:
        args = [*self.stack.pin_load(), self.stack.tools["wrk"], "-t1", f"-c{connections}"]
        args += [f"-d{duration}s", "--latency", "--timeout", "10s", "-s", str(script)]
        for header in headers:
            args += ["-H", header]
        return [*args, url]

    def start(
        self, url: str, connections: int, duration: int, script: Path, headers: Sequence[str]
    ) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.args(url, connections, duration, script, headers),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def finish(self, proc: subprocess.Popen[str], timeout: float) -> WrkResult:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise BenchError(f"wrk did not finish within {timeout:.0f} s") from None
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        return _parse_wrk(out, err, proc.returncode)

    def finish_at(self, proc: subprocess.Popen[str], marker: str, timeout: float) -> WrkResult:
        """Stops wrk once its script prints `marker`: on SIGINT wrk reports what it has,
        with the duration until then (thread:stop() would idle out the whole -d)."""
        stdout = proc.stdout
        assert stdout is not None and proc.stderr is not None
        lines: queue.Queue[str] = queue.Queue()

        def pump() -> None:
            for line in stdout:
                lines.put(line)
            lines.put("")

        threading.Thread(target=pump, daemon=True).start()
        out: list[str] = []
        deadline = time.monotonic() + timeout
        signalled = False
        try:
            while True:
                try:
                    line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
                except queue.Empty:
                    raise BenchError(f"wrk did not finish within {timeout:.0f} s") from None
                if not line:
                    break
                out.append(line)
                if not signalled and line.strip() == marker:
                    proc.send_signal(signal.SIGINT)
                    signalled = True
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        return _parse_wrk("".join(out), proc.stderr.read(), proc.returncode)

    def run(
        self,
        url: str,
        connections: int,
        duration: int,
        script: Path,
        headers: Sequence[str],
    ) -> WrkResult:
        proc = self.start(url, connections, duration, script, headers)
        return self.finish(proc, duration + 60)


def _parse_wrk(out: str, err: str, code: int | None) -> WrkResult:
    for line in out.splitlines():
        if line.startswith("WRK_RESULT "):
            data = json.loads(line.split(" ", 1)[1])
            errors = {k: int(data[k]) for k in ("connect", "read", "write", "status", "timeout")}
            latency = {k: float(data[k]) for k in ("p50", "p75", "p90", "p99", "p999", "max")}
            return WrkResult(
                requests=int(data["requests"]),
                seconds=data["duration_us"] / 1e6,
                bytes=int(data["bytes"]),
                errors=errors,
                latency_us=latency,
            )
    raise BenchError(f"wrk printed no result (exit {code}):\n{out}\n{err}")


# -- the rows --------------------------------------------------------------------


class Bench:
    def __init__(self, stack: Stack, plan: Plan) -> None:
        self.stack = stack
        self.plan = plan
        self.wrk = Wrk(stack)
        self.get_script = self.wrk.script(lua_get())
        # Every wrk run's disturbance, rounds the report does not show included: a
        # disturbed non-median round moved a median and a within-round ratio too.
        self.noise_log: list[dict[str, Any]] = []

    def target(self, name: str) -> tuple[Server, Server | None]:
        """The server under test and, for a proxy, its upstream."""
        stack = self.stack
        if name == "direct":
            return stack.upstream, None
        if name == "nginx":
            return stack.nginx, stack.upstream
        return stack.wardent, stack.upstream

    def measure(
        self,
        name: str,
        path: str,
        *,
        connections: int,
        duration: int,
        script: Path | None = None,
        warmup: int = 0,
        headers: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        server, upstream = self.target(name)
        url = server.url + path
        script = script or self.get_script
        headers = self.stack.headers() if headers is None else headers
        self.stack.truncate_logs()
        self.stack.wait_quiet()
        if warmup:
            self.wrk.run(url, connections, warmup, script, headers)
        servers = [server] if upstream is None else [server, upstream]
        meter = NoiseMeter(self.stack, servers)
        cpu = server.cpu()
        switches = preemptions(server.pids)
        upstream_cpu = upstream.cpu() if upstream else 0.0
        result = self.wrk.run(url, connections, duration, script, headers)
        cpu = server.cpu() - cpu
        switches = preemptions(server.pids) - switches
        upstream_cpu = upstream.cpu() - upstream_cpu if upstream else 0.0
        what = f"{name} {path}, {connections} connections"
        noise = meter.read(what)
        self.noise_log.append({"what": what, "other_cpu_percent": noise})
        per_10k = 10_000 / result.requests if result.requests else 0.0
        # How busy the servers' core was with the proxy and its upstream: at a paced
        # rate, what the tail latency follows (loadtests/README.md, "What the
        # half-load p99 is made of").
        busy = (cpu + upstream_cpu) / result.seconds * 100 if result.seconds else 0.0
        row: dict[str, Any] = {
            "target": name,
            "connections": connections,
            "seconds": round(result.seconds, 3),
            "requests": result.requests,
            "rps": round(result.rps, 1),
            "mib_per_s": round(result.bytes / MIB / result.seconds, 2) if result.seconds else 0,
            "p50_ms": result.ms("p50"),
            "p75_ms": result.ms("p75"),
            "p90_ms": result.ms("p90"),
            "p99_ms": result.ms("p99"),
            "p999_ms": result.ms("p999"),
            "max_ms": result.ms("max"),
            "errors": result.errors,
            "cpu_s_per_10k": round(cpu * per_10k, 4),
            "upstream_cpu_s_per_10k": round(upstream_cpu * per_10k, 4) if upstream else None,
            "preempted_per_request": round(switches / result.requests, 3) if result.requests else 0,
            "servers_core_busy_percent": round(busy, 1),
            "rss_mib": round(server.rss(), 1),
            "other_cpu_percent": noise,
        }
        bad = sum(result.errors.values())
        if bad:
            log(f"warning: {name} {path} had errors: {result.errors}")
        return row

    def rounds(
        self,
        what: str,
        run: Callable[[str, int], dict[str, Any]],
        names: Sequence[str] = TARGETS,
    ) -> list[dict[str, Any]]:
        """`plan.rounds` rounds of `run(name, round index)` for every name (the
        targets, by default), the order reversed every other round.

        A virtual machine's speed drifts by tens of percent within a minute (the
        host's other tenants; see steal time): one run of each target, one after the
        other, compares two different machines. Ratios are therefore taken within a
        round, between runs seconds apart, and the median round is reported.
        """
        out = []
        for index in range(self.plan.rounds):
            order = names if index % 2 == 0 else tuple(reversed(names))
            found: dict[str, Any] = {}
            for name in order:
                log(f"{what}: {name}, round {index + 1} of {self.plan.rounds}")
                found[name] = run(name, index)
            out.append({name: found[name] for name in names})
        return out

    # main table -------------------------------------------------------------
    def main_table(self) -> dict[str, Any]:
        plan = self.plan
        rounds = self.rounds(
            f"main, {plan.connections} connections, {plan.duration} s",
            lambda name, _: self.measure(
                name,
                "/ok",
                connections=plan.connections,
                duration=plan.duration,
                warmup=plan.warmup,
            ),
        )
        rows = {name: _median_by([r[name] for r in rounds], "rps") for name in TARGETS}

        def within(key: str, over: str) -> float:
            return _median([_ratio(r["wardent"][key], r[over][key]) for r in rounds])

        return {
            "connections": plan.connections,
            "duration_s": plan.duration,
            "rounds": [
                {
                    name: {key: r[name][key] for key in ("rps", "p99_ms", "cpu_s_per_10k")}
                    for name in TARGETS
                }
                for r in rounds
            ],
            "rows": rows,
            "ratios": {
                "wardent_over_nginx_rps": within("rps", "nginx"),
                "wardent_over_direct_rps": within("rps", "direct"),
                "wardent_over_nginx_cpu_per_request": within("cpu_s_per_10k", "nginx"),
                "wardent_over_nginx_p99": within("p99_ms", "nginx"),
                "wardent_over_direct_p99": within("p99_ms", "direct"),
                "wardent_over_nginx_rps_each_round": [
                    _ratio(r["wardent"]["rps"], r["nginx"]["rps"]) for r in rounds
                ],
            },
        }

    def half_load(self, wardent_peak: float, nginx_peak: float) -> dict[str, Any]:
        """Every target at half of Wardent's peak rate: what Wardent adds to p99 latency.

        And the control: nginx at half of *its own* peak against the upstream at that
        rate. wrk paces in whole milliseconds, so each millisecond's requests arrive
        together and the added p99 follows how busy the servers' core is, which
        "half of a proxy's own peak" fixes whatever the proxy's speed: the control
        shows what that load costs a proxy written in C on this machine."""
        plan = self.plan
        connections = plan.connections

        def paced(rate: float, names: Sequence[str]) -> list[dict[str, Any]]:
            script = self.wrk.script(lua_paced(rate))
            return self.rounds(
                f"half load, ~{rate:,.0f} req/s offered, {plan.short} s",
                lambda name, _: self.measure(
                    name, "/ok", connections=connections, duration=plan.short, script=script
                ),
                names=names,
            )

        def added_p99(rounds: list[dict[str, Any]], name: str) -> list[float]:
            return [round(r[name]["p99_ms"] - r["direct"]["p99_ms"], 3) for r in rounds]

        offered = max(wardent_peak / 2, 1.0)
        rounds = paced(offered, TARGETS)
        rows = {name: _median_by([r[name] for r in rounds], "p99_ms") for name in TARGETS}
        added = {name: added_p99(rounds, name) for name in ("nginx", "wardent")}
        control_offered = max(nginx_peak / 2, 1.0)
        control = paced(control_offered, ("direct", "nginx"))
        control_added = added_p99(control, "nginx")
        return {
            "offered_rps": round(offered, 1),
            "connections": connections,
            "rows": rows,
            # Within each round (the direct run seconds apart), then the median round.
            "added_p99_ms_over_direct": {name: _median(each) for name, each in added.items()},
            "added_p99_ms_each_round": added,
            "nginx_at_its_own_half_peak": {
                "offered_rps": round(control_offered, 1),
                "rows": {
                    name: _median_by([r[name] for r in control], "p99_ms")
                    for name in ("direct", "nginx")
                },
                "added_p99_ms_over_direct": _median(control_added),
                "added_p99_ms_each_round": control_added,
            },
        }

    def sweep(self) -> list[dict[str, Any]]:
        out = []
        for connections in self.plan.sweep:
            entry: dict[str, Any] = {"connections": connections}
            for name in TARGETS:
                log(f"sweep: {name}, {connections} connections, {self.plan.short} s")
                entry[name] = self.measure(
                    name, "/ok", connections=connections, duration=self.plan.short
                )
            entry["wardent_over_nginx_rps"] = _ratio(entry["wardent"]["rps"], entry["nginx"]["rps"])
            out.append(entry)
        return out

    def bodies(self) -> list[dict[str, Any]]:
        out = []
        connections = self.plan.body_connections
        for direction in ("down", "up"):
            for label, size in self.plan.bodies:
                entry: dict[str, Any] = {"body": label, "bytes": size, "direction": direction}
                if direction == "down":
                    path, script = f"/static/{label}.bin", self.get_script
                else:
                    path, script = f"/upload/{label}.bin", self.wrk.script(lua_upload(size))
                for name in TARGETS:
                    log(f"bodies: {label} {direction}, {name}, {self.plan.short} s")
                    row = self.measure(
                        name,
                        path,
                        connections=connections,
                        duration=self.plan.short,
                        script=script,
                    )
                    row["body_mib_per_s"] = round(row["rps"] * size / MIB, 2)
                    entry[name] = row
                entry["wardent_over_nginx_rps"] = _ratio(
                    entry["wardent"]["rps"], entry["nginx"]["rps"]
                )
                out.append(entry)
        return out

    # SSE ------------------------------------------------------------------
    def sse(self, wardent_sse: Server) -> dict[str, Any]:
        stack = self.stack
        assert stack.sse is not None
        targets = {
            "direct": (stack.sse, stack.sse.url + "/sse"),
            "nginx": (stack.nginx, stack.nginx.url + "/sse"),
            "wardent": (wardent_sse, wardent_sse.url + "/sse"),
        }
        out: dict[str, Any] = {"streams": self.plan.sse_streams, "period_ms": 100}
        for name, (server, url) in targets.items():
            log(f"sse: {name}, {self.plan.sse_streams} streams, {self.plan.sse_window} s")
            out[name] = self.sse_run(server, url)
        return out

    def sse_run(self, server: Server, url: str) -> dict[str, Any]:
        stack = self.stack
        plan = self.plan
        config = {
            "url": url,
            "streams": plan.sse_streams,
            "window": plan.sse_window,
            "headers": stack.headers(client_ip=None),
        }
        proc = subprocess.Popen(
            [*stack.pin_load(), sys.executable, __file__, "--sse-client", json.dumps(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            assert proc.stdout is not None
            rss_before = server.rss()
            line = _readline(proc.stdout, 60)
            if line != "CONNECTED":
                raise BenchError(f"the SSE client failed: {line!r} {_stderr(proc)}")
            cpu = server.cpu()
            rss_connected = server.rss()
            line = _readline(proc.stdout, plan.sse_window + 30)
            if line != "WINDOW_END":
                raise BenchError(f"the SSE client failed: {line!r} {_stderr(proc)}")
            cpu = server.cpu() - cpu
            rss_after = server.rss()
            line = _readline(proc.stdout, 30)
            result: dict[str, Any] = json.loads(line)
        except json.JSONDecodeError:
            raise BenchError(f"the SSE client printed no result: {_stderr(proc)}") from None
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
            if proc.stderr is not None:
                proc.stderr.close()
        result.update(
            rss_before_mib=round(rss_before, 1),
            rss_streaming_mib=round(max(rss_connected, rss_after), 1),
            cpu_percent_of_core=round(cpu / plan.sse_window * 100, 1),
        )
        return result

    # flood ------------------------------------------------------------------
    def flood(self, wardent_peak: float) -> dict[str, Any]:
        """N requests, one from each of N new client IPs, with a well-behaved client beside;
        and the control: the same N from one IP. In `plan.rounds` rounds, the order
        alternating and every round's flood from IPs never seen before, so that the
        comparison is between runs seconds apart (see `rounds`)."""
        stack = self.stack
        plan = self.plan
        wardent = stack.wardent
        count = plan.flood_ips
        # The good client runs inside the flood: for about as long as the flood
        # would last at Wardent's peak rate (it lasts longer with cold IPs).
        good_seconds = max(1, int(count / max(wardent_peak, 1.0) * 0.8))
        good_headers = stack.headers(client_ip=GOOD_CLIENT_IP)
        url = wardent.url + "/ok"

        # Paced, as a person's browser is: its latency is that of a light client, and
        # enough samples make its p99 steady.
        good_script = self.wrk.script(lua_paced(plan.good_rate))

        def good_client() -> WrkResult:
            return self.wrk.run(url, plan.good_connections, good_seconds, good_script, good_headers)

        def with_background(distinct: bool, first_octet: int) -> dict[str, Any]:
            stack.truncate_logs()
            stack.wait_quiet()
            meter = NoiseMeter(stack, servers)
            headers = stack.headers(client_ip=None if distinct else CONTROL_IP)
            script = self.wrk.script(lua_flood(count, distinct, first_octet))
            cap = 120 if not plan.quick else 30
            cpu = wardent.cpu()
            background = self.wrk.start(url, plan.flood_connections, cap, script, headers)
            try:
                time.sleep(0.2)
                good = good_client()
            except BaseException:
                background.kill()
                background.wait()
                raise
            load = self.wrk.finish_at(background, "FLOOD_DONE", cap + 60)
            cpu = wardent.cpu() - cpu
            return {
                "requests": load.requests,
                "rps": round(load.rps, 1),
                "p99_ms": load.ms("p99"),
                "errors": load.errors,
                "cpu_s_per_10k": round(cpu * 10_000 / load.requests, 4) if load.requests else 0.0,
                "good_client": good_row(good),
                "other_cpu_percent": meter.read(
                    f"the flood row's {'flood' if distinct else 'control'}"
                ),
            }

        def good_row(result: WrkResult) -> dict[str, Any]:
            return {
                "rps": round(result.rps, 1),
                "p50_ms": result.ms("p50"),
                "p99_ms": result.ms("p99"),
                "errors": result.errors,
            }

        servers = [wardent, stack.upstream]
        stack.truncate_logs()
        log(f"flood: the good client alone, {good_seconds} s")
        stack.wait_quiet()
        meter = NoiseMeter(stack, servers)
        alone = good_row(good_client())
        alone_noise = meter.read("the flood row's good client alone")
        rss_before = wardent.rss()
        # The control is `count` requests from one IP; the flood, from `count` IPs:
        # 10.x.y.z in round 1, 11.x.y.z in round 2, so every flood's IPs are new.
        rounds = self.rounds(
            f"flood, {count:,} requests",
            lambda name, index: with_background(name == "flood", 10 + index),
            names=("control", "flood"),
        )
        for found in rounds:
            found["p99_flood_over_control"] = _ratio(
                found["flood"]["good_client"]["p99_ms"], found["control"]["good_client"]["p99_ms"]
            )
        rss_after = wardent.rss()
        each = [r["p99_flood_over_control"] for r in rounds]
        median = _median_by(rounds, "p99_flood_over_control")
        flood, control = median["flood"], median["control"]
        return {
            "distinct_ips": count,
            "rounds": len(rounds),
            "connections": plan.flood_connections,
            "flood": {k: v for k, v in flood.items() if k not in ("good_client",)},
            "control": {k: v for k, v in control.items() if k not in ("good_client",)},
            "rss_before_mib": round(rss_before, 1),
            "rss_after_mib": round(rss_after, 1),
            "other_cpu_percent": {
                "alone": alone_noise,
                **{
                    f"{name}_{index + 1}": r[name]["other_cpu_percent"]
                    for index, r in enumerate(rounds)
                    for name in ("control", "flood")
                },
            },
            "good_client": {
                "connections": plan.good_connections,
                "offered_rps": plan.good_rate,
                "seconds": good_seconds,
                "alone": alone,
                "beside_control": control["good_client"],
                "beside_flood": flood["good_client"],
                "p99_flood_over_alone": _ratio(flood["good_client"]["p99_ms"], alone["p99_ms"]),
                # The median of the rounds' own ratios (the round shown above).
                "p99_flood_over_control": _median(each),
                "p99_flood_over_control_each_round": each,
            },
        }


def _ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else 0.0


def _median(values: Sequence[float]) -> float:
    """The lower middle value of an even count, as `_median_by` picks its row."""
    return round(statistics.median_low(values), 3) if values else 0.0


def _median_by(rows: Sequence[dict[str, Any]], key: str) -> dict[str, Any]:
    """The row whose `key` is the median (the lower middle one of an even count)."""
    ordered = sorted(rows, key=lambda row: float(row[key]))
    return ordered[(len(ordered) - 1) // 2]


def _stderr(proc: subprocess.Popen[bytes]) -> str:
    if proc.poll() is None:
        proc.kill()
    _, err = proc.communicate(timeout=10)
    return err.decode(errors="replace")[-2000:]


# -- the SSE server and client (run by the harness in processes of their own) ----------


def serve_sse(period: float) -> None:
    """A chunked text/event-stream to every client: `data: SEQ SENT_NS` every `period` s."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        clients: set[asyncio.Transport] = set()

        class Connection(asyncio.Protocol):
            def __init__(self) -> None:
                self.transport: asyncio.Transport | None = None
                self.head = b""

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                # uvloop's transports implement asyncio.Transport without subclassing it.
                self.transport = cast(asyncio.Transport, transport)

            def data_received(self, data: bytes) -> None:
                if self.transport is None or self.transport in clients:
                    return
                self.head += data
                if b"\r\n\r\n" in self.head:
                    self.transport.write(
                        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                        b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"
                    )
                    clients.add(self.transport)

            def connection_lost(self, exc: Exception | None) -> None:
                if self.transport is not None:
                    clients.discard(self.transport)

        server = await loop.create_server(Connection, "127.0.0.1", 0, backlog=4096)
        port = server.sockets[0].getsockname()[1]
        print(f"READY {port}", flush=True)
        seq = 0
        next_at = loop.time()
        while True:
            next_at += period
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            seq += 1
            payload = b"id: %d\ndata: %d %d\n\n" % (seq, seq, time.monotonic_ns())
            chunk = b"%x\r\n%s\r\n" % (len(payload), payload)
            for transport in list(clients):
                transport.write(chunk)

    _run_loop(main())


def sse_client(config: dict[str, Any]) -> None:
    """Opens the streams, prints CONNECTED once each has an event, WINDOW_END after the
    measured window, then the result as one JSON line."""
    import httptools

    url: str = config["url"]
    host_port, _, path = url.removeprefix("http://").partition("/")
    host, _, port_text = host_port.rpartition(":")
    streams: int = config["streams"]
    window: float = config["window"]
    base_headers = "".join(f"{header}\r\n" for header in config["headers"])

    class Stream(asyncio.Protocol):
        def __init__(self, index: int) -> None:
            self.index = index
            self.parser = httptools.HttpResponseParser(self)
            self.buffer = b""
            self.events: list[tuple[int, int]] = []  # (seq, latency ns)
            self.status = 0
            self.first: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.transport: asyncio.BaseTransport | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            ip = f"10.200.{self.index // 256 % 256}.{self.index % 256}"
            request = (
                f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nAccept: text/event-stream\r\n"
                f"CF-Connecting-IP: {ip}\r\n{base_headers}\r\n"
            )
            transport.write(request.encode())  # type: ignore[attr-defined]

        def data_received(self, data: bytes) -> None:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError as error:
                self._fail(f"bad response: {error}")

        def on_headers_complete(self) -> None:
            self.status = self.parser.get_status_code()
            if self.status != 200:
                self._fail(f"status {self.status}")

        def on_body(self, body: bytes) -> None:
            now = time.monotonic_ns()
            self.buffer += body
            while b"\n\n" in self.buffer:
                event, self.buffer = self.buffer.split(b"\n\n", 1)
                for line in event.split(b"\n"):
                    if line.startswith(b"data: "):
                        seq, sent = line[6:].split()
                        self.events.append((int(seq), now - int(sent)))
                if not self.first.done():
                    self.first.set_result(None)

        def connection_lost(self, exc: Exception | None) -> None:
            self._fail("connection closed")

        def _fail(self, why: str) -> None:
            if not self.first.done():
                self.first.set_exception(RuntimeError(why))

    async def open_stream(index: int, gate: asyncio.Semaphore) -> Stream | str:
        loop = asyncio.get_running_loop()
        async with gate:
            try:
                _, stream = await asyncio.wait_for(
                    loop.create_connection(lambda: Stream(index), host, int(port_text)), 10
                )
                await asyncio.wait_for(stream.first, 15)
            except (OSError, RuntimeError, TimeoutError) as error:
                return str(error) or type(error).__name__
        return stream

    async def main() -> dict[str, Any]:
        gate = asyncio.Semaphore(200)
        opened = await asyncio.gather(*(open_stream(i, gate) for i in range(streams)))
        ok = [s for s in opened if isinstance(s, Stream)]
        failures = [s for s in opened if isinstance(s, str)]
        if not ok:
            print(f"NO_STREAMS {failures[:3]}", flush=True)
            return {}
        print("CONNECTED", flush=True)
        start_seq = max(seq for s in ok for seq, _ in s.events)
        await asyncio.sleep(window)
        print("WINDOW_END", flush=True)
        end_seq = max(seq for s in ok for seq, _ in s.events)
        # Events sent before the window ended may still be on their way.
        await asyncio.sleep(min(1.0, window / 3))
        wanted = set(range(start_seq + 1, end_seq + 1))
        latencies: list[int] = []
        complete = 0
        received = 0
        for s in ok:
            seen = {seq for seq, _ in s.events if seq in wanted}
            received += len(seen)
            complete += seen == wanted
            latencies.extend(lat for seq, lat in s.events if seq in wanted)
            if s.transport is not None:
                s.transport.close()
        latencies.sort()
        return {
            "streams": streams,
            "connected": len(ok),
            "failed": len(failures),
            "failures": sorted(set(failures))[:5],
            "events_per_stream": len(wanted),
            "events_expected": len(wanted) * streams,
            "events_received": received,
            "complete_streams": complete,
            "latency_p50_ms": round(_pick(latencies, 0.50) / 1e6, 3),
            "latency_p99_ms": round(_pick(latencies, 0.99) / 1e6, 3),
            "latency_max_ms": round(latencies[-1] / 1e6, 3) if latencies else 0.0,
        }

    result = _run_loop(main())
    print(json.dumps(result), flush=True)


def _pick(values: Sequence[int], fraction: float) -> float:
    if not values:
        return 0.0
    return float(values[min(len(values) - 1, int(len(values) * fraction))])


def _run_loop(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency of Wardent
        return asyncio.run(coro)
    return uvloop.run(coro)


# -- the report -----------------------------------------------------------------------


def _noise_text(noise: dict[str, float] | None) -> str:
    if noise is None:
        return "-"
    text = f"{noise['servers_core']:.0f}% / {noise['load_core']:.0f}%"
    steal = noise.get("servers_core_steal", 0.0)
    return f"{text}, steal {steal:.0f}%" if steal >= 1 else text


def _num(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=True)]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    for row in rows:
        lines.append(
            "| " + " | ".join(str(c).rjust(w) for c, w in zip(row, widths, strict=True)) + " |"
        )
    return "\n".join(lines)


_LABELS = {"direct": "upstream directly", "nginx": "nginx proxy", "wardent": "Wardent (all guards)"}


def report(results: dict[str, Any]) -> str:
    out: list[str] = []
    meta = results["meta"]
    out.append(
        f"Wardent benchmark, {meta['date']}, {meta['mode']} mode, {meta['cpus']} CPUs, "
        f"pinning: {meta['pinning']}, Wardent's request path: "
        f"{meta.get('wardent_hot_path', '?')}"
    )
    main = results["main"]
    out.append(
        f'\nMain: tiny response (`return 200 "ok"`), wrk -t1 -c{main["connections"]} '
        f"-d{main['duration_s']}s, {len(main.get('rounds', [])) or 1} interleaved rounds "
        "(each target's median round)"
    )
    rows = []
    for name in TARGETS:
        r = main["rows"][name]
        upstream_cpu = r["upstream_cpu_s_per_10k"]
        rows.append(
            [
                _LABELS[name],
                _num(r["rps"]),
                f"{r['p50_ms']:.2f}",
                f"{r['p99_ms']:.2f}",
                f"{r['p999_ms']:.2f}",
                f"{r['cpu_s_per_10k']:.3f}",
                "-" if upstream_cpu is None else f"{upstream_cpu:.3f}",
                f"{r['preempted_per_request']:.2f}",
                f"{r['rss_mib']:.1f}",
                str(sum(r["errors"].values())),
                _noise_text(r["other_cpu_percent"]),
            ]
        )
    out.append(
        _table(
            [
                "target",
                "req/s",
                "p50 ms",
                "p99 ms",
                "p99.9 ms",
                "CPU s/10k req",
                "upstream CPU s/10k",
                "preempted/req",
                "RSS MiB",
                "errors",
                "other CPU",
            ],
            rows,
        )
    )
    out.append(
        "(CPU: /proc/PID/stat utime+stime of the process under test, all its threads; "
        "upstream CPU apart. Preempted: its involuntary context switches per request, "
        "from /proc/PID/task/*/status. Other CPU: the servers' / the load generator's core used by "
        "processes outside the benchmark during the run; above "
        f"{NOISY_PERCENT:.0f}% the run was disturbed.)"
    )
    ratios = main["ratios"]
    out.append(
        f"\nWardent/nginx: req/s {ratios['wardent_over_nginx_rps']:.2f}, "
        f"CPU per request {ratios['wardent_over_nginx_cpu_per_request']:.2f}, "
        f"p99 {ratios['wardent_over_nginx_p99']:.2f}.  "
        f"Wardent/direct: req/s {ratios['wardent_over_direct_rps']:.2f}, "
        f"p99 {ratios['wardent_over_direct_p99']:.2f}. (Medians of the ratios within each "
        "round; Wardent/nginx req/s round by round: "
        + ", ".join(f"{ratio:.2f}" for ratio in ratios.get("wardent_over_nginx_rps_each_round", []))
        + ")"
    )

    half = results.get("half_load")
    if half:
        out.append(
            f"\nHalf of Wardent's peak: ~{_num(half['offered_rps'])} req/s offered, "
            f"{half['connections']} connections"
        )
        control = half["nginx_at_its_own_half_peak"]
        rows = []

        def half_row(label: str, r: dict[str, Any], added: float | None) -> list[str]:
            return [
                label,
                _num(r["rps"]),
                f"{r['p50_ms']:.3f}",
                f"{r['p99_ms']:.3f}",
                f"{r['p999_ms']:.3f}",
                "-" if added is None else f"{added:+.3f}",
                f"{r['servers_core_busy_percent']:.0f}%",
            ]

        for name in TARGETS:
            rows.append(
                half_row(
                    _LABELS[name], half["rows"][name], half["added_p99_ms_over_direct"].get(name)
                )
            )
        rows.append(
            half_row(
                f"nginx at {_num(control['offered_rps'])}",
                control["rows"]["nginx"],
                control["added_p99_ms_over_direct"],
            )
        )
        out.append(
            _table(
                ["target", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "added p99 ms", "core busy"],
                rows,
            )
        )
        each = half["added_p99_ms_each_round"]["wardent"]
        out.append(
            "(Each target's median round; added p99: the median of the target's p99 less the "
            "direct upstream's within each round, Wardent's: "
            + ", ".join(f"{value:+.2f}" for value in each)
            + " ms. Last row, the control: nginx at half of its own peak, "
            + ", ".join(f"{value:+.2f}" for value in control["added_p99_ms_each_round"])
            + " ms. Core busy: the servers' core's time used by the target and its upstream.)"
        )

    sweep = results.get("sweep")
    if sweep:
        out.append("\nConcurrency sweep: req/s (p99 ms)")
        rows = [
            [
                str(entry["connections"]),
                *(f"{_num(entry[name]['rps'])} ({entry[name]['p99_ms']:.2f})" for name in TARGETS),
                f"{entry['wardent_over_nginx_rps']:.2f}",
            ]
            for entry in sweep
        ]
        out.append(_table(["connections", "direct", "nginx", "Wardent", "W/nginx"], rows))

    bodies = results.get("bodies")
    if bodies:
        connections = bodies[0]["direct"]["connections"]
        out.append(
            f"\nBodies, {connections} connections: req/s, MiB/s of body, p99 ms "
            "(down: GET of a static file; up: PUT of the body)"
        )
        rows = [
            [
                f"{entry['body']} {entry['direction']}",
                *(
                    f"{_num(entry[name]['rps'])}, {_num(entry[name]['body_mib_per_s'])}, "
                    f"{entry[name]['p99_ms']:.1f}"
                    for name in TARGETS
                ),
                f"{entry['wardent_over_nginx_rps']:.2f}",
            ]
            for entry in bodies
        ]
        out.append(_table(["body", "direct", "nginx", "Wardent", "W/nginx"], rows))

    sse = results.get("sse")
    if sse:
        out.append(f"\nSSE fan-out: {sse['streams']} streams, an event every {sse['period_ms']} ms")
        rows = []
        for name in TARGETS:
            r = sse[name]
            rows.append(
                [
                    _LABELS[name],
                    f"{r['connected']}/{r['streams']}",
                    f"{r['complete_streams']}",
                    f"{_num(r['events_received'])}/{_num(r['events_expected'])}",
                    f"{r['latency_p50_ms']:.2f}",
                    f"{r['latency_p99_ms']:.2f}",
                    f"{r['rss_streaming_mib']:.1f}",
                    f"{r['cpu_percent_of_core']:.1f}",
                ]
            )
        out.append(
            _table(
                [
                    "target",
                    "open",
                    "complete",
                    "events",
                    "p50 ms",
                    "p99 ms",
                    "RSS MiB",
                    "CPU % core",
                ],
                rows,
            )
        )

    flood = results.get("flood")
    if flood:
        good = flood["good_client"]
        out.append(
            f"\nFlood: {_num(flood['distinct_ips'])} requests, each from a new client IP, "
            f"{flood['connections']} connections, through Wardent; a well-behaved client "
            f"(one IP, {good['offered_rps']:.0f} req/s on {good['connections']} connections) "
            f"measured alongside; {flood.get('rounds', 1)} interleaved rounds, each with new "
            "IPs (the median round)"
        )
        out.append(
            _table(
                [
                    "",
                    "req/s",
                    "CPU s/10k req",
                    "RSS before MiB",
                    "RSS after all rounds MiB",
                    "errors",
                ],
                [
                    [
                        "flood (distinct IPs)",
                        _num(flood["flood"]["rps"]),
                        f"{flood['flood']['cpu_s_per_10k']:.3f}",
                        f"{flood['rss_before_mib']:.1f}",
                        f"{flood['rss_after_mib']:.1f}",
                        str(sum(flood["flood"]["errors"].values())),
                    ],
                    [
                        "control (one IP)",
                        _num(flood["control"]["rps"]),
                        f"{flood['control']['cpu_s_per_10k']:.3f}",
                        "",
                        "",
                        str(sum(flood["control"]["errors"].values())),
                    ],
                ],
            )
        )
        out.append(
            _table(
                ["well-behaved client", "req/s", "p50 ms", "p99 ms"],
                [
                    [
                        label,
                        _num(good[key]["rps"]),
                        f"{good[key]['p50_ms']:.2f}",
                        f"{good[key]['p99_ms']:.2f}",
                    ]
                    for label, key in (
                        ("alone", "alone"),
                        ("beside the control load", "beside_control"),
                        ("beside the flood", "beside_flood"),
                    )
                ],
            )
        )
        each_round = good.get("p99_flood_over_control_each_round", [])
        out.append(
            f"p99 beside the flood / alone: {good['p99_flood_over_alone']:.2f}; "
            f"/ beside the same load from one IP: {good['p99_flood_over_control']:.2f} "
            "(median of the rounds: " + ", ".join(f"{ratio:.2f}" for ratio in each_round) + ")"
        )
        noise = flood.get("other_cpu_percent") or {}
        if any(value is not None for value in noise.values()):
            out.append(
                "Other CPU (servers' / load generator's core): "
                + ", ".join(f"{phase} {_noise_text(value)}" for phase, value in noise.items())
            )
    noises = [entry["other_cpu_percent"] for entry in results["measurements"]]
    noises += list((results.get("flood") or {}).get("other_cpu_percent", {}).values())
    disturbed = [noise for noise in noises if noisy(noise)]
    if disturbed:
        out.append(
            f"\nWarning: {len(disturbed)} of {len(noises)} measurements were "
            "disturbed by other processes on the machine or by the host taking the "
            "servers' core (steal) (other_cpu_percent in the JSON): run again on a "
            "quiet machine."
        )
    return "\n".join(out)


# -- main ----------------------------------------------------------------------------


def _cores() -> tuple[tuple[int, int], str]:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return (cpus[0], cpus[0]), "none (one CPU): servers and load generator share it"
    return (cpus[0], cpus[1]), f"servers on CPU {cpus[0]}, wrk and the SSE client on CPU {cpus[1]}"


def _version(args: Sequence[str]) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        result = subprocess.run(list(args), capture_output=True, text=True, timeout=10, check=False)
        text = (result.stdout + result.stderr).strip().splitlines()
        return text[0] if text else ""
    return ""


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    if wanted < 4096:
        log(f"warning: only {wanted} file descriptors: the SSE row needs ~2 per stream")


ROWS = ("main", "half", "sweep", "bodies", "flood", "sse")


def run(
    plan: Plan, install: bool, json_out: Path | None, rows: Sequence[str] = ROWS
) -> dict[str, Any]:
    tools = ensure_tools(install)
    cores, pinning = _cores()
    _raise_fd_limit()
    children = Children()
    shm = Path("/dev/shm")
    base = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    directory = Path(tempfile.mkdtemp(prefix="wardent-bench-", dir=base))
    started = time.monotonic()
    try:
        stack = Stack(directory, tools, children, cores)
        log(f"working in {directory}; {pinning}")
        stack.start_upstream(plan.bodies)
        stack.start_sse_server(0.1)
        stack.start_nginx_proxy()
        stack.start_main_wardent()
        bench = Bench(stack, plan)
        results: dict[str, Any] = {
            "meta": {
                "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                "mode": "quick" if plan.quick else "full",
                "cpus": os.cpu_count(),
                "pinning": pinning,
                "wardent_hot_path": stack.wardent.hot_path,
                "plan": {
                    "duration_s": plan.duration,
                    "rounds": plan.rounds,
                    "other_rows_s": plan.short,
                    "connections": plan.connections,
                    "sweep": list(plan.sweep),
                    "bodies": [label for label, _ in plan.bodies],
                    "sse_streams": plan.sse_streams,
                    "flood_ips": plan.flood_ips,
                },
                "versions": {
                    "python": sys.version.split()[0],
                    "nginx": _version([tools["nginx"], "-v"]),
                    "wrk": _version([tools["wrk"], "-v"]),
                    "wardent_commit": _version(
                        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]
                    ),
                },
                "wardent_config": stack.wardent_config("wardent", stack.upstream.url),
            },
        }
        results["main"] = bench.main_table()
        peak = results["main"]["rows"]["wardent"]["rps"]
        if "half" in rows:
            results["half_load"] = bench.half_load(peak, results["main"]["rows"]["nginx"]["rps"])
        if "sweep" in rows:
            results["sweep"] = bench.sweep()
        if "bodies" in rows:
            results["bodies"] = bench.bodies()
        if "flood" in rows:
            results["flood"] = bench.flood(peak)
        if "sse" in rows:
            assert stack.sse is not None
            wardent_sse, _ = stack.start_wardent("wardent-sse", stack.sse.url)
            results["sse"] = bench.sse(wardent_sse)
            children.stop(wardent_sse.proc)
        results["measurements"] = bench.noise_log
        results["meta"]["seconds"] = round(time.monotonic() - started, 1)
        if json_out is not None:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(json.dumps(results, indent=2) + "\n")
        return results
    finally:
        children.stop_all()
        shutil.rmtree(directory, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark Wardent (all guards on) against nginx and the upstream alone.",
    )
    parser.add_argument("--quick", action="store_true", help="smoke mode: ~1 s rows, tiny sizes")
    parser.add_argument("--duration", type=int, help="seconds per main-table run (5; quick 1)")
    parser.add_argument(
        "--rounds", type=int, help="main-table and half-load rounds, every target each (3; quick 1)"
    )
    parser.add_argument("--connections", type=int, help="wrk connections, main table (64)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write every result here")
    parser.add_argument(
        "--no-install", action="store_true", help="never apt-get install missing tools"
    )
    parser.add_argument(
        "--only",
        metavar="ROWS",
        help=f"comma-separated rows to run, of {','.join(ROWS)} (main always runs: "
        "the others are sized by its numbers)",
    )
    parser.add_argument("--serve-sse", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--sse-client", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_sse is not None:
        serve_sse(args.serve_sse)
        return 0
    if args.sse_client is not None:
        sse_client(json.loads(args.sse_client))
        return 0
    if args.duration is not None and args.duration < 1:
        parser.error("--duration is whole seconds, at least 1")
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.connections is not None and args.connections < 1:
        parser.error("--connections must be at least 1")
    rows = ROWS
    if args.only:
        rows = tuple(row.strip() for row in args.only.split(",") if row.strip())
        unknown = sorted(set(rows) - set(ROWS))
        if unknown:
            parser.error(f"--only: unknown rows {', '.join(unknown)}; expected some of {ROWS}")
    # Ctrl-C, SIGTERM and SIGHUP unwind through the clean-up (even where the shell
    # started the harness with SIGINT ignored, as it does for a background job).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    signal.signal(signal.SIGHUP, _raise_on_sigterm)
    plan = make_plan(args)
    try:
        results = run(plan, install=not args.no_install, json_out=args.json, rows=rows)
    except MissingTools as error:
        print(f"bench: {error}", file=sys.stderr)
        return EXIT_MISSING_TOOLS
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted; every process it started is stopped", file=sys.stderr)
        return 130
    except SystemExit as stop:  # SIGTERM or SIGHUP, by _raise_on_sigterm
        print("bench: stopped by a signal; every process it started is stopped", file=sys.stderr)
        return stop.code if isinstance(stop.code, int) else 1
    print(report(results))
    if args.json is not None:
        log(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
