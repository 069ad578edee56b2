"""Errors raised for bad input. Each message names the problem and the fix."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class ImbalLabError(Exception):
    """Base class: anything the user can fix by changing their input."""


class DataError(ImbalLabError, ValueError):
    """A data set is missing, malformed or inconsistent."""


class ConfigError(ImbalLabError, ValueError):
    """A setting has a value outside what is accepted."""


class RunError(ImbalLabError, RuntimeError):
    """A run cannot be found, resumed or loaded."""


def require_all(checks: Iterable[tuple[bool, str, str, Any]]) -> None:
    """Raise ConfigError for the first failed (ok, name, expected, got) check: "name must be expected; got ..."."""
    for ok, name, expected, got in checks:
        if not ok:
            raise ConfigError(f"{name} must be {expected}; got {got!r}")
