"""Building blocks shared by every part of the settings: the strict base model,
units, header names, networks, file lookup and route matching."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    ValidationInfo,
    field_validator,
    model_validator,
)

from wardent.config.units import Rate, format_duration, parse_duration, parse_rate, parse_size

Duration = Annotated[
    float, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)
]
Size = Annotated[int, BeforeValidator(parse_size)]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


RateField = Annotated[Rate, BeforeValidator(parse_rate), PlainSerializer(str, return_type=str)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _header_name(value: str) -> str:
    if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", value):
        raise ValueError(f"{value!r} is not a valid header name")
    return value


def _networks_of(entry: str, base: Path) -> list[Network]:
    if entry.startswith("file:"):
        path = _find_file(entry[len("file:") :], base)
        try:
            content = path.read_text(encoding="utf-8")
        except OSError as error:
            raise ValueError(f"file {str(path)!r} cannot be read: {error.strerror}") from None
        except UnicodeDecodeError:
            raise ValueError(f"file {str(path)!r} is not UTF-8 text") from None
        networks = []
        for number, line in enumerate(content.splitlines(), 1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                raise ValueError(f"{path}:{number}: {text!r} is not an IP network") from None
        return networks
    try:
        return [ipaddress.ip_network(entry, strict=False)]
    except ValueError:
        raise ValueError(f"{entry!r} is not an IP address or CIDR (or file:PATH of them)") from None


def _find_file(name: str, base: Path) -> Path:
    """Relative paths are tried against the working directory, then the config's.

    An absolute path is returned as is, so reading it reports the real reason
    (missing, permission denied) instead of a generic "not found".
    """
    candidate = Path(name)
    if candidate.is_absolute():
        return candidate
    for root in (Path.cwd(), base):
        if (root / candidate).exists():
            return root / candidate
    raise ValueError(f"file {name!r} not found (relative to {Path.cwd()} or {base})")


def _base_dir(info: ValidationInfo) -> Path:
    context = info.context or {}
    return Path(context.get("base_dir", "."))


class Match(Model):
    path_prefix: str | None = None
    path_regex: str | None = None
    methods: tuple[str, ...] = ()
    host: str | None = None

    @field_validator("path_prefix")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(f"{value!r}: path_prefix must start with /")
        return value

    @field_validator("path_regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as error:
                raise ValueError(f"path_regex does not compile: {error}") from None
        return value

    @model_validator(mode="after")
    def _one_path(self) -> Match:
        if self.path_prefix is not None and self.path_regex is not None:
            raise ValueError("give path_prefix or path_regex, not both")
        return self

    @field_validator("methods")
    @classmethod
    def _upper(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(method.upper() for method in value)
