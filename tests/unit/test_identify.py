from __future__ import annotations

import gc

import pytest

from loadtests import new_client_bench
from wardent.config.schema import ClientIP, Route
from wardent.config.types import Match
from wardent.identify import _CACHE_LIMIT as CACHE_LIMIT
from wardent.identify import ClientIdentifier, RouteTable, normalise_path, parse_ip


def identifier(**settings: object) -> ClientIdentifier:
    return ClientIdentifier(ClientIP.model_validate(settings))


TRUSTED = ["10.0.0.0/8", "192.0.2.1", "2001:db8::/32", "::1"]


@pytest.mark.parametrize(
    ("peer", "trusted"),
    [
        ("10.1.2.3", True),
        ("192.0.2.1", True),
        ("192.0.2.2", False),
        ("11.0.0.1", False),
        ("2001:db8:ffff::1", True),
        ("2001:db9::1", False),
        ("::1", True),
        ("::ffff:10.9.9.9", True),  # IPv4-mapped folds to IPv4
        ("::2", False),
    ],
)
def test_peer_trust_by_cidr(peer: str, trusted: bool) -> None:
    assert identifier(trusted_proxies=TRUSTED).peer(peer)[1] is trusted


def test_no_trusted_proxies_trusts_nobody() -> None:
    ident = identifier()
    assert ident.peer("127.0.0.1")[1] is False
    assert ident.peer("::1")[1] is False


def test_unix_socket_peer_trust_follows_config() -> None:
    assert identifier().peer(None)[1] is True
    assert identifier(trust_unix_socket=False).peer(None)[1] is False


def test_ipv6_clients_keyed_by_their_64() -> None:
    ident = identifier()
    a = ident.from_header(b"2001:db8:1:2:aaaa::1")
    b = ident.from_header(b"2001:db8:1:2:bbbb::9")
    c = ident.from_header(b"2001:db8:1:3::1")
    assert a is not None and b is not None and c is not None
    assert a.ip == "2001:db8:1:2:aaaa::1"
    assert a.key == b.key == "2001:db8:1:2::/64"
    assert c.key != a.key


def test_ipv6_prefix_is_configurable() -> None:
    ident = identifier(ipv6_prefix=48)
    client = ident.from_header(b"2001:db8:1:2::1")
    assert client is not None and client.key == "2001:db8:1::/48"
    full = identifier(ipv6_prefix=128).from_header(b"2001:db8::1")
    assert full is not None and full.key == "2001:db8::1"


def test_ipv4_client_key_is_the_address() -> None:
    client = identifier().from_header(b" 203.0.113.7 ")
    assert client is not None
    assert (client.ip, client.key) == ("203.0.113.7", "203.0.113.7")
    assert (client.bits, client.value) == (32, 0xCB007107)


@pytest.mark.parametrize(
    ("raw", "ip"),
    [
        (b"0.0.0.0", "0.0.0.0"),
        (b"255.255.255.255", "255.255.255.255"),
        (b"::ffff:203.0.113.7", "203.0.113.7"),  # mapped: folded, text made anew
        (b"2001:DB8:0:0::7", "2001:db8::7"),
    ],
)
def test_client_text_is_canonical(raw: bytes, ip: str) -> None:
    """IPv4 text is taken as it came once inet_pton accepted it: it must then be
    the canonical form already, or the same client would get two keys."""
    client = identifier(ipv6_prefix=128).from_header(raw)
    assert client is not None and client.ip == client.key == ip


@pytest.mark.parametrize("raw", [b"010.0.0.1", b"1.2.3", b"1.2.3.04", b"0x7f.0.0.1", b"+1.2.3.4"])
def test_non_canonical_ipv4_text_is_refused(raw: bytes) -> None:
    assert identifier().from_header(raw) is None


@pytest.mark.parametrize(
    "raw",
    [
        b"not-an-ip",
        b"1.2.3.4, 5.6.7.8",
        b"1.2.3.4.5",
        b"",
        b"300.1.1.1",
        b"1" * 200,
        b"\xff\xfe",
        b"1.2.3.4\x00",
        b"fe80::1%eth0",
    ],
)
def test_malformed_header_values_are_refused(raw: bytes) -> None:
    assert identifier().from_header(raw) is None


def test_forwarded_for_walks_right_to_left_past_trusted_hops() -> None:
    ident = identifier(trusted_proxies=TRUSTED)
    client = ident.from_forwarded_for(b"198.51.100.7, 10.1.1.1, 10.2.2.2")
    assert client is not None and client.ip == "198.51.100.7"
    # A spoofed left-most entry behind a real client is not believed.
    client = ident.from_forwarded_for(b"6.6.6.6, 198.51.100.7, 10.2.2.2")
    assert client is not None and client.ip == "198.51.100.7"
    # All hops trusted: the left-most is the client (real_ip_recursive).
    client = ident.from_forwarded_for(b"10.0.0.5, 10.0.0.6")
    assert client is not None and client.ip == "10.0.0.5"


def test_forwarded_for_with_garbage_hop_is_malformed() -> None:
    ident = identifier(trusted_proxies=TRUSTED)
    assert ident.from_forwarded_for(b"198.51.100.7, bogus, 10.2.2.2") is None
    assert ident.from_forwarded_for(b"1.1.1.1," * 400) is None


def test_results_are_cached_by_raw_bytes() -> None:
    ident = identifier()
    first = ident.from_header(b"203.0.113.9")
    assert first is not None
    assert list(ident._values) == [b"203.0.113.9"]
    again = ident.from_header(b"203.0.113.9")
    assert again is not None
    assert (again.ip, again.key, again.bits, again.value) == (
        first.ip,
        first.key,
        first.bits,
        first.value,
    )
    assert ident.from_header(b"not an ip") is None
    assert ident.from_header(b"not an ip") is None  # a malformed value is cached too
    assert len(ident._values) == 2


def test_cached_results_leave_the_garbage_collector_nothing_to_walk() -> None:
    """A flood of new IPs fills the cache: what it holds must not be tracked by
    the collector, or every cached entry is walked by each full collection."""
    ident = identifier()
    ident.from_header(b"203.0.113.9")
    ident.from_forwarded_for(b"198.51.100.7, 10.0.0.1")
    ident.from_header(b"nope")
    gc.collect()
    for cache in (ident._values, ident._xff):
        for parsed in cache.values():
            assert not gc.is_tracked(parsed), parsed


def test_a_full_cache_drops_its_oldest_eighth() -> None:
    ident = identifier()
    for index in range(CACHE_LIMIT):
        ident.from_header(b"10.%d.%d.%d" % (index >> 16, (index >> 8) & 255, index & 255))
    assert len(ident._values) == CACHE_LIMIT
    ident.from_header(b"203.0.113.9")
    assert len(ident._values) == CACHE_LIMIT - CACHE_LIMIT // 8 + 1
    assert b"10.0.0.0" not in ident._values  # the oldest went
    assert b"10.0.255.255" in ident._values  # a newer one stayed
    assert b"203.0.113.9" in ident._values


def test_parse_ip() -> None:
    assert parse_ip("1.2.3.4") == (32, 0x01020304)
    assert parse_ip("::ffff:1.2.3.4") == (32, 0x01020304)
    assert parse_ip("::1") == (128, 1)
    assert parse_ip("nope") is None


@pytest.mark.parametrize(
    ("target", "path"),
    [
        (b"/", "/"),
        (b"/a/b?x=1", "/a/b"),
        (b"/a/../stripe//webhook", "/stripe/webhook"),
        (b"/./a/./b/", "/a/b/"),
        (b"/%73tripe/webhook", "/stripe/webhook"),
        (b"/a%2Fb", "/a%2Fb"),
        (b"/../../etc", "/etc"),
        (b"http://example.com/x/y?z", "/x/y"),
        (b"*", "*"),
    ],
)
def test_normalise_path(target: bytes, path: str) -> None:
    assert normalise_path(target) == path


def test_route_table_first_match_wins_and_default() -> None:
    table = RouteTable(
        [
            Route(name="hook", match=Match(path_prefix="/stripe/webhook", methods=("POST",))),
            Route(name="api", match=Match(path_regex=r"^/api/")),
            Route(name="admin-host", match=Match(host="admin.example.com")),
        ]
    )
    assert table.match("POST", "/stripe/webhook", "x").name == "hook"
    assert table.match("GET", "/stripe/webhook", "x").name == "default"
    assert table.match("GET", "/api/candles", "x").name == "api"
    assert table.match("GET", "/", "admin.example.com").name == "admin-host"
    assert table.match("GET", "/", "www.example.com").name == "default"


def test_the_new_client_benchmark_runs() -> None:
    """loadtests/new_client_bench.py works (its timings are not asserted)."""
    found = new_client_bench.run(count=2000)
    assert found["clients"] == 2000
    assert found["banned"] == 0  # 10.0.0.0/8 is outside the benchmark's network bans
    assert found["identify_us"] > 0 and found["ban_lookup_us"] > 0
