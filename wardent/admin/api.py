"""The admin listener: health, readiness, metrics, effective config, reload and bans.

It lives on its own loopback (or unix socket) listener, on aiohttp: nothing
here is on the per-request hot path. Every endpoint but /healthz needs
`Authorization: Bearer TOKEN`; every error, from a wrong token to an unknown
path, is JSON `{"error": CODE, "detail": TEXT}` whose detail says what to fix.

The gateway hands this module an `AdminBackend`: the current settings and
the few operations the endpoints need, so the app can be tested with a fake.
The ban endpoints talk to the ban keeper's command channel, which never drops
a command, so an operator's unban gets through even under a flood.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import time
from typing import Any, Protocol

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from wardent.config.schema import Address, SecretSource, Settings
from wardent.config.units import parse_duration
from wardent.state.bans import ban_json
from wardent.state.keeper import BanKeeper, BanRefused, KeeperUnavailable

__all__ = ["AdminBackend", "build_admin_app", "redacted_config", "start_admin"]

_log = logging.getLogger("wardent.admin")

REDACTED = "<redacted>"
ENDPOINTS = (
    "/healthz",
    "/readyz",
    "/metrics",
    "/config",
    "/reload",
    "/bans",
    "/bans/{target}",
    "/clients/{ip}",
)
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

    @property
    def keeper(self) -> BanKeeper | None:
        """The ban keeper, or None when there is none (the ban endpoints then answer 503)."""
        ...

    def rate_limits(self, key: str) -> dict[str, Any]:
        """One client key's rate-limit buckets, by rule (for `wardent why`)."""
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
    checks = {"config": config_ok, "upstream": upstream_ok}
    try:
        keeper = backend.keeper
    except Exception:
        checks["keeper"] = False
    else:
        if keeper is not None:
            checks["keeper"] = keeper.healthy
    ready = all(checks.values())
    return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)


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


# -- bans -----------------------------------------------------------------------

BAN_BODY_EXAMPLE = '{"target": "203.0.113.7", "duration": "1h", "reason": "scraping"}'
BAN_FIELDS = ("target", "duration", "reason")


def _keeper_of(request: web.Request) -> BanKeeper:
    keeper = request.app[BACKEND].keeper
    if keeper is None:
        raise KeeperUnavailable("this wardent keeps no bans (the ban keeper is not running)")
    return keeper


def _keeper_unavailable(error: KeeperUnavailable) -> web.Response:
    return error_response(503, "keeper_unavailable", str(error))


async def list_bans(request: web.Request) -> web.Response:
    try:
        bans = await _keeper_of(request).list_bans()
    except KeeperUnavailable as error:
        return _keeper_unavailable(error)
    now = time.time()
    return web.json_response({"bans": [ban_json(ban, now) for ban in bans]})


async def add_ban(request: web.Request) -> web.Response:
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return error_response(
            400, "invalid_json", f"the body must be a JSON object such as {BAN_BODY_EXAMPLE}"
        )
    if not isinstance(data, dict):
        return error_response(
            400, "invalid_body", f"the body must be a JSON object such as {BAN_BODY_EXAMPLE}"
        )
    unknown = sorted(str(name) for name in data if name not in BAN_FIELDS)
    if unknown:
        return error_response(
            400,
            "invalid_body",
            f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}: "
            f"the fields are {', '.join(BAN_FIELDS)}",
        )
    target = data.get("target")
    if not isinstance(target, str) or not target.strip():
        return error_response(
            400,
            "invalid_target",
            "target is required: an IP address or CIDR such as 203.0.113.7 or 203.0.113.0/24",
        )
    if "duration" not in data:
        return error_response(
            400, "invalid_duration", 'duration is required: e.g. "1h", "30m" or "7d"'
        )
    try:
        duration = parse_duration(data["duration"])
    except ValueError as error:
        return error_response(400, "invalid_duration", f"duration: {error}")
    if duration <= 0:
        return error_response(
            400, "invalid_duration", 'duration must be more than 0: e.g. "1h", "30m" or "7d"'
        )
    reason = data.get("reason", "")
    if not isinstance(reason, str):
        return error_response(400, "invalid_reason", "reason must be a string, or left out")
    try:
        ban = await _keeper_of(request).add_ban(target, duration, reason)
    except KeeperUnavailable as error:
        return _keeper_unavailable(error)
    except BanRefused as error:
        return error_response(409, "refused", str(error))
    except ValueError as error:
        return error_response(400, "invalid_target", str(error))
    return web.json_response(ban_json(ban, time.time()), status=201)


async def remove_ban(request: web.Request) -> web.Response:
    target = request.match_info["target"]
    try:
        removed = await _keeper_of(request).remove_ban(target)
    except KeeperUnavailable as error:
        return _keeper_unavailable(error)
    except ValueError as error:
        return error_response(400, "invalid_target", str(error))
    if not removed:
        return error_response(
            404,
            "not_banned",
            f"{target} is not banned; GET /bans lists the bans in force "
            "(a network is removed by the CIDR it was banned as)",
        )
    return web.json_response({"removed": True})


async def client_state(request: web.Request) -> web.Response:
    try:
        state = await _keeper_of(request).client_state(request.match_info["ip"])
    except KeeperUnavailable as error:
        return _keeper_unavailable(error)
    except ValueError as error:
        return error_response(400, "invalid_ip", str(error))
    state["rate_limits"] = request.app[BACKEND].rate_limits(state["key"])
    return web.json_response(state)


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
    app.router.add_get("/bans", list_bans)
    app.router.add_post("/bans", add_ban)
    app.router.add_delete("/bans/{target:.+}", remove_ban)
    app.router.add_get("/clients/{ip}", client_state)
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
