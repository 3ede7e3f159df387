"""The process: listeners, the upstream pool, the admin API, reload and graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvloop
from aiohttp import web

from wardent import HOT_PATH, native
from wardent.admin.api import build_admin_app, start_admin
from wardent.config.load import ConfigError, load_settings
from wardent.config.schema import Address, Settings
from wardent.context import RequestContext
from wardent.guards.build import GuardState
from wardent.guards.rate_limit import LimiterRegistry
from wardent.observe.access_log import AccessLog, NullAccessLog
from wardent.observe.app_log import configure_logging
from wardent.observe.guard_metrics import GuardCollector
from wardent.observe.liveness import SystemdNotifier, Watchdog
from wardent.observe.loop_lag import LoopLagMonitor
from wardent.observe.metrics import GatewayMetrics
from wardent.runtime import RequestIds, Runtime
from wardent.state.bans import BanTable
from wardent.state.buckets import SHARDS
from wardent.state.keeper import BanKeeper
from wardent.state.store import BanStore
from wardent.transport.server import ClientConnection
from wardent.transport.upstream import UpstreamPool
from wardent.transport.write_batch import WriteBatch

log = logging.getLogger("wardent")


class Gateway:
    """One event loop's worth of Wardent. The request path reads `runtime` and `pool`."""

    def __init__(self, config_path: Path, settings: Settings) -> None:
        self.config_path = config_path
        self.loop = asyncio.get_running_loop()
        self.metrics = GatewayMetrics()
        self.guard_state = GuardState(
            bans=BanTable(), limiters=LimiterRegistry(settings.guards.rate_limit_max_keys)
        )
        self.runtime = Runtime(settings, self.guard_state)
        # Writes to clients and upstreams, sent once a loop iteration.
        self.writes = WriteBatch(self.loop)
        self.pool = self._make_pool(settings)
        self.access_log: AccessLog | NullAccessLog = _make_access_log(settings)
        self.connections: set[ClientConnection] = set()
        self.request_ids = RequestIds()
        self.stopping = False
        self.server: asyncio.Server | None = None
        self.admin: web.AppRunner | None = None
        self.lag = LoopLagMonitor(self.metrics)
        self.systemd = SystemdNotifier()
        self._stopped = asyncio.Event()
        self._drained = asyncio.Event()
        self._sweeper: asyncio.TimerHandle | None = None
        self._bucket_sweeper: asyncio.TimerHandle | None = None
        self._bucket_shard = 0
        self.keeper = BanKeeper(
            settings.bans,
            self.guard_state.bans,
            BanStore(settings.bans.store),
            key_of=self._client_key,
        )
        self.metrics.registry.register(GuardCollector(self))
        self.watchdog = Watchdog(
            self.systemd,
            self.lag,
            self.keeper,
            max_loop_lag=settings.liveness.max_loop_lag,
            max_keeper_silence=settings.liveness.max_keeper_silence,
        )

    # -- the AdminBackend protocol ------------------------------------------
    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    def admin_token(self) -> bytes | None:
        token = self.settings.secrets.admin_token
        return token.value if token is not None else None

    async def upstream_reachable(self) -> bool:
        if self.pool.idle or self.pool.open:
            return True
        address = self.settings.upstream.address
        try:
            async with asyncio.timeout(self.settings.upstream.connect_timeout):
                if address.unix_path is not None:
                    _, writer = await asyncio.open_unix_connection(address.unix_path)
                else:
                    _, writer = await asyncio.open_connection(address.host, address.port)
        except (OSError, TimeoutError):
            return False
        writer.close()
        return True

    def render_metrics(self) -> bytes:
        # Pool sizes are read at scrape time, not counted on every acquire and release.
        self.metrics.upstream_connections_open = len(self.pool.open)
        self.metrics.upstream_connections_idle = len(self.pool.idle)
        return self.metrics.render()

    async def reload(self) -> list[str]:
        """Validate first, then swap the whole runtime at once; on error keep the old one."""
        try:
            settings = await asyncio.to_thread(load_settings, self.config_path)
        except ConfigError as error:
            self.metrics.config_reloads_failed += 1
            issues = [str(issue) for issue in error.issues]
            log.error("reload refused: the old configuration stays", extra={"issues": issues})
            return issues
        old = self.settings
        changed_listeners = settings.listen != old.listen
        self.runtime = Runtime(settings, self.guard_state)
        self.watchdog.max_loop_lag = settings.liveness.max_loop_lag
        self.watchdog.max_keeper_silence = settings.liveness.max_keeper_silence
        if settings.bans != old.bans:
            await self.keeper.apply_settings(settings.bans)
        if settings.upstream != old.upstream:
            old_pool, self.pool = self.pool, self._make_pool(settings)
            old_pool.close()
        if settings.telemetry != old.telemetry:
            self.access_log.close()
            self.access_log = _make_access_log(settings)
            self.access_log.start(self.loop)
        self.metrics.config_reloads_ok += 1
        log.info(
            "configuration reloaded",
            extra={"listeners_changed_need_restart": changed_listeners},
        )
        return []

    def sweep(self) -> None:
        """Fire every connection deadline that has passed (header, idle, upstream)."""
        now = self.loop.time()
        for conn in [conn for conn in self.connections if 0.0 < conn.deadline <= now]:
            try:
                conn.expire(now)
            except Exception:
                log.exception("timeout handling failed")
                if conn.transport is not None:
                    conn.transport.abort()
        self._sweeper = self.loop.call_later(self._sweep_interval(), self.sweep)

    def _sweep_interval(self) -> float:
        """Timeouts fire at most a fifth of the shortest timeout late (and within 1 s)."""
        settings = self.settings
        shortest = min(
            settings.http.header_timeout,
            settings.http.body_timeout,
            settings.http.keepalive_timeout,
            settings.upstream.read_timeout,
            settings.upstream.send_timeout,
        )
        return min(max(shortest / 5, 0.02), 1.0)

    def report_violation(self, ctx: RequestContext, guard: str) -> None:
        """A rejection that counts toward a ban: queued for the keeper, never blocking."""
        assert ctx.client is not None
        self.keeper.report(ctx.client.key, ctx.client.ip, guard)

    def rate_limits(self, key: str) -> dict[str, Any]:
        now = time.monotonic()
        return {
            name: limiter.state(key, now)
            for name, limiter in self.guard_state.limiters.limiters.items()
        }

    def _client_key(self, ip: str) -> str:
        """The key limits and bans use for an IP, under the current client_ip settings."""
        client = self.runtime.identifier.from_header(ip.encode())
        if client is None:
            raise ValueError(f"{ip!r} is not an IP address")
        return client.key

    def _sweep_buckets(self) -> None:
        """One shard of every rate limiter per tick: expired buckets carry nothing."""
        self._bucket_shard = (self._bucket_shard + 1) % SHARDS
        self.guard_state.limiters.sweep(time.monotonic(), self._bucket_shard)
        self._bucket_sweeper = self.loop.call_later(0.1, self._sweep_buckets)

    def forget(self, conn: ClientConnection) -> None:
        self.connections.discard(conn)
        if self.stopping and not self.connections:
            self._drained.set()

    # -- lifecycle ---------------------------------------------------------
    def _make_pool(self, settings: Settings) -> UpstreamPool:
        upstream = settings.upstream
        return UpstreamPool(
            upstream.address,
            connect_timeout=upstream.connect_timeout,
            max_connections=upstream.max_connections,
            max_idle=upstream.max_idle,
            idle_timeout=upstream.idle_timeout,
            writes=self.writes,
        )

    async def start(self) -> None:
        settings = self.settings
        # Bans are loaded before the listener opens: a banned client is refused
        # from the first request on, and READY=1 means exactly that.
        await self.keeper.start()
        self.access_log.start(self.loop)
        self.lag.start()
        self._sweeper = self.loop.call_later(self._sweep_interval(), self.sweep)
        self._bucket_sweeper = self.loop.call_later(0.1, self._sweep_buckets)
        self.server = await _listen(
            self.loop,
            lambda: ClientConnection(self),
            settings.listen.public,
            backlog=settings.listen.backlog,
            mode=settings.listen.unix_socket_mode,
        )
        self.admin = await start_admin(build_admin_app(self), settings.listen.admin)
        public = _bound(self.server, settings.listen.public)
        # Everything built at start-up lives as long as the process: keep it out
        # of the collector's full passes, which otherwise walk it all (~10 ms stalls).
        gc.freeze()
        self.systemd.ready(f"serving on {public}, upstream {settings.upstream.url}")
        self.watchdog.start()
        log.info(
            "wardent serving",
            extra={
                "public": public,
                "admin": _admin_bound(self.admin, settings.listen.admin),
                "upstream": settings.upstream.url,
                "pid": os.getpid(),
                # mypyc's build or the source (wardent/native.py): a third of the CPU.
                "hot_path": native.running(),
                "hot_path_why": HOT_PATH.why,
            },
        )

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish up to the deadline, then close."""
        if self.stopping:
            return
        self.stopping = True
        self.systemd.stopping()
        await self.watchdog.stop()
        deadline = self.loop.time() + self.settings.shutdown_timeout
        log.info("stopping", extra={"in_flight": self.metrics.in_flight})
        if self.server is not None:
            self.server.close()
        for conn in list(self.connections):
            conn.shutdown()
        if self.connections:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), deadline - self.loop.time())
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()
        self.pool.close()
        await self.keeper.stop()
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._bucket_sweeper is not None:
            self._bucket_sweeper.cancel()
        if self.admin is not None:
            await self.admin.cleanup()
        await self.lag.stop()
        self.access_log.close()
        self.systemd.close()
        public = self.settings.listen.public
        if public.unix_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(public.unix_path)
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()


def _make_access_log(settings: Settings) -> AccessLog | NullAccessLog:
    telemetry = settings.telemetry
    if telemetry.access_log == "off":
        return NullAccessLog()
    return AccessLog(telemetry.access_log_path)


def _remove_stale_socket(path: Path) -> None:
    """A socket file left by a previous run (kill -9) would make bind fail."""
    if path.exists() and stat.S_ISSOCK(path.stat().st_mode):
        path.unlink()


async def _listen(
    loop: asyncio.AbstractEventLoop,
    factory: Callable[[], asyncio.Protocol],
    address: Address,
    *,
    backlog: int,
    mode: int,
) -> asyncio.Server:
    if address.unix_path is not None:
        path = Path(address.unix_path)
        _remove_stale_socket(path)
        server = await loop.create_unix_server(factory, str(path), backlog=backlog)
        os.chmod(path, mode)
        return server
    return await loop.create_server(
        factory,
        address.host,
        address.port,
        backlog=backlog,
        reuse_address=True,
    )


def _admin_bound(runner: web.AppRunner, address: Address) -> str:
    if address.unix_path is not None or not runner.addresses:
        return str(address)
    host, port = runner.addresses[0][:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _bound(server: asyncio.Server, address: Address) -> str:
    if address.unix_path is not None:
        return str(address)
    sockets = server.sockets
    if not sockets:
        return str(address)
    host, port = sockets[0].getsockname()[:2]
    return f"[{host}]:{port}" if sockets[0].family == socket.AF_INET6 else f"{host}:{port}"


async def _serve(config_path: Path, settings: Settings) -> int:
    gateway = Gateway(config_path, settings)
    loop = gateway.loop
    try:
        await gateway.start()
    except OSError as error:
        log.error("cannot listen: %s", error)
        await gateway.stop()
        return 1

    def on_term() -> None:
        loop.create_task(gateway.stop())

    def on_hup() -> None:
        loop.create_task(gateway.reload())

    loop.add_signal_handler(signal.SIGTERM, on_term)
    loop.add_signal_handler(signal.SIGINT, on_term)
    loop.add_signal_handler(signal.SIGHUP, on_hup)

    def on_usr1() -> None:
        # logrotate: move the file, then USR1 makes Wardent open a new one.
        gateway.access_log.reopen()

    loop.add_signal_handler(signal.SIGUSR1, on_usr1)
    await gateway.wait_stopped()
    log.info("stopped")
    return 0


def run_gateway(config_path: str, workers: int | None = 1) -> int:
    """`wardent run`: serve in the foreground until SIGTERM; the exit code says how it ended."""
    path = Path(config_path)
    try:
        settings = load_settings(path)
    except ConfigError as error:
        print(str(error), file=sys.stderr)
        return 1
    configure_logging(settings.telemetry.log_level)
    if workers not in (None, 1):
        print(
            "wardent: --workers above 1 needs shared state (Redis, a later release); "
            "run one process per core behind nginx for now",
            file=sys.stderr,
        )
        return 2
    return uvloop.run(_serve(path, settings))
