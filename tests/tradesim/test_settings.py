"""Settings from the environment, and the signing key's start-up rules."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.core.exceptions import ImproperlyConfigured

from tradesim.accounts.keys import generate_private_key_pem, load_signing_keys
from tradesim.config import AppConfig, load_app_config
from tradesim.env import Env
from tradesim.settings import _database

ROOT = Path(__file__).resolve().parents[2]
PEM = generate_private_key_pem(2048).decode()


def config_with(tmp_path: Path, **values: str) -> AppConfig:
    return load_app_config(Env(values), tmp_path)


def test_flags_numbers_and_symbols_are_parsed_and_bad_values_name_the_variable(
    tmp_path: Path,
) -> None:
    config = config_with(
        tmp_path,
        TRADESIM_LOCAL_HTTP="yes",
        TRADESIM_QUOTE_TTL="3",
        TRADESIM_SYMBOLS="btcusdt, ethusdt",
    )
    assert config.local_http is True
    assert config.quote_ttl == 3.0
    assert config.symbols == ("BTCUSDT", "ETHUSDT")
    for name, value in [
        ("TRADESIM_LOCAL_HTTP", "maybe"),
        ("TRADESIM_QUOTE_TTL", "soon"),
        ("TRADESIM_QUOTE_TTL", "nan"),
        ("TRADESIM_FEED_SOURCE", "kraken"),
        ("TRADESIM_STARTING_CASH", "-5"),
        ("TRADESIM_SYMBOLS", "BTC/USDT"),
    ]:
        with pytest.raises(ImproperlyConfigured, match=name):
            config_with(tmp_path, **{name: value})


def test_secret_from_variable_or_file_and_empty_is_an_error(tmp_path: Path) -> None:
    assert Env({"X": "s3cret"}).secret("X") == "s3cret"
    assert Env({}).secret("X") is None
    secret_file = tmp_path / "x"
    secret_file.write_text("from-file\n")
    assert Env({"X_FILE": str(secret_file)}).secret("X") == "from-file\n"
    with pytest.raises(ImproperlyConfigured, match="X is set but empty"):
        Env({"X": "  "}).secret("X")
    with pytest.raises(ImproperlyConfigured, match=r"X_FILE: file .* does not exist"):
        Env({"X_FILE": str(tmp_path / "missing")}).secret("X")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ImproperlyConfigured, match=r"X_FILE: file .* is empty"):
        Env({"X_FILE": str(tmp_path / "empty")}).secret("X")


def test_database_url_selects_postgresql_and_sqlite_gets_immediate_transactions() -> None:
    pg = _database("postgres://app:pw@db.example:5433/trades")
    assert pg["ENGINE"] == "django.db.backends.postgresql"
    assert (pg["NAME"], pg["HOST"], pg["PORT"], pg["USER"]) == ("trades", "db.example", 5433, "app")
    lite = _database("sqlite:////tmp/x/tradesim.sqlite3")
    assert lite["ENGINE"] == "django.db.backends.sqlite3"
    assert lite["NAME"] == "/tmp/x/tradesim.sqlite3"
    assert lite["OPTIONS"]["transaction_mode"] == "IMMEDIATE"


def test_default_database_is_sqlite_under_the_data_dir(tmp_path: Path) -> None:
    code = "from django.conf import settings; print(settings.DATABASES['default']['NAME'])"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(DJANGO_SETTINGS_MODULE="tradesim.settings", TRADESIM_DATA_DIR=str(tmp_path))
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == str(tmp_path / "tradesim.sqlite3")


@pytest.mark.parametrize(
    "encode", [lambda pem: pem, lambda pem: base64.b64encode(pem.encode()).decode()]
)
def test_signing_key_from_pem_or_base64_of_pem(
    tmp_path: Path, encode: Callable[[str], str]
) -> None:
    keys = load_signing_keys(config_with(tmp_path, TRADESIM_JWT_PRIVATE_KEY=encode(PEM)))
    assert keys.private_key.key_size == 2048
    assert keys.kid


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "TRADESIM_JWT_PRIVATE_KEY is empty"),
        ("   \n", "TRADESIM_JWT_PRIVATE_KEY is empty"),
        ("not a key at all!", "TRADESIM_JWT_PRIVATE_KEY is neither a PEM"),
        (base64.b64encode(b"hello world").decode(), "TRADESIM_JWT_PRIVATE_KEY is valid base64 but"),
        (
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "TRADESIM_JWT_PRIVATE_KEY is not a readable PEM",
        ),
        (
            _pem(ec.generate_private_key(ec.SECP256R1())),
            "TRADESIM_JWT_PRIVATE_KEY must be an RSA key",
        ),
        (
            _pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)),
            "TRADESIM_JWT_PRIVATE_KEY is a 1024-bit RSA key",
        ),
    ],
)
def test_bad_signing_keys_are_start_up_errors_naming_the_variable(
    tmp_path: Path, value: str, message: str
) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        load_signing_keys(config_with(tmp_path, TRADESIM_JWT_PRIVATE_KEY=value))


def test_signing_key_file_rules(tmp_path: Path) -> None:
    key_file = tmp_path / "key.pem"
    key_file.write_text(PEM)
    assert load_signing_keys(config_with(tmp_path, TRADESIM_JWT_PRIVATE_KEY_FILE=str(key_file)))
    with pytest.raises(
        ImproperlyConfigured, match=r"TRADESIM_JWT_PRIVATE_KEY_FILE: file .* does not"
    ):
        load_signing_keys(config_with(tmp_path, TRADESIM_JWT_PRIVATE_KEY_FILE=str(tmp_path / "no")))
    with pytest.raises(
        ImproperlyConfigured, match="TRADESIM_JWT_PRIVATE_KEY_FILE is set but empty"
    ):
        load_signing_keys(config_with(tmp_path, TRADESIM_JWT_PRIVATE_KEY_FILE=""))
    # Nothing configured and no default file: the message says how to get a key.
    with pytest.raises(
        ImproperlyConfigured, match=r"TRADESIM_JWT_PRIVATE_KEY is not set.*gen_jwt_key"
    ):
        load_signing_keys(config_with(tmp_path))
    (tmp_path / "jwt-private.pem").write_text(PEM)
    assert (
        load_signing_keys(config_with(tmp_path)).kid
        == load_signing_keys(config_with(tmp_path, TRADESIM_JWT_PRIVATE_KEY=PEM)).kid
    )


def _run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TRADESIM_", "DATABASE_URL"))}
    base.update(DJANGO_SETTINGS_MODULE="tradesim.settings", TRADESIM_DATA_DIR=str(tmp_path), **env)
    return subprocess.run(
        [sys.executable, *args],
        env=base,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_asgi_app_refuses_to_start_with_an_empty_key(tmp_path: Path) -> None:
    bad = _run(["-c", "import tradesim.asgi"], tmp_path, TRADESIM_JWT_PRIVATE_KEY="")
    assert bad.returncode != 0
    assert "TRADESIM_JWT_PRIVATE_KEY is empty" in bad.stderr
    good = _run(["-c", "import tradesim.asgi"], tmp_path, TRADESIM_JWT_PRIVATE_KEY=PEM)
    assert good.returncode == 0, good.stderr


def test_gen_jwt_key_makes_the_dev_key_that_settings_then_read(tmp_path: Path) -> None:
    before = _run(["-m", "tradesim.manage", "check"], tmp_path)
    assert before.returncode != 0
    assert "TRADESIM_JWT_PRIVATE_KEY is not set" in before.stderr
    made = _run(["-m", "tradesim.manage", "gen_jwt_key", "--bits", "2048"], tmp_path)
    assert made.returncode == 0, made.stderr
    key_file = tmp_path / "jwt-private.pem"
    assert key_file.stat().st_mode & 0o777 == 0o600
    after = _run(["-m", "tradesim.manage", "check"], tmp_path)
    assert after.returncode == 0, after.stderr
    again = _run(["-m", "tradesim.manage", "gen_jwt_key"], tmp_path)
    assert again.returncode != 0 and "exists" in again.stderr
