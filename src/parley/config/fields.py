"""Typed reads of one config section, each failing with a one-line ConfigError that names the field."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, TypeGuard


class ConfigError(ValueError):
    """The config cannot be used; the message says where and why."""


class Fields:
    """The values of one mapping at `where` (e.g. `cfg.yaml: general_settings`), read by type.

    Numbers may also be given as numeric strings, which is what `os.environ/NAME` values are.
    """

    def __init__(self, values: Mapping[str, Any], where: str) -> None:
        self.values = values
        self.where = where

    def fail(self, name: str, expected: str, value: object) -> ConfigError:
        return ConfigError(f"{self.where}.{name}: must be {expected}, got {value!r}")

    def number(self, name: str, default: float, positive: bool = False) -> float:
        """A number >= 0 (> 0 when `positive`)."""
        value = _numeric(self.values.get(name, default))
        if not is_number(value) or value < 0 or (positive and value == 0):
            raise self.fail(name, "a positive number" if positive else "a non-negative number", value)
        return float(value)

    def opt_number(self, name: str, positive: bool = True) -> float | None:
        """A number, or None when absent or null."""
        return None if self.values.get(name) is None else self.number(name, 0.0, positive)

    def integer(self, name: str, default: int, positive: bool = False) -> int:
        """An integer >= 0 (> 0 when `positive`)."""
        value = _numeric(self.values.get(name, default))
        if not isinstance(value, int) or isinstance(value, bool) or value < 0 or (positive and value == 0):
            raise self.fail(name, "a positive integer" if positive else "a non-negative integer", value)
        return value

    def flag(self, name: str, default: bool) -> bool:
        value = self.values.get(name, default)
        if not isinstance(value, bool):
            raise self.fail(name, "true or false", value)
        return value

    def text(self, name: str, default: str | None = None) -> str | None:
        """A string; `default` when absent, null or empty (an unset-but-empty env variable)."""
        value = self.values.get(name)
        if value is None or value == "":
            return default
        if not isinstance(value, str):
            raise self.fail(name, "a string", value)
        return value

    def url(self, name: str, default: str | None = None) -> str | None:
        """An http(s) URL without a trailing slash; `default` when absent, null or empty."""
        value = self.text(name, default)
        if value is not None and not value.startswith(("http://", "https://")):
            raise self.fail(name, "an http(s) URL", value)
        return value.rstrip("/") if value is not None else None

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.values.get(name, default)
        if value not in allowed:
            raise self.fail(name, "one of " + ", ".join(allowed), value)
        return str(value)

    def mapping(self, name: str) -> Fields:
        """The nested mapping `name` (empty when absent or null)."""
        value = self.values.get(name)
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise self.fail(name, "a mapping", value)
        return Fields(value, f"{self.where}.{name}")


def is_number(value: object) -> TypeGuard[int | float]:
    """A finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _numeric(value: object) -> object:
    """`value`, or the number a numeric string spells."""
    if not isinstance(value, str):
        return value
    for kind in (int, float):
        try:
            return kind(value.strip())
        except ValueError:
            pass
    return value
