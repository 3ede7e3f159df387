"""Which database tradesim's tests run on.

PostgreSQL (127.0.0.1:5432, database `test`) when it answers, else SQLite; the other
backend is covered by test_backends.py, which reruns the suite in a subprocess.
TRADESIM_TEST_DATABASE_URL forces one. With CI=true an unreachable PostgreSQL fails
the PostgreSQL tests instead of skipping them.
"""

from __future__ import annotations

import functools
import os

POSTGRES_URL = os.environ.get(
    "TRADESIM_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test"
)
SQLITE_URL = "sqlite://:memory:"


@functools.cache
def postgres_problem() -> str | None:
    """None if PostgreSQL answers, else why not."""
    try:
        import psycopg

        with psycopg.connect(POSTGRES_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        return f"PostgreSQL at {POSTGRES_URL} is unreachable: {exc}".strip()
    return None


def session_database_url() -> str:
    forced = os.environ.get("TRADESIM_TEST_DATABASE_URL")
    if forced:
        return forced
    return POSTGRES_URL if postgres_problem() is None else SQLITE_URL


def session_is_postgres() -> bool:
    return session_database_url().startswith(("postgres://", "postgresql://"))


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"
