"""Settings of the admit phase: the guards, the ban policy and per-route overrides."""

from __future__ import annotations

import ipaddress
import math
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from wardent.config.types import (
    Duration,
    Match,
    Model,
    Network,
    RateField,
    Size,
    _base_dir,
    _header_name,
    _networks_of,
)
from wardent.guards.crawlers import CrawlerMatcher, robots_txt

Mode = Literal["enforce", "shadow"]
GuardName = Literal["ban", "crawlers", "origin_secret", "body_limit", "rate_limit"]
GUARD_ORDER: tuple[GuardName, ...] = (
    "ban",
    "crawlers",
    "origin_secret",
    "body_limit",
    "rate_limit",
)
Status = Annotated[int, Field(ge=400, le=599)]


class BanGuard(Model):
    mode: Mode = "enforce"
    status: Status = 403


class CrawlerGuard(Model):
    enabled: bool = True
    mode: Mode = "enforce"
    status: Status = 403
    violation: bool = False
    block: Literal["builtin-ai"] | tuple[str, ...] = "builtin-ai"
    add: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()
    robots_txt: bool = True
    robots_tokens: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _names_compile(self) -> CrawlerGuard:
        # Built here once so a bad name is a config error at this key, not a crash later.
        try:
            robots_txt(CrawlerMatcher(self.block, self.add, self.allow), self.robots_tokens)
        except ValueError as error:
            raise ValueError(str(error)) from None
        return self


class OriginSecretGuard(Model):
    # None: on exactly when secrets.origin is set; true demands that secret.
    enabled: bool | None = None
    mode: Mode = "enforce"
    status: Status = 403
    violation: bool = False
    header: str = "X-Wardent-Secret"

    @field_validator("header")
    @classmethod
    def _token(cls, value: str) -> str:
        return _header_name(value)


class BodyLimitGuard(Model):
    enabled: bool = True
    mode: Mode = "enforce"
    status: Status = 413
    violation: bool = False
    max: Size = 10 * 1024 * 1024


def _rate_key(value: str) -> str:
    if value == "client_ip":
        return value
    if value.startswith("header:"):
        _header_name(value[len("header:") :])
        return value
    raise ValueError(f"{value!r}: expected client_ip or header:NAME")


class RateLimitRule(Model):
    name: str
    match: Match = Field(default_factory=Match)
    route: str | None = None
    rate: RateField
    burst: int | None = Field(default=None, ge=1)
    key: Annotated[str, AfterValidator(_rate_key)] = "client_ip"
    mode: Mode = "enforce"
    status: Status = 429
    violation: bool = True
    headers: bool = False

    @field_validator("name")
    @classmethod
    def _label(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", value):
            raise ValueError(f"{value!r}: a rule name is 1-64 of A-Z a-z 0-9 _ . -")
        return value

    @property
    def effective_burst(self) -> int:
        """Without `burst`, one period's worth: 20/s allows 20 at once, 300/m 300."""
        return self.burst if self.burst is not None else max(1, math.ceil(self.rate.count))


class Guards(Model):
    ban: BanGuard = Field(default_factory=BanGuard)
    crawlers: CrawlerGuard = Field(default_factory=CrawlerGuard)
    origin_secret: OriginSecretGuard = Field(default_factory=OriginSecretGuard)
    body_limit: BodyLimitGuard = Field(default_factory=BodyLimitGuard)
    rate_limits: tuple[RateLimitRule, ...] = ()
    rate_limit_max_keys: int = Field(default=1_000_000, ge=1000)

    @field_validator("rate_limits")
    @classmethod
    def _unique(cls, rules: tuple[RateLimitRule, ...]) -> tuple[RateLimitRule, ...]:
        names = [rule.name for rule in rules]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"rate limit names must be unique: {', '.join(repeated)} repeated")
        return rules


class Increment(Model):
    factor: float = Field(default=2.0, ge=1.0)
    max: Duration = 7 * 86400.0


class Bans(Model):
    find_time: Duration = 600.0
    max_violations: int = Field(default=30, ge=1)
    ban_time: Duration = 900.0
    increment: Increment = Field(default_factory=Increment)
    never_ban: tuple[str, ...] = ()
    store: str = "var/wardent-bans.sqlite3"
    queue_size: int = Field(default=10_000, ge=1)
    networks: tuple[Network, ...] = Field(default=(), exclude=True)

    @model_validator(mode="after")
    def _never_ban_networks(self, info: ValidationInfo) -> Bans:
        if not self.networks and self.never_ban:
            networks: list[Network] = []
            for entry in self.never_ban:
                networks.extend(_networks_of(entry, _base_dir(info)))
            object.__setattr__(self, "networks", tuple(networks))
        return self

    @field_validator("never_ban")
    @classmethod
    def _cidrs(cls, entries: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        for entry in entries:
            if not entry.startswith("file:"):
                try:
                    ipaddress.ip_network(entry, strict=False)
                except ValueError:
                    raise ValueError(f"{entry!r} is not an IP address or CIDR") from None
        return entries


class StripeSignature(Model):
    tolerance: Duration = Field(default=300.0, gt=0)
    header: str = "Stripe-Signature"

    @field_validator("header")
    @classmethod
    def _token(cls, value: str) -> str:
        return _header_name(value)


class BodyLimitOverride(Model):
    max: Size
