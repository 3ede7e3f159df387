"""Trusting the right client IP: CF-Connecting-IP and X-Forwarded-For are believed from
trusted proxies only, garbage falls back to the peer (and is counted), and a unix-socket
listener's peer is trusted only when the config says so."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from tests.support.processes import ADMIN_TOKEN, Upstream, Wardent, running_wardent

pytestmark = pytest.mark.e2e


SPOOF = "203.0.113.9"
MALFORMED_METRIC = "wardent_client_ip_malformed_total"


# -- helpers -------------------------------------------------------------------------


def values(echo: Any, name: str) -> list[str]:
    return [value for key, value in echo["headers"] if key.lower() == name.lower()]


async def echo_via(
    url: str,
    headers: CIMultiDict[str] | dict[str, str] | None = None,
    connector: aiohttp.BaseConnector | None = None,
) -> tuple[Any, str]:
    """GET url through Wardent: the upstream's echo and the returned request id."""
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(url, headers=headers) as response,
    ):
        assert response.status == 200, await response.text()
        echo = await response.json()
        return echo, response.headers["X-Request-ID"]


async def malformed_count(wardent: Wardent, source: str = "cf-connecting-ip") -> float:
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            wardent.admin_url + "/metrics",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ) as response,
    ):
        assert response.status == 200
        text = await response.text()
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(MALFORMED_METRIC + "{"):
            continue
        labels, _, value = line.rpartition(" ")
        if re.search(rf'source="{re.escape(source)}"', labels, re.IGNORECASE):
            total += float(value)
    return total


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short directory for a unix socket (sun_path is at most 107 bytes)."""
    with tempfile.TemporaryDirectory(prefix="wd-", dir="/tmp") as name:
        yield Path(name)


# -- (a) a trusted peer's CF-Connecting-IP is the client ---------------------------------


async def test_trusted_peer_cf_connecting_ip_is_the_client(wardent: Wardent) -> None:
    echo, request_id = await echo_via(
        wardent.url + "/echo/cf",
        {"CF-Connecting-IP": SPOOF, "X-Forwarded-For": "198.51.100.1"},
    )
    assert values(echo, "X-Forwarded-For") == [SPOOF]
    assert values(echo, "X-Real-IP") == [SPOOF]
    entry = await wardent.access_entry(request_id)
    assert entry["client_ip"] == SPOOF
    assert entry["peer"] == "127.0.0.1"


async def test_without_any_header_the_peer_is_the_client(wardent: Wardent) -> None:
    echo, request_id = await echo_via(wardent.url + "/echo/plain")
    assert values(echo, "X-Forwarded-For") == ["127.0.0.1"]
    assert values(echo, "X-Real-IP") == ["127.0.0.1"]
    assert (await wardent.access_entry(request_id))["client_ip"] == "127.0.0.1"


# -- (b) an untrusted peer's headers are ignored -----------------------------------------


async def test_untrusted_peer_cannot_spoof(tmp_path: Path, upstream: Upstream) -> None:
    with running_wardent(tmp_path, upstream.url, client_ip={"trusted_proxies": []}) as wardent:
        echo, request_id = await echo_via(
            wardent.url + "/echo/spoof",
            {
                "CF-Connecting-IP": SPOOF,
                "X-Forwarded-For": "6.6.6.6",
                "X-Real-IP": "6.6.6.6",
                "X-Forwarded-Proto": "https",
                "X-Request-ID": "abc-123",
            },
        )
        entry = await wardent.access_entry(request_id)
    # An untrusted peer's request id is not believed either: a fresh one is generated.
    assert request_id != "abc-123"
    assert values(echo, "X-Request-ID") == [request_id]
    assert values(echo, "X-Forwarded-For") == ["127.0.0.1"], echo["headers"]
    assert values(echo, "X-Real-IP") == ["127.0.0.1"], echo["headers"]
    assert values(echo, "X-Forwarded-Proto") == ["http"], echo["headers"]
    # The spoofed header itself is replaced by the client Wardent identified.
    assert values(echo, "CF-Connecting-IP") == ["127.0.0.1"], echo["headers"]
    for name, value in echo["headers"]:
        assert "6.6.6.6" not in value and SPOOF not in value, (name, value)
    assert entry["client_ip"] == "127.0.0.1"
    assert entry["peer"] == "127.0.0.1"


# -- (c) garbage from a trusted peer falls back to the peer and is counted -------------------


async def test_malformed_cf_connecting_ip_falls_back_and_counts(wardent: Wardent) -> None:
    garbage: list[CIMultiDict[str]] = [
        CIMultiDict([("CF-Connecting-IP", "not-an-ip")]),
        CIMultiDict([("CF-Connecting-IP", "1.2.3.4, 5.6.7.8")]),
        CIMultiDict([("CF-Connecting-IP", "1" * 200)]),
        CIMultiDict([("CF-Connecting-IP", "1.2.3.4"), ("CF-Connecting-IP", "5.6.7.8")]),
        CIMultiDict([("CF-Connecting-IP", "not-an-ip")]),  # again: counted even when cached
        CIMultiDict([("CF-Connecting-IP", "999.1.1.1")]),
        CIMultiDict([("CF-Connecting-IP", "2001:db8::1::2")]),
    ]
    before = await malformed_count(wardent)
    for headers in garbage:
        echo, request_id = await echo_via(wardent.url + "/echo/garbage", headers)
        assert values(echo, "X-Real-IP") == ["127.0.0.1"], (headers, echo["headers"])
        assert values(echo, "X-Forwarded-For") == ["127.0.0.1"], (headers, echo["headers"])
        assert (await wardent.access_entry(request_id))["client_ip"] == "127.0.0.1", headers
    assert await malformed_count(wardent) - before == len(garbage)
    # A good value afterwards is believed, and not counted.
    echo, _ = await echo_via(wardent.url + "/echo/good", {"CF-Connecting-IP": SPOOF})
    assert values(echo, "X-Real-IP") == [SPOOF]
    assert await malformed_count(wardent) - before == len(garbage)


# -- (d) X-Forwarded-For walked right to left, past trusted hops ------------------------------


@pytest.mark.parametrize(
    ("forwarded_for", "client"),
    [
        ("198.51.100.7, 10.1.1.1, 10.2.2.2", "198.51.100.7"),
        ("6.6.6.6, 198.51.100.7, 10.2.2.2", "198.51.100.7"),  # the left part is client-written
        ("198.51.100.7", "198.51.100.7"),
        ("10.1.1.1, 10.2.2.2", "10.1.1.1"),  # all trusted: the leftmost is the best we know
    ],
)
async def test_forwarded_for_walked_right_to_left(
    tmp_path: Path, upstream: Upstream, forwarded_for: str, client: str
) -> None:
    with running_wardent(
        tmp_path, upstream.url, client_ip={"trusted_proxies": ["127.0.0.1/32", "10.0.0.0/8"]}
    ) as wardent:
        echo, request_id = await echo_via(
            wardent.url + "/echo/xff", {"X-Forwarded-For": forwarded_for}
        )
        entry = await wardent.access_entry(request_id)
    assert values(echo, "X-Real-IP") == [client], echo["headers"]
    forwarded = values(echo, "X-Forwarded-For")
    assert len(forwarded) == 1 and forwarded[0].split(",")[0].strip() == client, forwarded
    assert entry["client_ip"] == client


async def test_forwarded_for_ignored_when_cf_header_present(
    tmp_path: Path, upstream: Upstream
) -> None:
    with running_wardent(
        tmp_path, upstream.url, client_ip={"trusted_proxies": ["127.0.0.1/32", "10.0.0.0/8"]}
    ) as wardent:
        echo, _ = await echo_via(
            wardent.url + "/echo/both",
            {"CF-Connecting-IP": SPOOF, "X-Forwarded-For": "198.51.100.7, 10.1.1.1"},
        )
    assert values(echo, "X-Real-IP") == [SPOOF]


# -- (e) IPv6 clients -----------------------------------------------------------------------


async def test_ipv6_client_forwarded_as_its_full_address(wardent: Wardent) -> None:
    echo, request_id = await echo_via(
        wardent.url + "/echo/v6", {"CF-Connecting-IP": "2001:db8:1:2:aaaa::1"}
    )
    assert values(echo, "X-Real-IP") == ["2001:db8:1:2:aaaa::1"]
    assert values(echo, "X-Forwarded-For") == ["2001:db8:1:2:aaaa::1"]
    assert (await wardent.access_entry(request_id))["client_ip"] == "2001:db8:1:2:aaaa::1"


async def test_ipv6_client_written_longhand_is_canonicalised(wardent: Wardent) -> None:
    echo, _ = await echo_via(
        wardent.url + "/echo/v6-long",
        {"CF-Connecting-IP": "2001:0DB8:0001:0002:AAAA:0000:0000:0001"},
    )
    assert values(echo, "X-Real-IP") == ["2001:db8:1:2:aaaa::1"]


# -- (f) a unix-socket public listener ------------------------------------------------------


async def test_unix_socket_listener_trusted_by_default(short_dir: Path, upstream: Upstream) -> None:
    sock = short_dir / "w.sock"
    with running_wardent(
        short_dir, upstream.url, listen={"public": f"unix:{sock}", "admin": "127.0.0.1:0"}
    ) as wardent:
        echo, request_id = await echo_via(
            "http://wardent/echo/unix",
            {"CF-Connecting-IP": SPOOF},
            connector=aiohttp.UnixConnector(path=str(sock)),
        )
        entry = await wardent.access_entry(request_id)
    assert echo["path"] == "/echo/unix"
    assert values(echo, "X-Real-IP") == [SPOOF]
    assert values(echo, "X-Forwarded-For") == [SPOOF]
    assert entry["client_ip"] == SPOOF


async def test_unix_socket_listener_untrusted_by_config(
    short_dir: Path, upstream: Upstream
) -> None:
    sock = short_dir / "w.sock"
    with running_wardent(
        short_dir,
        upstream.url,
        listen={"public": f"unix:{sock}", "admin": "127.0.0.1:0"},
        client_ip={"trust_unix_socket": False},
    ) as wardent:
        echo, request_id = await echo_via(
            "http://wardent/echo/unix-untrusted",
            {"CF-Connecting-IP": SPOOF, "X-Forwarded-For": "6.6.6.6"},
            connector=aiohttp.UnixConnector(path=str(sock)),
        )
        entry = await wardent.access_entry(request_id)
    assert echo["path"] == "/echo/unix-untrusted"
    real_ip = values(echo, "X-Real-IP")
    assert len(real_ip) == 1 and real_ip[0] not in (SPOOF, "6.6.6.6"), real_ip
    forwarded = values(echo, "X-Forwarded-For")
    assert len(forwarded) == 1, forwarded
    assert SPOOF not in forwarded[0] and "6.6.6.6" not in forwarded[0], forwarded
    assert entry["client_ip"] not in (SPOOF, "6.6.6.6")
