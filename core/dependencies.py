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
