"""Typed readers for the 12-factor settings: every value comes from the environment.

Errors are `ImproperlyConfigured` and always name the variable, so a bad deploy says
what to fix instead of starting with a silently wrong value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class Env:
    """A view of a mapping of variables (os.environ by default; a dict in tests)."""

    def __init__(self, source: Mapping[str, str] | None = None) -> None:
        self._source = os.environ if source is None else source

    def raw(self, name: str) -> str | None:
        return self._source.get(name)

    def text(self, name: str, default: str) -> str:
        value = self._source.get(name)
        return default if value is None or value.strip() == "" else value.strip()

    def flag(self, name: str, default: bool) -> bool:
        value = self._source.get(name)
        if value is None:
            return default
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ImproperlyConfigured(f"{name}: expected 1/0, true/false, yes/no; got {value!r}")

    def number(self, name: str, default: float, *, minimum: float = 0.0) -> float:
        value = self._source.get(name)
        if value is None or value.strip() == "":
            return default
        try:
            number = float(value)
        except ValueError:
            raise ImproperlyConfigured(f"{name}: expected a number, got {value!r}") from None
        if not number >= minimum:  # also rejects NaN
            raise ImproperlyConfigured(f"{name}: must be at least {minimum}, got {value!r}")
        return number

    def decimal(self, name: str, default: str) -> Decimal:
        value = self.text(name, default)
        try:
            number = Decimal(value)
        except InvalidOperation:
            raise ImproperlyConfigured(
                f"{name}: expected a decimal number, got {value!r}"
            ) from None
        if not number.is_finite() or number < 0:
            raise ImproperlyConfigured(f"{name}: must be a finite number >= 0, got {value!r}")
        return number

    def items(self, name: str, default: str) -> list[str]:
        return [item.strip() for item in self.text(name, default).split(",") if item.strip()]

    def secret(self, name: str) -> str | None:
        """A secret from NAME or from the file named by NAME_FILE; None if neither is set.

        A variable that is set but empty (or a file that is missing or empty) is an error:
        an empty secret must never turn into a weak or garbage one.
        """
        value = self._source.get(name)
        if value is not None:
            if value.strip() == "":
                raise ImproperlyConfigured(f"{name} is set but empty")
            return value
        file_name = self._source.get(f"{name}_FILE")
        if file_name is None:
            return None
        return read_secret_file(f"{name}_FILE", Path(file_name))


def read_secret_file(variable: str, path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ImproperlyConfigured(f"{variable}: file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ImproperlyConfigured(f"{variable}: cannot read {path}: {exc}") from None
    if text.strip() == "":
        raise ImproperlyConfigured(f"{variable}: file {path} is empty")
    return text
