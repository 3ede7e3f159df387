"""The guard, ban and route-override settings: good values, and each bad one
reported at its YAML path and line with what was expected."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from tests.unit.test_config_load import (
    CREDENTIALS,
    MINIMAL,
    REPO,
    TOKEN,
    errors,
    load,
    only,
    shipped_production_copy,
)
from wardent.config.guard_settings import (
    GUARD_ORDER,
    Bans,
    Guards,
    RateLimitRule,
)
from wardent.config.load import ConfigError, ConfigIssue, load_settings
from wardent.config.schema import Settings

# MINIMAL is four lines: whatever is appended to it starts on line 5.
ENV = {"ORIGIN": "origin-new", "ORIGIN_OLD": "origin-old", "STRIPE": "whsec_abc"}
STRIPE_ROUTE = """\
routes:
  - name: stripe
    match: {path_prefix: /stripe/webhook}
    stripe_signature: {tolerance: 5m, header: Stripe-Signature}
"""


def issue_of(tmp_path: Path, text: str) -> ConfigIssue:
    return only(errors(tmp_path, MINIMAL + text, ENV))


def rule(text: str) -> str:
    """One rate limit rule, written as a flow mapping on line 7."""
    return f"guards:\n  rate_limits:\n    - {{{text}}}\n"


# -- good files ----------------------------------------------------------------------


def test_defaults(tmp_path: Path) -> None:
    settings = load(tmp_path, MINIMAL)
    guards, bans = settings.guards, settings.bans
    assert guards == Guards()
    assert bans == Bans()
    assert (guards.ban.mode, guards.ban.status) == ("enforce", 403)
    assert guards.crawlers.enabled
    assert guards.crawlers.block == "builtin-ai"
    assert guards.crawlers.robots_txt
    assert (guards.crawlers.status, guards.crawlers.violation) == (403, False)
    assert guards.origin_secret.enabled is None
    assert guards.origin_secret.header == "X-Wardent-Secret"
    assert (guards.origin_secret.status, guards.origin_secret.violation) == (403, False)
    assert guards.body_limit.enabled
    assert (guards.body_limit.max, guards.body_limit.status) == (10 * 1024 * 1024, 413)
    assert guards.rate_limits == ()
    assert guards.rate_limit_max_keys == 1_000_000
    assert (bans.find_time, bans.max_violations, bans.ban_time) == (600.0, 30, 900.0)
    assert (bans.increment.factor, bans.increment.max) == (2.0, 7 * 86400.0)
    assert bans.never_ban == ()
    assert bans.networks == ()
    assert bans.store == "var/wardent-bans.sqlite3"
    assert bans.queue_size == 10_000
    assert settings.secrets.origin is None
    assert settings.secrets.stripe_webhook is None
    assert not settings.origin_secret_on
    assert GUARD_ORDER == ("ban", "crawlers", "origin_secret", "body_limit", "rate_limit")


def test_every_guard_and_ban_key_loads_typed(tmp_path: Path) -> None:
    (tmp_path / "offices.txt").write_text("# offices\n198.51.100.0/24\n")
    settings = load(
        tmp_path,
        MINIMAL
        + """\
secrets:
  origin: {env: ORIGIN}
  stripe_webhook: {env: STRIPE}
routes:
  - name: stripe
    match: {path_prefix: /stripe/webhook}
    stripe_signature: {tolerance: 2m, header: X-Stripe-Sig}
    skip: [rate_limit]
  - name: uploads
    match: {path_prefix: /api/uploads, methods: [post]}
    body_limit: {max: 50MiB}
    shadow: [crawlers, body_limit]
guards:
  ban: {mode: shadow, status: 451}
  crawlers:
    enabled: true
    mode: shadow
    status: 404
    violation: true
    block: [GPTBot, ClaudeBot]
    add: [MyScraper]
    allow: [Applebot]
    robots_txt: false
    robots_tokens: [Google-Extended]
  origin_secret:
    enabled: true
    mode: shadow
    status: 421
    violation: true
    header: X-Origin-Key
  body_limit: {enabled: false, mode: shadow, status: 400, violation: true, max: 1MB}
  rate_limits:
    - name: login
      match:
        path_prefix: /api/auth/login
        methods: [post]
        host: App.Example.com
      rate: 5/m
      burst: 5
      key: header:X-Api-Key
      mode: shadow
      status: 503
      violation: false
      headers: true
    - name: uploads.v1
      route: uploads
      match: {path_regex: '^/api/uploads/\\d+$'}
      rate: 0.5/s
  rate_limit_max_keys: 5000
bans:
  find_time: 1h
  max_violations: 5
  ban_time: 30m
  increment: {factor: 1.5, max: 2d}
  never_ban: [127.0.0.1, "2001:db8::/32", "file:offices.txt"]
  store: /var/lib/wardent/bans.sqlite3
  queue_size: 100
""",
        ENV,
    )
    guards, bans = settings.guards, settings.bans
    assert (guards.ban.mode, guards.ban.status) == ("shadow", 451)
    crawlers = guards.crawlers
    assert crawlers.block == ("GPTBot", "ClaudeBot")
    assert (crawlers.add, crawlers.allow) == (("MyScraper",), ("Applebot",))
    assert (crawlers.mode, crawlers.status, crawlers.violation) == ("shadow", 404, True)
    assert not crawlers.robots_txt
    assert crawlers.robots_tokens == ("Google-Extended",)
    origin = guards.origin_secret
    assert (origin.enabled, origin.mode, origin.status, origin.violation) == (
        True,
        "shadow",
        421,
        True,
    )
    assert origin.header == "X-Origin-Key"
    body = guards.body_limit
    assert (body.enabled, body.mode, body.status, body.violation) == (False, "shadow", 400, True)
    assert body.max == 1_000_000

    login, uploads = guards.rate_limits
    assert login.name == "login"
    assert login.match.path_prefix == "/api/auth/login"
    assert login.match.methods == ("POST",)
    assert login.match.host == "App.Example.com"
    assert login.route is None
    assert (login.rate.count, login.rate.period) == (5.0, 60.0)
    assert login.rate.per_second == pytest.approx(5 / 60)
    assert (login.burst, login.effective_burst) == (5, 5)
    assert login.key == "header:X-Api-Key"
    assert (login.mode, login.status, login.violation, login.headers) == (
        "shadow",
        503,
        False,
        True,
    )
    assert uploads.route == "uploads"
    assert uploads.match.path_regex == r"^/api/uploads/\d+$"
    assert (uploads.key, uploads.mode, uploads.status, uploads.violation, uploads.headers) == (
        "client_ip",
        "enforce",
        429,
        True,
        False,
    )
    assert guards.rate_limit_max_keys == 5000

    assert (bans.find_time, bans.max_violations, bans.ban_time) == (3600.0, 5, 1800.0)
    assert (bans.increment.factor, bans.increment.max) == (1.5, 2 * 86400.0)
    assert bans.never_ban == ("127.0.0.1", "2001:db8::/32", "file:offices.txt")
    assert bans.networks == (
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("2001:db8::/32"),
        ipaddress.ip_network("198.51.100.0/24"),
    )
    assert (bans.store, bans.queue_size) == ("/var/lib/wardent/bans.sqlite3", 100)

    stripe, upload_route = settings.routes
    assert stripe.stripe_signature is not None
    assert stripe.stripe_signature.tolerance == 120.0
    assert stripe.stripe_signature.header == "X-Stripe-Sig"
    assert stripe.skip == ("rate_limit",)
    assert stripe.skipped == {"rate_limit", "origin_secret", "crawlers"}
    assert upload_route.body_limit is not None
    assert upload_route.body_limit.max == 50 * 1024 * 1024
    assert upload_route.shadow == ("crawlers", "body_limit")
    assert upload_route.skipped == frozenset()
    assert upload_route.stripe_signature is None
    assert settings.origin_secret_on


def test_the_effective_configuration_shows_units_and_no_secret(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        MINIMAL
        + "secrets:\n  origin: [{env: ORIGIN}, {env: ORIGIN_OLD}]\n"
        + rule("name: api, rate: 20/s")
        + "bans: {find_time: 90s, never_ban: [10.0.0.0/8]}\n",
        ENV,
    )
    dumped = settings.model_dump(mode="json")
    assert dumped["guards"]["rate_limits"][0]["rate"] == "20/s"
    assert dumped["bans"]["find_time"] == "90s"
    assert dumped["bans"]["increment"]["max"] == "7d"
    assert "networks" not in dumped["bans"]
    assert dumped["secrets"]["origin"] == [
        {"env": "ORIGIN", "file": None},
        {"env": "ORIGIN_OLD", "file": None},
    ]
    for text in (repr(settings), str(dumped), settings.model_dump_json()):
        assert "origin-new" not in text
        assert "origin-old" not in text


@pytest.mark.parametrize(
    ("rate", "burst", "expected"),
    [
        ("20/s", None, 20),
        ("300/m", None, 300),
        ("1000/h", None, 1000),
        ("5000/d", None, 5000),
        ("0.5/s", None, 1),
        ("2.5/s", None, 3),
        ("20/s", 40, 40),
        ("5/m", 1, 1),
    ],
)
def test_effective_burst(tmp_path: Path, rate: str, burst: int | None, expected: int) -> None:
    text = f"name: r, rate: {rate}" + ("" if burst is None else f", burst: {burst}")
    settings = load(tmp_path, MINIMAL + rule(text))
    (limit,) = settings.guards.rate_limits
    assert limit.burst == burst
    assert limit.effective_burst == expected


def test_effective_burst_of_a_rule_built_in_code() -> None:
    built = RateLimitRule.model_validate({"name": "x", "rate": "300/m"})
    assert built.effective_burst == 300


@pytest.mark.parametrize(
    "key", ["client_ip", "header:X-Api-Key", "header:Authorization", "header:x_tenant"]
)
def test_good_rate_limit_keys(tmp_path: Path, key: str) -> None:
    settings = load(tmp_path, MINIMAL + rule(f"name: r, rate: 1/s, key: '{key}'"))
    assert settings.guards.rate_limits[0].key == key


def test_a_rate_limit_may_name_a_defined_route(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        MINIMAL
        + "routes:\n  - {name: api, match: {path_prefix: /api/}}\n"
        + rule("name: r, rate: 1/s, route: api"),
    )
    assert settings.guards.rate_limits[0].route == "api"


def test_a_rule_name_may_repeat_a_route_name(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        MINIMAL
        + "routes:\n  - {name: api, match: {path_prefix: /api/}}\n"
        + rule("name: api, rate: 1/s, route: api"),
    )
    assert settings.guards.rate_limits[0].name == "api"


# -- secrets: one, or two while rotating ------------------------------------------------


@pytest.mark.parametrize("name", ["origin", "stripe_webhook"])
def test_one_secret_is_a_list_of_one(tmp_path: Path, name: str) -> None:
    settings = load(tmp_path, MINIMAL + f"secrets:\n  {name}: {{env: ORIGIN}}\n", ENV)
    secret = getattr(settings.secrets, name)
    assert [source.value for source in secret] == [b"origin-new"]
    assert str(secret[0]) == "env:ORIGIN"


@pytest.mark.parametrize("name", ["origin", "stripe_webhook"])
def test_two_secrets_are_accepted_for_a_rotation(tmp_path: Path, name: str) -> None:
    old = tmp_path / "old_secret"
    old.write_text("from-a-file\n")
    settings = load(
        tmp_path,
        MINIMAL + f"secrets:\n  {name}:\n    - {{env: ORIGIN}}\n    - {{file: {old}}}\n",
        ENV,
    )
    secret = getattr(settings.secrets, name)
    assert [source.value for source in secret] == [b"origin-new", b"from-a-file"]


@pytest.mark.parametrize("name", ["origin", "stripe_webhook"])
def test_three_secrets_are_refused(tmp_path: Path, name: str) -> None:
    issue = issue_of(
        tmp_path,
        f"secrets:\n  {name}:\n    - {{env: ORIGIN}}\n    - {{env: ORIGIN_OLD}}\n"
        "    - {env: STRIPE}\n",
    )
    assert (issue.path, issue.line) == (f"secrets.{name}", 6)
    assert "at most 2" in issue.message


def test_an_empty_secret_list_is_refused(tmp_path: Path) -> None:
    issue = issue_of(tmp_path, "secrets:\n  origin: []\n")
    assert (issue.path, issue.line) == ("secrets.origin", 6)
    assert "at least 1" in issue.message


def test_a_missing_secret_in_a_rotation_names_its_item(tmp_path: Path) -> None:
    issue = issue_of(tmp_path, "secrets:\n  origin:\n    - {env: ORIGIN}\n    - {env: NOT_SET}\n")
    assert (issue.path, issue.line) == ("secrets.origin[1]", 8)
    assert "environment variable NOT_SET is not set" in issue.message


def test_a_rotation_entry_takes_exactly_one_source(tmp_path: Path) -> None:
    issue = issue_of(tmp_path, "secrets:\n  origin:\n    - {env: ORIGIN, file: /x}\n")
    assert (issue.path, issue.line) == ("secrets.origin[0]", 7)
    assert "exactly one of" in issue.message


# -- origin secret: on when the secret is set, unless told otherwise -------------------


@pytest.mark.parametrize(
    ("enabled", "secret", "on"),
    [
        (None, False, False),
        (None, True, True),
        ("true", True, True),
        ("false", True, False),
        ("false", False, False),
    ],
)
def test_origin_secret_on(tmp_path: Path, enabled: str | None, secret: bool, on: bool) -> None:
    text = MINIMAL
    if secret:
        text += "secrets:\n  origin: {env: ORIGIN}\n"
    if enabled is not None:
        text += f"guards:\n  origin_secret: {{enabled: {enabled}}}\n"
    assert load(tmp_path, text, ENV).origin_secret_on is on


def test_origin_secret_enabled_without_a_secret(tmp_path: Path) -> None:
    issue = issue_of(tmp_path, "guards:\n  origin_secret:\n    enabled: true\n")
    assert (issue.path, issue.line) == ("guards", 5)
    assert "origin_secret.enabled is true but secrets.origin is not set" in issue.message
    assert "enabled: false" in issue.message


def test_origin_secret_header_must_be_a_header_name(tmp_path: Path) -> None:
    issue = issue_of(tmp_path, "guards:\n  origin_secret:\n    header: 'X Secret'\n")
    assert (issue.path, issue.line) == ("guards.origin_secret.header", 7)
    assert "not a valid header name" in issue.message


# -- the Stripe route -------------------------------------------------------------------


def test_stripe_route_needs_the_webhook_secret(tmp_path: Path) -> None:
    issue = issue_of(tmp_path, STRIPE_ROUTE)
    assert (issue.path, issue.line) == ("routes", 5)
    assert "route 'stripe' checks Stripe signatures" in issue.message
    assert "secrets.stripe_webhook" in issue.message


def test_stripe_route_with_its_secret(tmp_path: Path) -> None:
    settings = load(
        tmp_path, MINIMAL + "secrets:\n  stripe_webhook: {env: STRIPE}\n" + STRIPE_ROUTE, ENV
    )
    (route,) = settings.routes
    assert route.stripe_signature is not None
    assert route.stripe_signature.tolerance == 300.0
    assert route.stripe_signature.header == "Stripe-Signature"
    assert route.skip == ()
    assert route.skipped == {"origin_secret", "crawlers"}
    assert settings.secrets.stripe_webhook is not None
    assert settings.secrets.stripe_webhook[0].value == b"whsec_abc"


def test_stripe_signature_defaults(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        MINIMAL
        + "secrets:\n  stripe_webhook: {env: STRIPE}\n"
        + "routes:\n  - {name: s, match: {path_prefix: /s}, stripe_signature: {}}\n",
        ENV,
    )
    signature = settings.routes[0].stripe_signature
    assert signature is not None
    assert (signature.tolerance, signature.header) == (300.0, "Stripe-Signature")


def test_stripe_tolerance_must_be_a_duration(tmp_path: Path) -> None:
    issue = issue_of(
        tmp_path,
        "secrets:\n  stripe_webhook: {env: STRIPE}\n"
        + STRIPE_ROUTE.replace("tolerance: 5m", "tolerance: 5 minutes"),
    )
    assert (issue.path, issue.line) == ("routes[0].stripe_signature.tolerance", 10)
    assert "is not a duration" in issue.message


# -- routes: skip, shadow, body_limit ---------------------------------------------------


@pytest.mark.parametrize("key", ["skip", "shadow"])
def test_unknown_guard_name_in_a_route(tmp_path: Path, key: str) -> None:
    issue = issue_of(
        tmp_path,
        "routes:\n  - name: r\n    match: {path_prefix: /x}\n"
        f"    {key}: [origin_secret, captcha]\n",
    )
    assert (issue.path, issue.line) == (f"routes[0].{key}[1]", 8)
    assert "'ban', 'crawlers', 'origin_secret', 'body_limit' or 'rate_limit'" in issue.message
    assert "got 'captcha'" in issue.message


def test_route_body_limit_needs_its_max(tmp_path: Path) -> None:
    issue = issue_of(tmp_path, "routes:\n  - name: r\n    match: {}\n    body_limit: {}\n")
    assert (issue.path, issue.line) == ("routes[0].body_limit.max", 8)
    assert "missing required key" in issue.message


def test_route_body_limit_must_be_a_size(tmp_path: Path) -> None:
    issue = issue_of(
        tmp_path, "routes:\n  - name: r\n    match: {}\n    body_limit:\n      max: 1.5MiB\n"
    )
    assert (issue.path, issue.line) == ("routes[0].body_limit.max", 9)
    assert "is not a size" in issue.message


# -- rate limits --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "path", "expected"),
    [
        ("name: r, rate: 20/x", "rate", "'20/x' is not a rate"),
        ("name: r, rate: 0/s", "rate", "a rate must be greater than zero"),
        ("name: r, rate: 20", "rate", "such as 20/s, 300/m or 1000/h"),
        ("name: r, rate: 20/s, burst: 0", "burst", "greater than or equal to 1"),
        ("name: r, rate: 20/s, burst: -5", "burst", "greater than or equal to 1"),
        ("name: r, rate: 20/s, burst: many", "burst", "valid integer"),
        ("name: r, rate: 20/s, key: 'cookie:x'", "key", "expected client_ip or header:NAME"),
        ("name: r, rate: 20/s, key: ip", "key", "expected client_ip or header:NAME"),
        ("name: r, rate: 20/s, key: 'header:'", "key", "not a valid header name"),
        ("name: r, rate: 20/s, key: 'header:X Api'", "key", "not a valid header name"),
        ("name: r, rate: 20/s, mode: log", "mode", "'enforce' or 'shadow'"),
        ("name: r, rate: 20/s, status: 200", "status", "greater than or equal to 400"),
        ("name: r, rate: 20/s, status: 600", "status", "less than or equal to 599"),
        ("name: r, rate: 20/s, headers: maybe", "headers", "valid boolean"),
        ("name: 'a b', rate: 20/s", "name", "a rule name is 1-64 of"),
        ("name: '', rate: 20/s", "name", "a rule name is 1-64 of"),
        ("name: r, rate: 20/s, match: {path_prefix: api}", "match.path_prefix", "start with /"),
        ("name: r, rate: 20/s, match: {path_regex: '('}", "match.path_regex", "not compile"),
        ("name: r, rate: 20/s, limit: 5", "limit", "unknown key 'limit'"),
        ("name: r", "rate", "missing required key"),
        ("rate: 20/s", "name", "missing required key"),
    ],
)
def test_bad_rate_limit_rules(tmp_path: Path, text: str, path: str, expected: str) -> None:
    issue = issue_of(tmp_path, rule(text))
    assert (issue.path, issue.line) == (f"guards.rate_limits[0].{path}", 7)
    assert expected in issue.message


def test_bad_rate_in_block_style_points_at_its_line(tmp_path: Path) -> None:
    issue = issue_of(
        tmp_path,
        "guards:\n  rate_limits:\n    - name: ok\n      rate: 1/s\n"
        "    - name: bad\n      match: {path_prefix: /api/}\n      rate: 20/x\n",
    )
    assert (issue.path, issue.line) == ("guards.rate_limits[1].rate", 11)
    assert "such as 20/s, 300/m or 1000/h" in issue.message


def test_rate_limit_naming_an_unknown_route(tmp_path: Path) -> None:
    issue = issue_of(
        tmp_path,
        "routes:\n  - {name: api, match: {path_prefix: /api/}}\n"
        + rule("name: r, rate: 20/s, route: apis"),
    )
    assert (issue.path, issue.line) == ("guards", 7)
    assert "rate limit 'r' names route 'apis', which is not defined" in issue.message
    assert "(routes: api, default)" in issue.message


def test_rate_limit_naming_a_route_when_there_are_none(tmp_path: Path) -> None:
    issue = issue_of(tmp_path, rule("name: r, rate: 20/s, route: api"))
    assert "(routes: default)" in issue.message


def test_duplicate_rate_limit_names(tmp_path: Path) -> None:
    issue = issue_of(
        tmp_path,
        "guards:\n  rate_limits:\n    - {name: api, rate: 20/s}\n    - {name: login, rate: 5/m}\n"
        "    - {name: api, rate: 5/s}\n",
    )
    assert (issue.path, issue.line) == ("guards.rate_limits", 6)
    assert "rate limit names must be unique: api repeated" in issue.message


def test_rate_limit_max_keys_has_a_floor(tmp_path: Path) -> None:
    issue = issue_of(tmp_path, "guards:\n  rate_limit_max_keys: 10\n")
    assert (issue.path, issue.line) == ("guards.rate_limit_max_keys", 6)
    assert "greater than or equal to 1000" in issue.message


# -- the other guards -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "path", "line", "expected"),
    [
        ("ban:\n    mode: log\n", "guards.ban.mode", 7, "'enforce' or 'shadow'"),
        ("ban:\n    status: 200\n", "guards.ban.status", 7, "greater than or equal to 400"),
        ("ban:\n    violation: true\n", "guards.ban.violation", 7, "unknown key 'violation'"),
        ("crawlers:\n    mode: off\n", "guards.crawlers.mode", 7, "'enforce' or 'shadow'"),
        ("crawlers:\n    allow: GPTBot\n", "guards.crawlers.allow", 7, "valid tuple"),
        ("crawlers:\n    robots_txt: [x]\n", "guards.crawlers.robots_txt", 7, "valid boolean"),
        ("body_limit:\n    max: 1.5MiB\n", "guards.body_limit.max", 7, "is not a size"),
        ("body_limit:\n    max: ten\n", "guards.body_limit.max", 7, "is not a size"),
        ("body_limit:\n    status: 99\n", "guards.body_limit.status", 7, "greater than"),
        ("origin_secret:\n    enabled: maybe\n", "guards.origin_secret.enabled", 7, "boolean"),
        ("rate_limit:\n    - {name: r}\n", "guards.rate_limit", 6, "did you mean 'rate_limits'"),
        ("crawler: {}\n", "guards.crawler", 6, "did you mean 'crawlers'"),
    ],
)
def test_bad_guard_settings(tmp_path: Path, text: str, path: str, line: int, expected: str) -> None:
    issue = issue_of(tmp_path, "guards:\n  " + text)
    assert (issue.path, issue.line) == (path, line)
    assert expected in issue.message


def test_crawler_block_is_builtin_ai_or_a_list(tmp_path: Path) -> None:
    issues = errors(tmp_path, MINIMAL + "guards:\n  crawlers:\n    block: everything\n")
    assert issues
    for issue in issues:
        assert issue.line == 7
        assert issue.path.startswith("guards.crawlers.block")
    assert any("'builtin-ai'" in issue.message for issue in issues)


# -- bans -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "path", "line", "expected"),
    [
        ("find_time: 10x\n", "bans.find_time", 6, "'10x' is not a duration"),
        ("ban_time: -1m\n", "bans.ban_time", 6, "is not a duration"),
        ("max_violations: 0\n", "bans.max_violations", 6, "greater than or equal to 1"),
        ("queue_size: 0\n", "bans.queue_size", 6, "greater than or equal to 1"),
        ("increment:\n    factor: 0.5\n", "bans.increment.factor", 7, "greater than or equal to 1"),
        ("increment:\n    max: forever\n", "bans.increment.max", 7, "is not a duration"),
        ("networks: [10.0.0.0/8]\n", "bans.networks", 6, "unknown key 'networks'"),
        ("never_ban: 10.0.0.0/8\n", "bans.never_ban", 6, "valid tuple"),
    ],
)
def test_bad_ban_settings(tmp_path: Path, text: str, path: str, line: int, expected: str) -> None:
    issue = issue_of(tmp_path, "bans:\n  " + text)
    assert (issue.path, issue.line) == (path, line)
    assert expected in issue.message


@pytest.mark.parametrize("entry", ["garbage", "10.0.0.0/33", "256.1.1.1", "::g"])
def test_never_ban_garbage(tmp_path: Path, entry: str) -> None:
    issue = issue_of(tmp_path, f"bans:\n  never_ban:\n    - 127.0.0.1\n    - '{entry}'\n")
    assert (issue.path, issue.line) == ("bans.never_ban", 6)
    assert f"{entry!r} is not an IP address or CIDR" in issue.message


def test_never_ban_file_with_a_bad_line(tmp_path: Path) -> None:
    (tmp_path / "offices.txt").write_text("198.51.100.0/24\nnot-a-network\n")
    issues = errors(tmp_path, MINIMAL + 'bans:\n  never_ban: ["file:offices.txt"]\n')
    issue = only(issues)
    assert issue.path.startswith("bans")
    assert issue.line is not None
    assert 5 <= issue.line <= 6
    assert "offices.txt:2: 'not-a-network' is not an IP network" in issue.message


def test_never_ban_file_that_is_missing(tmp_path: Path) -> None:
    issue = only(errors(tmp_path, MINIMAL + 'bans:\n  never_ban: ["file:nope.txt"]\n'))
    assert issue.path.startswith("bans")
    assert "file 'nope.txt' not found" in issue.message


def test_never_ban_host_bits_are_ignored(tmp_path: Path) -> None:
    settings = load(tmp_path, MINIMAL + "bans:\n  never_ban: [192.0.2.7/24, '::1']\n")
    assert settings.bans.networks == (
        ipaddress.ip_network("192.0.2.0/24"),
        ipaddress.ip_network("::1/128"),
    )


# -- every problem at once ---------------------------------------------------------------


def test_several_guard_errors_are_reported_together(tmp_path: Path) -> None:
    issues = errors(
        tmp_path,
        MINIMAL
        + """\
guards:
  ban: {status: 200}
  rate_limits:
    - {name: r, rate: 20/x}
    - {name: s, rate: 1/s, burst: 0}
bans:
  never_ban: [garbage]
""",
    )
    assert [(issue.path, issue.line) for issue in issues] == [
        ("guards.ban.status", 6),
        ("guards.rate_limits[0].rate", 8),
        ("guards.rate_limits[1].burst", 9),
        ("bans.never_ban", 11),
    ]


# -- the shipped files ---------------------------------------------------------------------


def test_shipped_production_guards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    settings = load_settings(shipped_production_copy(tmp_path), environ={})

    assert settings.origin_secret_on
    assert settings.guards.origin_secret.enabled is True
    assert settings.secrets.origin is not None
    assert settings.secrets.origin[0].value == CREDENTIALS["origin_secret"].encode()
    (stripe,) = settings.routes
    assert stripe.name == "stripe"
    assert stripe.match.path_prefix == "/stripe/webhook"
    assert stripe.stripe_signature is not None
    assert stripe.stripe_signature.tolerance == 300.0
    assert stripe.skipped == {"origin_secret", "crawlers"}
    assert settings.secrets.stripe_webhook is not None

    rules = {limit.name: limit for limit in settings.guards.rate_limits}
    assert list(rules) == ["login", "api", "global"]
    login, api, every = rules["login"], rules["api"], rules["global"]
    assert (login.match.path_prefix, login.match.methods) == ("/api/auth/login", ("POST",))
    assert (str(login.rate), login.effective_burst) == ("5/m", 5)
    assert (api.match.path_prefix, str(api.rate), api.effective_burst) == ("/api/", "20/s", 40)
    assert every.match.path_prefix is None
    assert every.match.path_regex is None
    assert every.route is None
    assert settings.bans.store == "/var/lib/wardent/bans.sqlite3"


def test_production_guards_spell_out_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where config/wardent.yaml says "default X" for a guard or ban key, X is the default."""
    monkeypatch.chdir(REPO)
    settings = load_settings(shipped_production_copy(tmp_path), environ={})
    shipped, default = settings.guards, Guards()
    assert shipped.ban == default.ban
    assert shipped.crawlers == default.crawlers
    assert shipped.body_limit == default.body_limit
    assert shipped.origin_secret.model_copy(update={"enabled": None}) == default.origin_secret
    assert shipped.rate_limit_max_keys == default.rate_limit_max_keys
    # The first rule writes out every key: all but what it sets are the defaults.
    login = shipped.rate_limits[0]
    written = {"name", "match", "rate", "burst"}
    built = RateLimitRule.model_validate({"name": "login", "rate": "5/m"})
    for field in RateLimitRule.model_fields:
        if field not in written:
            assert getattr(login, field) == getattr(built, field), field
    bans = settings.bans.model_dump()
    default_bans = Bans().model_dump()
    for key in ("never_ban", "store"):
        bans.pop(key)
        default_bans.pop(key)
    assert bans == default_bans


def test_shipped_production_config_needs_each_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without its credentials the production file fails, naming each missing file."""
    monkeypatch.chdir(REPO)
    with pytest.raises(ConfigError) as caught:
        load_settings(REPO / "config" / "wardent.yaml", environ={})
    named = {
        issue.path: issue.message
        for issue in caught.value.issues
        if "cannot be read" in issue.message
    }
    assert set(named) == {"secrets.admin_token", "secrets.origin[0]", "secrets.stripe_webhook[0]"}
    assert "/run/credentials/wardent.service/origin_secret" in named["secrets.origin[0]"]
    assert (
        "/run/credentials/wardent.service/stripe_webhook_secret"
        in named["secrets.stripe_webhook[0]"]
    )


def test_shipped_dev_guards(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    settings = load_settings("config/dev.yaml", environ={"WARDENT_ADMIN_TOKEN": TOKEN})
    assert settings.guards.origin_secret.enabled is False
    assert not settings.origin_secret_on
    assert settings.secrets.origin is None
    assert settings.guards.crawlers.enabled
    assert settings.guards.crawlers.robots_txt
    (limit,) = settings.guards.rate_limits
    assert limit.rate.per_second >= 100
    assert limit.effective_burst >= 200
    assert settings.routes == ()
    assert settings.bans.store == "var/wardent-bans.sqlite3"


def test_settings_built_in_code_get_the_same_defaults() -> None:
    settings = Settings.model_validate(
        {"listen": {"public": "127.0.0.1:1"}, "upstream": {"url": "http://127.0.0.1:2"}}
    )
    assert settings.guards == Guards()
    assert settings.bans == Bans()
