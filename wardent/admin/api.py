"""The admin listener: health, readiness, metrics, effective config and reload.

It lives on its own loopback (or unix socket) listener, on aiohttp: nothing
here is on the per-request hot path. Every endpoint but /healthz needs
`Authorization: Bearer TOKEN`; every error, from a wrong token to an unknown
path, is JSON `{"error": CODE, "detail": TEXT}` whose detail says what to fix.

The gateway hands this module an `AdminBackend`: the current settings and
the few operations the endpoints need, so the app can be tested with a fake.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
from typing import Any, Protocol

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from wardent.config.schema import Address, SecretSource, Settings

__all__ = ["AdminBackend", "build_admin_app", "redacted_config", "start_admin"]

_log = logging.getLogger("wardent.admin")

REDACTED = "<redacted>"
ENDPOINTS = ("/healthz", "/readyz", "/metrics", "/config", "/reload")
PUBLIC_PATHS = frozenset({"/healthz"})


class AdminBackend(Protocol):
    """What the admin endpoints need from the running gateway."""

    @property
    def settings(self) -> Settings:
        """The settings in force now (after the last successful reload)."""
        ...

    def admin_token(self) -> bytes | None:
        """The admin token, or None when `secrets.admin_token` is not configured."""
        ...

    async def upstream_reachable(self) -> bool:
        """Whether a connection to the upstream can be made now."""
        ...

    def render_metrics(self) -> bytes:
        """The Prometheus text exposition."""
        ...

    async def reload(self) -> list[str]:
        """Re-read the configuration: [] on success, else the error lines (old settings stay)."""
        ...


BACKEND = web.AppKey("backend", AdminBackend)
RELOAD_LOCK = web.AppKey("reload_lock", asyncio.Lock)


def error_response(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> web.Response:
    return web.json_response(
        {"error": code, "detail": detail, **extra}, status=status, headers=headers
    )


def _unauthorized(detail: str) -> web.Response:
    return error_response(401, "unauthorized", detail, headers={"WWW-Authenticate": "Bearer"})


def _check_token(request: web.Request, token: bytes | None) -> web.Response | None:
    """None when the request carries the right token, else the 401 to send."""
    if token is None:
        return _unauthorized(
            "admin_token is not configured: set secrets.admin_token to {env: NAME} or "
            "{file: PATH} in the configuration and restart or reload wardent"
        )
    header = request.headers.get("Authorization")
    if header is None:
        return _unauthorized("missing the Authorization: Bearer TOKEN header")
    scheme, _, given = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return _unauthorized("the Authorization header must be Bearer TOKEN")
    try:
        given_bytes = given.strip().encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        given_bytes = b""
    if not hmac.compare_digest(given_bytes, token):
        return _unauthorized("wrong admin token")
    return None


@web.middleware
async def _auth_and_json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        if request.path not in PUBLIC_PATHS:
            denied = _check_token(request, request.app[BACKEND].admin_token())
            if denied is not None:
                return denied
        return await handler(request)
    except web.HTTPMethodNotAllowed as error:
        allowed = ", ".join(sorted(error.allowed_methods))
        return error_response(
            405,
            "method_not_allowed",
            f"{request.method} is not allowed on {request.path}; use {allowed}",
            headers={"Allow": allowed},
        )
    except web.HTTPNotFound:
        return error_response(
            404,
            "not_found",
            f"no admin endpoint {request.path}; the endpoints are {', '.join(ENDPOINTS)}",
        )
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return error_response(
            error.status, error.reason.lower().replace(" ", "_"), error.text or error.reason
        )
    except Exception:
        _log.exception("admin request failed", extra={"path": request.path})
        return error_response(
            500, "internal", "the admin endpoint failed; wardent's log has the traceback"
        )


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    backend = request.app[BACKEND]
    try:
        settings = backend.settings
        config_ok = True
        timeout = max(1.0, settings.upstream.connect_timeout)
    except Exception:
        config_ok, timeout = False, 2.0
    try:
        async with asyncio.timeout(timeout):
            upstream_ok = bool(await backend.upstream_reachable())
    except Exception:
        upstream_ok = False
    ready = config_ok and upstream_ok
    return web.json_response(
        {"ready": ready, "checks": {"config": config_ok, "upstream": upstream_ok}},
        status=200 if ready else 503,
    )


async def metrics(request: web.Request) -> web.Response:
    body = request.app[BACKEND].render_metrics()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def config(request: web.Request) -> web.Response:
    return web.json_response(redacted_config(request.app[BACKEND].settings))


async def reload(request: web.Request) -> web.Response:
    async with request.app[RELOAD_LOCK]:
        errors = await request.app[BACKEND].reload()
    if not errors:
        _log.info("configuration reloaded via the admin API")
        return web.json_response({"reloaded": True})
    _log.warning(
        "configuration reload via the admin API failed; the old configuration keeps running",
        extra={"issues": errors},
    )
    count = len(errors)
    return error_response(
        422,
        "invalid_config",
        f"the configuration file has {count} problem{'s' if count != 1 else ''}; "
        "fix them and reload again (the old configuration keeps running)",
        issues=errors,
    )


def redacted_config(settings: Settings) -> dict[str, Any]:
    """`settings` as JSON data, each secret shown by its source and never by its value."""
    dumped = settings.model_dump(mode="json")
    _redact(settings, dumped)
    return dumped


def _redact(model: BaseModel, dumped: dict[str, Any]) -> None:
    for name in type(model).model_fields:
        if name not in dumped:
            continue  # excluded from the dump
        _redact_value(getattr(model, name), dumped, name)


def _redact_value(value: object, container: Any, key: Any) -> None:
    if isinstance(value, SecretSource):
        source: dict[str, Any] = (
            {"env": value.env} if value.env is not None else {"file": value.file}
        )
        container[key] = {**source, "value": REDACTED}
    elif isinstance(value, BaseModel):
        if isinstance(container[key], dict):
            _redact(value, container[key])
    elif isinstance(value, tuple | list):
        if isinstance(container[key], list):
            for index, item in enumerate(value):
                if index < len(container[key]):
                    _redact_value(item, container[key], index)
    elif isinstance(value, dict) and isinstance(container[key], dict):
        for item_key, item in value.items():
            if str(item_key) in container[key]:
                _redact_value(item, container[key], str(item_key))


def build_admin_app(backend: AdminBackend) -> web.Application:
    app = web.Application(middlewares=[_auth_and_json_errors], client_max_size=1024 * 1024)
    app[BACKEND] = backend
    app[RELOAD_LOCK] = asyncio.Lock()
    app.router.add_get("/healthz", healthz, allow_head=True)
    app.router.add_get("/readyz", readyz, allow_head=True)
    app.router.add_get("/metrics", metrics, allow_head=True)
    app.router.add_get("/config", config)
    app.router.add_post("/reload", reload)
    return app


async def start_admin(app: web.Application, address: Address) -> web.AppRunner:
    """Serve `app` on `address` (TCP host:port or a unix socket); the caller cleans up.

    The runner's `addresses` tells which port a `:0` address was given.
    """
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site: web.BaseSite
    try:
        if address.unix_path is not None:
            site = web.UnixSite(runner, address.unix_path)
            await site.start()
            os.chmod(address.unix_path, 0o660)
        else:
            site = web.TCPSite(runner, address.host, address.port, reuse_address=True)
            await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
