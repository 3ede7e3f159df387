"""Settings for tradesim's tests: the real settings, a throwaway signing key, a fast
password hasher, and the database chosen by tests/tradesim/database.py."""

from __future__ import annotations

import dataclasses

from tests.tradesim.database import session_database_url
from tradesim.accounts.keys import generate_private_key_pem
from tradesim.settings import *  # noqa: F403
from tradesim.settings import TRADESIM, _database

TRADESIM = dataclasses.replace(
    TRADESIM,
    jwt_private_key=generate_private_key_pem(2048).decode(),
    jwt_private_key_file=None,
)

# The production hasher is deliberately slow; tests register hundreds of users.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

DATABASES = {"default": _database(session_database_url())}
# Django creates and drops this database around the run (on PostgreSQL: beside `test`).
DATABASES["default"]["TEST"] = {"NAME": "test_tradesim"}
