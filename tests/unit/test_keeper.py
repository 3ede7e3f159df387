"""The ban keeper on a real SQLite file: policy, expiry, persistence, supervision."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from wardent.config.guard_settings import Bans
from wardent.identify import Client
from wardent.state.bans import Ban, BanTable
from wardent.state.keeper import BanKeeper, BanRefused, KeeperUnavailable, Violation
from wardent.state.store import BanStore

NOW = 1_700_000_000.0
ROOT = Path(__file__).resolve().parents[2]


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def policy(**overrides: Any) -> Bans:
    values: dict[str, Any] = {
        "find_time": 60.0,
        "max_violations": 3,
        "ban_time": 100.0,
        "increment": {"factor": 2.0, "max": 300.0},
        "queue_size": 1000,
    }
    values.update(overrides)
    return Bans.model_validate(values)


def make_keeper(path: Path, clock: Clock, settings: Bans | None = None, **kw: Any) -> BanKeeper:
    return BanKeeper(
        settings or policy(),
        BanTable(),
        BanStore(path, clock=clock),
        clock=clock,
        sweep_interval=0.01,
        heartbeat_interval=0.05,
        restart_delay=0.0,
        **kw,
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "bans.sqlite3"


@pytest.fixture
async def keeper(db: Path, clock: Clock) -> AsyncIterator[BanKeeper]:
    keeper = make_keeper(db, clock)
    await keeper.start()
    try:
        yield keeper
    finally:
        await keeper.stop()


async def eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Poll `condition` until it holds; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return
        await asyncio.sleep(0.002)
    raise AssertionError(f"not true within {within}s")


async def settle(keeper: BanKeeper) -> None:
    """Wait until every queued violation has been handled."""
    await eventually(lambda: keeper.queue_depth == 0)
    # A command is served only between two items: the last one is done.
    await keeper.list_bans()


def violate(keeper: BanKeeper, ip: str, times: int, guard: str = "rate_limit") -> None:
    for _ in range(times):
        keeper.report(ip, ip, guard)


def banned(keeper: BanKeeper, ip: str, key: str | None = None) -> Ban | None:
    return keeper.table.lookup(Client(ip, key or ip), keeper.clock())


# -- the policy -------------------------------------------------------------------


async def test_below_the_threshold_no_ban_at_it_a_ban(keeper: BanKeeper, clock: Clock) -> None:
    violate(keeper, "203.0.113.7", 2)
    await settle(keeper)
    assert banned(keeper, "203.0.113.7") is None
    assert keeper.tracked_keys == 1

    keeper.report("203.0.113.7", "203.0.113.7", "crawlers")
    await settle(keeper)
    ban = banned(keeper, "203.0.113.7")
    assert ban is not None
    assert (ban.target, ban.source, ban.count) == ("203.0.113.7", "auto", 1)
    assert ban.until == NOW + 100
    assert ban.reason == "3 violations in 1m (rate_limit 2, crawlers 1)"
    assert keeper.bans_added == 1
    assert keeper.violations_received == 3
    assert keeper.tracked_keys == 0  # the window is gone with the ban
    assert [b.target for b in await keeper.list_bans()] == ["203.0.113.7"]
    # Violations of requests in flight when the ban began do not extend it.
    violate(keeper, "203.0.113.7", 5)
    await settle(keeper)
    assert keeper.table.get("203.0.113.7") == ban
    # Other clients are not affected.
    assert banned(keeper, "203.0.113.8") is None


async def test_violations_outside_the_window_do_not_count(keeper: BanKeeper, clock: Clock) -> None:
    violate(keeper, "203.0.113.7", 2)
    await settle(keeper)
    clock.advance(61)
    violate(keeper, "203.0.113.7", 1)
    await settle(keeper)
    assert banned(keeper, "203.0.113.7") is None
    state = await keeper.client_state("203.0.113.7")
    assert state["violations"]["count"] == 1
    violate(keeper, "203.0.113.7", 2)
    await settle(keeper)
    assert banned(keeper, "203.0.113.7") is not None


async def test_ipv6_clients_are_banned_by_their_key(keeper: BanKeeper) -> None:
    key = "2001:db8:1:2::/64"
    for host in ("2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2::3"):
        keeper.report(key, host, "rate_limit")
    await settle(keeper)
    assert banned(keeper, "2001:db8:1:2::99", key) is not None
    assert banned(keeper, "2001:db8:1:3::1", "2001:db8:1:3::/64") is None
    state = await keeper.client_state("2001:db8:1:2::1")
    assert state["key"] == key
    assert state["banned"] is True


async def test_escalation_survives_a_restart_and_is_capped(db: Path, clock: Clock) -> None:
    durations = []
    for _ in range(4):
        keeper = make_keeper(db, clock)  # a new process each time, the same file
        await keeper.start()
        try:
            violate(keeper, "203.0.113.7", 3)
            await settle(keeper)
            ban = keeper.table.get("203.0.113.7")
            assert ban is not None
            durations.append((ban.until - ban.created, ban.count))
        finally:
            await keeper.stop()
        clock.advance(1000)  # past the ban: it expires while wardent is down
    # ban_time 100, factor 2, capped at 300.
    assert durations == [(100, 1), (200, 2), (300, 3), (300, 4)]
    store = BanStore(db, clock=clock)
    await store.open()
    try:
        actions = [event["action"] for event in await store.history("203.0.113.7")]
        # Newest first; the last ban ended while no keeper ran: the next start records it.
        assert actions == ["ban"] + ["expire", "ban"] * 3
        assert await store.ban_count("203.0.113.7") == 4
    finally:
        await store.close()


async def test_never_ban(db: Path, clock: Clock) -> None:
    settings = policy(never_ban=["198.51.100.0/24", "2001:db8:1:2::5"])
    keeper = make_keeper(db, clock, settings)
    await keeper.start()
    try:
        violate(keeper, "198.51.100.7", 10)
        # Another host in the never_ban address's /64 cannot get the /64 banned.
        for _ in range(3):
            keeper.report("2001:db8:1:2::/64", "2001:db8:1:2::9", "rate_limit")
        await settle(keeper)
        assert len(keeper.table) == 0
        assert keeper.violations_ignored == 13
        assert (await keeper.client_state("198.51.100.7"))["never_ban"] is True

        with pytest.raises(BanRefused, match=r"never_ban network 198\.51\.100\.0/24"):
            await keeper.add_ban("198.51.100.7", 60, "")
        with pytest.raises(BanRefused, match="overlaps the never_ban network"):
            await keeper.add_ban("198.51.0.0/16", 60, "")
        with pytest.raises(BanRefused, match=r"2001:db8:1:2::5"):
            await keeper.add_ban("2001:db8:1:2::/64", 60, "")
        assert len(keeper.table) == 0
        assert (await keeper.add_ban("198.51.101.0/24", 60, "next door")).target == (
            "198.51.101.0/24"
        )
    finally:
        await keeper.stop()


async def test_expiry_removes_the_ban_and_records_it(keeper: BanKeeper, clock: Clock) -> None:
    violate(keeper, "203.0.113.7", 3)
    await settle(keeper)
    assert keeper.table.get("203.0.113.7") is not None
    clock.advance(100)
    await eventually(lambda: keeper.table.get("203.0.113.7") is None)
    assert keeper.bans_expired == 1
    history = await keeper.store.history("203.0.113.7")
    assert [event["action"] for event in history] == ["expire", "ban"]
    assert history[0]["at"] == NOW + 100
    assert await keeper.list_bans() == []


async def test_windows_are_bounded_and_forgotten(db: Path, clock: Clock) -> None:
    keeper = make_keeper(db, clock, max_tracked_keys=10)
    await keeper.start()
    try:
        for number in range(50):
            keeper.report(f"10.0.0.{number}", f"10.0.0.{number}", "rate_limit")
        await settle(keeper)
        assert keeper.tracked_keys == 10
        assert keeper.windows_evicted == 40
        # The most recent survive the cap.
        state = await keeper.client_state("10.0.0.49")
        assert state["violations"]["count"] == 1
        assert (await keeper.client_state("10.0.0.0"))["violations"]["count"] == 0
        clock.advance(61)
        await eventually(lambda: keeper.tracked_keys == 0)
    finally:
        await keeper.stop()


# -- the queue ----------------------------------------------------------------------


async def test_a_full_queue_drops_and_counts_and_never_blocks(db: Path, clock: Clock) -> None:
    keeper = make_keeper(db, clock, policy(queue_size=5))
    await keeper.start()
    try:
        started = time.perf_counter()
        for number in range(1000):  # synchronously: the keeper cannot drain meanwhile
            keeper.report("203.0.113.7", "203.0.113.7", f"guard{number % 3}")
        elapsed = time.perf_counter() - started
        assert keeper.violations_received == 1000
        assert keeper.violations_dropped == 995
        assert keeper.queue_depth == 5
        assert elapsed < 0.5
        await settle(keeper)
        assert keeper.table.get("203.0.113.7") is not None
    finally:
        await keeper.stop()


async def test_operator_commands_get_through_a_full_queue(
    db: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    keeper = make_keeper(db, clock, policy(queue_size=50))
    await keeper.start()
    slow_handler = keeper._handle_violation

    async def slow(violation: Violation) -> None:
        await asyncio.sleep(0.02)
        await slow_handler(violation)

    monkeypatch.setattr(keeper, "_handle_violation", slow)
    try:
        for number in range(200):
            keeper.report(f"10.1.{number}.1", f"10.1.{number}.1", "rate_limit")
        assert keeper.queue_depth == 50
        assert keeper.violations_dropped == 150
        # 50 queued violations take ~1 s; each command waits for one at most.
        started = time.perf_counter()
        ban = await keeper.add_ban("192.0.2.1", 3600, "by hand")
        assert [b.target for b in await keeper.list_bans()] == ["192.0.2.1"]
        assert await keeper.remove_ban("192.0.2.1") is True
        assert await keeper.remove_ban("192.0.2.1") is False
        assert time.perf_counter() - started < 0.5
        assert keeper.queue_depth >= 40  # the flood was still queued all along
        assert ban.source == "operator"
    finally:
        await keeper.stop()


# -- operators ------------------------------------------------------------------------


async def test_add_list_remove(keeper: BanKeeper, clock: Clock) -> None:
    network = await keeper.add_ban("203.0.113.0/24", 3600, "  scraping  ")
    assert network == Ban("203.0.113.0/24", NOW + 3600, "scraping", "operator", NOW, 1)
    single = await keeper.add_ban("2001:DB8::7", 60, "")
    assert single.target == "2001:db8::7"
    assert single.reason == "banned by an operator"
    assert banned(keeper, "203.0.113.99") == network
    assert [b.target for b in await keeper.list_bans()] == ["2001:db8::7", "203.0.113.0/24"]

    # Banning again replaces the ban and counts it.
    again = await keeper.add_ban("203.0.113.0/24", 60, "again")
    assert (again.count, again.until) == (2, NOW + 60)

    assert await keeper.remove_ban("203.0.113.0/24") is True
    assert banned(keeper, "203.0.113.99") is None
    assert keeper.bans_removed == 1
    history = await keeper.store.history("203.0.113.0/24")
    assert [event["action"] for event in history] == ["unban", "ban", "ban"]

    # An unbanned client starts with a clean window.
    violate(keeper, "198.51.100.1", 2)
    await settle(keeper)
    await keeper.add_ban("198.51.100.1", 60, "")
    await keeper.remove_ban("198.51.100.1")
    violate(keeper, "198.51.100.1", 1)
    await settle(keeper)
    assert banned(keeper, "198.51.100.1") is None


@pytest.mark.parametrize(
    "call",
    [
        lambda k: k.add_ban("not-an-ip", 60, ""),
        lambda k: k.add_ban("203.0.113.7/24", 60, ""),
        lambda k: k.add_ban("0.0.0.0/0", 60, ""),
        lambda k: k.add_ban("203.0.113.7", 0, ""),
        lambda k: k.add_ban("203.0.113.7", float("inf"), ""),
        lambda k: k.remove_ban("203.0.113.0/40"),
        lambda k: k.client_state("203.0.113.0/24"),
        lambda k: k.client_state("nonsense"),
    ],
)
async def test_invalid_targets_are_rejected(
    keeper: BanKeeper, call: Callable[[BanKeeper], Awaitable[Any]]
) -> None:
    with pytest.raises(ValueError) as error:
        await call(keeper)
    assert not isinstance(error.value, BanRefused)
    assert len(keeper.table) == 0


async def test_client_state(keeper: BanKeeper, clock: Clock) -> None:
    violate(keeper, "203.0.113.7", 2, guard="crawlers")
    await settle(keeper)
    state = await keeper.client_state("203.0.113.7")
    assert state["ip"] == "203.0.113.7"
    assert state["key"] == "203.0.113.7"
    assert state["banned"] is False
    assert state["ban"] is None
    assert state["violations"] == {
        "window_seconds": 60.0,
        "max_violations": 3,
        "count": 2,
        "events": [{"at": "2023-11-14T22:13:20Z", "guard": "crawlers"}] * 2,
    }
    assert state["history"] == []

    await keeper.add_ban("203.0.113.0/24", 60, "the range")
    state = await keeper.client_state("203.0.113.7")
    assert state["banned"] is True
    assert state["ban"]["target"] == "203.0.113.0/24"
    assert [(e["target"], e["action"]) for e in state["history"]] == [("203.0.113.0/24", "ban")]


async def test_apply_settings(keeper: BanKeeper) -> None:
    violate(keeper, "203.0.113.7", 2)
    await settle(keeper)
    await keeper.apply_settings(policy(max_violations=2, queue_size=2, never_ban=["192.0.2.0/24"]))
    assert keeper.settings.max_violations == 2
    violate(keeper, "203.0.113.8", 5)
    assert keeper.violations_dropped == 3  # the new, smaller queue
    await settle(keeper)
    assert banned(keeper, "203.0.113.8") is not None
    with pytest.raises(BanRefused):
        await keeper.add_ban("192.0.2.1", 60, "")


# -- lifecycle --------------------------------------------------------------------------


async def test_restart_loads_active_bans_and_not_expired_ones(db: Path, clock: Clock) -> None:
    first = make_keeper(db, clock)
    await first.start()
    await first.add_ban("203.0.113.7", 3600, "long")
    await first.add_ban("203.0.113.8", 10, "short")
    await first.stop()

    clock.advance(20)
    second = make_keeper(db, clock)
    await second.start()
    try:
        assert [b.target for b in await second.list_bans()] == ["203.0.113.7"]
        assert second.table.get("203.0.113.8") is None
        assert second.bans_expired == 1
        history = await second.store.history("203.0.113.8")
        assert [(e["action"], e["at"]) for e in history] == [("expire", NOW + 10), ("ban", NOW)]
        loaded = banned(second, "203.0.113.7")
        assert loaded == Ban("203.0.113.7", NOW + 3600, "long", "operator", NOW, 1)
    finally:
        await second.stop()


async def test_heartbeat_moves_while_idle(keeper: BanKeeper) -> None:
    loop = asyncio.get_running_loop()
    first = keeper.heartbeat
    assert loop.time() - first < 1
    await asyncio.sleep(0.15)
    assert keeper.heartbeat > first
    assert loop.time() - keeper.heartbeat <= 0.1


async def test_commands_after_stop_are_refused(db: Path, clock: Clock) -> None:
    keeper = make_keeper(db, clock)
    with pytest.raises(KeeperUnavailable):
        await keeper.list_bans()
    await keeper.start()
    await keeper.stop()
    with pytest.raises(KeeperUnavailable):
        await keeper.add_ban("203.0.113.7", 60, "")
    keeper.report("203.0.113.7", "203.0.113.7", "rate_limit")  # still never raises
    # A reload never fails because of the keeper: with no owner, settings apply at once.
    await keeper.apply_settings(policy(max_violations=9))
    assert keeper.settings.max_violations == 9


async def test_stop_serves_commands_already_queued(keeper: BanKeeper) -> None:
    pending = asyncio.ensure_future(keeper.add_ban("203.0.113.7", 60, ""))
    await asyncio.sleep(0)  # queued, not yet served
    await keeper.stop()
    assert (await pending).target == "203.0.113.7"


async def test_supervisor_restarts_a_dying_owner_and_logs_why(
    keeper: BanKeeper, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = keeper._handle_violation
    failures = [RuntimeError("injected failure")]

    async def flaky(violation: Violation) -> None:
        if failures:
            raise failures.pop()
        await real(violation)

    monkeypatch.setattr(keeper, "_handle_violation", flaky)
    with caplog.at_level(logging.ERROR, logger="wardent.keeper"):
        violate(keeper, "203.0.113.7", 4)  # the first is lost with the dying task
        await eventually(lambda: keeper.restarts == 1)
        await settle(keeper)
    record = next(r for r in caplog.records if r.name == "wardent.keeper")
    assert "restarting" in record.getMessage()
    assert record.exc_info is not None
    assert "injected failure" in caplog.text
    assert "Traceback" in caplog.text
    assert keeper.healthy is True
    assert banned(keeper, "203.0.113.7") is not None  # state survived the restart


async def test_supervisor_gives_up_after_repeated_deaths(
    keeper: BanKeeper, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(violation: Violation) -> None:
        raise RuntimeError("always")

    monkeypatch.setattr(keeper, "_handle_violation", broken)
    with caplog.at_level(logging.ERROR, logger="wardent.keeper"):
        violate(keeper, "203.0.113.7", 20)
        await eventually(lambda: not keeper.healthy)
    assert keeper.restarts == 5
    assert caplog.text.count("the ban keeper failed; restarting it") == 5
    assert caplog.text.count("the ban keeper failed; it is not restarted again") == 1
    assert "stays stopped" in caplog.text
    with pytest.raises(KeeperUnavailable, match="failed repeatedly"):
        await keeper.list_bans()
    stalled = keeper.heartbeat
    await asyncio.sleep(0.15)
    assert keeper.heartbeat == stalled  # the watchdog sees the keeper stop
    keeper.report("203.0.113.7", "203.0.113.7", "rate_limit")  # never raises


async def test_a_failing_store_does_not_kill_the_keeper(
    keeper: BanKeeper, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    async def disk_full(ban: Ban) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(keeper.store, "save", disk_full)
    ban = await keeper.add_ban("203.0.113.7", 60, "")
    assert keeper.table.get("203.0.113.7") == ban
    assert keeper.store_errors == 1
    assert keeper.healthy and keeper.restarts == 0


# -- durability -------------------------------------------------------------------------

_KILLED_WRITER = """
import asyncio, os, signal, sys
from wardent.state.bans import Ban
from wardent.state.store import BanStore

async def main() -> None:
    store = BanStore(sys.argv[1])
    await store.open()
    await store.save(Ban("203.0.113.7", 4e9, "kill -9", "operator", 1.7e9, 1))
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


def test_a_saved_ban_survives_kill_9(db: Path) -> None:
    process = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, str(db)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        check=False,
    )
    assert process.returncode == -signal.SIGKILL, process.stderr
    assert os.path.exists(f"{db}-wal")  # never checkpointed: it was killed

    async def load() -> list[str]:
        store = BanStore(db)
        await store.open()
        try:
            return [ban.target for ban in await store.load_active(2e9)]
        finally:
            await store.close()

    assert asyncio.run(load()) == ["203.0.113.7"]
