"""The ban table as the request path sees it: exact keys, addresses, operator networks."""

from __future__ import annotations

import pytest

from wardent.config.schema import ClientIP
from wardent.identify import Client, ClientIdentifier
from wardent.state.bans import Ban, BanTable, ban_json, iso_utc, normalise_target

NOW = 1_700_000_000.0


def ban(target: str, until: float = NOW + 60, source: str = "operator") -> Ban:
    return Ban(target, until, "test", source, NOW, 1)  # type: ignore[arg-type]


V4 = Client("203.0.113.7", "203.0.113.7")
V6 = Client("2001:db8:1:2::7", "2001:db8:1:2::/64")


def test_empty_table_bans_nobody() -> None:
    table = BanTable()
    assert table.lookup(V4) is None
    assert table.lookup(V6, NOW) is None
    assert len(table) == 0


def test_exact_key_and_address() -> None:
    table = BanTable()
    by_key = ban("2001:db8:1:2::/64", source="auto")
    table._set(by_key)
    assert table.lookup(V6, NOW) is by_key
    assert table.lookup(Client("2001:db8:1:3::7", "2001:db8:1:3::/64"), NOW) is None

    by_ip = ban("203.0.113.7")
    table._set(by_ip)
    assert table.lookup(V4, NOW) is by_ip
    # With a coarser IPv4 key, the address still matches on its own.
    assert table.lookup(Client("203.0.113.7", "203.0.113.0/24"), NOW) is by_ip
    assert table.lookup(Client("203.0.113.8", "203.0.113.8"), NOW) is None
    assert table.network_bans == 0


def test_operator_networks() -> None:
    table = BanTable()
    v4 = ban("203.0.113.0/24")
    v6 = ban("2001:db8::/32")
    table._set(v4)
    table._set(v6)
    assert table.network_bans == 2
    assert table.lookup(V4, NOW) is v4
    assert table.lookup(Client("203.0.113.255", "203.0.113.255"), NOW) is v4
    assert table.lookup(Client("203.0.114.1", "203.0.114.1"), NOW) is None
    assert table.lookup(V6, NOW) is v6
    assert table.lookup(Client("2001:db9::1", "2001:db9::/64"), NOW) is None

    assert table._remove("203.0.113.0/24") is v4
    assert table.lookup(V4, NOW) is None
    assert table.network_bans == 1
    assert table._remove("203.0.113.0/24") is None


def test_operator_networks_match_the_address_identify_parsed() -> None:
    """The request path's clients carry their address as an integer (no second
    parse per lookup); one made elsewhere from text alone is parsed instead."""
    table = BanTable()
    v4, v6 = ban("198.51.100.0/24"), ban("2001:db8:aa00::/40")
    table._set(v4)
    table._set(v6)
    ident = ClientIdentifier(ClientIP.model_validate({}))
    inside, outside = ident.from_header(b"198.51.100.77"), ident.from_header(b"198.51.101.1")
    inside6 = ident.from_header(b"2001:db8:aa12::1")
    assert inside is not None and outside is not None and inside6 is not None
    assert inside.bits == 32 and inside6.bits == 128
    assert table.lookup(inside, NOW) is v4
    assert table.lookup(outside, NOW) is None
    assert table.lookup(inside6, NOW) is v6
    assert table.lookup(Client("2001:db8:aa12::1", "2001:db8:aa12::/64"), NOW) is v6
    assert table.lookup(Client("unix", "unix"), NOW) is None


def test_nested_networks_the_live_one_wins() -> None:
    table = BanTable()
    table._set(ban("203.0.0.0/16", until=NOW - 1))  # expired, not swept yet
    inner = ban("203.0.113.0/24")
    table._set(inner)
    assert table.lookup(V4, NOW) is inner


def test_automatic_network_keys_are_matched_by_key_only() -> None:
    # An automatic ban is of a client key: found by the exact hit, and it does
    # not make every lookup walk the networks.
    table = BanTable()
    table._set(ban("2001:db8:1:2::/64", source="auto"))
    assert table.network_bans == 0
    assert table.lookup(V6, NOW) is not None


def test_expired_ban_is_not_a_ban_before_the_sweep() -> None:
    table = BanTable()
    table._set(ban("203.0.113.7", until=NOW + 10))
    assert table.lookup(V4, NOW + 9.9) is not None
    assert table.lookup(V4, NOW + 10) is None
    assert table.lookup(V4) is None  # the real clock is far later than NOW
    assert table.get("203.0.113.7") is not None  # still there until the keeper sweeps


def test_expired_key_ban_falls_through_to_a_live_address_or_network_ban() -> None:
    table = BanTable()
    client = Client("203.0.113.7", "203.0.113.0/24")
    table._set(ban("203.0.113.0/24", until=NOW - 1, source="auto"))
    live = ban("203.0.113.7")
    table._set(live)
    assert table.lookup(client, NOW) is live
    table._remove("203.0.113.7")
    network = ban("203.0.0.0/16")
    table._set(network)
    assert table.lookup(client, NOW) is network


def test_replacing_a_network_ban_by_an_automatic_one_drops_the_network_path() -> None:
    table = BanTable()
    table._set(ban("203.0.113.0/24"))
    table._set(ban("203.0.113.0/24", source="auto"))
    assert table.network_bans == 0
    assert table.lookup(Client("203.0.113.9", "203.0.113.9"), NOW) is None


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("203.0.113.7", "203.0.113.7"),
        (" 203.0.113.7 ", "203.0.113.7"),
        ("203.0.113.7/32", "203.0.113.7"),
        ("203.0.113.0/24", "203.0.113.0/24"),
        ("2001:DB8:0:0::7", "2001:db8::7"),
        ("2001:db8:1:2:0:0:0:0/64", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
    ],
)
def test_normalise_target(text: str, canonical: str) -> None:
    assert normalise_target(text) == canonical


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("example.com", "not an IP address"),
        ("203.0.113.300", "not an IP address"),
        ("203.0.113.7/24", "did you mean 203.0.113.0/24"),
        ("203.0.113.0/33", "prefix length"),
        ("203.0.113.0/x", "prefix length"),
        ("0.0.0.0/0", "every client"),
        ("", "not an IP address"),
    ],
)
def test_invalid_targets(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        normalise_target(text)


def test_ban_json() -> None:
    shown = ban_json(ban("203.0.113.7", until=NOW + 59.2), NOW)
    assert shown == {
        "target": "203.0.113.7",
        "until": iso_utc(NOW + 59.2),
        "remaining_seconds": 60,
        "reason": "test",
        "source": "operator",
        "count": 1,
        "created": "2023-11-14T22:13:20Z",
    }
    assert ban_json(ban("203.0.113.7", until=NOW - 5), NOW)["remaining_seconds"] == 0
