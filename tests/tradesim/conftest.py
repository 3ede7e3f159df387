"""Django for tradesim's tests only: the settings module is chosen here, at collection,
so the Wardent tests (which never import this file) stay free of Django."""

from __future__ import annotations

import os

import pytest

os.environ["DJANGO_SETTINGS_MODULE"] = "tests.tradesim.settings"

from tests.tradesim.database import in_ci, postgres_problem, session_is_postgres


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres: needs the session database to be PostgreSQL")
    # pytest-django configures Django at start-up only when DJANGO_SETTINGS_MODULE is
    # already set then; it is set late here (so only tradesim's tests see Django), so
    # finish the set-up the way pytest-django's own pytest_configure would: populate
    # the app registry and block database access outside tests that ask for it.
    from django.conf import settings
    from pytest_django.plugin import _setup_django

    # Touching a setting loads the settings module; _setup_django skips unloaded ones.
    assert settings.ROOT_URLCONF
    _setup_django(config)


@pytest.fixture(autouse=True)
def _postgres_gate(request: pytest.FixtureRequest) -> None:
    """A `postgres` test skips without PostgreSQL, saying why; under CI=true it fails."""
    if request.node.get_closest_marker("postgres") is None or session_is_postgres():
        return
    problem = postgres_problem() or "TRADESIM_TEST_DATABASE_URL selects another database"
    if in_ci():
        pytest.fail(f"CI=true requires PostgreSQL for this test: {problem}")
    pytest.skip(f"needs PostgreSQL: {problem}")
