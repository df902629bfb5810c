"""Fixtures for the real services `.ci/run` starts: PostgreSQL and Redis on loopback.

Each test gets its own database and a flushed Redis; without the services the tests skip and
say which variable `.ci/run` would have set.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest


def _require(var: str) -> str:
    value = os.environ.get(var)
    if not value:
        pytest.skip(f"{var} is not set: run the integration tests through .ci/run")
    return value


@pytest.fixture
def postgres_db() -> Iterator[Callable[[str], str]]:
    """Make fresh, empty databases: `postgres_db("mlflow")` -> SQLAlchemy URL (dropped after).

    MLflow and Optuna both keep an `alembic_version` table, so each gets its own database,
    as in a real deployment.
    """
    import psycopg

    base = _require("CLV_TEST_POSTGRES")
    plain = base.replace("postgresql+psycopg://", "postgresql://")
    made: list[str] = []

    def make(purpose: str) -> str:
        name = f"clv_{purpose}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(f"{plain}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return f"{base}/{name}"

    yield make
    with psycopg.connect(f"{plain}/postgres", autocommit=True) as conn:
        for name in made:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_address() -> str:
    """host:port of a Redis server, flushed before the test."""
    import redis

    address = _require("CLV_TEST_REDIS")
    host, port = address.rsplit(":", 1)
    redis.Redis(host=host, port=int(port)).flushall()
    return address
