"""Operating a running `wardent run`: admin API, metrics, reload, access log, check."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import ADMIN_TOKEN, ROOT, Upstream, Wardent, running_wardent

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def sample(metrics_text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(metrics_text):
        for item in family.samples:
            if item.name == name and all(item.labels.get(k) == v for k, v in labels.items()):
                return float(item.value)
    return 0.0


async def test_admin_endpoints_need_the_token_except_healthz(wardent: Wardent) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(wardent.admin_url + "/healthz") as response:
            assert response.status == 200
        for path in ("/readyz", "/metrics", "/config"):
            async with session.get(wardent.admin_url + path) as response:
                assert response.status == 401, path
            async with session.get(
                wardent.admin_url + path, headers={"Authorization": "Bearer wrong"}
            ) as response:
                assert response.status == 401, path
        async with session.get(wardent.admin_url + "/readyz", headers=AUTH) as response:
            assert response.status == 200
            assert (await response.json())["checks"] == {
                "config": True,
                "upstream": True,
                "keeper": True,
            }
        async with session.get(wardent.admin_url + "/config", headers=AUTH) as response:
            body = await response.text()
            assert response.status == 200
            assert ADMIN_TOKEN not in body
            assert (await response.json())["secrets"]["admin_token"]["value"] == "<redacted>"


async def test_readyz_fails_when_the_upstream_is_down(tmp_path: Path) -> None:
    dead = Upstream()
    try:
        with running_wardent(tmp_path, dead.url) as wardent:
            dead.stop()
            async with aiohttp.ClientSession() as session:
                async with session.get(wardent.admin_url + "/readyz", headers=AUTH) as response:
                    assert response.status == 503
                    assert (await response.json())["checks"]["upstream"] is False
    finally:
        dead.stop()


async def test_metrics_count_requests_by_route_and_status_class(tmp_path: Path) -> None:
    upstream = Upstream()
    try:
        with running_wardent(
            tmp_path,
            upstream.url,
            routes=[{"name": "echo", "match": {"path_prefix": "/echo"}}],
        ) as wardent:
            async with aiohttp.ClientSession() as session:
                for _ in range(3):
                    async with session.get(wardent.url + "/echo/x") as response:
                        assert response.status == 200
                async with session.get(wardent.url + "/status/503") as response:
                    assert response.status == 503
                async with session.get(wardent.admin_url + "/metrics", headers=AUTH) as response:
                    text = await response.text()
        assert sample(text, "wardent_requests_total", route="echo", status_class="2xx") == 3
        assert sample(text, "wardent_requests_total", route="default", status_class="5xx") == 1
        assert sample(text, "wardent_request_duration_seconds_count") == 4
        assert sample(text, "wardent_upstream_duration_seconds_count") == 4
        assert sample(text, "wardent_requests_in_flight") == 0
        assert "wardent_event_loop_lag_seconds" in text
    finally:
        upstream.stop()


async def test_access_log_line_has_every_field(wardent: Wardent) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(
            wardent.url + "/echo/logged?q=1",
            data=b"12345",
            headers={"CF-Connecting-IP": "198.51.100.4", "User-Agent": "probe/1"},
        ) as response:
            request_id = response.headers["X-Request-ID"]
            await response.read()
    entry = wardent.wait_access(lambda entry: entry["request_id"] == request_id)
    assert entry["client_ip"] == "198.51.100.4"
    assert entry["peer"] == "127.0.0.1"
    assert entry["method"] == "POST"
    assert entry["path"] == "/echo/logged?q=1"
    assert entry["status"] == 200
    assert entry["bytes_in"] == 5
    assert entry["bytes_out"] > 0
    assert entry["duration_ms"] >= entry["upstream_ms"] > 0
    assert entry["reason"] is None
    assert entry["user_agent"] == "probe/1"
    assert entry["time"].endswith("Z")


async def test_reload_applies_a_valid_file_and_keeps_the_old_one_on_error(
    tmp_path: Path, upstream: Upstream
) -> None:
    with running_wardent(tmp_path, upstream.url) as wardent:
        config = yaml.safe_load(wardent.config_file.read_text())
        async with aiohttp.ClientSession() as session:
            config["routes"] = [{"name": "reloaded", "match": {"path_prefix": "/echo"}}]
            wardent.config_file.write_text(yaml.safe_dump(config))
            async with session.post(wardent.admin_url + "/reload", headers=AUTH) as response:
                assert response.status == 200
            async with session.get(wardent.url + "/echo/a") as response:
                assert response.status == 200
            entry = wardent.wait_access(lambda entry: entry["path"] == "/echo/a")
            assert entry["route"] == "reloaded"

            config["upstream"]["conect_timeout"] = "1s"  # a typo: must be refused
            wardent.config_file.write_text(yaml.safe_dump(config))
            async with session.post(wardent.admin_url + "/reload", headers=AUTH) as response:
                assert response.status == 422
                body = await response.json()
                assert "conect_timeout" in body["detail"] + str(body.get("issues"))
            async with session.get(wardent.url + "/echo/b") as response:
                assert response.status == 200
            entry = wardent.wait_access(lambda entry: entry["path"] == "/echo/b")
            assert entry["route"] == "reloaded"

            # SIGHUP reloads too.
            del config["upstream"]["conect_timeout"]
            config["routes"] = [{"name": "by-hup", "match": {"path_prefix": "/echo"}}]
            wardent.config_file.write_text(yaml.safe_dump(config))
            wardent.signal(signal.SIGHUP)
            await asyncio.sleep(0.5)
            async with session.get(wardent.url + "/echo/c") as response:
                assert response.status == 200
            entry = wardent.wait_access(lambda entry: entry["path"] == "/echo/c")
            assert entry["route"] == "by-hup"


def test_run_refuses_a_broken_file_with_its_line(tmp_path: Path) -> None:
    config = tmp_path / "broken.yaml"
    config.write_text('listen:\n  public: "127.0.0.1:0"\nupstream:\n  url: "ftp://x"\n')
    result = subprocess.run(
        [sys.executable, "-m", "wardent", "run", "-c", str(config)],
        capture_output=True,
        check=False,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert result.returncode == 1
    assert ":4: upstream.url" in result.stderr


def test_run_names_a_missing_secret(tmp_path: Path) -> None:
    config = tmp_path / "secret.yaml"
    config.write_text(
        'listen: {public: "127.0.0.1:0"}\nupstream: {url: "http://127.0.0.1:1"}\n'
        "secrets:\n  admin_token: {env: WARDENT_TEST_UNSET_TOKEN}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "wardent", "run", "-c", str(config)],
        capture_output=True,
        check=False,
        text=True,
        timeout=30,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 1
    assert "WARDENT_TEST_UNSET_TOKEN" in result.stderr
    assert "secrets.admin_token" in result.stderr


async def test_access_log_file_reopens_on_usr1(tmp_path: Path, upstream: Upstream) -> None:
    log_file = tmp_path / "access.log"
    with running_wardent(
        tmp_path, upstream.url, telemetry={"access_log_path": str(log_file)}
    ) as wardent:
        async with aiohttp.ClientSession() as session:
            async with session.get(wardent.url + "/echo/one") as response:
                await response.read()
            await asyncio.sleep(0.8)
            log_file.rename(tmp_path / "access.log.1")
            wardent.signal(signal.SIGUSR1)
            await asyncio.sleep(0.3)
            async with session.get(wardent.url + "/echo/two") as response:
                await response.read()
            await asyncio.sleep(0.8)
    assert "/echo/one" in (tmp_path / "access.log.1").read_text()
    assert "/echo/two" in log_file.read_text()
