"""Moving an alias while requests run: no request fails, later ones get the new version."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pandas as pd
import pytest
import uvicorn
from serving_fixtures import FakeRegistry, online_rows, train_model

from clv.core.processes import free_port
from clv.core.settings import Settings
from clv.model.bundle import ClvModel
from clv.serving.app import create_app
from clv.serving.routing import RoutingPlan


@pytest.fixture
def server(
    settings: Settings, model: ClvModel, features: pd.DataFrame
) -> Iterator[tuple[str, FakeRegistry]]:
    registry = FakeRegistry(
        {"1": model, "2": train_model(features, scale=2.0)}, RoutingPlan(champion="1")
    )
    fast = settings.model_copy(
        update={"serving": settings.serving.model_copy(update={"reload_seconds": 0.05})}
    )
    app = create_app(
        fast,
        registry=registry,
        feature_source=lambda ids: online_rows(features, ids),
        reference_source=lambda run_id: features,
    )
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    try:
        yield url, registry
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


def test_alias_move_under_load_fails_no_request(server: tuple[str, FakeRegistry]) -> None:
    url, registry = server
    results: list[tuple[float, float, int, str | None]] = []  # (sent, answered, status, version)
    lock = threading.Lock()
    stop = time.monotonic() + 2.5

    def hammer(worker: int) -> None:
        with httpx.Client(timeout=10) as client:
            i = 0
            while time.monotonic() < stop and i < 2000:
                sent = time.monotonic()
                r = client.post(
                    f"{url}/score", json={"customer_ids": [f"c{(worker * 7 + i) % 300:04d}"]}
                )
                version = (
                    r.json()["scores"][0]["model_version"]
                    if r.status_code == 200
                    else r.text[:200]  # what went wrong, for the assertion's message
                )
                with lock:
                    results.append((sent, time.monotonic(), r.status_code, version))
                i += 1

    threads = [threading.Thread(target=hammer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.6)
    moved_at = time.monotonic()
    registry.plan_now = RoutingPlan(champion="2")  # the alias moves
    for t in threads:
        t.join(timeout=30)
    assert len(results) > 50
    failed = [(status, said) for _, _, status, said in results if status != 200]
    assert not failed, f"{len(failed)} of {len(results)} failed: {failed[:3]}"  # none may fail
    assert {v for *_, v in results} == {"1", "2"}
    # The swap is atomic: once a request has been answered by "2", every request sent after
    # that answer is answered by "2" too; and the swap happened soon after the move.
    first_new = min(answered for _, answered, _, v in results if v == "2")
    assert first_new - moved_at < 2.0
    after = [v for sent, _, _, v in results if sent > first_new]
    assert after and set(after) == {"2"}
    assert registry.loads.count("2") == 1  # loaded once, swapped atomically
