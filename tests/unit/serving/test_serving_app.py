from __future__ import annotations

import dataclasses
import json
import math
import threading
import time
from collections.abc import Sequence

import pandas as pd
import pytest
import xgboost as xgb
from fastapi.testclient import TestClient
from serving_fixtures import Loaded, online_rows, train_model

from clv.core.settings import Settings
from clv.model.bundle import ClvModel
from clv.serving.app import ONE_CALL_ITEMS, create_app
from clv.serving.routed import JsonValue
from clv.serving.scorer import cold_start_prior, load_champion
from clv.serving.segments import tercile_thresholds


def _client(
    settings: Settings, model: ClvModel, features: pd.DataFrame, version: str = "3"
) -> TestClient:
    app = create_app(
        settings,
        model_source=lambda: Loaded(model, version, "champion", "run-abc"),
        feature_source=lambda ids: online_rows(features, ids),
        reference_source=lambda run_id: features,
    )
    return TestClient(app)


def test_healthz_and_readyz_when_model_loads(
    settings: Settings, model: ClvModel, features: pd.DataFrame
) -> None:
    with _client(settings, model, features) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"ready": True, "model_version": "3", "alias": "champion"}


def test_readyz_503_and_score_503_when_the_model_source_fails(
    settings: Settings, features: pd.DataFrame
) -> None:
    def broken() -> Loaded:
        raise RuntimeError("registry has no alias champion")

    app = create_app(
        settings,
        model_source=broken,
        feature_source=lambda ids: online_rows(features, ids),
        reference_source=lambda run_id: features,
    )
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["ready"] is False
        assert "no alias champion" in ready.json()["reason"]
        scored = client.post("/score", json={"customer_ids": ["c0001"]})
        assert scored.status_code == 503


def test_score_known_and_unknown_customers(
    settings: Settings, model: ClvModel, features: pd.DataFrame
) -> None:
    ids = ["c0001", "nobody", "c0042"]
    with _client(settings, model, features) as client:
        response = client.post("/score", json={"customer_ids": ids})
    assert response.status_code == 200
    body = response.json()
    assert body["model_version"] == "3"
    assert body["alias"] == "champion"
    scores = body["scores"]
    assert [s["customer_id"] for s in scores] == ids
    assert [s["cold_start"] for s in scores] == [False, True, False]
    expected = model.predict(online_rows(features, ids))
    prior, _ = cold_start_prior(model, features, tenure_days=30.0)
    assert prior is not None
    for row, (_, exp) in zip(scores, expected.iterrows(), strict=True):
        assert row["model_version"] == "3" and row["alias"] == "champion"
        assert math.isfinite(row["clv"]) and row["clv"] >= 0.0
        want = prior["clv"] if row["cold_start"] else exp["clv"]
        assert row["clv"] == pytest.approx(want, rel=1e-12)
        assert row["clv_p10"] <= row["clv"] <= row["clv_p90"]
        assert 0.0 < row["churn_probability"] < 1.0
        assert " / " in row["segment"]
    assert scores[0]["feature_timestamp"].startswith("2024-06-01T00:00:00")
    assert scores[1]["feature_timestamp"] is None
    assert "explanation" not in scores[0]


def test_segment_uses_reference_terciles(
    settings: Settings, model: ClvModel, features: pd.DataFrame
) -> None:
    champion = load_champion(
        Loaded(model, "3", "champion", "r"),
        serving=settings.serving,
        reference_source=lambda run_id: features,
    )
    assert champion.thresholds_source == "reference terciles"
    assert champion.value_thresholds == tercile_thresholds(model.predict(features)["clv"])
    high = champion.value_thresholds[1]
    preds = model.predict(features)
    top = features.loc[preds["clv"] >= high, "customer_id"].iloc[0]
    with _client(settings, model, features) as client:
        row = client.post("/score", json={"customer_ids": [top]}).json()["scores"][0]
    assert row["segment"].startswith("high value / ")


@pytest.mark.parametrize("n", [0, 6])
def test_score_rejects_empty_and_oversized_batches(
    settings: Settings, model: ClvModel, features: pd.DataFrame, n: int
) -> None:
    ids = [f"c{i:04d}" for i in range(n)]
    with _client(settings, model, features) as client:
        response = client.post("/score", json={"customer_ids": ids})
    assert response.status_code == 422
    assert response.json()["detail"] == f"customer_ids must hold 1 to 5 ids (got {n})"


def test_score_rejects_a_malformed_body(
    settings: Settings, model: ClvModel, features: pd.DataFrame
) -> None:
    with _client(settings, model, features) as client:
        assert client.post("/score", json={"ids": ["c0001"]}).status_code == 422


def test_explain_contributions_add_up_to_the_raw_margin(
    settings: Settings, model: ClvModel, features: pd.DataFrame
) -> None:
    ids = ["c0007", "nobody"]
    with _client(settings, model, features) as client:
        body = client.post("/score", json={"customer_ids": ids, "explain": True}).json()
    rows = online_rows(features, ids)
    x = model.matrix(rows)
    margins = model.value.predict(
        xgb.DMatrix(x, feature_names=model.feature_names), output_margin=True
    )
    for i, row in enumerate(body["scores"][:1]):
        e = row["explanation"]
        assert len(e["top"]) == 5
        magnitudes = [abs(c["contribution"]) for c in e["top"]]
        assert magnitudes == sorted(magnitudes, reverse=True)
        total = e["bias"] + sum(c["contribution"] for c in e["top"]) + e["other"]
        assert total == pytest.approx(float(margins[i]), abs=1e-4)
        assert e["margin"] == pytest.approx(float(margins[i]), abs=1e-6)
        # reg:tweedie predicts exp(margin): the explanation is of the served number
        assert math.exp(e["margin"]) == pytest.approx(row["clv"], rel=1e-5)
    for c in body["scores"][0]["explanation"]["top"]:  # values are the raw features
        raw = rows.loc[0, c["feature"]]
        if isinstance(raw, str):
            assert c["value"] == raw
        elif pd.isna(raw):
            assert c["value"] is None
        else:
            assert c["value"] == pytest.approx(float(raw))
    assert body["scores"][1]["cold_start"] and body["scores"][1]["explanation"] is None


def test_missing_quantile_boosters_serialise_as_null(
    settings: Settings, features: pd.DataFrame
) -> None:
    no_interval = train_model(features, quantiles=False)
    with _client(settings, no_interval, features) as client:
        row = client.post("/score", json={"customer_ids": ["c0001"]}).json()["scores"][0]
    assert row["clv_p10"] is None and row["clv_p90"] is None
    assert math.isfinite(row["clv"])


def test_reload_swaps_the_model_when_the_alias_moves(
    settings: Settings, model: ClvModel, features: pd.DataFrame
) -> None:
    versions = ["3"]
    app = create_app(
        settings,
        model_source=lambda: Loaded(model, versions[-1], "champion", f"run-{versions[-1]}"),
        feature_source=lambda ids: online_rows(features, ids),
        reference_source=lambda run_id: features,
    )
    with TestClient(app) as client:
        holder = app.state.models
        assert holder.reload() is False  # same version: nothing to do
        versions.append("4")
        assert holder.reload() is True
        body = client.post("/score", json={"customer_ids": ["c0001"]}).json()
    assert body["model_version"] == "4"
    assert body["scores"][0]["model_version"] == "4"


def test_background_poll_picks_up_a_new_champion(
    settings: Settings, model: ClvModel, features: pd.DataFrame
) -> None:
    fast = settings.model_copy(
        update={"serving": settings.serving.model_copy(update={"reload_seconds": 0.05})}
    )
    versions = ["3"]
    app = create_app(
        fast,
        model_source=lambda: Loaded(model, versions[-1], "champion", "r"),
        feature_source=lambda ids: online_rows(features, ids),
        reference_source=lambda run_id: features,
    )
    with TestClient(app) as client:
        versions.append("5")
        deadline = time.monotonic() + 5.0
        while client.get("/readyz").json()["model_version"] != "5":
            assert time.monotonic() < deadline, "poll never swapped the model"
            time.sleep(0.05)


def test_feature_store_failure_is_a_503_with_a_reason(
    settings: Settings, model: ClvModel, features: pd.DataFrame
) -> None:
    def down(ids: Sequence[str]) -> pd.DataFrame:
        raise ConnectionError("redis at localhost:6379 refused")

    app = create_app(
        settings,
        model_source=lambda: Loaded(model, "3", "champion", "r"),
        feature_source=down,
        reference_source=lambda run_id: features,
    )
    with TestClient(app) as client:
        response = client.post("/score", json={"customer_ids": ["c0001"]})
    assert response.status_code == 503
    assert "ConnectionError: redis at localhost:6379 refused" in response.json()["detail"]


def test_a_slow_store_read_does_not_hold_up_the_event_loop(
    settings: Settings, model: ClvModel, features: pd.DataFrame
) -> None:
    """`/score` reads the online store in a worker thread: while a read blocks, the app answers."""
    entered, release = threading.Event(), threading.Event()
    released: list[bool] = []

    def slow(ids: Sequence[str]) -> pd.DataFrame:
        entered.set()
        released.append(release.wait(timeout=5.0))  # False: nothing answered meanwhile
        return online_rows(features, ids)

    app = create_app(
        settings,
        model_source=lambda: Loaded(model, "3", "champion", "r"),
        feature_source=slow,
        reference_source=lambda run_id: features,
    )
    scored: list[int] = []
    with TestClient(app) as client:
        body = {"customer_ids": ["c0001"]}
        worker = threading.Thread(
            target=lambda: scored.append(client.post("/score", json=body).status_code)
        )
        worker.start()
        assert entered.wait(timeout=10.0), "the store was never read"
        health = client.get("/healthz")  # while the read still blocks
        release.set()
        worker.join(timeout=10.0)
    assert health.status_code == 200
    assert released == [True], "the event loop waited for the store read"
    assert scored == [200]


def test_a_model_that_fails_on_the_rows_is_a_500_scoring_failed(
    settings: Settings, model: ClvModel, features: pd.DataFrame
) -> None:
    """Scored as its read ends (in the read's callback), a failure is still the scoring's
    (500), not the store's (503): a champion asks for a feature the store does not have."""
    card = dataclasses.replace(model.card, feature_names=[*model.feature_names, "not_stored"])
    wide = ClvModel(card, value=model.value, churn=model.churn, quantiles=model.quantiles)
    app = create_app(
        settings,
        model_source=lambda: Loaded(wide, "4", "champion", "r"),
        feature_source=lambda ids: online_rows(features, ids),
        reference_source=lambda run_id: features.assign(clv=model.predict(features)["clv"]),
    )
    with TestClient(app) as client:
        scored = client.post("/score", json={"customer_ids": ["c0001"]})
    assert scored.status_code == 500
    assert scored.json() == {"detail": "scoring failed: KeyError: 'not_stored'"}


def test_score_is_answered_past_fastapis_stack_as_through_it(
    settings: Settings, model: ClvModel, features: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`POST /score` skips FastAPI's middleware and router (ScoringApp); under a root path it
    takes them, with the same answer; other methods still get the router's 405, and an
    unhandled error still Starlette's plain 500."""
    import clv.serving.app as app_module

    app = create_app(
        settings,
        model_source=lambda: Loaded(model, "3", "champion", "r"),
        feature_source=lambda ids: online_rows(features, ids),
        reference_source=lambda run_id: features,
    )
    body = {"customer_ids": ["c0001", "nobody"]}
    with TestClient(app, raise_server_exceptions=False) as client:
        direct = client.post("/score", json=body)
        assert client.get("/score").status_code == 405
        with TestClient(app, root_path="/clv") as mounted:
            through = mounted.post("/score", json=body)

        async def boom(request: object, limit: int) -> bytes:
            raise RuntimeError("unexpected")

        monkeypatch.setattr(app_module, "_bounded_body", boom)
        failed = client.post("/score", json=body)
    assert direct.status_code == through.status_code == 200
    assert direct.content == through.content
    assert failed.status_code == 500 and failed.text == "Internal Server Error"


@pytest.mark.parametrize("rows", [1, ONE_CALL_ITEMS, ONE_CALL_ITEMS + 1, 300])
def test_answers_are_the_bytes_of_one_compact_json_dumps(rows: int) -> None:
    from clv.serving.app import _dumps

    row: dict[str, JsonValue] = {"clv": 1.5, "segment": "mid value / héalthy", "p10": None}
    payload: dict[str, JsonValue] = {"scores": [row] * rows, "model_version": "1", "alias": "c"}
    assert _dumps(payload) == json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
