"""The versions of the dependencies clv runs on, for the version gates in front of their private
APIs: a private path runs only on a version it was verified against, else the public one does,
and the reason is logged once (at debug)."""

from __future__ import annotations

import functools
import importlib.metadata
import logging
from collections.abc import Sequence


@functools.cache
def dependency_version(distribution: str) -> str | None:
    """The installed distribution's version (package metadata), None when it is not installed."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def unverified(
    distribution: str, version: str | None, verified: Sequence[str], *, public: str, logger: str
) -> str | None:
    """None when `version` is one of `verified`, else why `public` runs instead (logged once to
    `logger`, the gate's module)."""
    if version in verified:
        return None
    reason = f"{distribution} {version} is not one of {', '.join(verified)}: {public}"
    return said_once(reason, logger=logger)


@functools.cache
def said_once(reason: str, *, logger: str) -> str:
    """`reason`, logged at debug to `logger` the first time it is given."""
    logging.getLogger(logger).debug("%s", reason)
    return reason


def skip_feast_typechecks() -> bool:
    """Make typeguard's `@typechecked` a no-op before Feast is imported, as `python -O` makes
    it: Feast decorates its classes with it, and typeguard re-parses and recompiles each
    decorated module's source at import, 6.5 of the 8.7 s that importing Feast 0.67 takes
    (measured on 2026-12-02). The checks guard the arguments of Feast's constructors, which
    clv's own feature repository calls (tested with the checks on: the test suite imports
    Feast in-process unchanged). Only Feast uses typeguard among clv's dependencies. False,
    and nothing changed, when Feast is imported already or typeguard is not installed."""
    import sys

    if "feast" in sys.modules:
        return False
    try:
        import typeguard
    except ImportError:
        return False

    def typechecked(target: object = None, **_options: object) -> object:
        return (lambda decorated: decorated) if target is None else target

    typeguard.typechecked = typechecked  # type: ignore[assignment]
    return True
