"""Fixtures for the real services `.ci/run` starts: PostgreSQL and Redis on loopback.

Each test gets its own database and a flushed Redis; without the services the tests skip and
say which variable `.ci/run` would have set.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

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


@pytest.fixture
def production_profile(
    tmp_path: Path, postgres_db: Callable[[str], str], redis_address: str
) -> dict[str, str]:
    """`tmp_path` as a workspace on the production profile (README "Scaling out"): its
    `clv.yaml` puts MLflow, Optuna and the Feast registry on fresh PostgreSQL databases (one
    each) and the online store on the flushed Redis. The URIs by service: `mlflow`, `optuna`,
    `feast`, `redis` (host:port). Append sections to the file for more settings."""
    uris = {
        "mlflow": postgres_db("mlflow"),
        "optuna": postgres_db("optuna"),
        "feast": postgres_db("feast"),
        "redis": redis_address,
    }
    (tmp_path / "clv.yaml").write_text(
        "mlflow:\n"
        f"  tracking_uri: {uris['mlflow']}\n"
        "tuning:\n"
        f"  storage: {uris['optuna']}\n"
        "feast:\n"
        f"  registry: {uris['feast']}\n"
        "  online_store: redis\n"
        f"  redis_connection: {redis_address}\n"
    )
    return uris
