"""The typed, immutable settings that a YAML file validates into.

pydantic v2 does the validation: it is the best-kept validation library for
Python, its errors carry the exact location (`loc`) that the loader maps back
to a YAML line, `extra="forbid"` turns every unknown key into an error (a typo
must not silently disable a guard) and `frozen=True` makes the settings
immutable, so a reload swaps one whole object instead of editing a live one.
"""

from __future__ import annotations

import ipaddress
import os
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainSerializer,
    ValidationInfo,
    field_validator,
    model_validator,
)

from wardent.config.guard_settings import (
    Bans,
    BodyLimitOverride,
    GuardName,
    Guards,
    StripeSignature,
)
from wardent.config.types import (
    Duration,
    Match,
    Model,
    Network,
    _base_dir,
    _find_file,
    _header_name,
    _networks_of,
)
from wardent.config.units import parse_size


class Address(Model):
    """A listening or connecting address: host and port, or a unix socket path."""

    host: str = ""
    port: int = 0
    unix_path: str | None = None

    @property
    def is_unix(self) -> bool:
        return self.unix_path is not None

    def __str__(self) -> str:
        if self.unix_path is not None:
            return f"unix:{self.unix_path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_address(value: object) -> Address:
    if isinstance(value, Address):
        return value
    if not isinstance(value, str) or not value.strip():
        raise ValueError('expected "HOST:PORT", "[IPV6]:PORT" or "unix:/path/to.sock"')
    text = value.strip()
    if text.startswith("unix:"):
        path = text[len("unix:") :]
        if not path.startswith("/"):
            raise ValueError(f"{text!r}: a unix socket needs an absolute path, as unix:/run/x.sock")
        return Address(unix_path=path)
    match = re.fullmatch(r"\[([0-9a-fA-F:.]+)\]:(\d+)|([^:\[\]]+):(\d+)", text)
    if match is None:
        raise ValueError(f"{text!r} is not HOST:PORT, [IPV6]:PORT or unix:/path")
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is outside 0-65535")
    return Address(host=host, port=port)


AddressField = Annotated[Address, BeforeValidator(parse_address), PlainSerializer(str)]


def is_loopback(address: Address) -> bool:
    if address.is_unix or address.host == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.host).is_loopback
    except ValueError:
        return False


class Listen(Model):
    public: AddressField
    admin: AddressField = Field(default_factory=lambda: parse_address("127.0.0.1:9180"))
    backlog: int = Field(default=1024, ge=1, le=65535)
    unix_socket_mode: int = Field(default=0o660, ge=0, le=0o777)

    @field_validator("admin")
    @classmethod
    def _admin_is_loopback(cls, value: Address) -> Address:
        if not is_loopback(value):
            raise ValueError(
                f"the admin listener must be loopback or a unix socket, not {value}: "
                "it can ban clients and read the configuration"
            )
        return value


class Upstream(Model):
    url: str
    connect_timeout: Duration = 2.0
    read_timeout: Duration = 60.0
    send_timeout: Duration = 60.0
    max_connections: int = Field(default=256, ge=1)
    max_idle: int = Field(default=64, ge=0)
    idle_timeout: Duration = 60.0
    retry_idempotent: bool = True

    @field_validator("url")
    @classmethod
    def _url_shape(cls, value: str) -> str:
        if value.startswith("unix:/"):
            return value
        match = re.fullmatch(r"http://(\[[0-9a-fA-F:.]+\]|[^:/\[\]]+)(?::(\d+))?/?", value)
        if match is None:
            raise ValueError(
                f"{value!r}: expected http://HOST[:PORT] or unix:/path/to.sock "
                "(TLS to the upstream is not supported: keep it on loopback or a socket)"
            )
        if match.group(2) is not None and not 1 <= int(match.group(2)) <= 65535:
            raise ValueError(f"{value!r}: port {match.group(2)} is outside 1-65535")
        return value.rstrip("/")

    @property
    def address(self) -> Address:
        if self.url.startswith("unix:"):
            return Address(unix_path=self.url[len("unix:") :])
        rest = self.url[len("http://") :]
        if rest.startswith("["):
            host, _, port = rest[1:].partition("]")
            return Address(host=host, port=int(port.lstrip(":") or 80))
        host, _, port = rest.partition(":")
        return Address(host=host, port=int(port or 80))


def _check_trusted_proxy(entry: str, info: ValidationInfo) -> str:
    """Validate one trusted_proxies entry where it is written, so an error has its line."""
    _networks_of(entry, _base_dir(info))
    return entry


class ClientIP(Model):
    header: str = "CF-Connecting-IP"
    trusted_proxies: tuple[Annotated[str, AfterValidator(_check_trusted_proxy)], ...] = ()
    trust_unix_socket: bool = True
    forwarded_for: bool = True
    ipv6_prefix: int = Field(default=64, ge=1, le=128)
    ipv4_prefix: int = Field(default=32, ge=1, le=32)
    networks: tuple[Network, ...] = Field(default=(), exclude=True)

    @field_validator("header")
    @classmethod
    def _token(cls, value: str) -> str:
        return _header_name(value)

    @model_validator(mode="after")
    def _expand_networks(self, info: ValidationInfo) -> ClientIP:
        # `networks` given explicitly (programmatic construction) wins; the
        # loader rejects it in YAML, where only trusted_proxies may be written.
        if "networks" not in self.model_fields_set:
            base = _base_dir(info)
            networks = [net for entry in self.trusted_proxies for net in _networks_of(entry, base)]
            object.__setattr__(self, "networks", tuple(networks))
        return self


class SecretSource(Model):
    """Where a secret lives: an environment variable or a file (systemd credentials).

    The value is read while validating, so a missing or empty secret is an error
    at the secret's own YAML line, and it never appears in repr, logs or /config.
    """

    env: str | None = None
    file: str | None = None
    value: bytes = Field(default=b"", exclude=True, repr=False)

    @model_validator(mode="before")
    @classmethod
    def _read(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            raise ValueError("expected {env: NAME} or {file: PATH}")
        if "value" in data:
            raise ValueError("secrets never live in the YAML: use {env: NAME} or {file: PATH}")
        env, file = data.get("env"), data.get("file")
        if (env is None) == (file is None):
            raise ValueError("expected exactly one of {env: NAME} or {file: PATH}")
        context = info.context or {}
        environ: dict[str, str] = context.get("environ", os.environ)
        if env is not None:
            if not isinstance(env, str):
                raise ValueError("env must name an environment variable")
            raw = environ.get(env)
            if raw is None:
                raise ValueError(f"environment variable {env} is not set")
            if not raw.strip():
                raise ValueError(f"environment variable {env} is empty")
            return {**data, "value": raw.strip().encode()}
        if not isinstance(file, str):
            raise ValueError("file must be a path")
        path = _find_file(file, _base_dir(info))
        try:
            raw_bytes = path.read_bytes()
        except OSError as error:
            raise ValueError(f"secret file {file} cannot be read: {error.strerror}") from None
        if not raw_bytes.strip():
            raise ValueError(f"secret file {file} is empty")
        return {**data, "value": raw_bytes.strip()}

    def __str__(self) -> str:
        return f"env:{self.env}" if self.env else f"file:{self.file}"


def _one_or_more(value: Any) -> Any:
    return [value] if isinstance(value, dict) else value


# One secret, or two while rotating: [{env: NEW}, {env: OLD}].
RotatingSecret = Annotated[
    tuple[SecretSource, ...],
    BeforeValidator(_one_or_more),
    Field(min_length=1, max_length=2),
]


class Secrets(Model):
    admin_token: SecretSource | None = None
    origin: RotatingSecret | None = None
    stripe_webhook: RotatingSecret | None = None


class Http(Model):
    max_header_size: Annotated[int, BeforeValidator(parse_size), Field(ge=1024)] = 16384
    max_header_count: int = Field(default=100, ge=8)
    header_timeout: Duration = 10.0
    body_timeout: Duration = 60.0
    keepalive_timeout: Duration = 75.0
    max_pipelined: int = Field(default=16, ge=1)
    request_id_header: str = "X-Request-ID"
    trust_request_id: bool = True

    @field_validator("request_id_header")
    @classmethod
    def _token(cls, value: str) -> str:
        return _header_name(value)


class Route(Model):
    name: str = ""
    match: Match
    skip: tuple[GuardName, ...] = ()
    shadow: tuple[GuardName, ...] = ()
    body_limit: BodyLimitOverride | None = None
    stripe_signature: StripeSignature | None = None

    @property
    def skipped(self) -> frozenset[str]:
        """A Stripe webhook route is exempt from the origin secret and crawler guards:
        Stripe sends neither, and Wardent verifies its signature instead."""
        if self.stripe_signature is not None:
            return frozenset(self.skip) | {"origin_secret", "crawlers"}
        return frozenset(self.skip)

    @model_validator(mode="after")
    def _named(self) -> Route:
        if not self.name:
            derived = self.match.path_prefix or self.match.path_regex or self.match.host or "any"
            object.__setattr__(self, "name", derived)
        return self


class Telemetry(Model):
    access_log: Literal["json", "off"] = "json"
    access_log_path: str = "-"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    service_name: str = "wardent"


class Liveness(Model):
    """When the systemd watchdog stops being pinged (see observe/liveness.py)."""

    max_loop_lag: Duration = Field(default=2.0, gt=0)
    max_keeper_silence: Duration = Field(default=5.0, gt=0)


class Settings(Model):
    listen: Listen
    upstream: Upstream
    client_ip: ClientIP = Field(default_factory=ClientIP)
    http: Http = Field(default_factory=Http)
    secrets: Secrets = Field(default_factory=Secrets)
    routes: tuple[Route, ...] = ()
    guards: Guards = Field(default_factory=Guards)
    bans: Bans = Field(default_factory=Bans)
    telemetry: Telemetry = Field(default_factory=Telemetry)
    liveness: Liveness = Field(default_factory=Liveness)
    shutdown_timeout: Duration = 30.0
    debug_headers: bool = False

    @property
    def origin_secret_on(self) -> bool:
        enabled = self.guards.origin_secret.enabled
        return enabled if enabled is not None else self.secrets.origin is not None

    @field_validator("guards")
    @classmethod
    def _guards_have_what_they_need(cls, guards: Guards, info: ValidationInfo) -> Guards:
        if "secrets" not in info.data:
            return guards  # the secrets themselves failed: that error says enough
        secrets = info.data["secrets"]
        if guards.origin_secret.enabled and secrets.origin is None:
            raise ValueError(
                "origin_secret.enabled is true but secrets.origin is not set: "
                "name the secret ({env: NAME} or {file: PATH}) or set enabled: false"
            )
        routes = {route.name for route in info.data.get("routes", ())} | {"default"}
        for rule in guards.rate_limits:
            if rule.route is not None and rule.route not in routes:
                raise ValueError(
                    f"rate limit {rule.name!r} names route {rule.route!r}, which is not defined "
                    f"(routes: {', '.join(sorted(routes)) or 'none'})"
                )
        return guards

    @field_validator("routes")
    @classmethod
    def _unique_route_names(
        cls, routes: tuple[Route, ...], info: ValidationInfo
    ) -> tuple[Route, ...]:
        secrets = info.data.get("secrets")
        for route in routes:
            if (
                route.stripe_signature is not None
                and secrets is not None
                and secrets.stripe_webhook is None
            ):
                raise ValueError(
                    f"route {route.name!r} checks Stripe signatures but "
                    "secrets.stripe_webhook is not set"
                )
        names = [route.name for route in routes]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(
                f"route names must be unique: {', '.join(duplicates)} repeated "
                "(a route without a name is named after its match: give each a name)"
            )
        return routes
