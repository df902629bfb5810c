"""Canary routing, shadow mode, fallback, auth, /metrics and live stats in the scoring app."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import time

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from serving_fixtures import FakeRegistry, online_rows, train_model

from clv.core.live_stats import live_stats_path
from clv.core.settings import Settings
from clv.model.bundle import ClvModel, ModelCard
from clv.registry.canary import route
from clv.serving.app import create_app
from clv.serving.routing import RoutingPlan
from clv.serving.scorer import Champion, batch_matrix, cold_start_prior, load_champion

IDS = [f"c{i:04d}" for i in range(0, 300, 7)] + ["nobody"]


@pytest.fixture(scope="module")
def canary_model(features: pd.DataFrame) -> ClvModel:
    return train_model(features, scale=5.0)


def _settings(settings: Settings, **serving: object) -> Settings:
    base = {"max_batch": 1000, "reload_seconds": 0.0, "stats_seconds": 0.05}
    return settings.model_copy(
        update={"serving": settings.serving.model_copy(update={**base, **serving})}
    )


def _app(
    settings: Settings, registry: FakeRegistry, features: pd.DataFrame, **serving: object
) -> TestClient:
    app = create_app(
        _settings(settings, **serving),
        registry=registry,
        feature_source=lambda ids: online_rows(features, ids),
        reference_source=lambda run_id: features,
    )
    return TestClient(app)


def _registry(model: ClvModel, second: ClvModel, **plan: object) -> FakeRegistry:
    return FakeRegistry({"1": model, "2": second}, RoutingPlan(champion="1", **plan))  # type: ignore[arg-type]


def test_canary_scores_its_share_by_the_stable_hash(
    settings: Settings, model: ClvModel, canary_model: ClvModel, features: pd.DataFrame
) -> None:
    registry = _registry(model, canary_model, canary="2", share=0.5)
    with _app(settings, registry, features) as client:
        body = client.post("/score", json={"customer_ids": IDS}).json()
    rows = body["scores"]
    expected = {c: route(c, 0.5, settings.registry.route_salt) for c in IDS}
    assert [r["alias"] for r in rows] == [expected[c] for c in IDS]
    assert {r["alias"] for r in rows} == {"champion", "canary"}
    preds = {
        "champion": model.predict(online_rows(features, IDS)),
        "canary": canary_model.predict(online_rows(features, IDS)),
    }
    for i, row in enumerate(rows):
        assert row["model_version"] == ("2" if row["alias"] == "canary" else "1")
        if not row["cold_start"]:
            assert row["clv"] == pytest.approx(preds[row["alias"]]["clv"].iloc[i], rel=1e-12)


def test_shadow_mode_scores_both_and_the_champion_answers(
    settings: Settings, model: ClvModel, canary_model: ClvModel, features: pd.DataFrame
) -> None:
    registry = _registry(model, canary_model, canary="2", share=0.5, shadow=True)
    with _app(settings, registry, features) as client:
        rows = client.post("/score", json={"customer_ids": IDS}).json()["scores"]
        metrics = client.get("/metrics").text
        ready = client.get("/readyz").json()
    assert {r["alias"] for r in rows} == {"champion"}
    assert 'clv_requests_total{alias="canary",version="2"} 1' in metrics
    assert "clv_canary_shadow 1" in metrics
    assert ready["canary"] == {"version": "2", "share": 0.5, "shadow": True}


def test_a_failing_canary_falls_back_to_the_champion(
    settings: Settings, model: ClvModel, features: pd.DataFrame
) -> None:
    # binds (its reference has CLV) but cannot score: 7 columns for an 8-feature booster
    card = ModelCard(feature_service="clv_v1", feature_names=model.feature_names[:-1])
    broken = ClvModel(card, value=model.value)
    registry = _registry(model, broken, canary="2", share=0.5)
    reference = features.assign(clv=model.predict(features)["clv"])
    app = create_app(
        _settings(settings),
        registry=registry,
        feature_source=lambda ids: online_rows(features, ids),
        reference_source=lambda run_id: reference,
    )
    with TestClient(app) as client:
        response = client.post("/score", json={"customer_ids": IDS})
        metrics = client.get("/metrics").text
    assert response.status_code == 200
    assert {r["alias"] for r in response.json()["scores"]} == {"champion"}
    assert 'clv_request_errors_total{alias="canary",version="2"} 1' in metrics


def test_a_canary_that_does_not_load_leaves_the_champion_serving(
    settings: Settings, model: ClvModel, features: pd.DataFrame
) -> None:
    registry = FakeRegistry({"1": model}, RoutingPlan(champion="1", canary="2", share=0.5))
    with _app(settings, registry, features) as client:
        ready = client.get("/readyz").json()
        rows = client.post("/score", json={"customer_ids": IDS}).json()["scores"]
    assert ready["ready"] is True and "canary v2: KeyError" in ready["canary_error"]
    assert {r["alias"] for r in rows} == {"champion"}


def _samples(text: str) -> dict[str, float]:
    """`name{labels}` -> value, read by prometheus-client's own parser of the text format."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[s.name + (f"{{{labels}}}" if labels else "")] = s.value
    return out


def _summed(samples: dict[str, float], prefix: str) -> dict[str, float]:
    """Bucket counts of the series starting with `prefix`, summed over their other labels,
    keyed by le."""
    out: dict[str, float] = {}
    for key, value in samples.items():
        if key.startswith(prefix):
            le = re.search(r'le="([^"]+)"', key)
            assert le is not None, key
            out[le.group(1)] = out.get(le.group(1), 0.0) + value
    return out


def test_metrics_are_valid_prometheus_text_with_the_slis(
    settings: Settings, model: ClvModel, canary_model: ClvModel, features: pd.DataFrame
) -> None:
    from serving_fixtures import DATA_END

    registry = _registry(model, canary_model, canary="2", share=0.5)
    started = time.time()
    with _app(settings, registry, features) as client:
        for i in range(20):
            client.post("/score", json={"customer_ids": [f"c{i:04d}"]})
        client.post("/score", json={"customer_ids": ["nobody", "c0001"]})
        client.post("/score", json={"customer_ids": []})  # a 422
        response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    samples = _samples(response.text)
    champ = samples['clv_requests_total{alias="champion",version="1"}']
    canary = samples['clv_requests_total{alias="canary",version="2"}']
    to_canary = [route(f"c{i:04d}", 0.5, "clv") == "canary" for i in range(20)]
    nobody, c1 = (route(c, 0.5, "clv") == "canary" for c in ("nobody", "c0001"))
    assert canary == sum(to_canary) + int(nobody or c1)
    assert champ == 20 - sum(to_canary) + int(not (nobody and c1))
    # The latency histogram is per tier too: summed over tiers it is cumulative and ends at
    # the request count.
    latency = _summed(samples, 'clv_request_duration_seconds_bucket{alias="champion"')
    counts = [latency[k] for k in sorted(latency, key=float)]
    assert counts == sorted(counts) and counts[-1] == champ
    tiers = {
        re.search(r'tier="([^"]+)"', k).group(1)  # type: ignore[union-attr]
        for k in samples
        if k.startswith("clv_request_duration_seconds_count")
    }
    assert tiers and tiers <= {"low value", "mid value", "high value", "unknown", "mixed"}
    assert samples['clv_score_responses_total{code="200"}'] == 21
    assert samples['clv_score_responses_total{code="422"}'] == 1
    # 21 known customers scored from stored features (c0000..c0019, c0001 again); "nobody" is a
    # cold start: no feature age, no prediction in the canary-PSI histogram.
    assert samples["clv_feature_age_seconds_count"] == 21
    snapshot_age = started - features["event_timestamp"].iloc[0].timestamp()
    assert samples["clv_feature_max_age_seconds"] == pytest.approx(snapshot_age, abs=60)
    predicted = sum(v for k, v in samples.items() if k.startswith("clv_prediction_clv_count"))
    assert predicted == 21
    cold = sum(v for k, v in samples.items() if k.startswith("clv_cold_start_total"))
    assert cold == 1
    age = samples['clv_model_age_seconds{alias="champion",version="1"}']
    assert age == pytest.approx(time.time() - DATA_END.timestamp(), abs=60)
    assert samples["clv_canary_share"] == 0.5
    assert samples['clv_model_info{alias="canary",version="2"}'] == 1
    assert "clv_last_batch_scoring_timestamp_seconds" not in samples  # no batch scoring yet
    # What is exposed is the contract the deploy/ rules read (clv.core.telemetry.METRICS).
    from prometheus_client.parser import text_string_to_metric_families

    from clv.core import telemetry

    kinds = {"counter": "_total"}
    exposed = {
        f.name + kinds.get(f.type, "") for f in text_string_to_metric_families(response.text)
    }
    assert exposed <= set(telemetry.METRICS), exposed - set(telemetry.METRICS)
    later = {telemetry.LAST_BATCH, telemetry.BATCH_COVERAGE, telemetry.STORE_READY}
    assert set(telemetry.METRICS) - exposed <= later


def test_bearer_token_guards_score_only(
    settings: Settings, model: ClvModel, features: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLV_SERVING_TOKEN", "s3cret")
    registry = FakeRegistry({"1": model}, RoutingPlan(champion="1"))
    with _app(settings, registry, features) as client:
        body = {"customer_ids": ["c0001"]}
        assert client.post("/score", json=body).status_code == 401
        wrong = client.post("/score", json=body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        ok = client.post("/score", json=body, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.json()["scores"][0]["customer_id"] == "c0001"
        assert client.get("/healthz").status_code == 200
        assert client.get("/metrics").status_code == 200


def test_the_server_never_moves_aliases_and_its_live_stats_judge_the_canary(
    settings: Settings, model: ClvModel, canary_model: ClvModel, features: pd.DataFrame
) -> None:
    """A canary that breaches a guardrail keeps serving (the registry is only read: the
    registry here has no write method at all); the live-stats file the server writes is what
    the judge (`clv registry status --enforce`) reads, and it says roll back."""
    from clv.registry.canary import judge_canary
    from clv.registry.live import guardrails, parse_live_stats

    s = settings.model_copy(
        update={"registry": settings.registry.model_copy(update={"canary_min_requests": 30})}
    )
    registry = _registry(model, canary_model, canary="2", share=0.5)
    ids = [f"c{i:04d}" for i in range(300)]
    with _app(s, registry, features, reload_seconds=0.05) as client:
        for i in range(0, 300, 3):
            assert client.post("/score", json={"customer_ids": ids[i : i + 3]}).status_code == 200
        deadline = time.monotonic() + 10
        while True:
            doc = json.loads(live_stats_path(s).read_text()) if live_stats_path(s).exists() else {}
            canary = doc.get("aliases", {}).get("canary", {})
            if canary.get("requests", 0) >= 30 and doc["aliases"]["champion"]["requests"] > 0:
                break
            assert time.monotonic() < deadline, f"live stats never counted the traffic: {doc}"
            time.sleep(0.05)
        assert client.get("/readyz").json()["canary"]["version"] == "2"  # still serving
    live = parse_live_stats(doc)
    assert live.champion is not None and live.canary is not None
    assert live.canary.requests + live.champion.requests >= 100
    assert live.canary.predicted > 0 and live.champion.latency_p95_ms > 0
    verdict = judge_canary(live.champion, live.canary, guardrails=guardrails(s))
    assert verdict.action == "rollback"
    assert verdict.reason.startswith("canary v2 breached: prediction_psi"), verdict.reason


def test_batch_matrix_equals_the_models_matrix(model: ClvModel, features: pd.DataFrame) -> None:
    from clv.serving.reader import CallableReader as _CallableReader

    ids = [*features["customer_id"].head(40), "nobody"]
    frame = online_rows(features, ids)
    champion = load_champion(
        _loaded(model),  # type: ignore[arg-type]
        serving=Settings.model_fields["serving"].default,
        reference_source=lambda run_id: features,
    )
    batch = _CallableReader(lambda got: frame).read(ids)
    np.testing.assert_array_equal(batch_matrix(champion, batch), model.matrix(frame))
    for i in (0, 7, len(ids) - 1):  # one customer, the online case (the unknown one last)
        one = _CallableReader(lambda got, i=i: frame.iloc[[i]]).read([ids[i]])
        np.testing.assert_array_equal(batch_matrix(champion, one), model.matrix(frame.iloc[[i]]))
    if "excluded_features" in {f.name for f in dataclasses.fields(ModelCard)}:
        card = dataclasses.replace(model.card, excluded_features=["avg_basket"])
        trimmed = ClvModel(card, value=model.value, churn=model.churn, quantiles=model.quantiles)
        bound = dataclasses.replace(champion, model=trimmed)
        got = batch_matrix(bound, batch)
        np.testing.assert_array_equal(got, trimmed.matrix(frame))
        assert np.isnan(got[:, model.feature_names.index("avg_basket")]).all()


def _loaded(model: ClvModel) -> object:
    from serving_fixtures import Loaded

    return Loaded(model, "1", "champion", "r")


def test_cold_start_prior_is_the_median_of_new_customers(
    model: ClvModel, features: pd.DataFrame
) -> None:
    reference = features.assign(tenure_days=np.arange(len(features), dtype=float))
    prior, source = cold_start_prior(model, reference, tenure_days=30.0)
    assert prior is not None and "30 reference customers with tenure_days < 30" in source
    young = model.predict(reference.iloc[:30])
    assert prior["clv"] == pytest.approx(float(np.median(young["clv"])))
    assert prior["churn_probability"] == pytest.approx(float(np.median(young["churn_probability"])))
    few, fallback = cold_start_prior(model, reference.iloc[25:], tenure_days=30.0)
    assert few is not None and fallback == "median over the reference sample"
    assert math.isfinite(few["clv"])


def test_champion_binding_carries_the_prior(model: ClvModel, features: pd.DataFrame) -> None:
    serving = Settings.model_fields["serving"].default
    bound: Champion = load_champion(
        _loaded(model),
        serving=serving,
        reference_source=lambda run_id: features,  # type: ignore[arg-type]
    )
    assert bound.cold_prior is not None and bound.prior_source.startswith("median")


def test_coalesced_requests_get_their_own_rows_with_the_same_numbers(
    model: ClvModel, canary_model: ClvModel, features: pd.DataFrame
) -> None:
    import asyncio

    from clv.serving.coalesce import Coalescer
    from clv.serving.reader import CallableReader as _CallableReader
    from clv.serving.routed import score_batch
    from clv.serving.state import ServingState

    serving = Settings.model_fields["serving"].default
    bind = load_champion(
        _loaded(model),  # type: ignore[arg-type]
        serving=serving,
        reference_source=lambda run_id: features,
    )
    second = dataclasses.replace(
        load_champion(
            _loaded(canary_model),  # type: ignore[arg-type]
            serving=serving,
            reference_source=lambda run_id: features,
        ),
        version="2",
        alias="canary",
    )
    state = ServingState(champion=bind, canary=second, share=0.5, shadow=False, salt="clv")
    reader = _CallableReader(lambda got: online_rows(features, got))
    requests = [["c0001", "nobody"], ["c0002"], ["c0003", "c0004", "c0005"]]
    batches = [reader.read(ids) for ids in requests]

    async def run() -> list[tuple[object, int]]:
        coalescer = Coalescer()
        return await asyncio.gather(*(coalescer.score(state, b) for b in batches))

    results = asyncio.run(run())
    scored = {id(s) for s, _ in results}
    assert len(scored) == 1  # one model call for the three requests
    for (s, offset), ids, batch in zip(results, requests, batches, strict=True):
        assert isinstance(s, type(score_batch(state, batch)))
        mine = s.payload(offset, offset + len(ids))["scores"]
        alone = score_batch(state, batch).payload()["scores"]
        assert mine == alone
        assert [r["customer_id"] for r in mine] == ids  # type: ignore[index]


def test_background_work_runs_off_the_event_loop_thread(
    settings: Settings,
    model: ClvModel,
    canary_model: ClvModel,
    features: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The registry poll, the stats snapshot/write and the canary judgement block no request."""
    import threading

    import clv.serving.supervise as app_module

    seen: dict[str, set[str]] = {"plan": set(), "write": set(), "loop": set()}
    plans: list[str] = []  # one per registry poll (the startup load and the ticks')
    write = app_module.write_live_stats

    def recording_write(s: Settings, snapshot: dict[str, object]) -> None:
        seen["write"].add(threading.current_thread().name)
        write(s, snapshot)

    monkeypatch.setattr(app_module, "write_live_stats", recording_write)
    registry = _registry(model, canary_model)
    plan = registry.plan

    def recording_plan() -> RoutingPlan:
        seen["plan"].add(threading.current_thread().name)
        plans.append(threading.current_thread().name)
        return plan()

    monkeypatch.setattr(registry, "plan", recording_plan)
    with _app(settings, registry, features, reload_seconds=0.05) as client:
        seen["loop"].add(client.portal.call(lambda: threading.current_thread().name))  # type: ignore[union-attr]
        deadline = time.monotonic() + 5.0
        while (not seen["write"] or len(plans) < 2) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.post("/score", json={"customer_ids": IDS[:2]}).status_code == 200
    assert seen["write"], "live stats were never written"
    assert len(plans) >= 2, "the registry was never polled after the start"
    assert seen["loop"] and seen["loop"].isdisjoint(seen["write"] | seen["plan"])


def test_freeze_gc_serves_and_leaves_the_collector_enabled(
    settings: Settings, model: ClvModel, canary_model: ClvModel, features: pd.DataFrame
) -> None:
    import gc

    app = create_app(
        _settings(settings),
        registry=_registry(model, canary_model),
        feature_source=lambda ids: online_rows(features, ids),
        reference_source=lambda run_id: features,
        freeze_gc=True,
    )
    try:
        with TestClient(app) as client:
            assert gc.get_freeze_count() > 0
            assert gc.isenabled()
            assert client.post("/score", json={"customer_ids": IDS[:3]}).status_code == 200
    finally:
        gc.unfreeze()
