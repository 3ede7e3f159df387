"""The ban endpoints of the admin API on a real socket, with a real keeper and SQLite file."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from wardent.admin.api import build_admin_app, start_admin
from wardent.admin.client import AdminClient
from wardent.config.guard_settings import Bans
from wardent.config.load import load_settings
from wardent.config.schema import Address, Settings
from wardent.state.bans import BanTable
from wardent.state.keeper import BanKeeper
from wardent.state.store import BanStore

TOKEN = "admin-token-bans"

CONFIG = """\
listen:
  public: "127.0.0.1:8080"
upstream:
  url: "http://127.0.0.1:8000"
secrets:
  admin_token: {env: WARDENT_TEST_ADMIN_TOKEN}
"""


class Backend:
    """The gateway's side of the admin API, with a real ban keeper."""

    def __init__(self, settings: Settings, keeper: BanKeeper | None) -> None:
        self.settings = settings
        self.keeper = keeper

    def admin_token(self) -> bytes | None:
        return TOKEN.encode()

    async def upstream_reachable(self) -> bool:
        return True

    def render_metrics(self) -> bytes:
        return b""

    def rate_limits(self, key: str) -> dict[str, Any]:
        return {"all": {"remaining": 5, "reset_seconds": 0}}

    async def reload(self) -> list[str]:
        return []


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("WARDENT_TEST_ADMIN_TOKEN", TOKEN)
    path = tmp_path / "wardent.yaml"
    path.write_text(CONFIG)
    return load_settings(path)


@pytest.fixture
async def keeper(tmp_path: Path) -> AsyncIterator[BanKeeper]:
    policy = Bans.model_validate(
        {"find_time": "10m", "max_violations": 5, "never_ban": ["192.0.2.0/24"]}
    )
    keeper = BanKeeper(policy, BanTable(), BanStore(tmp_path / "bans.sqlite3"))
    await keeper.start()
    try:
        yield keeper
    finally:
        await keeper.stop()


async def serve(backend: Backend) -> tuple[aiohttp.web.AppRunner, AdminClient]:
    runner = await start_admin(build_admin_app(backend), Address(host="127.0.0.1", port=0))
    host, port = runner.addresses[0][:2]
    return runner, AdminClient(f"http://{host}:{port}", TOKEN)


@pytest.fixture
async def admin(settings: Settings, keeper: BanKeeper) -> AsyncIterator[AdminClient]:
    runner, client = await serve(Backend(settings, keeper))
    try:
        yield client
    finally:
        await runner.cleanup()


async def test_add_list_remove(admin: AdminClient, keeper: BanKeeper) -> None:
    assert await admin.request("GET", "/bans") == (200, {"bans": []})

    status, ban = await admin.request(
        "POST", "/bans", {"target": "203.0.113.7", "duration": "1h", "reason": "scraping"}
    )
    assert status == 201
    assert ban["target"] == "203.0.113.7"
    assert ban["reason"] == "scraping"
    assert ban["source"] == "operator"
    assert ban["count"] == 1
    assert 3599 <= ban["remaining_seconds"] <= 3600
    assert ban["until"].endswith("Z")
    until = time.strptime(ban["until"], "%Y-%m-%dT%H:%M:%SZ")
    assert abs(time.mktime(until) - time.mktime(time.gmtime()) - 3600) < 5

    status, body = await admin.request(
        "POST", "/bans", {"target": "2001:db8::/32", "duration": 600}
    )
    assert status == 201
    assert body["reason"] == "banned by an operator"

    status, body = await admin.request("GET", "/bans")
    assert status == 200
    assert [entry["target"] for entry in body["bans"]] == ["2001:db8::/32", "203.0.113.7"]
    assert set(body["bans"][0]) >= {"target", "until", "remaining_seconds", "reason", "source"}

    # The table, which the request path reads, changed.
    assert len(keeper.table) == 2

    assert await admin.request("DELETE", "/bans/203.0.113.7") == (200, {"removed": True})
    status, body = await admin.request("DELETE", "/bans/203.0.113.7")
    assert status == 404
    assert body["error"] == "not_banned"
    assert "GET /bans" in body["detail"]
    path = "/bans/" + quote("2001:db8::/32", safe="")
    assert await admin.request("DELETE", path) == (200, {"removed": True})
    assert await admin.request("GET", "/bans") == (200, {"bans": []})


async def test_a_network_is_removed_with_an_encoded_slash(admin: AdminClient) -> None:
    status, _ = await admin.request(
        "POST", "/bans", {"target": "203.0.113.0/24", "duration": "1d", "reason": "range"}
    )
    assert status == 201
    assert await admin.request("DELETE", "/bans/203.0.113.0%2F24") == (200, {"removed": True})


@pytest.mark.parametrize(
    ("body", "code", "hint"),
    [
        ({"duration": "1h"}, "invalid_target", "target is required"),
        ({"target": 7, "duration": "1h"}, "invalid_target", "target is required"),
        ({"target": "example.com", "duration": "1h"}, "invalid_target", "not an IP address"),
        ({"target": "203.0.113.7/24", "duration": "1h"}, "invalid_target", "203.0.113.0/24"),
        ({"target": "203.0.113.7"}, "invalid_duration", "duration is required"),
        ({"target": "203.0.113.7", "duration": "soon"}, "invalid_duration", "such as 250ms"),
        ({"target": "203.0.113.7", "duration": "0s"}, "invalid_duration", "more than 0"),
        ({"target": "203.0.113.7", "duration": "1h", "reason": 5}, "invalid_reason", "string"),
        ({"target": "203.0.113.7", "duration": "1h", "for": "x"}, "invalid_body", "for"),
        (["203.0.113.7"], "invalid_body", "JSON object"),
    ],
)
async def test_add_errors_say_what_to_fix(
    admin: AdminClient, keeper: BanKeeper, body: Any, code: str, hint: str
) -> None:
    status, answer = await admin.request("POST", "/bans", body)
    assert status == 400
    assert answer["error"] == code
    assert hint in answer["detail"]
    assert len(keeper.table) == 0


async def test_add_needs_json(admin: AdminClient) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            admin.base_url + "/bans",
            data=b"target=203.0.113.7",
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as response,
    ):
        assert response.status == 400
        answer = await response.json()
    assert answer["error"] == "invalid_json"
    assert '"duration": "1h"' in answer["detail"]


async def test_never_ban_is_refused(admin: AdminClient) -> None:
    status, body = await admin.request("POST", "/bans", {"target": "192.0.2.10", "duration": "1h"})
    assert status == 409
    assert body["error"] == "refused"
    assert "never_ban" in body["detail"]


async def test_remove_an_invalid_target(admin: AdminClient) -> None:
    status, body = await admin.request("DELETE", "/bans/not-an-ip")
    assert status == 400
    assert body["error"] == "invalid_target"


async def test_client_state(admin: AdminClient, keeper: BanKeeper) -> None:
    keeper.report("198.51.100.7", "198.51.100.7", "rate_limit")
    keeper.report("198.51.100.7", "198.51.100.7", "crawlers")
    await keeper.add_ban("198.51.100.0/24", 60, "the range")  # served after the two reports
    status, state = await admin.request("GET", "/clients/198.51.100.7")
    assert status == 200
    assert state["key"] == "198.51.100.7"
    assert state["banned"] is True
    assert state["ban"]["target"] == "198.51.100.0/24"
    assert state["violations"]["count"] == 2
    assert [event["guard"] for event in state["violations"]["events"]] == [
        "rate_limit",
        "crawlers",
    ]
    assert state["history"][0]["action"] == "ban"

    status, state = await admin.request("GET", "/clients/2001:db8:1:2::7")
    assert status == 200
    assert (state["key"], state["banned"]) == ("2001:db8:1:2::/64", False)

    status, body = await admin.request("GET", "/clients/nonsense")
    assert status == 400
    assert body["error"] == "invalid_ip"


async def test_ban_endpoints_need_the_token(admin: AdminClient, keeper: BanKeeper) -> None:
    anonymous = AdminClient(admin.base_url, None)
    assert (await anonymous.request("GET", "/bans"))[0] == 401
    status, _ = await anonymous.request("POST", "/bans", {"target": "1.2.3.4", "duration": "1h"})
    assert status == 401
    assert (await anonymous.request("DELETE", "/bans/1.2.3.4"))[0] == 401
    assert (await anonymous.request("GET", "/clients/1.2.3.4"))[0] == 401
    assert len(keeper.table) == 0


async def test_readyz_fails_when_the_keeper_is_unhealthy(
    admin: AdminClient, keeper: BanKeeper
) -> None:
    status, body = await admin.request("GET", "/readyz")
    assert (status, body["checks"]["keeper"]) == (200, True)
    keeper.healthy = False
    status, body = await admin.request("GET", "/readyz")
    assert status == 503
    assert body == {"ready": False, "checks": {"config": True, "upstream": True, "keeper": False}}
    status, body = await admin.request("GET", "/bans")
    assert status == 503
    assert body["error"] == "keeper_unavailable"


async def test_without_a_keeper_the_ban_endpoints_are_unavailable(settings: Settings) -> None:
    runner, client = await serve(Backend(settings, None))
    try:
        status, body = await client.request("GET", "/bans")
        assert status == 503
        assert "not running" in body["detail"]
        status, _ = await client.request("POST", "/bans", {"target": "1.2.3.4", "duration": "1h"})
        assert status == 503
        assert (await client.request("GET", "/readyz"))[0] == 200
    finally:
        await runner.cleanup()
