"""The one error type a user sees: a one-line reason, never a stack trace."""

from __future__ import annotations


class ClvError(Exception):
    """A failure the user can act on; its message is printed as one line."""

    exit_code: int = 1

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class ConfigError(ClvError):
    """The configuration file or environment is invalid."""


class DataError(ClvError):
    """Input data cannot be used (missing file, wrong columns, nothing valid)."""


class NotReadyError(ClvError):
    """A step ran before the step it needs (for example scoring before training)."""


class ReadinessError(DataError):
    """The data are below a readiness minimum (clv.training.readiness): training refuses."""
