"""Serving from Redis through a Redis outage: not ready and a clear 503 while it is down, then
ready and scoring again by itself once Redis is back and re-materialized (no app restart)."""

from __future__ import annotations

import os
import shlex
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from clv_cli import clv_json as _clv

from clv.core.processes import free_port

pytestmark = [pytest.mark.integration]


def _redis_up(address: str) -> bool:
    import redis

    host, port = address.rsplit(":", 1)
    try:
        return bool(redis.Redis(host=host, port=int(port), socket_timeout=1, retry=None).ping())
    except redis.RedisError:
        return False


def _wait(check: Callable[[], bool], *, seconds: float, what: str) -> float:
    """Poll `check` until true; the seconds it took."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < seconds, f"{what} within {seconds:.0f}s"
        time.sleep(0.1)
    return time.monotonic() - started


@pytest.fixture
def restartable_redis(redis_address: str) -> Iterator[str]:
    """The CI Redis, restarted after the test if the test left it down."""
    start = os.environ.get("CLV_TEST_REDIS_START")
    if not start:
        pytest.skip("CLV_TEST_REDIS_START is not set: run the integration tests through .ci/run")
    yield redis_address
    if not _redis_up(redis_address):
        subprocess.run(start, shell=True, check=True)
        _wait(lambda: _redis_up(redis_address), seconds=10, what="Redis restarted")


@pytest.fixture
def served(
    tmp_path: Path, production_profile: dict[str, str], restartable_redis: str
) -> Iterator[tuple[str, Path]]:
    """A small world on the production profile, trained, materialized into Redis and served
    in-process by uvicorn. The Redis connection turns redis-py's retries off (`retry=null`,
    passed to the client by Feast), so that an outage surfaces at once (clv's default, see
    clv.features.feast_io._online_config)."""
    import uvicorn

    from clv.core.settings import load_settings
    from clv.serving.app import create_app

    # `production_profile` wrote clv.yaml; its Redis is the one `restartable_redis` restarts.
    with (tmp_path / "clv.yaml").open("a") as config:  # 24 months: enough for an embargo
        config.write("model:\n  horizon_days: 90\n")
        config.write("evaluation:\n  backtest_origins: 0\n")  # Redis, not backtests
        # 310 repeat buyers, below readiness.min_repeat_buyers: this test is about Redis
        config.write("readiness:\n  enforce: false\n")
    _clv(tmp_path, "data", "generate", "--customers", "400", "--months", "24", "--seed", "3")
    _clv(tmp_path, "data", "ingest", str(tmp_path / "data" / "raw"))
    _clv(tmp_path, "features", "apply")
    _clv(tmp_path, "features", "build")
    _clv(tmp_path, "features", "apply")
    _clv(tmp_path, "features", "materialize")
    _clv(tmp_path, "train", "--trials", "2")

    app = create_app(load_settings(tmp_path))
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/readyz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    _wait(ready, seconds=60, what="the server ready")
    try:
        yield url, tmp_path
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_redis_outage_is_503_and_service_recovers_by_itself(
    served: tuple[str, Path], restartable_redis: str
) -> None:
    url, workspace = served
    body = {"customer_ids": ["C000002", "C000010"]}
    with httpx.Client(timeout=10) as client:
        assert client.post(f"{url}/score", json=body).status_code == 200

        port = restartable_redis.rsplit(":", 1)[1]
        subprocess.run(["redis-cli", "-p", port, "shutdown", "nosave"], check=False)
        _wait(lambda: not _redis_up(restartable_redis), seconds=10, what="Redis down")

        started = time.monotonic()
        ready = client.get(f"{url}/readyz")
        ready_seconds = time.monotonic() - started
        assert ready.status_code == 503
        assert ready.json()["ready"] is False
        assert "online store" in ready.json()["reason"]
        started = time.monotonic()
        scored = client.post(f"{url}/score", json=body)
        assert ready_seconds < 5.0
        assert time.monotonic() - started < 5.0
        assert scored.status_code == 503, scored.text
        assert scored.json()["detail"].startswith("feature store unavailable")

        start = os.environ["CLV_TEST_REDIS_START"]
        subprocess.run(shlex.split(start), check=True)
        _wait(lambda: _redis_up(restartable_redis), seconds=10, what="Redis back")
        _clv(workspace, "features", "materialize")  # persistence is off: Redis came back empty

        _wait(
            lambda: client.get(f"{url}/readyz").status_code == 200,
            seconds=10,
            what="ready again without an app restart",
        )
        again = client.post(f"{url}/score", json=body)
        assert again.status_code == 200, again.text
        scores = again.json()["scores"]
        assert [s["customer_id"] for s in scores] == body["customer_ids"]
        assert all(s["clv"] is not None for s in scores)


def test_default_redis_connection_fails_fast_when_redis_is_down(
    tmp_path: Path, restartable_redis: str
) -> None:
    from clv.core.settings import load_settings
    from clv.features.online_read import online_source

    (tmp_path / "clv.yaml").write_text(
        f"feast:\n  online_store: redis\n  redis_connection: {restartable_redis}\n"
    )
    _clv(tmp_path, "features", "apply")
    reader = online_source(load_settings(tmp_path))
    assert reader.ping() is None  # Feast's store and Redis client built while Redis is up

    port = restartable_redis.rsplit(":", 1)[1]
    subprocess.run(["redis-cli", "-p", port, "shutdown", "nosave"], check=False)
    _wait(lambda: not _redis_up(restartable_redis), seconds=10, what="Redis down")
    started = time.monotonic()
    problems = [reader.ping(), reader.ping()]
    seconds = time.monotonic() - started
    assert all(p is not None and "online store unreachable" in p for p in problems), problems
    # Two reads without retries take milliseconds; with the default backoff both stay under
    # 2 s with a probability of about 1e-5.
    assert seconds < 2.0, f"two reads against a stopped Redis took {seconds:.1f}s"
