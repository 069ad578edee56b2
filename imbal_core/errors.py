"""Errors raised for bad input. Each message names the problem and the fix."""


class ImbalLabError(Exception):
    """Base class: anything the user can fix by changing their input."""


class DataError(ImbalLabError, ValueError):
    """A data set is missing, malformed or inconsistent."""


class ConfigError(ImbalLabError, ValueError):
    """A setting has a value outside what is accepted."""


class RunError(ImbalLabError, RuntimeError):
    """A run cannot be found, resumed or loaded."""
