"""The scoring server on a real, materialized workspace: `explain` under concurrency with
cold-start ids, request limits (413, 422), an empty token, and what `clv serve` binds."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from fastapi import FastAPI
from serving_fixtures import Loaded

from clv.core.errors import ClvError
from clv.core.processes import stop_process
from clv.core.settings import Settings, load_settings
from clv.core.store import write_table
from clv.features import feast_io
from clv.features.build import build_features
from clv.features.online_read import OnlineBatch, online_frame, sqlite_layout
from clv.model.bundle import ClvModel, ModelCard
from clv.serving.app import create_app

KNOWN = ["a", "b", "d"]


def _ts(values: list[str]) -> pd.Series:
    return pd.Series(pd.to_datetime(values, utc=True)).astype("datetime64[us, UTC]")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A workspace whose features are built, applied and materialized to Feast's SQLite
    online store (customer `c` has signed up but never bought)."""
    settings = load_settings(tmp_path_factory.mktemp("ws"), environ={})
    tx = {
        "customer_id": ["a", "a", "b", "a", "d", "b"],
        "ts": _ts(
            ["2024-01-05", "2024-01-20", "2024-01-10", "2024-02-10", "2024-02-11", "2024-02-12"]
        ),
        "amount": [15.0, 30.0, 7.0, 20.0, 99.5, 12.0],
    }
    write_table(settings, "transactions", pd.DataFrame(tx))
    customers = {
        "customer_id": ["a", "b", "c", "d"],
        "signup_ts": _ts(["2023-12-20", "2024-01-09", "2024-02-20", "2024-02-01"]),
        "acquisition_channel": ["ads", "seo", "ads", "referral"],
        "country": ["DE", "FR", "NL", "DE"],
        "plan": ["pro", "free", "free", "pro"],
    }
    write_table(settings, "customers", pd.DataFrame(customers))
    events = {
        "customer_id": ["a", "b"],
        "ts": _ts(["2024-01-30", "2024-02-15"]),
        "event_type": ["login", "support_ticket"],
    }
    write_table(settings, "events", pd.DataFrame(events))
    build_features(settings)
    feast_io.apply(settings)
    feast_io.materialize(settings)
    return settings


@pytest.fixture(scope="module")
def store_model(workspace: Settings) -> ClvModel:
    """A small real model over the service's features, fitted on the online rows."""
    layout = sqlite_layout(workspace)
    frame = online_frame(workspace, KNOWN * 20)
    strings = sorted(layout.strings)
    categories = {
        name: sorted({str(v) for v in frame[name].dropna()} | {"other"}) for name in strings
    }
    card = ModelCard(
        feature_service="clv_v1", feature_names=list(layout.feature_names), categories=categories
    )
    rng = np.random.default_rng(3)
    params = {"max_depth": 2, "eta": 0.3, "nthread": 1, "seed": 0}

    def fit(model: ClvModel | None, y: np.ndarray, **extra: object) -> xgb.Booster:
        x = (model or bootstrap).matrix(frame)
        d = xgb.DMatrix(x, label=y, feature_names=card.feature_names)
        return xgb.train({**params, **extra}, d, num_boost_round=5)

    bootstrap = ClvModel(card, value=xgb.Booster())
    value = rng.gamma(2.0, 20.0, len(frame))
    churn = (rng.uniform(size=len(frame)) < 0.3).astype(float)
    return ClvModel(
        card,
        value=fit(None, value, objective="reg:tweedie", tweedie_variance_power=1.5),
        churn=fit(None, churn, objective="binary:logistic"),
    )


def _app_settings(workspace: Settings, **serving: object) -> Settings:
    return workspace.model_copy(update={"serving": workspace.serving.model_copy(update=serving)})


@contextlib.asynccontextmanager
async def _client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on `app` in process, the app's lifespan running."""
    transport = httpx.ASGITransport(app=app)
    http = httpx.AsyncClient(transport=transport, base_url="http://clv")
    async with app.router.lifespan_context(app), http:
        yield http


def _store_app(workspace: Settings, model: ClvModel, **serving: object) -> FastAPI:
    """The real app over the materialized SQLite store."""
    return create_app(
        _app_settings(workspace, **{"max_batch": 50, **serving}),
        model_source=lambda: Loaded(model, "1", "champion", "run-1"),
        reference_source=lambda run_id: online_frame(workspace, KNOWN),
    )


def test_explain_mixing_cold_start_and_known_ids_under_concurrency(
    workspace: Settings, store_model: ClvModel
) -> None:
    bodies = [
        {"customer_ids": [*KNOWN[: 1 + i % 3], f"nobody-{i}", "c"], "explain": True}
        for i in range(120)
    ]

    async def run() -> list[httpx.Response]:
        async with _client(_store_app(workspace, store_model)) as http:
            return await asyncio.gather(*(http.post("/score", json=b) for b in bodies))

    responses = asyncio.run(run())
    failed = [r.text for r in responses if r.status_code != 200]
    assert failed == []
    for body, response in zip(bodies, responses, strict=True):
        rows = response.json()["scores"]
        assert [r["requested_id"] for r in rows] == body["customer_ids"]
        by_id = {r["requested_id"]: r for r in rows}
        unknown = body["customer_ids"][-2]
        assert by_id[unknown]["cold_start"] is True
        assert by_id[unknown]["feature_timestamp"] is None
        assert by_id[unknown]["explanation"] is None
        for known in body["customer_ids"][:-2]:
            assert by_id[known]["cold_start"] is False
            assert by_id[known]["feature_timestamp"] is not None
            explanation = by_id[known]["explanation"]
            parts = sum(c["contribution"] for c in explanation["top"]) + explanation["other"]
            assert explanation["bias"] + parts == pytest.approx(explanation["margin"], abs=1e-4)


def test_batch_frame_with_missing_timestamps_under_numpy_overflow_raise() -> None:
    """A cold-start row (no timestamp) beside known ones converts to NaT, even where numpy
    raises on floating-point overflow (as pandas' own float path runs)."""
    batch = OnlineBatch(
        customer_ids=["a", "nobody", "b"],
        feature_names=("x",),
        strings=frozenset(),
        values={"x": [1.0, None, 2.5]},
        timestamps=[1_707_523_200.0, None, 1_707_523_200.5],
    )
    with np.errstate(all="raise"):
        frame = batch.frame()
    stamps = frame["feature_timestamp"]
    assert str(stamps.dtype) == "datetime64[us, UTC]"
    assert stamps[0] == pd.Timestamp("2024-02-10", tz="UTC")
    assert pd.isna(stamps[1])
    assert stamps[2] == pd.Timestamp("2024-02-10 00:00:00.5", tz="UTC")


def _post_all(app: FastAPI, requests: list[dict[str, object]]) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        async with _client(app) as http:
            return [await http.post("/score", **r) for r in requests]  # type: ignore[arg-type]

    return asyncio.run(run())


def test_a_body_over_the_limit_is_413_and_a_long_id_422_neither_echoed(
    workspace: Settings, store_model: ClvModel
) -> None:
    app = _store_app(workspace, store_model, max_body_bytes=4096, max_id_length=16)
    huge = "x" * (50 * 1024 * 1024)  # the 50 MB id of issue 15

    async def chunks() -> AsyncIterator[
        bytes
    ]:  # no Content-Length: the limit applies while streaming
        yield b'{"customer_ids": ["'
        for _ in range(8):
            yield b"y" * 1024
        yield b'"]}'

    big, streamed, long_id, at_limit, fits = _post_all(
        app,
        [
            {"json": {"customer_ids": [huge]}},
            {"content": chunks()},
            {"json": {"customer_ids": ["a", "z" * 17]}},
            {"json": {"customer_ids": ["a", "n" * 16]}},
            {"content": b'{"customer_ids": ["a"]}' + b" " * (4096 - 23)},
        ],
    )
    assert big.status_code == 413
    assert big.json() == {"detail": "request body over serving.max_body_bytes (4096)"}
    assert streamed.status_code == 413
    assert long_id.status_code == 422
    assert long_id.json() == {
        "detail": "customer_ids.1: 17 characters, over serving.max_id_length (16)"
    }
    assert at_limit.status_code == 200
    rows = at_limit.json()["scores"]
    assert [r["requested_id"] for r in rows] == ["a", "n" * 16]
    assert [r["cold_start"] for r in rows] == [False, True]
    assert fits.status_code == 200  # exactly max_body_bytes is allowed
    assert all(len(r.content) < 1000 for r in (big, streamed, long_id))


def test_default_limits_refuse_a_50_mb_id(workspace: Settings, store_model: ClvModel) -> None:
    app = create_app(
        workspace,
        model_source=lambda: Loaded(store_model, "1", "champion", "run-1"),
        reference_source=lambda run_id: online_frame(workspace, KNOWN),
    )
    (big,) = _post_all(app, [{"json": {"customer_ids": ["x" * (50 * 1024 * 1024)]}}])
    assert big.status_code == 413
    assert workspace.serving.max_body_bytes == 1_048_576
    assert workspace.serving.max_id_length == 256


@pytest.mark.parametrize("token", ["", "  "])
def test_an_empty_token_is_a_startup_error_not_open_access(
    workspace: Settings, store_model: ClvModel, monkeypatch: pytest.MonkeyPatch, token: str
) -> None:
    monkeypatch.setenv("CLV_SERVING_TOKEN", token)
    with pytest.raises(ClvError, match="CLV_SERVING_TOKEN is set but empty"):
        _store_app(workspace, store_model)


def test_a_set_token_is_required_and_an_unset_one_leaves_score_open(
    workspace: Settings, store_model: ClvModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLV_SERVING_TOKEN", "s3cret")
    body = {"customer_ids": ["a"]}
    closed = _store_app(workspace, store_model)
    denied, allowed = _post_all(
        closed, [{"json": body}, {"json": body, "headers": {"Authorization": "Bearer s3cret"}}]
    )
    monkeypatch.delenv("CLV_SERVING_TOKEN")
    (open_,) = _post_all(_store_app(workspace, store_model), [{"json": body}])
    assert (denied.status_code, allowed.status_code, open_.status_code) == (401, 200, 200)


def _serve(workspace: Settings, *args: str, token: str | None = None) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "CLV_SERVING_TOKEN"}
    if token is not None:
        env["CLV_SERVING_TOKEN"] = token
    clv = str(Path(sys.executable).with_name("clv"))
    return subprocess.Popen(
        [clv, "--workspace", str(workspace.workspace), "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.parametrize(
    ("args", "token", "error"),
    [
        (["--port", "99999"], None, "error: port 99999 is out of range: use 1-65535, or 0"),
        (["--port", "-1"], None, "error: port -1 is out of range"),
        (["--port", "0"], "", "error: CLV_SERVING_TOKEN is set but empty"),
    ],
)
def test_serve_refuses_a_bad_port_or_an_empty_token_in_one_line(
    workspace: Settings, args: list[str], token: str | None, error: str
) -> None:
    out, err = _serve(workspace, *args, token=token).communicate(timeout=120)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(error), err
    assert out == ""


def test_serve_on_a_port_in_use_is_one_line_and_claims_nothing(workspace: Settings) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = _serve(workspace, "--port", str(port))
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert err.strip().splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port}: address already in use"
    ]
    assert out == ""


def test_serve_on_port_0_announces_the_port_it_really_bound(workspace: Settings) -> None:
    proc = _serve(workspace, "--port", "0", "--json")
    try:
        assert proc.stdout is not None
        text = ""
        while not text.endswith("}\n"):  # one JSON document, maybe over several lines
            line = proc.stdout.readline()
            assert line, "clv serve exited before announcing its address"
            text += line
        announced = json.loads(text)
        port = announced["port"]
        assert port > 0
        assert announced["url"] == f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:  # the bound socket accepts at once; the app answers after its startup
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.2)
        assert health.status_code == 200
        assert health.json() == {"status": "ok"}
    finally:
        stop_process(proc)  # type: ignore[arg-type]
