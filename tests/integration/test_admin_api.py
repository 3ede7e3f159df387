"""The admin API on a real loopback socket, with a fake gateway behind it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CONTENT_TYPE_LATEST

from wardent.admin.api import build_admin_app, start_admin
from wardent.admin.client import AdminClient
from wardent.config.load import load_settings
from wardent.config.schema import Address, Settings
from wardent.observe.metrics import GatewayMetrics
from wardent.state.keeper import BanKeeper

TOKEN = "admin-token-4f1c9e"

CONFIG = """\
listen:
  public: "127.0.0.1:8080"
upstream:
  url: "http://127.0.0.1:8000"
secrets:
  admin_token: {env: WARDENT_TEST_ADMIN_TOKEN}
"""


class FakeBackend:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.reachable = True
        self.reload_errors: list[str] = []
        self.reloads = 0
        self.metrics = GatewayMetrics(process_metrics=False)
        # tests/integration/test_admin_bans.py runs the ban endpoints with a real keeper.
        self.keeper: BanKeeper | None = None

    @property
    def settings(self) -> Settings:
        return self._settings

    def admin_token(self) -> bytes | None:
        secret = self._settings.secrets.admin_token
        return None if secret is None else secret.value

    async def upstream_reachable(self) -> bool:
        return self.reachable

    def render_metrics(self) -> bytes:
        return self.metrics.render()

    def rate_limits(self, key: str) -> dict[str, Any]:
        return {"all": {"remaining": 5, "reset_seconds": 0}}

    async def reload(self) -> list[str]:
        self.reloads += 1
        return list(self.reload_errors)


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("WARDENT_TEST_ADMIN_TOKEN", TOKEN)
    path = tmp_path / "wardent.yaml"
    path.write_text(CONFIG)
    return load_settings(path)


@pytest.fixture
def backend(settings: Settings) -> FakeBackend:
    return FakeBackend(settings)


@pytest.fixture
async def base_url(backend: FakeBackend) -> AsyncIterator[str]:
    runner = await start_admin(build_admin_app(backend), Address(host="127.0.0.1", port=0))
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def raw(
    base_url: str, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, base_url + path, headers=headers or {}) as response,
    ):
        return response.status, dict(response.headers), await response.read()


async def test_healthz_needs_no_token(base_url: str) -> None:
    status, body = await AdminClient(base_url, None).request("GET", "/healthz")
    assert (status, body) == (200, {"status": "ok"})


@pytest.mark.parametrize("path", ["/readyz", "/metrics", "/config"])
async def test_protected_endpoints_need_the_token(base_url: str, path: str) -> None:
    status, headers, body = await raw(base_url, "GET", path)
    assert status == 401
    assert headers["WWW-Authenticate"] == "Bearer"
    payload = json.loads(body)
    assert payload["error"] == "unauthorized"
    assert "Authorization" in payload["detail"]

    status, body_json = await AdminClient(base_url, "wrong-token").request("GET", path)
    assert status == 401
    assert body_json == {"error": "unauthorized", "detail": "wrong admin token"}

    status, _, _ = await raw(base_url, "GET", path, {"Authorization": f"Basic {TOKEN}"})
    assert status == 401

    status, _ = await AdminClient(base_url, TOKEN).request("GET", path)
    assert status == 200


async def test_reload_needs_the_token(base_url: str, backend: FakeBackend) -> None:
    status, _ = await AdminClient(base_url, None).request("POST", "/reload")
    assert status == 401
    assert backend.reloads == 0


async def test_no_configured_token_refuses_everything_but_healthz(tmp_path: Path) -> None:
    path = tmp_path / "wardent.yaml"
    path.write_text(CONFIG.split("secrets:", maxsplit=1)[0])
    backend = FakeBackend(load_settings(path))
    runner = await start_admin(build_admin_app(backend), Address(host="127.0.0.1", port=0))
    host, port = runner.addresses[0][:2]
    client = AdminClient(f"http://{host}:{port}", "anything")
    try:
        status, body = await client.request("GET", "/readyz")
        assert status == 401
        assert "admin_token is not configured" in body["detail"]
        assert (await client.request("GET", "/healthz"))[0] == 200
    finally:
        await runner.cleanup()


async def test_readyz(base_url: str, backend: FakeBackend) -> None:
    client = AdminClient(base_url, TOKEN)
    status, body = await client.request("GET", "/readyz")
    assert status == 200
    assert body == {"ready": True, "checks": {"config": True, "upstream": True}}

    backend.reachable = False
    status, body = await client.request("GET", "/readyz")
    assert status == 503
    assert body == {"ready": False, "checks": {"config": True, "upstream": False}}


async def test_readyz_upstream_check_that_raises_is_not_ready(
    base_url: str, backend: FakeBackend
) -> None:
    async def broken() -> bool:
        raise ConnectionRefusedError

    backend.upstream_reachable = broken  # type: ignore[method-assign]
    status, body = await AdminClient(base_url, TOKEN).request("GET", "/readyz")
    assert status == 503
    assert body["checks"]["upstream"] is False


async def test_metrics_is_prometheus_text(base_url: str, backend: FakeBackend) -> None:
    backend.metrics.count_request("api", 200, 0.01, 0.005)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    status, response_headers, body = await raw(base_url, "GET", "/metrics", headers)
    assert status == 200
    assert response_headers["Content-Type"] == CONTENT_TYPE_LATEST
    text = body.decode()
    assert 'wardent_requests_total{route="api",status_class="2xx"} 1.0' in text
    assert "# TYPE wardent_request_duration_seconds histogram" in text


async def test_config_redacts_secrets(base_url: str) -> None:
    # TOKEN came from the environment when the settings were loaded.
    status, headers, body = await raw(
        base_url, "GET", "/config", {"Authorization": f"Bearer {TOKEN}"}
    )
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert TOKEN.encode() not in body
    payload = json.loads(body)
    assert payload["secrets"]["admin_token"] == {
        "env": "WARDENT_TEST_ADMIN_TOKEN",
        "value": "<redacted>",
    }
    assert payload["listen"]["public"] == "127.0.0.1:8080"
    assert payload["upstream"]["url"] == "http://127.0.0.1:8000"


async def test_config_redacts_file_secrets(tmp_path: Path) -> None:
    secret_file = tmp_path / "admin.token"
    secret_file.write_text(TOKEN + "\n")
    path = tmp_path / "wardent.yaml"
    path.write_text(CONFIG.replace("{env: WARDENT_TEST_ADMIN_TOKEN}", f"{{file: {secret_file}}}"))
    backend = FakeBackend(load_settings(path, environ={}))
    runner = await start_admin(build_admin_app(backend), Address(host="127.0.0.1", port=0))
    host, port = runner.addresses[0][:2]
    try:
        status, _, body = await raw(
            f"http://{host}:{port}", "GET", "/config", {"Authorization": f"Bearer {TOKEN}"}
        )
    finally:
        await runner.cleanup()
    assert status == 200
    assert TOKEN.encode() not in body
    assert json.loads(body)["secrets"]["admin_token"] == {
        "file": str(secret_file),
        "value": "<redacted>",
    }


async def test_reload_ok_and_failing(base_url: str, backend: FakeBackend) -> None:
    client = AdminClient(base_url, TOKEN)
    assert await client.request("POST", "/reload") == (200, {"reloaded": True})

    backend.reload_errors = [
        "wardent.yaml:3: upstream.url: expected http://HOST[:PORT]",
        "wardent.yaml:9: guards: unknown key",
    ]
    status, body = await client.request("POST", "/reload")
    assert status == 422
    assert body["error"] == "invalid_config"
    assert "2 problems" in body["detail"]
    assert body["issues"] == backend.reload_errors
    assert backend.reloads == 2


async def test_unknown_path_and_wrong_method_are_json(base_url: str) -> None:
    client = AdminClient(base_url, TOKEN)
    status, body = await client.request("GET", "/nope")
    assert status == 404
    assert body["error"] == "not_found"
    assert "/healthz" in body["detail"]

    status, headers, raw_body = await raw(
        base_url, "GET", "/reload", {"Authorization": f"Bearer {TOKEN}"}
    )
    assert status == 405
    assert headers["Allow"] == "POST"
    payload = json.loads(raw_body)
    assert payload["error"] == "method_not_allowed"
    assert "use POST" in payload["detail"]


async def test_handler_failure_is_a_json_500(base_url: str, backend: FakeBackend) -> None:
    def broken() -> bytes:
        raise RuntimeError("boom")

    backend.render_metrics = broken  # type: ignore[method-assign]
    status, body = await AdminClient(base_url, TOKEN).request("GET", "/metrics")
    assert status == 500
    assert body["error"] == "internal"


async def test_unix_socket(tmp_path: Path, backend: FakeBackend) -> None:
    socket_path = str(tmp_path / "admin.sock")
    runner = await start_admin(build_admin_app(backend), Address(unix_path=socket_path))
    try:
        client = AdminClient(f"unix:{socket_path}", TOKEN)
        assert await client.request("GET", "/healthz") == (200, {"status": "ok"})
        assert (await client.request("GET", "/readyz"))[0] == 200
    finally:
        await runner.cleanup()
