"""docs/configuration.md documents every key the schema accepts, and no other."""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, BeforeValidator, PlainValidator, WrapValidator
from pydantic.fields import FieldInfo

from wardent.config.schema import Settings

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs" / "configuration.md"
PRODUCTION = REPO / "config" / "wardent.yaml"


def _alternatives(annotation: Any) -> list[Any]:
    """Annotated stripped, Optional and other unions flattened."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _alternatives(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        return [alt for arg in typing.get_args(annotation) for alt in _alternatives(arg)]
    return [annotation]


def _nested(annotation: Any) -> tuple[type[BaseModel], str] | None:
    """The model a field holds (and "[]" when it is a list of them), if any."""
    for alternative in _alternatives(annotation):
        if isinstance(alternative, type) and issubclass(alternative, BaseModel):
            return alternative, ""
        if typing.get_origin(alternative) in (tuple, list):
            for item in typing.get_args(alternative):
                if item is Ellipsis:
                    continue
                found = _nested(item)
                if found is not None:
                    return found[0], "[]" + found[1]
    return None


def _written_as_scalar(field: FieldInfo) -> bool:
    """A field whose validator turns a scalar into a model (an address) is one key."""
    return any(
        isinstance(meta, BeforeValidator | PlainValidator | WrapValidator)
        for meta in field.metadata
    )


def schema_paths(model: type[BaseModel] = Settings, prefix: str = "") -> Iterator[str]:
    for name, field in model.model_fields.items():
        if field.exclude:
            continue  # computed, never written in the YAML
        path = f"{prefix}.{name}" if prefix else name
        yield path
        if _written_as_scalar(field):
            continue
        nested = _nested(field.annotation)
        if nested is not None:
            yield from schema_paths(nested[0], path + nested[1])


def yaml_paths(value: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            yield path
            yield from yaml_paths(item, path)
    elif isinstance(value, list):
        for item in value:
            yield from yaml_paths(item, prefix + "[]")


def documented() -> set[str]:
    return set(re.findall(r"`([^`\n]+)`", DOCS.read_text()))


def test_the_walker_sees_nested_models_and_lists() -> None:
    paths = set(schema_paths())
    assert {
        "listen.public",
        "upstream.connect_timeout",
        "client_ip.trusted_proxies",
        "secrets.admin_token.env",
        "routes[].match.path_prefix",
        "telemetry.access_log",
        "debug_headers",
    } <= paths
    assert "client_ip.networks" not in paths  # exclude=True
    assert "secrets.admin_token.value" not in paths  # exclude=True
    assert "listen.public.host" not in paths  # written as "HOST:PORT"


def test_every_schema_key_is_documented() -> None:
    missing = sorted(set(schema_paths()) - documented())
    assert not missing, f"document these keys in {DOCS.name} (in backticks): {missing}"


def test_every_key_of_the_production_config_is_documented() -> None:
    data = yaml.safe_load(PRODUCTION.read_text())
    used = set(yaml_paths(data))
    assert "upstream.connect_timeout" in used
    missing = sorted(used - documented())
    assert not missing, f"document these keys in {DOCS.name} (in backticks): {missing}"


def test_documented_keys_exist() -> None:
    """Each key of a reference table (its first column) is one the schema accepts."""
    rows = re.findall(r"^\| `([^`]+)` \|", DOCS.read_text(), flags=re.MULTILINE)
    keys = {row for row in rows if re.fullmatch(r"[a-z_]+(\[\])?(\.[a-z_]+(\[\])?)*", row)}
    assert "upstream.connect_timeout" in keys
    duration_units = {"ms", "s", "m", "h", "d"}  # the rows of the units table
    stale = sorted(keys - set(schema_paths()) - duration_units)
    assert not stale, f"{DOCS.name} documents keys the schema does not have: {stale}"


def test_the_production_config_writes_every_key_out() -> None:
    """config/wardent.yaml is the commented reference: every section key is present."""
    used = set(yaml_paths(yaml.safe_load(PRODUCTION.read_text())))
    expected = {
        path
        for path in schema_paths()
        # A secret source takes env or file, never both: the file shows one of them.
        if not path.startswith("routes")
        and not (path.startswith("secrets.") and path.count(".") > 1)
    }
    missing = sorted(expected - used)
    assert not missing, f"config/wardent.yaml lacks {missing}"
