"""Django settings, all from the environment (docs/tradesim.md lists every variable).

SQLite under TRADESIM_DATA_DIR by default; PostgreSQL (or any database) via DATABASE_URL.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import dj_database_url

from tradesim.billing.config import load_billing_config
from tradesim.config import load_app_config
from tradesim.env import Env

env = Env()

BASE_DIR = Path(__file__).resolve().parent
DATA_DIR = Path(env.text("TRADESIM_DATA_DIR", "var")).resolve()

DEBUG = env.flag("TRADESIM_DEBUG", False)
# Nothing in tradesim signs with SECRET_KEY (no sessions, no password-reset links:
# auth is RS256 JWTs), so a random per-process key is a safe default; set it anyway
# if you add a feature that signs things.
SECRET_KEY = env.secret("TRADESIM_SECRET_KEY") or secrets.token_urlsafe(50)
ALLOWED_HOSTS = env.items("TRADESIM_ALLOWED_HOSTS", "127.0.0.1,localhost")

TRADESIM = load_app_config(env, DATA_DIR)
# Stripe (docs/tradesim.md, "Billing"): optional; without it upgrading answers 503.
BILLING = load_billing_config(env)

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "tradesim.accounts",
    "tradesim.market",
    "tradesim.trading",
    "tradesim.billing",
    "tradesim.web",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]

ROOT_URLCONF = "tradesim.urls"
ASGI_APPLICATION = "tradesim.asgi.application"
APPEND_SLASH = False
# The pages (tradesim/web): Django templates, no context processors needed (pages
# load the user's data from the API, like any other client).
TEMPLATES: list[dict[str, Any]] = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": []},
    }
]
# Served by tradesim itself (tradesim/web/urls.py), or by nginx from tradesim/web/static.
STATIC_URL = "/static/"


def _database(url: str) -> dict[str, Any]:
    config: dict[str, Any] = dict(dj_database_url.parse(url, conn_max_age=0))
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # IMMEDIATE takes SQLite's write lock when a transaction starts, so two
        # concurrent trades queue up instead of failing with "database is locked"
        # on lock upgrade; WAL lets the stream's readers run beside the feed's writes.
        config["OPTIONS"] = {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL",
        }
    else:
        # Under ASGI each request runs in its own thread: persistent connections
        # would leak, so connections are per request (put a pooler in front if needed).
        config["CONN_HEALTH_CHECKS"] = True
    return config


DATABASES = {
    "default": _database(
        env.text("DATABASE_URL", f"sqlite:///{DATA_DIR / 'tradesim.sqlite3'}"),
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 8},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

# CSRF: the classic double-submit of Django's csrftoken cookie in X-CSRFToken. The
# cookie must be readable by the page's script, so it is not HttpOnly.
CSRF_COOKIE_HTTPONLY = False
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SECURE = not TRADESIM.local_http
CSRF_FAILURE_VIEW = "tradesim.api.csrf_failure"
CSRF_TRUSTED_ORIGINS = env.items("TRADESIM_CSRF_TRUSTED_ORIGINS", "")
if env.flag("TRADESIM_TRUST_X_FORWARDED_PROTO", False):
    # Behind nginx + Wardent the browser speaks HTTPS; without this Django would see
    # http and reject the browser's https Origin in the CSRF check.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "tradesim": {"handlers": ["console"], "level": env.text("TRADESIM_LOG_LEVEL", "INFO")},
    },
}
