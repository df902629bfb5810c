"""Fixtures of the deploy/ checks: Debian's `promtool`, or a skip that says how to get it."""

from __future__ import annotations

import pytest

from tests.deploy.promtool import MISSING, Promtool, find_promtool


@pytest.fixture(scope="session")
def promtool() -> Promtool:
    """`promtool` on PATH; without it the test skips, as the integration tests do without
    their services."""
    found = find_promtool()
    if found is None:
        pytest.skip(MISSING)
    return found
