"""The guard chain in a real `wardent run`: each guard's refusal is bare, never
reaches the upstream, and shows in the guard's own counters."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import ADMIN_TOKEN, Upstream, Wardent, running_wardent
from wardent.guards.stripe_signature import sign_for_tests

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
GPTBOT = "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)"
BROWSER = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
ORIGIN = "origin-secret-9f8e7d"
ORIGIN_OLD = "origin-secret-old-1a2b"
STRIPE = "whsec_test_5c4b3a"
SECRETS_ENV = {"ORIGIN_SECRET": ORIGIN, "ORIGIN_SECRET_OLD": ORIGIN_OLD, "STRIPE_SECRET": STRIPE}


async def fetch(url: str, method: str = "GET", **kwargs: Any) -> tuple[int, bytes, dict[str, str]]:
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url, **kwargs) as response:
            return response.status, await response.read(), dict(response.headers)


async def metric(wardent: Wardent, name: str, **labels: str) -> float:
    _, body, _ = await fetch(wardent.admin_url + "/metrics", headers=AUTH)
    for family in text_string_to_metric_families(body.decode()):
        for item in family.samples:
            if item.name == name and all(item.labels.get(k) == v for k, v in labels.items()):
                return float(item.value)
    return 0.0


def assert_bare(status: int, body: bytes, headers: dict[str, str], expected: int) -> None:
    assert status == expected
    assert body == b""
    assert headers["Content-Length"] == "0"


def upstream_saw(wardent: Wardent, path: str) -> bool:
    """Whether a request for `path` was answered by the upstream (status from it)."""
    return any(
        entry["path"].startswith(path) and entry["upstream_ms"] is not None
        for entry in wardent.access_log()
    )


# -- origin secret ---------------------------------------------------------------------


async def test_origin_secret_required_rotated_and_stripped(
    tmp_path: Path, upstream: Upstream
) -> None:
    with running_wardent(
        tmp_path,
        upstream.url,
        env=SECRETS_ENV,
        secrets={
            "admin_token": {"env": "WARDENT_ADMIN_TOKEN"},
            "origin": [{"env": "ORIGIN_SECRET"}, {"env": "ORIGIN_SECRET_OLD"}],
        },
    ) as wardent:
        missing = await fetch(wardent.url + "/echo/no-secret")
        assert_bare(*missing, 403)
        wrong = await fetch(wardent.url + "/echo/wrong", headers={"X-Wardent-Secret": "nope"})
        assert_bare(*wrong, 403)
        for secret in (ORIGIN, ORIGIN_OLD):
            status, body, _ = await fetch(
                wardent.url + "/echo/ok", headers={"X-Wardent-Secret": secret}
            )
            assert status == 200
            sent = [name.lower() for name, _ in json.loads(body)["headers"]]
            assert "x-wardent-secret" not in sent
        await asyncio.sleep(0.7)
        assert not upstream_saw(wardent, "/echo/no-secret")
        assert not upstream_saw(wardent, "/echo/wrong")
        assert await metric(wardent, "wardent_guard_rejected_total", guard="origin_secret") == 2


# -- AI crawlers -----------------------------------------------------------------------


async def test_ai_crawlers_blocked_browsers_pass_allow_wins(
    tmp_path: Path, upstream: Upstream
) -> None:
    with running_wardent(
        tmp_path,
        upstream.url,
        guards={"crawlers": {"allow": ["ClaudeBot"], "add": ["EvilScraper"]}},
    ) as wardent:
        assert_bare(*await fetch(wardent.url + "/echo/bot", headers={"User-Agent": GPTBOT}), 403)
        assert_bare(
            *await fetch(wardent.url + "/echo/evil", headers={"User-Agent": "EvilScraper/2.0"}),
            403,
        )
        status, _, _ = await fetch(wardent.url + "/echo/human", headers={"User-Agent": BROWSER})
        assert status == 200
        claude = "Mozilla/5.0 (compatible; ClaudeBot/1.0; +claudebot@anthropic.com)"
        status, _, _ = await fetch(wardent.url + "/echo/claude", headers={"User-Agent": claude})
        assert status == 200
        assert await metric(wardent, "wardent_crawler_matched_total", bot="GPTBot") == 1


async def test_robots_txt_is_answered_by_wardent_even_for_blocked_bots(wardent: Wardent) -> None:
    status, body, headers = await fetch(wardent.url + "/robots.txt", headers={"User-Agent": GPTBOT})
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    text = body.decode()
    assert "User-agent: GPTBot\nDisallow: /" in text
    assert "User-agent: Google-Extended\nDisallow: /" in text
    assert text.rstrip().endswith("User-agent: *\nAllow: /")


async def test_shadow_mode_counts_and_lets_pass(tmp_path: Path, upstream: Upstream) -> None:
    with running_wardent(
        tmp_path, upstream.url, guards={"crawlers": {"mode": "shadow"}}
    ) as wardent:
        status, _, headers = await fetch(
            wardent.url + "/echo/shadow", headers={"User-Agent": GPTBOT}
        )
        assert status == 200
        request_id = headers["X-Request-ID"]
        entry = await wardent.access_entry(request_id)
        assert entry["shadow"] == "crawlers:GPTBot"  # logged, not refused
        assert await metric(wardent, "wardent_guard_shadow_rejected_total", guard="crawlers") == 1
        assert await metric(wardent, "wardent_guard_rejected_total", guard="crawlers") == 0


async def test_route_can_skip_or_shadow_a_guard(tmp_path: Path, upstream: Upstream) -> None:
    with running_wardent(
        tmp_path,
        upstream.url,
        routes=[
            {"name": "open", "match": {"path_prefix": "/echo/open"}, "skip": ["crawlers"]},
            {"name": "watch", "match": {"path_prefix": "/echo/watch"}, "shadow": ["crawlers"]},
        ],
    ) as wardent:
        for path in ("/echo/open", "/echo/watch"):
            status, _, _ = await fetch(wardent.url + path, headers={"User-Agent": GPTBOT})
            assert status == 200, path
        assert_bare(*await fetch(wardent.url + "/echo/other", headers={"User-Agent": GPTBOT}), 403)


# -- body size -------------------------------------------------------------------------


async def test_declared_body_over_the_limit_is_refused_before_reading(
    tmp_path: Path, upstream: Upstream
) -> None:
    with running_wardent(
        tmp_path,
        upstream.url,
        guards={"body_limit": {"max": "64KiB"}},
        routes=[
            {"name": "big", "match": {"path_prefix": "/upload"}, "body_limit": {"max": "1MiB"}}
        ],
    ) as wardent:
        reader, writer = await asyncio.open_connection(wardent.host, wardent.port)
        # Only the head is sent: the 413 must come without any body byte.
        writer.write(b"POST /echo/huge HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(4096), 3)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 413 ")
        assert b"Content-Length: 0\r\n" in answer
        status, _, _ = await fetch(wardent.url + "/upload", "POST", data=b"x" * 500_000)
        assert status == 200  # the route's own limit is larger
        await asyncio.sleep(0.7)
        assert not upstream_saw(wardent, "/echo/huge")


async def test_chunked_body_cut_when_it_crosses_the_limit(
    tmp_path: Path, upstream: Upstream
) -> None:
    with running_wardent(
        tmp_path, upstream.url, guards={"body_limit": {"max": "64KiB"}}
    ) as wardent:

        async def body() -> Any:
            for _ in range(40):
                yield b"c" * 4096
                await asyncio.sleep(0)

        status, _, _ = await fetch(wardent.url + "/upload", "POST", data=body())
        assert status == 413

        async def small() -> Any:
            yield b"s" * 1000

        status, _, _ = await fetch(wardent.url + "/upload", "POST", data=small())
        assert status == 200
        assert await metric(wardent, "wardent_guard_rejected_total", guard="body_limit") == 1


# -- rate limits -----------------------------------------------------------------------


async def test_rate_limit_429_with_retry_after_and_ratelimit_headers(
    tmp_path: Path, upstream: Upstream
) -> None:
    with running_wardent(
        tmp_path,
        upstream.url,
        guards={
            "rate_limits": [
                {
                    "name": "api",
                    "match": {"path_prefix": "/echo/api"},
                    "rate": "1/m",
                    "burst": 3,
                    "headers": True,
                },
                {
                    "name": "keyed",
                    "match": {"path_prefix": "/echo/keyed"},
                    "rate": "1/m",
                    "burst": 1,
                    "key": "header:X-Api-Key",
                },
            ]
        },
    ) as wardent:
        seen = []
        for _ in range(3):
            status, _, headers = await fetch(wardent.url + "/echo/api")
            assert status == 200
            seen.append(headers["RateLimit"])
            assert headers["RateLimit-Policy"] == '"api";q=3;w=180'
        assert seen[0].startswith('"api";r=2;')
        assert seen[2].startswith('"api";r=0;')
        status, body, headers = await fetch(wardent.url + "/echo/api")
        assert_bare(status, body, headers, 429)
        assert 1 <= int(headers["Retry-After"]) <= 60
        # Other paths are not limited by that rule.
        assert (await fetch(wardent.url + "/echo/free"))[0] == 200
        # header:X-Api-Key: each key its own bucket.
        for key in ("a", "b"):
            assert (await fetch(wardent.url + "/echo/keyed", headers={"X-Api-Key": key}))[0] == 200
        assert (await fetch(wardent.url + "/echo/keyed", headers={"X-Api-Key": "a"}))[0] == 429
        assert await metric(wardent, "wardent_rate_limit_rejected_total", rule="api") == 1


async def test_buckets_survive_a_reload(tmp_path: Path, upstream: Upstream) -> None:
    with running_wardent(
        tmp_path,
        upstream.url,
        guards={"rate_limits": [{"name": "all", "rate": "1/m", "burst": 1}]},
    ) as wardent:
        assert (await fetch(wardent.url + "/echo/1"))[0] == 200
        assert (await fetch(wardent.url + "/echo/2"))[0] == 429
        config = yaml.safe_load(wardent.config_file.read_text())
        config["debug_headers"] = True
        wardent.config_file.write_text(yaml.safe_dump(config))
        status, _, _ = await fetch(wardent.admin_url + "/reload", "POST", headers=AUTH)
        assert status == 200
        status, _, headers = await fetch(wardent.url + "/echo/3")
        assert status == 429
        assert headers["Wardent-Reason"] == "rate_limit"  # the new settings are live


# -- Stripe webhooks -------------------------------------------------------------------


async def test_stripe_webhook_needs_a_signature_wardent_verified(
    tmp_path: Path, upstream: Upstream
) -> None:
    with running_wardent(
        tmp_path,
        upstream.url,
        env=SECRETS_ENV,
        secrets={
            "admin_token": {"env": "WARDENT_ADMIN_TOKEN"},
            "origin": {"env": "ORIGIN_SECRET"},
            "stripe_webhook": {"env": "STRIPE_SECRET"},
        },
        routes=[
            {
                "name": "stripe",
                "match": {"path_prefix": "/echo/stripe"},
                "stripe_signature": {"tolerance": "5m"},
            }
        ],
    ) as wardent:
        payload = b'{"id": "evt_1", "type": "invoice.paid"}'
        now = int(time.time())
        good = sign_for_tests(payload, STRIPE.encode(), now).decode()
        # No origin secret and a crawler-like agent: exempt on this route.
        status, body, _ = await fetch(
            wardent.url + "/echo/stripe",
            "POST",
            data=payload,
            headers={"Stripe-Signature": good, "User-Agent": "Stripe/1.0"},
        )
        assert status == 200
        assert json.loads(body)["body_bytes"] == len(payload)
        cases = {
            "missing": {},
            "malformed": {"Stripe-Signature": "t=abc,v1=zz"},
            "forged": {"Stripe-Signature": sign_for_tests(payload, b"whsec_wrong", now).decode()},
            "stale": {
                "Stripe-Signature": sign_for_tests(payload, STRIPE.encode(), now - 900).decode()
            },
            "future": {
                "Stripe-Signature": sign_for_tests(payload, STRIPE.encode(), now + 900).decode()
            },
        }
        for reason, headers in cases.items():
            result = await fetch(
                wardent.url + f"/echo/stripe-{reason}", "POST", data=payload, headers=headers
            )
            assert_bare(*result, 400)
        tampered = await fetch(
            wardent.url + "/echo/stripe-tampered",
            "POST",
            data=payload + b" ",
            headers={"Stripe-Signature": good},
        )
        assert_bare(*tampered, 400)
        await asyncio.sleep(0.7)
        for reason in [*cases, "tampered"]:
            assert not upstream_saw(wardent, f"/echo/stripe-{reason}"), reason
        for reason in cases:
            failures = await metric(
                wardent, "wardent_stripe_signature_failures_total", reason=reason
            )
            assert failures >= 1, reason
