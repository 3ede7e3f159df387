"""Ban persistence: SQLite in WAL mode, driven from one dedicated worker thread.

Every database call runs on a single-thread executor, so writes stay in the
order they were made and the event loop never waits on the disk. The
connection is created and used on that thread only.

Two tables: `bans` holds the active bans (what a restart loads back) and
`events` the history of every ban, unban and expiry (what `wardent why` shows
and what escalation counts: a repeat offender's next ban is longer even after
a restart).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, TypeVar

from wardent.state.bans import Ban

__all__ = ["Action", "BanStore"]

Action = Literal["ban", "unban", "expire"]
T = TypeVar("T")

# History older than this is forgotten at open: escalation then starts afresh,
# as fail2ban's dbpurgeage does, and the file does not grow without end.
DEFAULT_RETENTION = 90 * 86400.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS bans (
    target  TEXT PRIMARY KEY,
    until   REAL NOT NULL,
    reason  TEXT NOT NULL,
    source  TEXT NOT NULL CHECK (source IN ('auto', 'operator')),
    created REAL NOT NULL,
    count   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id      INTEGER PRIMARY KEY,
    target  TEXT NOT NULL,
    action  TEXT NOT NULL CHECK (action IN ('ban', 'unban', 'expire')),
    at      REAL NOT NULL,
    until   REAL,
    reason  TEXT,
    source  TEXT
);
CREATE INDEX IF NOT EXISTS events_by_target ON events (target, action, at);
CREATE INDEX IF NOT EXISTS events_by_time ON events (at);
"""


class BanStore:
    """The SQLite file at `path`; every method is a coroutine run on the store's thread.

    `retention`: history older than this (by `clock`, wall seconds) is purged at open.
    """

    def __init__(
        self,
        path: str | Path,
        retention: float = DEFAULT_RETENTION,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.retention = retention
        self.clock = clock
        self._executor: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None

    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise RuntimeError("the ban store is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, function, *args)

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the ban store is not open")
        return self._db

    # -- lifecycle ------------------------------------------------------------
    async def open(self) -> None:
        """Create the directory, the file and the schema if needed."""
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wardent-bans")
        try:
            await self._call(self._open)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, timeout=10.0)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # synchronous=NORMAL: in WAL mode a commit is a write() of its frames
            # to the -wal file, and the fsync waits for the next checkpoint.
            # A killed process (kill -9, a crash, the OOM killer) loses nothing
            # that was committed: the frames are in the kernel's page cache and
            # the next open replays the WAL. Only a power loss or kernel crash
            # can lose the last commits since the previous checkpoint, and the
            # database stays consistent even then (never corrupt). For bans
            # that trade is right: FULL would fsync on every commit, costing a
            # disk flush per ban during a flood, to protect a few seconds of
            # bans against power loss, which restarts every client anyway.
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=10000")
            db.executescript(_SCHEMA)
            db.execute("DELETE FROM events WHERE at < ?", (self.clock() - self.retention,))
        except BaseException:
            db.close()
            raise
        self._db = db

    async def close(self) -> None:
        """Close the database (checkpointing the WAL) and stop the thread."""
        executor = self._executor
        if executor is None:
            return
        try:
            await self._call(self._close)
        finally:
            self._executor = None
            executor.shutdown(wait=False)

    def _close(self) -> None:
        if self._db is not None:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                self._db.close()
                self._db = None

    # -- reading --------------------------------------------------------------
    async def load_active(self, now: float) -> list[Ban]:
        """The bans still in force at `now` (expired ones are left for the keeper to record)."""
        return await self._call(self._load_active, now)

    def _load_active(self, now: float) -> list[Ban]:
        rows = self._conn().execute(
            "SELECT target, until, reason, source, created, count FROM bans "
            "WHERE until > ? ORDER BY created",
            (now,),
        )
        return [Ban(*row) for row in rows]

    async def load_expired(self, now: float) -> list[Ban]:
        """Bans stored as active whose time ran out while wardent was not running."""
        return await self._call(self._load_expired, now)

    def _load_expired(self, now: float) -> list[Ban]:
        rows = self._conn().execute(
            "SELECT target, until, reason, source, created, count FROM bans WHERE until <= ?",
            (now,),
        )
        return [Ban(*row) for row in rows]

    async def history(self, target: str, limit: int = 50) -> list[dict[str, Any]]:
        """The newest `limit` events of `target`, newest first."""
        return await self._call(self._history, target, limit)

    def _history(self, target: str, limit: int) -> list[dict[str, Any]]:
        rows = self._conn().execute(
            "SELECT target, action, at, until, reason, source FROM events "
            "WHERE target = ? ORDER BY at DESC, id DESC LIMIT ?",
            (target, limit),
        )
        names = ("target", "action", "at", "until", "reason", "source")
        return [dict(zip(names, row, strict=True)) for row in rows]

    async def ban_count(self, target: str) -> int:
        """How many times `target` was banned before (within the retention)."""
        return await self._call(self._ban_count, target)

    def _ban_count(self, target: str) -> int:
        row = (
            self._conn()
            .execute("SELECT count(*) FROM events WHERE target = ? AND action = 'ban'", (target,))
            .fetchone()
        )
        return int(row[0])

    # -- writing --------------------------------------------------------------
    async def save(self, ban: Ban) -> None:
        """Make `ban` the active ban of its target and record a `ban` event, atomically."""
        await self._call(self._save, ban)

    def _save(self, ban: Ban) -> None:
        db = self._conn()
        with _transaction(db):
            db.execute(
                "INSERT OR REPLACE INTO bans (target, until, reason, source, created, count) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (ban.target, ban.until, ban.reason, ban.source, ban.created, ban.count),
            )
            db.execute(
                "INSERT INTO events (target, action, at, until, reason, source) "
                "VALUES (?, 'ban', ?, ?, ?, ?)",
                (ban.target, ban.created, ban.until, ban.reason, ban.source),
            )

    async def delete(self, target: str, action: Action, at: float | None = None) -> bool:
        """End the active ban of `target` and record `action` (unban or expire).

        False when `target` had no active ban (nothing is recorded then).
        """
        return await self._call(self._delete, target, action, self.clock() if at is None else at)

    def _delete(self, target: str, action: Action, at: float) -> bool:
        db = self._conn()
        with _transaction(db):
            row = db.execute(
                "SELECT until, reason, source FROM bans WHERE target = ?", (target,)
            ).fetchone()
            if row is None:
                return False
            db.execute("DELETE FROM bans WHERE target = ?", (target,))
            db.execute(
                "INSERT INTO events (target, action, at, until, reason, source) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (target, action, at, *row),
            )
        return True


class _transaction:
    """BEGIN IMMEDIATE … COMMIT, or ROLLBACK on an error (the connection is in autocommit)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, error: object, traceback: object) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")
