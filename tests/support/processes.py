"""Real processes for the integration and end-to-end tests: the test upstream and
`wardent run`, each on a port the kernel chose (no port races)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
UPSTREAM_SCRIPT = ROOT / "tests" / "support" / "upstream.py"


class Process:
    """A child process whose output is drained by threads into lists of lines."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=ROOT,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._threads = [
            threading.Thread(target=self._drain, args=(self.proc.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._drain, args=(self.proc.stderr, self.stderr), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _drain(stream: Any, sink: list[str]) -> None:
        for raw in iter(stream.readline, b""):
            sink.append(raw.decode(errors="replace").rstrip("\n"))

    def wait_for(self, predicate: Any, timeout: float = 15.0, stream: str = "any") -> str:
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            lines = self.lines(stream)
            for line in lines[seen:]:
                if predicate(line):
                    return line
            seen = len(lines)
            if self.proc.poll() is not None and seen == len(self.lines(stream)):
                time.sleep(0.1)
                lines = self.lines(stream)
                for line in lines[seen:]:
                    if predicate(line):
                        return line
                raise RuntimeError(
                    f"{self.args[:3]} exited {self.proc.returncode}: {self.output()}"
                )
            time.sleep(0.02)
        raise TimeoutError(f"{self.args[:3]}: nothing matched in {timeout}s: {self.output()}")

    def lines(self, stream: str = "any") -> list[str]:
        if stream == "stdout":
            return list(self.stdout)
        if stream == "stderr":
            return list(self.stderr)
        return list(self.stdout) + list(self.stderr)

    def json_lines(self, stream: str = "any") -> list[dict[str, Any]]:
        out = []
        for line in self.lines(stream):
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out

    def output(self) -> str:
        return "\n".join(self.lines())[-4000:]

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for thread in self._threads:
            thread.join(2)
        return self.proc.returncode


class Upstream(Process):
    def __init__(self, unix: str | None = None) -> None:
        args = [sys.executable, str(UPSTREAM_SCRIPT)]
        args += ["--unix", unix] if unix else ["--port", "0"]
        super().__init__(args)
        line = self.wait_for(lambda line: line.startswith("READY"), stream="stdout")
        info = json.loads(line.split(" ", 1)[1])
        self.port: int = info["port"]
        self.unix: str | None = info["unix"]
        self.url = f"unix:{unix}" if unix else f"http://127.0.0.1:{self.port}"


ADMIN_TOKEN = "test-admin-token-1f2e3d"


def free_port() -> int:
    """A loopback port nobody listens on (bound, then released): a dead upstream."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Wardent(Process):
    """`wardent run` on a config written for the test; public and admin on port 0."""

    def __init__(self, config_file: Path, env: dict[str, str] | None = None) -> None:
        self.config_file = config_file
        super().__init__(
            [sys.executable, "-m", "wardent", "run", "-c", str(config_file)],
            env={"WARDENT_ADMIN_TOKEN": ADMIN_TOKEN, **(env or {})},
        )
        line = self.wait_for(lambda line: '"wardent serving"' in line)
        info = json.loads(line)
        self.public: str = info["public"]
        self.admin: str = info["admin"]
        self.host, _, port = self.public.rpartition(":")
        self.port = int(port) if port.isdigit() else 0
        self.url = f"http://{self.public}"
        self.admin_url = f"http://{self.admin}"

    def access_log(self) -> list[dict[str, Any]]:
        return [entry for entry in self.json_lines("stdout") if "request_id" in entry]

    async def access_entry(self, request_id: str) -> dict[str, Any]:
        """The access-log entry of one request (flushed every 0.5 s), waiting up to 3 s
        without blocking the test's event loop."""
        async with asyncio.timeout(3):
            while True:
                for entry in self.access_log():
                    if entry["request_id"] == request_id:
                        return entry
                await asyncio.sleep(0.05)

    def wait_access(self, predicate: Any, timeout: float = 3.0) -> dict[str, Any]:
        """The first access-log entry matching `predicate` (the log flushes every 0.5 s)."""
        deadline = time.monotonic() + timeout
        while True:
            for entry in self.access_log():
                if predicate(entry):
                    return entry
            if time.monotonic() > deadline:
                raise AssertionError(f"no such access-log entry in: {self.access_log()[-5:]}")
            time.sleep(0.05)


def manage(env: dict[str, str], *args: str, timeout: float = 120) -> None:
    """`python -m tradesim.manage ARGS` with `env` added; a failure raises with its output."""
    result = subprocess.run(
        [sys.executable, "-m", "tradesim.manage", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")


def write_config(directory: Path, upstream_url: str, **overrides: Any) -> Path:
    """A test config: loopback ports chosen by the kernel, overrides merged per section."""
    config: dict[str, Any] = {
        "listen": {"public": "127.0.0.1:0", "admin": "127.0.0.1:0"},
        "upstream": {"url": upstream_url, "connect_timeout": "2s", "read_timeout": "5s"},
        "client_ip": {"trusted_proxies": ["127.0.0.1/32"]},
        "secrets": {"admin_token": {"env": "WARDENT_ADMIN_TOKEN"}},
        "telemetry": {"access_log": "json", "log_level": "info"},
        "shutdown_timeout": "5s",
        "bans": {"store": str(directory / "bans.sqlite3")},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    path = directory / "wardent.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@contextmanager
def running_wardent(
    directory: Path, upstream_url: str, env: dict[str, str] | None = None, **overrides: Any
) -> Iterator[Wardent]:
    wardent = Wardent(write_config(directory, upstream_url, **overrides), env=env)
    try:
        yield wardent
    finally:
        wardent.stop()
