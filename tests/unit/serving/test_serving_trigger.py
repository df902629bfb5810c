"""Batch scoring with a canary equals online scoring, and the at-risk webhook reaches a server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from serving_fixtures import SNAPSHOT, FakeRegistry, online_rows, train_model

from clv.core.settings import Settings
from clv.model.bundle import ClvModel
from clv.serving.app import create_app
from clv.serving.batch import score_all
from clv.serving.routing import RoutingPlan


@pytest.fixture
def registry(model: ClvModel, features: pd.DataFrame) -> FakeRegistry:
    return FakeRegistry(
        {"1": model, "2": train_model(features, scale=1.5)},
        RoutingPlan(champion="1", canary="2", share=0.3),
    )


def test_batch_and_online_agree_with_a_canary(
    settings: Settings, registry: FakeRegistry, features: pd.DataFrame, tmp_path: Path
) -> None:
    with_unknown = pd.concat(
        [features, pd.DataFrame({"customer_id": ["ghost"], "event_timestamp": [SNAPSHOT]})],
        ignore_index=True,
    )
    result = score_all(
        settings,
        as_of=SNAPSHOT,
        out=tmp_path / "scores.parquet",
        registry=registry,
        reference_source=lambda run_id: features,
        snapshot_source=lambda when: with_unknown,
    )
    batch = pd.read_parquet(result.path).set_index("customer_id")
    assert result.canary_version == "2" and 0 < result.canary_rows < len(batch)
    ids = with_unknown["customer_id"].tolist()
    app = create_app(
        settings.model_copy(
            update={"serving": settings.serving.model_copy(update={"max_batch": 1000})}
        ),
        registry=registry,
        feature_source=lambda got: online_rows(features, got),
        reference_source=lambda run_id: features,
    )
    with TestClient(app) as client:
        online = client.post("/score", json={"customer_ids": ids}).json()["scores"]
    for row in online:
        b = batch.loc[row["customer_id"]]
        assert (row["alias"], row["model_version"]) == (b["alias"], b["model_version"])
        for col in ("clv", "clv_p10", "clv_p90", "churn_probability"):
            assert row[col] == float(b[col]), col
        assert row["segment"] == b["segment"] and row["cold_start"] == bool(b["cold_start"])
    assert batch.loc["ghost", "cold_start"]


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, object]]]]:
    received: list[dict[str, object]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/crm", received
    finally:
        httpd.shutdown()
        thread.join(timeout=5)


def test_at_risk_customers_are_posted_to_the_webhook(
    settings: Settings,
    model: ClvModel,
    features: pd.DataFrame,
    tmp_path: Path,
    webhook: tuple[str, list[dict[str, object]]],
) -> None:
    url, received = webhook
    configured = settings.model_copy(
        update={
            "serving": settings.serving.model_copy(
                update={"webhook_url": url, "at_risk_min_churn": 0.3}
            )
        }
    )
    result = score_all(
        configured,
        as_of=SNAPSHOT,
        out=tmp_path / "scores.parquet",
        registry=FakeRegistry({"1": model}, RoutingPlan(champion="1")),
        reference_source=lambda run_id: features,
        snapshot_source=lambda when: features,
    )
    assert result.webhook is not None and result.webhook.ok and result.webhook.status == 204
    assert len(received) == 1
    doc = received[0]
    csv = pd.read_csv(result.at_risk_path, dtype={"customer_id": str})
    assert doc["event"] == "clv.at_risk" and doc["count"] == len(csv) == result.at_risk > 0
    posted = doc["customers"]
    assert isinstance(posted, list)
    assert [c["customer_id"] for c in posted] == csv["customer_id"].tolist()
    assert all(c["churn_probability"] >= 0.3 for c in posted)
    assert doc["min_churn_probability"] == 0.3


def test_a_failing_webhook_is_reported_not_raised(
    settings: Settings, model: ClvModel, features: pd.DataFrame, tmp_path: Path
) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/crm"  # nothing listens once closed
    configured = settings.model_copy(
        update={"serving": settings.serving.model_copy(update={"webhook_url": dead})}
    )
    result = score_all(
        configured,
        as_of=SNAPSHOT,
        out=tmp_path / "scores.parquet",
        registry=FakeRegistry({"1": model}, RoutingPlan(champion="1")),
        reference_source=lambda run_id: features,
        snapshot_source=lambda when: features,
    )
    assert result.webhook is not None and not result.webhook.ok
    assert "ConnectError" in str(result.webhook.error)
    assert result.path.exists() and result.at_risk_path.exists()


def test_batch_scoring_records_its_coverage_of_active_customers_and_servers_expose_it(
    settings: Settings, model: ClvModel, features: pd.DataFrame, tmp_path: Path
) -> None:
    """Active: a purchase in the `model.churn_window_days` before the log's end. A customer
    who bought after the snapshot (so has no features yet) is active and not scored; one whose
    last purchase is older than the window is not active."""
    from clv.core.contracts import TS_DTYPE
    from clv.core.live_stats import read_batch_scoring
    from clv.core.store import table_path

    end = SNAPSHOT + pd.Timedelta(days=20)
    window = settings.model.churn_window_days
    rows = [(f"c{i:04d}", end - pd.Timedelta(days=i)) for i in range(10)]
    rows += [("newbie", end), ("c0010", end - pd.Timedelta(days=window + 5))]
    path = table_path(settings, "transactions")
    path.parent.mkdir(parents=True, exist_ok=True)
    stored = pd.DataFrame(rows, columns=["customer_id", "ts"])
    stored.astype({"ts": TS_DTYPE}).to_parquet(path)
    result = score_all(
        settings,
        as_of=SNAPSHOT,
        out=tmp_path / "scores.parquet",
        registry=FakeRegistry({"1": model}, RoutingPlan(champion="1")),
        reference_source=lambda run_id: features,
        snapshot_source=lambda when: features,
    )
    record = read_batch_scoring(settings)
    assert record is not None and record == result.record
    assert (record.active, record.active_scored, record.scored) == (11, 10, len(features))
    assert record.coverage == pytest.approx(10 / 11)
    app = create_app(
        settings,
        registry=FakeRegistry({"1": model}, RoutingPlan(champion="1")),
        feature_source=lambda got: online_rows(features, got),
        reference_source=lambda run_id: features,
    )
    with TestClient(app) as client:
        text = client.get("/metrics").text
    from prometheus_client.parser import text_string_to_metric_families

    values = {f.name: f.samples[0].value for f in text_string_to_metric_families(text) if f.samples}
    assert values["clv_last_batch_scoring_timestamp_seconds"] == record.finished_at
    assert values["clv_batch_scoring_coverage_ratio"] == pytest.approx(10 / 11)
