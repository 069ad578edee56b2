"""Errors raised for bad input. Each message names the problem and the fix."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MAX_SEED = 2**63 - 1  # seeds go to numpy and torch generators, which take at most 64 bits
SEED_RANGE = f"an integer in [0, 2^63 - 1 = {MAX_SEED}]"
MAX_LR = 10.0  # beyond this every optimiser diverges at once
MAX_WEIGHT_DECAY = 10.0


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


def is_number_in(value: Any, low: float, high: float, low_open: bool = False) -> bool:
    """A finite real number (not a bool) in [low, high], or (low, high] with `low_open`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return (low < value if low_open else low <= value) and value <= high


def is_seed(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SEED


def is_count(value: Any) -> bool:
    """An integer >= 1, not a bool (JSON's `true` would read as 1)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def not_a_file_phrase(path: Path) -> str:
    """Why `path` cannot be read as a file: it is missing, or it is a pipe, device or folder (reading one blocks)."""
    return "does not exist" if not path.exists() else "is not a regular file (a pipe, device or folder?)"
