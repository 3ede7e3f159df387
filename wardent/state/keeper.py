"""The ban keeper: the one task that writes the ban table.

fail2ban's split, on one event loop:

- what counts as a violation is the guards' business: a rejection the
  configuration marks as a violation reaches `BanKeeper.report`, which puts it
  on a bounded queue with `put_nowait`. A full queue drops the event and counts
  it; a request never waits for the keeper and `report` never raises.
- the policy (`bans:` in the YAML) lives here: violation timestamps per client
  key within `find_time`; `max_violations` of them ban the key for
  `ban_time * factor ** earlier_bans`, capped at `increment.max`. Earlier bans
  are counted in the store, so a repeat offender's escalation survives a
  restart. `never_ban` networks are never banned, automatically or by hand.
- the action is the ban table (`wardent.state.bans`), read by the ban guard.

Operators' commands (the admin API, hence the CLI) travel on a channel of
their own that is unbounded and served before any violation, so an unban is
never lost or delayed behind a flood.

Every change is persisted through `BanStore` (SQLite on its own thread); the
owner task awaits it, which is fine here: the keeper is not the request path.

The owner task runs under a supervisor: if it dies, the traceback is logged,
`restarts` counted and the task started again with its state intact; after
more than `max_restarts` deaths within `restart_window` seconds the
supervisor gives up and `healthy` turns False (/readyz fails, and the
watchdog sees `heartbeat` stop).
"""

from __future__ import annotations

import asyncio
import heapq
import ipaddress
import logging
import math
import sqlite3
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from wardent.config.guard_settings import Bans
from wardent.config.units import format_duration
from wardent.identify import Client, _PrefixSet, parse_ip
from wardent.state.bans import (
    Ban,
    BanTable,
    ban_json,
    iso_utc,
    normalise_ip,
    normalise_target,
)
from wardent.state.store import BanStore

__all__ = ["BanKeeper", "BanRefused", "KeeperUnavailable", "default_key_of"]

_log = logging.getLogger("wardent.keeper")

T = TypeVar("T")

# A violation as the request path reports it: (client key, client IP, guard, wall time).
Violation = tuple[str, str, str, float]
# One entry of a key's window: (wall time, guard, client IP).
_Entry = tuple[float, str, str]

DEFAULT_MAX_TRACKED_KEYS = 100_000
# Violations handled in a row before the owner yields to the event loop.
_BATCH = 64
_HISTORY_LIMIT = 50
_REASON_LIMIT = 500


class KeeperUnavailable(RuntimeError):
    """The keeper is not running: not started, stopping, or failed for good."""


class BanRefused(ValueError):
    """The target is, or covers, a `never_ban` address."""


@dataclass(slots=True)
class _Command:
    run: Callable[[], Awaitable[Any]]
    future: asyncio.Future[Any]


def default_key_of(ip: str) -> str:
    """The client key of `ip` under the default client_ip settings: IPv4 as is, IPv6 /64."""
    parsed = parse_ip(ip)
    if parsed is None or parsed[0] == 32:
        return ip
    masked = (parsed[1] >> 64) << 64
    return f"{ipaddress.IPv6Address(masked)}/64"


class BanKeeper:
    """The ban table's only writer. See the module docstring for the model.

    `clock` is the wall clock (epoch seconds) bans and windows are measured
    with; `key_of` maps an IP to its client key for `client_state` (pass the
    identifier's, e.g. `lambda ip: identifier.peer(ip)[0].key`, when client_ip
    prefixes differ from the defaults).
    """

    def __init__(
        self,
        settings: Bans,
        table: BanTable,
        store: BanStore,
        *,
        clock: Callable[[], float] = time.time,
        key_of: Callable[[str], str] = default_key_of,
        max_tracked_keys: int = DEFAULT_MAX_TRACKED_KEYS,
        sweep_interval: float = 1.0,
        heartbeat_interval: float = 0.5,
        max_restarts: int = 5,
        restart_window: float = 60.0,
        restart_delay: float = 0.05,
        stop_timeout: float = 10.0,
    ) -> None:
        self.settings = settings
        self.table = table
        self.store = store
        self.clock = clock
        self.key_of = key_of
        self.max_tracked_keys = max_tracked_keys
        self.sweep_interval = sweep_interval
        self.heartbeat_interval = heartbeat_interval
        self.max_restarts = max_restarts
        self.restart_window = restart_window
        self.restart_delay = restart_delay
        self.stop_timeout = stop_timeout

        # Counters, exported by the metrics collector at scrape time.
        self.violations_received = 0
        self.violations_dropped = 0  # the queue was full
        self.violations_ignored = 0  # from a never_ban address
        self.windows_evicted = 0  # a tracked key dropped to respect max_tracked_keys
        self.bans_added = 0
        self.bans_expired = 0
        self.bans_removed = 0
        self.restarts = 0
        self.store_errors = 0

        # loop.time() of the owner's last iteration: at most heartbeat_interval
        # old while the keeper is alive, even when idle.
        self.heartbeat = 0.0
        self.healthy = True

        self._violations: asyncio.Queue[Violation] = asyncio.Queue(maxsize=settings.queue_size)
        self._commands: deque[_Command] = deque()
        self._wake = asyncio.Event()
        # Oldest activity first. An OrderedDict, not a dict: evicting from the
        # front of a plain dict costs a scan over its deleted slots (~90 µs at
        # 100k keys), the linked list here O(1).
        self._windows: OrderedDict[str, deque[_Entry]] = OrderedDict()
        self._expiry: list[tuple[float, str]] = []  # heap of (until, target)
        self._never_v4, self._never_v6 = _never_ban_sets(settings)
        self._next_sweep = 0.0
        self._started = False
        self._stopping = False
        self._supervisor: asyncio.Task[None] | None = None
        self._owner_task: asyncio.Task[None] | None = None

    # -- the request path ---------------------------------------------------
    def report(self, key: str, ip: str, guard: str, at: float | None = None) -> None:
        """A violation by client `key` (address `ip`) caught by `guard`. Never blocks or raises.

        `at` is the wall clock the caller already has (else the keeper's clock).
        """
        self.violations_received += 1
        try:
            self._violations.put_nowait((key, ip, guard, self.clock() if at is None else at))
        except asyncio.QueueFull:
            self.violations_dropped += 1
            return
        if not self._wake.is_set():
            self._wake.set()

    @property
    def queue_depth(self) -> int:
        return self._violations.qsize()

    @property
    def tracked_keys(self) -> int:
        return len(self._windows)

    # -- operators' commands --------------------------------------------------
    async def add_ban(self, target: str, duration: float, reason: str) -> Ban:
        """Ban `target` (an IP or a CIDR) for `duration` seconds; replaces its current ban.

        Raises ValueError for an invalid target or duration, BanRefused for a
        never_ban address, KeeperUnavailable when the keeper is not running.
        """
        canonical = normalise_target(target)
        if not (math.isfinite(duration) and duration > 0):
            raise ValueError(f"the duration must be more than 0 seconds, not {duration!r}")
        reason = reason.strip()[:_REASON_LIMIT] or "banned by an operator"
        return await self._submit(partial(self._add_ban, canonical, duration, reason))

    async def remove_ban(self, target: str) -> bool:
        """Lift the ban of `target` (an IP or a CIDR, as banned); False if it had none."""
        canonical = normalise_target(target)
        return await self._submit(partial(self._remove_ban, canonical))

    async def list_bans(self) -> list[Ban]:
        """The bans in force now, soonest to end first."""
        return await self._submit(self._list_bans)

    async def client_state(self, ip: str) -> dict[str, Any]:
        """One client as JSON data: its key, the ban that applies, its violations, its history."""
        canonical = normalise_ip(ip)
        return await self._submit(partial(self._client_state, canonical))

    async def apply_settings(self, settings: Bans) -> None:
        """Switch to reloaded `bans:` settings; bans and violation windows carry over.

        When no owner task runs (not started, stopped, or failed for good) nothing
        can race with the change, so it is applied at once and a reload never fails
        because of the keeper.
        """
        if not self._started or self._stopping or not self.healthy:
            await self._apply_settings(settings)
            return
        await self._submit(partial(self._apply_settings, settings))

    async def _submit(self, run: Callable[[], Awaitable[T]]) -> T:
        if not self._started or self._stopping:
            raise KeeperUnavailable("the ban keeper is not running")
        if not self.healthy:
            raise KeeperUnavailable(
                "the ban keeper failed repeatedly and was stopped; wardent's log has "
                "the tracebacks, and a restart of wardent starts it again"
            )
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._commands.append(_Command(run, future))
        self._wake.set()
        return await future

    # -- lifecycle --------------------------------------------------------------
    async def start(self) -> None:
        """Open the store, load the active bans into the table, start the owner task."""
        if self._started:
            raise RuntimeError("the ban keeper is already started")
        loop = asyncio.get_running_loop()
        await self.store.open()
        now = self.clock()
        for ban in await self.store.load_active(now):
            self._apply(ban)
        for ban in await self.store.load_expired(now):
            # Ran out while wardent was not running: record when it ended.
            await self.store.delete(ban.target, "expire", at=ban.until)
            self.bans_expired += 1
        self.healthy = True
        self._stopping = False
        self._started = True
        self.heartbeat = loop.time()
        self._next_sweep = loop.time() + self.sweep_interval
        self._supervisor = loop.create_task(self._supervise(), name="wardent-keeper-supervisor")
        _log.info("ban keeper started", extra={"active_bans": len(self.table)})

    async def stop(self) -> None:
        """Serve the commands already queued, stop the owner task and close the store.

        Every change is persisted as it is made, so nothing else needs saving;
        violations still queued are dropped.
        """
        supervisor = self._supervisor
        if supervisor is not None:
            self._stopping = True
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(supervisor), self.stop_timeout)
            except TimeoutError:
                _log.error("the ban keeper did not stop in time; cancelling it")
                supervisor.cancel()
                await asyncio.gather(supervisor, return_exceptions=True)
            except Exception:
                pass  # the supervisor logged it
            self._supervisor = None
        self._fail_pending("the ban keeper stopped")
        self._started = False
        await self.store.close()

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        deaths: deque[float] = deque()

        def gives_up() -> bool:
            """Count a death; True once there were more than max_restarts in the window."""
            now = loop.time()
            deaths.append(now)
            while deaths and deaths[0] < now - self.restart_window:
                deaths.popleft()
            return len(deaths) > self.max_restarts

        while True:
            task = loop.create_task(self._run(), name="wardent-keeper")
            self._owner_task = task
            try:
                await task
                return
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    task.cancel()
                    raise
                final = gives_up()
                _log.error(
                    "the ban keeper task was cancelled; "
                    + ("it is not restarted again" if final else "restarting it")
                )
            except Exception:
                final = gives_up()
                _log.exception(
                    "the ban keeper failed; "
                    + ("it is not restarted again" if final else "restarting it"),
                    extra={"deaths": len(deaths), "window_seconds": self.restart_window},
                )
            if final:
                self.healthy = False
                _log.critical(
                    "the ban keeper keeps failing and stays stopped: bans are neither added "
                    "nor expired, /readyz fails and the watchdog stops; restart wardent",
                    extra={"deaths": len(deaths), "window_seconds": self.restart_window},
                )
                self._fail_pending("the ban keeper failed repeatedly and was stopped")
                return
            self.restarts += 1
            await asyncio.sleep(self.restart_delay)

    def _fail_pending(self, message: str) -> None:
        while self._commands:
            command = self._commands.popleft()
            if not command.future.done():
                command.future.set_exception(KeeperUnavailable(message))

    # -- the owner loop -------------------------------------------------------
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        commands, wake = self._commands, self._wake
        handled = 0
        while True:
            self.heartbeat = loop.time()
            if commands:
                await self._run_command(commands.popleft())
                continue
            if self._stopping:
                return
            if self.heartbeat >= self._next_sweep:
                self._next_sweep = self.heartbeat + self.sweep_interval
                await self._sweep(self.clock())
            violations = self._violations  # replaced when queue_size is reloaded
            if not violations.empty():
                if handled >= _BATCH:
                    handled = 0
                    await asyncio.sleep(0)  # let requests run during a flood
                    continue
                handled += 1
                await self._handle_violation(violations.get_nowait())
                continue
            handled = 0
            wake.clear()
            if commands or not violations.empty() or self._stopping:
                continue
            timeout = min(self.heartbeat_interval, max(0.0, self._next_sweep - loop.time()))
            try:
                async with asyncio.timeout(timeout):
                    await wake.wait()
            except TimeoutError:
                pass

    async def _run_command(self, command: _Command) -> None:
        try:
            result = await command.run()
        except Exception as error:
            if not command.future.done():
                command.future.set_exception(error)
            return
        except BaseException:
            if not command.future.done():
                command.future.set_exception(KeeperUnavailable("the ban keeper was stopped"))
            raise
        if not command.future.done():
            command.future.set_result(result)

    async def _handle_violation(self, violation: Violation) -> None:
        """Count one violation and ban its key at the threshold (the owner's per-item handler)."""
        key, ip, guard, at = violation
        if self._never_ban_ip(ip):
            self.violations_ignored += 1
            return
        now = self.clock()
        current = self.table.get(key)
        if current is not None and current.until > now:
            return  # requests already in flight when the ban began
        settings = self.settings
        windows = self._windows
        window = windows.get(key)
        if window is None:
            if len(windows) >= self.max_tracked_keys:
                windows.popitem(last=False)
                self.windows_evicted += 1
            window = windows[key] = deque(maxlen=settings.max_violations)
        else:
            windows.move_to_end(key)  # the most recently active last
        horizon = now - settings.find_time
        while window and window[0][0] <= horizon:
            window.popleft()
        if at > horizon:
            window.append((at, guard, ip))
        if len(window) < settings.max_violations:
            if not window:
                del windows[key]
            return
        del windows[key]
        await self._auto_ban(key, window, now)

    async def _auto_ban(self, key: str, window: deque[_Entry], now: float) -> None:
        settings = self.settings
        covered = self._never_ban_network_of(key)
        if covered is not None:
            self.violations_ignored += len(window)
            _log.warning(
                "not banning a client key that covers a never_ban network",
                extra={"target": key, "never_ban": str(covered)},
            )
            return
        previous = await self._stored(self.store.ban_count(key), 0)
        duration = _escalated(settings, previous)
        guards = Counter(guard for _, guard, _ in window)
        summary = ", ".join(f"{guard} {count}" for guard, count in guards.most_common())
        reason = f"{len(window)} violations in {format_duration(settings.find_time)} ({summary})"
        ban = Ban(key, now + duration, reason, "auto", now, previous + 1)
        self._apply(ban)
        self.bans_added += 1
        _log.warning("client banned", extra=_log_fields(ban))
        await self._stored(self.store.save(ban), None)

    async def _sweep(self, now: float) -> None:
        """Expire the bans whose time is up; forget violation windows that emptied."""
        expiry = self._expiry
        while expiry and expiry[0][0] <= now:
            _, target = heapq.heappop(expiry)
            ban = self.table.get(target)
            if ban is None or ban.until > now:
                continue  # lifted by hand, or banned again for longer
            self.table._remove(target)
            self.bans_expired += 1
            _log.info("ban expired", extra=_log_fields(ban))
            await self._stored(self.store.delete(target, "expire", at=now), False)
        # The windows are ordered by their last violation, oldest first.
        horizon = now - self.settings.find_time
        windows = self._windows
        while windows:
            window = next(iter(windows.values()))
            if window and window[-1][0] > horizon:
                break
            windows.popitem(last=False)

    async def _stored(self, operation: Awaitable[T], fallback: T) -> T:
        """Await a store operation; a failing disk is logged and counted, not fatal.

        The table (what requests see) has already changed; only the copy on
        disk is missing, and the next change of that target writes it again.
        """
        try:
            return await operation
        except (sqlite3.Error, OSError):
            self.store_errors += 1
            _log.exception("the ban store failed; the change is in memory only")
            return fallback

    def _apply(self, ban: Ban) -> None:
        self.table._set(ban)
        heapq.heappush(self._expiry, (ban.until, ban.target))

    # -- the commands, run by the owner ----------------------------------------
    async def _add_ban(self, target: str, duration: float, reason: str) -> Ban:
        self._refuse_never_ban(target)
        now = self.clock()
        previous = await self._stored(self.store.ban_count(target), 0)
        ban = Ban(target, now + duration, reason, "operator", now, previous + 1)
        self._apply(ban)
        self.bans_added += 1
        _log.warning("client banned by an operator", extra=_log_fields(ban))
        await self._stored(self.store.save(ban), None)
        return ban

    async def _remove_ban(self, target: str) -> bool:
        self._windows.pop(target, None)  # an unbanned client starts with a clean slate
        ban = self.table._remove(target)
        if ban is None:
            return False
        now = self.clock()
        if ban.until <= now:
            self.bans_expired += 1
            await self._stored(self.store.delete(target, "expire", at=now), False)
            return False
        self.bans_removed += 1
        _log.warning("ban lifted by an operator", extra=_log_fields(ban))
        await self._stored(self.store.delete(target, "unban", at=now), False)
        return True

    async def _list_bans(self) -> list[Ban]:
        now = self.clock()
        return sorted((ban for ban in self.table if ban.until > now), key=lambda b: b.until)

    async def _client_state(self, ip: str) -> dict[str, Any]:
        now = self.clock()
        settings = self.settings
        key = self.key_of(ip)
        ban = self.table.lookup(Client(ip, key), now)
        horizon = now - settings.find_time
        window = [entry for entry in self._windows.get(key, ()) if entry[0] > horizon]
        targets = dict.fromkeys([key, ip] + ([ban.target] if ban is not None else []))
        history: list[dict[str, Any]] = []
        for target in targets:
            history.extend(await self._stored(self.store.history(target, _HISTORY_LIMIT), []))
        history.sort(key=lambda event: event["at"], reverse=True)
        return {
            "ip": ip,
            "key": key,
            "banned": ban is not None,
            "ban": ban_json(ban, now) if ban is not None else None,
            "never_ban": self._never_ban_ip(ip),
            "violations": {
                "window_seconds": settings.find_time,
                "max_violations": settings.max_violations,
                "count": len(window),
                "events": [{"at": iso_utc(at), "guard": guard} for at, guard, _ in window],
            },
            "history": [
                {
                    "target": event["target"],
                    "action": event["action"],
                    "at": iso_utc(event["at"]),
                    "until": iso_utc(event["until"]) if event["until"] is not None else None,
                    "reason": event["reason"],
                    "source": event["source"],
                }
                for event in history[:_HISTORY_LIMIT]
            ],
        }

    async def _apply_settings(self, settings: Bans) -> None:
        old, self.settings = self.settings, settings
        self._never_v4, self._never_v6 = _never_ban_sets(settings)
        if settings.max_violations != old.max_violations:
            for key, window in self._windows.items():
                self._windows[key] = deque(window, maxlen=settings.max_violations)
        if settings.queue_size != old.queue_size:
            queue: asyncio.Queue[Violation] = asyncio.Queue(maxsize=settings.queue_size)
            while not self._violations.empty():
                item = self._violations.get_nowait()
                if queue.full():
                    self.violations_dropped += 1
                else:
                    queue.put_nowait(item)
            self._violations = queue
        _log.info("ban settings applied")

    # -- never_ban --------------------------------------------------------------
    def _never_ban_ip(self, ip: str) -> bool:
        parsed = parse_ip(ip)
        if parsed is None:
            return False
        bits, value = parsed
        return value in (self._never_v4 if bits == 32 else self._never_v6)

    def _never_ban_network_of(
        self, target: str
    ) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
        """The first never_ban network that `target` (an IP or a CIDR) is in or overlaps."""
        try:
            network = ipaddress.ip_network(target, strict=False)
        except ValueError:
            return None
        for never in self.settings.networks:
            if never.version == network.version and never.overlaps(network):
                return never
        return None

    def _refuse_never_ban(self, target: str) -> None:
        covered = self._never_ban_network_of(target)
        if covered is None:
            return
        if "/" in target:
            raise BanRefused(
                f"{target} overlaps the never_ban network {covered.compressed}: ban a range "
                "that leaves it out, or change bans.never_ban in the configuration"
            )
        raise BanRefused(
            f"{target} is in the never_ban network {covered.compressed}: it cannot be banned "
            "unless bans.never_ban in the configuration is changed"
        )


def _never_ban_sets(settings: Bans) -> tuple[_PrefixSet, _PrefixSet]:
    networks = settings.networks
    return (
        _PrefixSet(32, (n for n in networks if n.version == 4)),
        _PrefixSet(128, (n for n in networks if n.version == 6)),
    )


def _escalated(settings: Bans, previous: int) -> float:
    """ban_time * factor ** previous, capped at increment.max."""
    cap = settings.increment.max
    try:
        duration = settings.ban_time * settings.increment.factor**previous
    except OverflowError:
        return cap
    return min(duration, cap)


def _log_fields(ban: Ban) -> dict[str, Any]:
    return {
        "target": ban.target,
        "until": iso_utc(ban.until),
        "duration_seconds": round(ban.until - ban.created, 3),
        "reason": ban.reason,
        "ban_source": ban.source,
        "ban_count": ban.count,
    }
