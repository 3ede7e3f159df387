"""YAML file → validated Settings, or every error with its YAML path and line.

PyYAML composes the file into a node tree (every node knows its line); we
build the plain Python data from those nodes ourselves, recording the line of
each key and list item as we go and refusing duplicate keys. pydantic then
validates the data; each of its errors carries a `loc` (the path through the
data) that we map back to a dotted path and a line, and rephrase where
pydantic's own wording would not tell an operator what to write instead.
"""

from __future__ import annotations

import copy
import difflib
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from wardent.config.schema import Settings

__all__ = ["ConfigError", "ConfigIssue", "load_settings"]

Key = str | int
Loc = tuple[Key, ...]


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One thing wrong with a config file, where it is and what was expected."""

    path: str
    line: int | None
    message: str
    file: str = ""

    def __str__(self) -> str:
        where = self.file or "<config>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        if self.path:
            return f"{where}: {self.path}: {self.message}"
        return f"{where}: {self.message}"


class ConfigError(Exception):
    """A config file that cannot be used; `issues` holds every reason, in line order."""

    def __init__(self, path: Path, issues: list[ConfigIssue]) -> None:
        self.path = path
        self.issues = issues
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(issue) for issue in self.issues)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.path, self.issues))


def load_settings(path: str | Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Read, parse and validate one config file; raise ConfigError listing every problem.

    `environ` (default: os.environ) is where `{env: NAME}` secrets are looked up.
    """
    path = Path(path)
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        reason = error.strerror or str(error)
        issue = ConfigIssue("", None, f"cannot read the file: {reason}", name)
        raise ConfigError(path, [issue]) from None
    except UnicodeDecodeError as error:
        message = f"not UTF-8 text (byte {error.start}): a config file is UTF-8 YAML"
        raise ConfigError(path, [ConfigIssue("", None, message, name)]) from None

    document = _Document(name)
    data = document.parse(text)
    if data is None:
        raise ConfigError(path, _sorted(document.issues))
    if not isinstance(data, dict):
        document.issue((), f"the top level must be a mapping of sections, not {_kind(data)}")
        raise ConfigError(path, _sorted(document.issues))

    _reject_internal_keys(document, Settings, data, ())
    context = {
        "environ": os.environ if environ is None else environ,
        "base_dir": path.absolute().parent,
    }
    try:
        settings = Settings.model_validate(data, context=context)
    except ValidationError as error:
        for details in error.errors(include_url=False):
            found = _issue_from(details, document, data)
            if found is not None:
                document.issues.append(found)
    if document.issues:
        raise ConfigError(path, _sorted(document.issues))
    return settings


def _sorted(issues: list[ConfigIssue]) -> list[ConfigIssue]:
    return sorted(issues, key=lambda issue: (issue.line is None, issue.line or 0))


class _Document:
    """The data of one YAML file, with the line of every key and list item."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.issues: list[ConfigIssue] = []
        # The line of each path: of its key for a mapping entry (so an error
        # about a whole block points at the key that opens it), of the item
        # for a list entry, of the document for ().
        self.lines: dict[Loc, int] = {}
        # Paths whose value could not be built: already reported, so what
        # pydantic says about the stand-in None there is noise.
        self.broken: set[Loc] = set()
        self._loader = yaml.SafeLoader("")
        self._active: set[int] = set()  # collections being built: an alias to one recurses
        self._built: dict[int, Any] = {}  # collections already built, reached again by alias

    def issue(self, loc: Loc, message: str, line: int | None = None) -> None:
        if line is None:
            line = self.line_of(loc)
        self.issues.append(ConfigIssue(_dotted(loc), line, message, self.name))

    def line_of(self, loc: Loc) -> int | None:
        """The line of the deepest part of `loc` that exists in the file."""
        for end in range(len(loc), -1, -1):
            if loc[:end] in self.lines:
                return self.lines[loc[:end]]
        return None

    def parse(self, text: str) -> Any:
        """The plain data, or None (with an issue) when there is nothing to validate."""
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as error:
            message = f"invalid YAML: {_yaml_reason(error)}"
            self.issues.append(ConfigIssue("", _mark_line(error), message, self.name))
            return None
        except yaml.YAMLError as error:
            self.issues.append(ConfigIssue("", None, f"invalid YAML: {error}", self.name))
            return None
        if root is None:
            message = "the file is empty: expected a mapping with listen and upstream"
            self.issues.append(ConfigIssue("", 1, message, self.name))
            return None
        self.lines[()] = root.start_mark.line + 1
        return self._build(root, ())

    def _build(self, node: Node, loc: Loc) -> Any:
        if id(node) in self._active:
            self.issue(loc, "an alias refers to a node that contains it (recursive YAML)")
            self.broken.add(loc)
            return None
        if isinstance(node, ScalarNode):
            return self._scalar(node, loc)
        if id(node) in self._built:
            # An alias: the same data again (a copy, so the two never share
            # state); errors inside it point at the line of the alias.
            return copy.deepcopy(self._built[id(node)])
        self._active.add(id(node))
        try:
            if isinstance(node, MappingNode):
                result: Any = self._mapping(node, loc)
            elif isinstance(node, SequenceNode):
                result = []
                for index, item in enumerate(node.value):
                    self.lines[(*loc, index)] = item.start_mark.line + 1
                    result.append(self._build(item, (*loc, index)))
            else:
                self.issue(loc, f"unsupported YAML node {node.tag}")
                self.broken.add(loc)
                return None
        finally:
            self._active.discard(id(node))
        self._built[id(node)] = copy.deepcopy(result)
        return result

    def _scalar(self, node: ScalarNode, loc: Loc) -> Any:
        try:
            return self._loader.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as error:
            self.issue(loc, _yaml_reason(error), _mark_line(error))
            self.broken.add(loc)
            return None

    def _mapping(self, node: MappingNode, loc: Loc) -> dict[str, Any]:
        if node.tag != "tag:yaml.org,2002:map":
            self.issue(loc, f"unsupported YAML tag {node.tag}: expected a plain mapping")
            self.broken.add(loc)
            return {}
        # Duplicates are judged on the keys as written; keys merged in with
        # `<<: *anchor` may legitimately be overridden by the mapping's own.
        seen: dict[str, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, ScalarNode):
                continue
            line = key_node.start_mark.line + 1
            if key_node.value in seen:
                self.issue(
                    (*loc, key_node.value),
                    f"duplicate key {key_node.value!r} (first given on line "
                    f"{seen[key_node.value]}): remove one, the other would be silently ignored",
                    line,
                )
            else:
                seen[key_node.value] = line
        try:
            self._loader.flatten_mapping(node)
        except yaml.MarkedYAMLError as error:
            self.issue(loc, _yaml_reason(error), _mark_line(error))
            self.broken.add(loc)
            return {}
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            key = self._build(key_node, (*loc, "<key>"))
            if not isinstance(key, str):
                written = key_node.value if isinstance(key_node, ScalarNode) else key_node.tag
                message = f"key {written!r} is read as {_kind(key)}: keys must be strings"
                if isinstance(key, bool):
                    message += " (YAML reads yes/no/on/off as booleans: quote it)"
                self.issue(loc, message, key_line)
                continue
            # Later keys win: that is what `<<: *anchor` merges rely on (merged
            # keys come first); a duplicate written twice is reported above.
            self.lines[(*loc, key)] = key_line
            result[key] = self._build(value_node, (*loc, key))
        return result


def _mark_line(error: yaml.MarkedYAMLError) -> int | None:
    mark = error.problem_mark or error.context_mark
    return None if mark is None else mark.line + 1


def _yaml_reason(error: yaml.MarkedYAMLError) -> str:
    parts = [part for part in (error.context, error.problem) if part]
    context, problem = error.context_mark, error.problem_mark
    if error.context and context and problem and context.line != problem.line:
        parts[0] = f"{error.context} (line {context.line + 1})"
    reason = ": ".join(parts) or str(error)
    if "block" in reason or "indentation" in reason:
        reason += " (check the indentation)"
    return reason


def _dotted(loc: Loc) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


def _kind(value: object) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__} ({value!r})"


# -- pydantic errors → issues --------------------------------------------------


def _issue_from(details: ErrorDetails, document: _Document, data: Any) -> ConfigIssue | None:
    loc, kind = _data_loc(details["loc"], data)
    if any(loc[: len(broken)] == broken for broken in document.broken):
        return None
    error_type = details["type"]
    if error_type == "missing" and kind == "absent":
        message = "missing required key"
        model = _model_at(loc[:-1])
        if model is not None:
            description = model.model_fields[str(loc[-1])].description
            if description:
                message += f" ({description})"
        line = document.line_of(loc[:-1])
    elif error_type == "extra_forbidden":
        message = _unknown_key(loc)
        line = document.line_of(loc)
    else:
        message = _message(details)
        line = document.line_of(loc)
    return ConfigIssue(_dotted(loc), line, message, document.name)


def _data_loc(loc: tuple[int | str, ...], data: Any) -> tuple[Loc, str]:
    """The part of pydantic's `loc` that walks through the data, and how it ends.

    pydantic inserts tags (`function-after[...]`, model names for unions) in
    some locs; those are not in the data and are dropped. The last part may be
    a key that is not in the data at all (a missing key): kind "absent".
    """
    path: list[Key] = []
    current = data
    for position, part in enumerate(loc):
        last = position == len(loc) - 1
        in_dict = isinstance(current, dict) and part in current
        in_list = isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current)
        if in_dict or in_list:
            current = current[part]
            path.append(part)
        elif last:
            path.append(part)
            return tuple(path), "absent"
    return tuple(path), "present"


def _message(details: ErrorDetails) -> str:
    message = details["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    value = details.get("input")
    if details["type"] != "value_error" and _is_short_scalar(value):
        message = f"{message} (got {value!r})"
    return message


def _is_short_scalar(value: object) -> bool:
    if isinstance(value, str):
        return len(value) <= 80
    return value is None or isinstance(value, bool | int | float)


def _unknown_key(loc: Loc) -> str:
    key = str(loc[-1])
    model = _model_at(loc[:-1])
    if model is None:
        return f"unknown key {key!r}"
    names = _public_fields(model)
    message = f"unknown key {key!r} (expected one of: {', '.join(names)})"
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.7)
    if close:
        message += f"; did you mean {close[0]!r}?"
    return message


def _public_fields(model: type[BaseModel]) -> list[str]:
    """The keys a YAML mapping for `model` may hold (excluded fields are computed)."""
    return [name for name, field in model.model_fields.items() if not field.exclude]


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The model class that validates the mapping at `loc` (from Settings down)."""
    annotation: Any = Settings
    for part in loc:
        model = _as_model(annotation)
        if isinstance(part, int):
            annotation = _item_type(annotation)
            if annotation is None:
                return None
            continue
        if model is None or part not in model.model_fields:
            return None
        annotation = model.model_fields[part].annotation
    return _as_model(annotation)


def _unwrap(annotation: Any) -> list[Any]:
    """The alternatives of an annotation: Annotated stripped, unions flattened."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        return [alt for arg in typing.get_args(annotation) for alt in _unwrap(arg)]
    return [annotation]


def _as_model(annotation: Any) -> type[BaseModel] | None:
    for alternative in _unwrap(annotation):
        if isinstance(alternative, type) and issubclass(alternative, BaseModel):
            return alternative
    return None


def _item_type(annotation: Any) -> Any:
    for alternative in _unwrap(annotation):
        if typing.get_origin(alternative) in (tuple, list, set, frozenset):
            args = typing.get_args(alternative)
            if args:
                return args[0]
    return None


def _reject_internal_keys(
    document: _Document, model: type[BaseModel], data: dict[str, Any], loc: Loc
) -> None:
    """Fields with exclude=True are computed (trusted networks, secret values):
    pydantic would accept them as input, so a file must not be able to set them."""
    for key in list(data):
        field = model.model_fields.get(key)
        if field is None:
            continue  # pydantic reports unknown keys itself
        if field.exclude:
            document.issue((*loc, key), _unknown_key((*loc, key)))
            del data[key]
            continue
        _reject_nested(document, field.annotation, data[key], (*loc, key))


def _reject_nested(document: _Document, annotation: Any, value: Any, loc: Loc) -> None:
    model = _as_model(annotation)
    if model is not None and isinstance(value, dict):
        _reject_internal_keys(document, model, value, loc)
        return
    item = _item_type(annotation)
    if item is not None and isinstance(value, list):
        for index, element in enumerate(value):
            _reject_nested(document, item, element, (*loc, index))
