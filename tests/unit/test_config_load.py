"""YAML file → Settings, and every error with its path, line and what was expected."""

from __future__ import annotations

import ipaddress
import textwrap
from pathlib import Path

import pytest

from wardent.config.load import ConfigError, ConfigIssue, load_settings
from wardent.config.schema import Settings

REPO = Path(__file__).resolve().parents[2]
TOKEN = "s3cr3t-t0ken-value"

MINIMAL = """\
listen:
  public: 127.0.0.1:8080
upstream:
  url: http://127.0.0.1:8000
"""


def write(directory: Path, text: str, name: str = "wardent.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


def load(directory: Path, text: str, environ: dict[str, str] | None = None) -> Settings:
    return load_settings(write(directory, text), environ={} if environ is None else environ)


def errors(directory: Path, text: str, environ: dict[str, str] | None = None) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as caught:
        load(directory, text, environ)
    assert caught.value.issues, "a ConfigError always carries at least one issue"
    return caught.value.issues


def only(issues: list[ConfigIssue]) -> ConfigIssue:
    assert len(issues) == 1, [str(issue) for issue in issues]
    return issues[0]


# -- good files ----------------------------------------------------------------


def test_minimal_file_gets_the_defaults(tmp_path: Path) -> None:
    settings = load(tmp_path, MINIMAL)
    assert str(settings.listen.public) == "127.0.0.1:8080"
    assert str(settings.listen.admin) == "127.0.0.1:9180"
    assert settings.upstream.connect_timeout == 2.0
    assert settings.secrets.admin_token is None
    assert settings.routes == ()


def test_good_file_loads_typed_values(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        """\
        listen:
          public: unix:/run/wardent/wardent.sock
          admin: unix:/run/wardent/admin.sock
          unix_socket_mode: 0600
        upstream:
          url: unix:/run/app.sock
          connect_timeout: 250ms
          read_timeout: 2m
        client_ip:
          trusted_proxies: [10.0.0.0/8, "::1/128", 192.0.2.7]
          ipv6_prefix: 56
        http:
          max_header_size: 32KiB
        routes:
          - name: webhook
            match: {path_prefix: /stripe/webhook, methods: [post]}
          - match: {path_regex: '^/api/v\\d+/'}
        telemetry: {access_log: "off", log_level: debug}
        shutdown_timeout: 1h
        debug_headers: true
        """,
    )
    assert settings.listen.public.unix_path == "/run/wardent/wardent.sock"
    assert settings.listen.admin.is_unix
    assert settings.listen.unix_socket_mode == 0o600
    assert settings.upstream.connect_timeout == 0.25
    assert settings.upstream.read_timeout == 120.0
    assert settings.client_ip.ipv6_prefix == 56
    assert settings.client_ip.networks == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
        ipaddress.ip_network("192.0.2.7/32"),
    )
    assert settings.http.max_header_size == 32 * 1024
    assert [route.name for route in settings.routes] == ["webhook", r"^/api/v\d+/"]
    assert settings.routes[0].match.methods == ("POST",)
    assert settings.telemetry.access_log == "off"
    assert settings.shutdown_timeout == 3600.0
    assert settings.debug_headers is True


def test_settings_are_immutable(tmp_path: Path) -> None:
    settings = load(tmp_path, MINIMAL)
    with pytest.raises(ValueError, match="frozen"):
        setattr(settings, "debug_headers", True)  # noqa: B010


def test_merge_keys_work_and_own_keys_override(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        """\
        listen:
          public: 127.0.0.1:8080
        routes:
          - name: a
            match: &api {path_prefix: /api, methods: [GET]}
          - name: b
            match:
              <<: *api
              methods: [POST]
        upstream:
          <<: {connect_timeout: 5s, read_timeout: 5s}
          url: http://127.0.0.1:8000
          read_timeout: 30s
        """,
    )
    assert settings.upstream.connect_timeout == 5.0
    assert settings.upstream.read_timeout == 30.0
    assert settings.routes[1].match.path_prefix == "/api"
    assert settings.routes[1].match.methods == ("POST",)


def test_an_alias_used_twice_is_not_a_duplicate(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        MINIMAL
        + """\
routes:
  - name: a
    match: &base {path_prefix: /a}
  - name: b
    match: &b
      <<: *base
      path_prefix: /b
  - name: c
    match: *b
""",
    )
    assert [route.match.path_prefix for route in settings.routes] == ["/a", "/b", "/b"]


def test_recursive_alias_is_an_error(tmp_path: Path) -> None:
    issue = only(errors(tmp_path, "listen: &a\n  public: *a\nupstream: {url: unix:/a}\n"))
    assert (issue.path, issue.line) == ("listen.public", 2)
    assert "recursive" in issue.message


@pytest.mark.parametrize(
    ("public", "host", "port"),
    [
        ('"[::1]:8080"', "::1", 8080),
        ('"[::]:8080"', "::", 8080),
        ('"[2001:db8::1]:443"', "2001:db8::1", 443),
        ("0.0.0.0:80", "0.0.0.0", 80),
        ("localhost:8080", "localhost", 8080),
    ],
)
def test_listen_addresses(tmp_path: Path, public: str, host: str, port: int) -> None:
    settings = load(tmp_path, MINIMAL.replace("127.0.0.1:8080", public))
    assert (settings.listen.public.host, settings.listen.public.port) == (host, port)


def test_ipv6_address_prints_in_brackets(tmp_path: Path) -> None:
    settings = load(tmp_path, MINIMAL.replace("127.0.0.1:8080", '"[::1]:8080"'))
    assert str(settings.listen.public) == "[::1]:8080"


@pytest.mark.parametrize("admin", ['"[::1]:9180"', "127.0.0.2:9180", "localhost:9180", "unix:/a"])
def test_admin_listener_on_loopback_is_accepted(tmp_path: Path, admin: str) -> None:
    settings = load(tmp_path, MINIMAL.replace("listen:\n", f"listen:\n  admin: {admin}\n"))
    assert str(settings.listen.admin).strip('"') == admin.strip('"')


# -- unknown keys, types, units --------------------------------------------------


def test_unknown_key_names_the_line_and_the_allowed_keys(tmp_path: Path) -> None:
    issue = only(
        errors(
            tmp_path,
            """\
            listen:
              public: 127.0.0.1:8080
            upstream:
              url: http://127.0.0.1:8000
              conect_timeout: 2s
            """,
        )
    )
    assert issue.path == "upstream.conect_timeout"
    assert issue.line == 5
    assert "unknown key 'conect_timeout'" in issue.message
    assert "expected one of: url, connect_timeout, read_timeout" in issue.message
    assert "did you mean 'connect_timeout'?" in issue.message


def test_unknown_top_level_section(tmp_path: Path) -> None:
    issue = only(errors(tmp_path, MINIMAL + "gaurds: {}\n"))
    assert (issue.path, issue.line) == ("gaurds", 5)
    assert "expected one of: listen, upstream, client_ip" in issue.message


def test_unknown_key_in_a_list_item(tmp_path: Path) -> None:
    issue = only(
        errors(
            tmp_path,
            MINIMAL
            + """\
routes:
  - name: a
    match: {path_prefix: /a, method: [GET]}
""",
        )
    )
    assert (issue.path, issue.line) == ("routes[0].match.method", 7)
    assert "expected one of: path_prefix, path_regex, methods, host" in issue.message


def test_bad_duration_names_path_line_and_expected(tmp_path: Path) -> None:
    issue = only(
        errors(tmp_path, MINIMAL + "  connect_timeout: 10x\n"),
    )
    assert issue.path == "upstream.connect_timeout"
    assert issue.line == 5
    assert issue.message.startswith("'10x' is not a duration: expected")
    assert "Value error" not in issue.message
    assert str(issue).endswith(f":5: upstream.connect_timeout: {issue.message}")


def test_type_error_includes_pydantics_message_and_the_value(tmp_path: Path) -> None:
    issue = only(errors(tmp_path, MINIMAL + "  max_connections: lots\n"))
    assert (issue.path, issue.line) == ("upstream.max_connections", 5)
    assert "Input should be a valid integer" in issue.message
    assert "'lots'" in issue.message


def test_constraint_error(tmp_path: Path) -> None:
    issue = only(errors(tmp_path, MINIMAL + "client_ip: {ipv6_prefix: 129}\n"))
    assert issue.path == "client_ip.ipv6_prefix"
    assert "less than or equal to 128" in issue.message


def test_literal_error_lists_the_choices(tmp_path: Path) -> None:
    issue = only(errors(tmp_path, MINIMAL + "telemetry:\n  access_log: xml\n"))
    assert (issue.path, issue.line) == ("telemetry.access_log", 6)
    assert "'json' or 'off'" in issue.message


def test_missing_required_key_points_at_the_parent(tmp_path: Path) -> None:
    issue = only(
        errors(
            tmp_path,
            """\
            # comment
            listen:
              admin: 127.0.0.1:9180
            upstream:
              url: http://127.0.0.1:8000
            """,
        )
    )
    assert (issue.path, issue.line) == ("listen.public", 2)
    assert issue.message.startswith("missing required key")


def test_missing_section_points_at_the_top(tmp_path: Path) -> None:
    issue = only(errors(tmp_path, "listen:\n  public: 127.0.0.1:8080\n"))
    assert (issue.path, issue.line) == ("upstream", 1)
    assert "missing required key" in issue.message


def test_upstream_url_shapes(tmp_path: Path) -> None:
    issue = only(errors(tmp_path, MINIMAL.replace("http://127.0.0.1:8000", "https://x")))
    assert issue.path == "upstream.url"
    assert "http://HOST[:PORT] or unix:/path/to.sock" in issue.message
    issue = only(errors(tmp_path, MINIMAL.replace(":8000", ":99999")))
    assert "outside 1-65535" in issue.message


def test_multiple_errors_are_all_reported_in_line_order(tmp_path: Path) -> None:
    issues = errors(
        tmp_path,
        """\
        listen:
          public: nowhere
          admin: 0.0.0.0:9180
        upstream:
          url: http://127.0.0.1:8000
          read_timeout: soon
          conect_timeout: 2s
        client_ip:
          trusted_proxies: [10.0.0.0/8, 300.1.1.1]
          ipv6_prefix: many
        telemetry: {log_level: loud}
        routes:
          - match: {path_prefix: api}
        """,
    )
    assert [(issue.path, issue.line) for issue in issues] == [
        ("listen.public", 2),
        ("listen.admin", 3),
        ("upstream.read_timeout", 6),
        ("upstream.conect_timeout", 7),
        ("client_ip.trusted_proxies[1]", 9),
        ("client_ip.ipv6_prefix", 10),
        ("telemetry.log_level", 11),
        ("routes[0].match.path_prefix", 13),
    ]


def test_admin_listener_must_be_loopback(tmp_path: Path) -> None:
    issue = only(errors(tmp_path, MINIMAL.replace("listen:\n", "listen:\n  admin: 0.0.0.0:9180\n")))
    assert (issue.path, issue.line) == ("listen.admin", 2)
    assert "must be loopback or a unix socket" in issue.message


@pytest.mark.parametrize("public", ['"::1:8080"', "127.0.0.1", "unix:relative.sock", "h:70000"])
def test_bad_listen_addresses(tmp_path: Path, public: str) -> None:
    issue = only(errors(tmp_path, MINIMAL.replace("127.0.0.1:8080", public)))
    assert (issue.path, issue.line) == ("listen.public", 2)


def test_route_names_must_be_unique(tmp_path: Path) -> None:
    issue = only(
        errors(
            tmp_path,
            MINIMAL
            + """\
routes:
  - match: {path_prefix: /api, methods: [GET]}
  - match: {path_prefix: /api, methods: [POST]}
""",
        )
    )
    assert (issue.path, issue.line) == ("routes", 5)
    assert "/api repeated" in issue.message


def test_computed_fields_cannot_be_set_from_the_file(tmp_path: Path) -> None:
    issue = only(errors(tmp_path, MINIMAL + "client_ip:\n  networks: [0.0.0.0/0]\n"))
    assert (issue.path, issue.line) == ("client_ip.networks", 6)
    assert "unknown key 'networks'" in issue.message
    assert "networks," not in issue.message


# -- YAML itself -------------------------------------------------------------------


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    issue = only(
        errors(
            tmp_path,
            """\
            listen:
              public: [127.0.0.1:8080
            upstream:
              url: http://127.0.0.1:8000
            """,
        )
    )
    assert issue.line is not None
    assert issue.line >= 2
    assert issue.message.startswith("invalid YAML:")
    assert issue.path == ""


def test_bad_indentation_is_a_syntax_error(tmp_path: Path) -> None:
    issue = only(errors(tmp_path, "listen:\n  public: 127.0.0.1:8080\n bad: 1\n"))
    assert issue.line == 3
    assert "indentation" in issue.message


def test_duplicate_key_is_an_error(tmp_path: Path) -> None:
    issues = errors(
        tmp_path,
        """\
        listen:
          public: 127.0.0.1:8080
        upstream:
          url: http://127.0.0.1:8000
          read_timeout: 10s
          read_timeout: 1s
        """,
    )
    issue = only(issues)
    assert (issue.path, issue.line) == ("upstream.read_timeout", 6)
    assert "duplicate key 'read_timeout'" in issue.message
    assert "line 5" in issue.message


def test_duplicate_section_is_an_error(tmp_path: Path) -> None:
    issue = only(errors(tmp_path, MINIMAL + "listen:\n  public: 127.0.0.1:8081\n"))
    assert (issue.path, issue.line) == ("listen", 5)


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    issue = only(errors(tmp_path, "- listen\n- upstream\n"))
    assert issue.line == 1
    assert "top level must be a mapping" in issue.message


def test_empty_file(tmp_path: Path) -> None:
    issue = only(errors(tmp_path, "# nothing here\n"))
    assert "empty" in issue.message


def test_boolean_keys_are_explained(tmp_path: Path) -> None:
    issue = only(errors(tmp_path, MINIMAL + "yes: 1\n"))
    assert issue.line == 5
    assert "'yes'" in issue.message
    assert "quote it" in issue.message


def test_unknown_tag(tmp_path: Path) -> None:
    issue = only(errors(tmp_path, MINIMAL + "  read_timeout: !!python/name:os.system ''\n"))
    assert (issue.path, issue.line) == ("upstream.read_timeout", 5)


def test_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as caught:
        load_settings(missing, environ={})
    issue = only(caught.value.issues)
    assert "No such file or directory" in issue.message
    assert caught.value.path == missing
    assert str(caught.value).startswith(str(missing))


def test_a_directory_is_not_a_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path, environ={})
    assert "cannot read" in str(caught.value)


# -- the error objects ---------------------------------------------------------------


def test_issue_and_error_strings() -> None:
    issue = ConfigIssue("upstream.connect_timeout", 12, "'10x' is not a duration", "c.yaml")
    assert str(issue) == "c.yaml:12: upstream.connect_timeout: '10x' is not a duration"
    assert str(ConfigIssue("", None, "cannot read", "c.yaml")) == "c.yaml: cannot read"
    error = ConfigError(Path("c.yaml"), [issue, ConfigIssue("listen", 1, "missing", "c.yaml")])
    assert str(error).splitlines() == [
        "c.yaml:12: upstream.connect_timeout: '10x' is not a duration",
        "c.yaml:1: listen: missing",
    ]


def test_issues_name_the_file_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config").mkdir()
    write(tmp_path / "config", MINIMAL + "  connect_timeout: 10x\n", "dev.yaml")
    with pytest.raises(ConfigError) as caught:
        load_settings("config/dev.yaml", environ={})
    assert str(caught.value).startswith("config/dev.yaml:5: upstream.connect_timeout: '10x'")


# -- secrets -------------------------------------------------------------------------

SECRET_ENV = MINIMAL + "secrets:\n  admin_token: {env: WARDENT_ADMIN_TOKEN}\n"


def test_secret_from_the_environment(tmp_path: Path) -> None:
    settings = load(tmp_path, SECRET_ENV, {"WARDENT_ADMIN_TOKEN": f" {TOKEN}\n"})
    assert settings.secrets.admin_token is not None
    assert settings.secrets.admin_token.value == TOKEN.encode()


def test_missing_env_secret_names_the_variable(tmp_path: Path) -> None:
    issue = only(errors(tmp_path, SECRET_ENV, {}))
    assert (issue.path, issue.line) == ("secrets.admin_token", 6)
    assert "environment variable WARDENT_ADMIN_TOKEN is not set" in issue.message


def test_empty_env_secret_is_an_error(tmp_path: Path) -> None:
    issue = only(errors(tmp_path, SECRET_ENV, {"WARDENT_ADMIN_TOKEN": "  "}))
    assert "environment variable WARDENT_ADMIN_TOKEN is empty" in issue.message


def test_explicit_empty_environ_does_not_fall_back_to_os_environ(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WARDENT_ADMIN_TOKEN", TOKEN)
    only(errors(tmp_path, SECRET_ENV, {}))
    settings = load_settings(write(tmp_path, SECRET_ENV))  # environ=None: os.environ
    assert settings.secrets.admin_token is not None
    assert settings.secrets.admin_token.value == TOKEN.encode()


def test_secret_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "admin_token"
    secret.write_text(TOKEN + "\n")
    settings = load(tmp_path, MINIMAL + f"secrets:\n  admin_token: {{file: {secret}}}\n")
    assert settings.secrets.admin_token is not None
    assert settings.secrets.admin_token.value == TOKEN.encode()


def test_relative_secret_file_is_found_beside_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    (tmp_path / "admin_token").write_text(TOKEN)
    settings = load(tmp_path, MINIMAL + "secrets:\n  admin_token: {file: admin_token}\n")
    assert settings.secrets.admin_token is not None
    assert settings.secrets.admin_token.value == TOKEN.encode()


def test_empty_secret_file_is_an_error(tmp_path: Path) -> None:
    secret = tmp_path / "admin_token"
    secret.write_text("\n")
    issue = only(errors(tmp_path, MINIMAL + f"secrets:\n  admin_token:\n    file: {secret}\n"))
    assert (issue.path, issue.line) == ("secrets.admin_token", 6)
    assert f"secret file {secret} is empty" in issue.message


def test_missing_secret_file_is_an_error(tmp_path: Path) -> None:
    issue = only(errors(tmp_path, MINIMAL + "secrets:\n  admin_token: {file: /nonexistent/x}\n"))
    assert "/nonexistent/x" in issue.message
    assert "No such file or directory" in issue.message


@pytest.mark.parametrize(
    ("secret", "expected"),
    [
        (f"{{value: {TOKEN}}}", "unknown key 'value' (expected one of: env, file)"),
        (TOKEN, "expected {env: NAME} or {file: PATH}"),
        ("{env: A, file: /b}", "exactly one of"),
        ("{}", "exactly one of"),
    ],
)
def test_secret_shapes(tmp_path: Path, secret: str, expected: str) -> None:
    issues = errors(tmp_path, MINIMAL + f"secrets:\n  admin_token: {secret}\n", {"A": "x"})
    assert any(expected in issue.message for issue in issues), [str(i) for i in issues]
    assert all(TOKEN not in str(issue) for issue in issues)


def test_secret_never_appears_in_repr_str_or_dumps(tmp_path: Path) -> None:
    settings = load(tmp_path, SECRET_ENV, {"WARDENT_ADMIN_TOKEN": TOKEN})
    secret = settings.secrets.admin_token
    assert secret is not None
    assert secret.value == TOKEN.encode()
    for text in (
        repr(settings),
        str(settings),
        repr(secret),
        str(secret),
        repr(settings.secrets),
        str(settings.model_dump()),
        str(settings.model_dump(mode="json")),
        settings.model_dump_json(),
    ):
        assert TOKEN not in text
    assert settings.model_dump(mode="json")["secrets"]["admin_token"] == {
        "env": "WARDENT_ADMIN_TOKEN",
        "file": None,
    }


# -- trusted proxies -------------------------------------------------------------------


def test_trusted_proxies_from_files(tmp_path: Path) -> None:
    (tmp_path / "edge.txt").write_text("# edge\n192.0.2.0/24  # a comment\n\n2001:db8::/32\n")
    settings = load(
        tmp_path,
        MINIMAL + 'client_ip:\n  trusted_proxies: ["file:edge.txt", 127.0.0.1/32]\n',
    )
    assert settings.client_ip.networks == (
        ipaddress.ip_network("192.0.2.0/24"),
        ipaddress.ip_network("2001:db8::/32"),
        ipaddress.ip_network("127.0.0.1/32"),
    )
    dumped = settings.model_dump(mode="json")["client_ip"]
    assert dumped["trusted_proxies"] == ["file:edge.txt", "127.0.0.1/32"]
    assert "networks" not in dumped


def test_bad_line_in_a_trusted_proxies_file(tmp_path: Path) -> None:
    edge = tmp_path / "edge.txt"
    edge.write_text("192.0.2.0/24\n\n10.0.0.0/33\n")
    issue = only(
        errors(
            tmp_path,
            MINIMAL
            + """\
client_ip:
  trusted_proxies:
    - 127.0.0.1/32
    - file:edge.txt
  ipv6_prefix: 64
""",
        )
    )
    assert (issue.path, issue.line) == ("client_ip.trusted_proxies[1]", 8)
    assert f"{edge}:3: '10.0.0.0/33' is not an IP network" in issue.message


def test_missing_trusted_proxies_file(tmp_path: Path) -> None:
    issue = only(errors(tmp_path, MINIMAL + 'client_ip: {trusted_proxies: ["file:nope.txt"]}\n'))
    assert issue.path == "client_ip.trusted_proxies[0]"
    assert "file 'nope.txt' not found" in issue.message


def test_trusted_proxies_error_does_not_hide_other_client_ip_errors(tmp_path: Path) -> None:
    issues = errors(
        tmp_path, MINIMAL + "client_ip:\n  trusted_proxies: [nonsense]\n  ipv4_prefix: 33\n"
    )
    assert [issue.path for issue in issues] == [
        "client_ip.trusted_proxies[0]",
        "client_ip.ipv4_prefix",
    ]


# -- the shipped files -------------------------------------------------------------------


def test_shipped_dev_config_validates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    settings = load_settings("config/dev.yaml", environ={"WARDENT_ADMIN_TOKEN": TOKEN})
    assert str(settings.listen.public) == "127.0.0.1:8080"
    assert str(settings.listen.admin) == "127.0.0.1:9180"
    assert settings.upstream.url == "http://127.0.0.1:8000"
    assert settings.telemetry.access_log == "json"
    assert settings.telemetry.access_log_path == "-"
    assert settings.secrets.admin_token is not None
    assert settings.secrets.admin_token.env == "WARDENT_ADMIN_TOKEN"
    assert {str(net) for net in settings.client_ip.networks} == {"127.0.0.1/32", "::1/128"}


def test_shipped_dev_config_names_its_missing_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    with pytest.raises(ConfigError) as caught:
        load_settings("config/dev.yaml", environ={})
    assert "WARDENT_ADMIN_TOKEN is not set" in only(caught.value.issues).message


# The systemd credentials the shipped production file reads, and the value each
# test copy of it gets instead (they exist only while the service runs).
CREDENTIALS = {
    "admin_token": TOKEN,
    "origin_secret": "0r1g1n-s3cr3t-value",
    "stripe_webhook_secret": "whsec_t3st-s1gn1ng-s3cr3t",
}


def shipped_production_copy(tmp_path: Path) -> Path:
    """config/wardent.yaml with each credential path pointing at a temporary file."""
    text = (REPO / "config" / "wardent.yaml").read_text()
    for name, value in CREDENTIALS.items():
        credential = f"/run/credentials/wardent.service/{name}"
        assert credential in text, credential
        secret = tmp_path / name
        secret.write_text(value + "\n")
        text = text.replace(credential, str(secret))
    assert "/run/credentials/" not in text, "a credential this helper does not know"
    (tmp_path / "config").mkdir(exist_ok=True)
    copy = tmp_path / "config" / "wardent.yaml"
    copy.write_text(text)
    return copy


def test_shipped_production_config_validates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = shipped_production_copy(tmp_path)
    monkeypatch.chdir(REPO)  # as systemd's WorkingDirectory: file:config/... resolves here

    settings = load_settings(copy, environ={})

    assert str(settings.listen.public) == "unix:/run/wardent/wardent.sock"
    assert str(settings.listen.admin) == "127.0.0.1:9180"
    assert settings.upstream.url == "unix:/run/tradesim/app.sock"
    assert settings.listen.unix_socket_mode == 0o660
    assert settings.secrets.admin_token is not None
    assert settings.secrets.admin_token.value == TOKEN.encode()
    assert settings.secrets.origin is not None
    assert [s.value for s in settings.secrets.origin] == [CREDENTIALS["origin_secret"].encode()]
    assert settings.secrets.stripe_webhook is not None
    assert [s.value for s in settings.secrets.stripe_webhook] == [
        CREDENTIALS["stripe_webhook_secret"].encode()
    ]
    networks = set(settings.client_ip.networks)
    for expected in ("173.245.48.0/20", "2400:cb00::/32", "127.0.0.1/32", "::1/128"):
        assert ipaddress.ip_network(expected) in networks
    assert len(networks) >= 20


def test_production_config_spells_out_every_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shipped file claims to show each default: it must not drift from the schema."""
    monkeypatch.chdir(REPO)
    settings = load_settings(shipped_production_copy(tmp_path), environ={})
    defaults = Settings.model_validate(
        {"listen": {"public": "unix:/x.sock"}, "upstream": {"url": "unix:/y.sock"}}
    )
    for section in ("upstream", "http", "telemetry"):
        shipped = settings.model_dump()[section]
        default = defaults.model_dump()[section]
        shipped.pop("url", None)
        default.pop("url", None)
        assert shipped == default, section
    assert settings.listen.backlog == defaults.listen.backlog
    assert settings.listen.unix_socket_mode == defaults.listen.unix_socket_mode
    assert settings.shutdown_timeout == defaults.shutdown_timeout
    assert settings.debug_headers == defaults.debug_headers


def test_cloudflare_list_is_well_formed() -> None:
    lines = (REPO / "config" / "cloudflare-ips.txt").read_text().splitlines()
    entries = [line.split("#", 1)[0].strip() for line in lines]
    networks = [ipaddress.ip_network(entry) for entry in entries if entry]  # strict: no host bits
    assert sum(net.version == 4 for net in networks) >= 10
    assert sum(net.version == 6 for net in networks) >= 5
    assert len(set(networks)) == len(networks)
    header = "\n".join(line for line in lines if line.startswith("#"))
    assert "https://www.cloudflare.com/ips-v4" in header
    assert "https://www.cloudflare.com/ips-v6" in header
