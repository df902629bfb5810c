"""`/score` and `clv score ID` with aliases: answered for the customer the alias is now."""

from __future__ import annotations

import pandas as pd
import pytest
import typer
from fastapi.testclient import TestClient
from serving_fixtures import SNAPSHOT, Loaded, online_rows
from typer.testing import CliRunner

from clv.cli.serving import score
from clv.core.errors import ClvError
from clv.core.settings import Settings
from clv.core.store import write_table
from clv.inputs.personal import pseudonym
from clv.model.bundle import ClvModel
from clv.serving.app import create_app
from clv.serving.batch import score_ids
from clv.serving.identities import AliasHolder

KEY = "test-personal-key"
NEXT_YEAR = pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=365)


def _identities(rows: list[tuple[str, str, pd.Timestamp | None]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "alias_id": [r[0] for r in rows],
            "customer_id": [r[1] for r in rows],
            "valid_from": pd.Series([r[2] for r in rows], dtype="datetime64[us, UTC]"),
        }
    )


def _client(settings: Settings, model: ClvModel, features: pd.DataFrame) -> TestClient:
    app = create_app(
        settings,
        model_source=lambda: Loaded(model, "3", "champion", "run-abc"),
        feature_source=lambda ids: online_rows(features, ids),
        reference_source=lambda run_id: features,
    )
    return TestClient(app)


def test_score_answers_an_alias_for_its_customer(
    settings: Settings, model: ClvModel, features: pd.DataFrame
) -> None:
    write_table(
        settings,
        "identities",
        _identities(
            [
                ("device-1", "c0001", None),
                ("old-42", "c0042", pd.Timestamp("2024-01-01", tz="UTC")),
                ("mail-7", "c0007", NEXT_YEAR),  # not in force yet: its own (unknown) customer
            ]
        ),
    )
    ids = ["device-1", "c0042", "old-42", "mail-7", "nobody"]
    with _client(settings, model, features) as client:
        scores = client.post("/score", json={"customer_ids": ids}).json()["scores"]
        direct = client.post("/score", json={"customer_ids": ["c0001"]}).json()["scores"][0]
    assert [s["customer_id"] for s in scores] == ["c0001", "c0042", "c0042", "mail-7", "nobody"]
    assert [s["requested_id"] for s in scores] == ids
    assert [s["cold_start"] for s in scores] == [False, False, False, True, True]
    assert scores[0]["clv"] == direct["clv"] and direct["requested_id"] == "c0001"
    assert scores[1]["clv"] == scores[2]["clv"]


def test_a_clear_alias_is_found_by_its_pseudonym_when_alias_id_is_hashed(
    settings: Settings, model: ClvModel, features: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLV_PERSONAL_KEY", KEY)
    ingest = settings.ingest.model_copy(update={"personal_columns": ("alias_id",)})
    hashed = settings.model_copy(update={"ingest": ingest})
    stored = pseudonym("ann@example.com", KEY.encode())
    write_table(hashed, "identities", _identities([(stored, "c0007", None)]))
    with _client(hashed, model, features) as client:
        scores = client.post(
            "/score", json={"customer_ids": ["ann@example.com", stored, "bob@example.com"]}
        ).json()["scores"]
    assert [s["customer_id"] for s in scores] == ["c0007", "c0007", "bob@example.com"]
    assert scores[0]["requested_id"] == "ann@example.com"
    # without the declaration, the clear value is just an unknown id
    with _client(settings, model, features) as client:
        plain = client.post("/score", json={"customer_ids": ["ann@example.com"]}).json()
    assert plain["scores"][0]["customer_id"] == "ann@example.com"


def test_a_clear_customer_id_is_scored_by_its_pseudonym_when_customer_id_is_hashed(
    settings: Settings, model: ClvModel, features: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLV_PERSONAL_KEY", KEY)
    ingest = settings.ingest.model_copy(update={"personal_columns": ("customer_id",)})
    hashed = settings.model_copy(update={"ingest": ingest})
    stored = pseudonym("c0003", KEY.encode())  # the store holds pseudonyms only
    renamed = features.assign(
        customer_id=features["customer_id"].where(features["customer_id"] != "c0003", stored)
    )
    with _client(hashed, model, renamed) as client:
        scores = client.post("/score", json={"customer_ids": ["c0003", stored]}).json()["scores"]
    assert [s["customer_id"] for s in scores] == [stored, stored]
    assert [s["cold_start"] for s in scores] == [False, False]
    assert scores[0]["clv"] == scores[1]["clv"] and scores[0]["requested_id"] == "c0003"


def test_the_aliases_reload_when_the_table_changes_or_a_row_comes_into_force(
    settings: Settings,
) -> None:
    now = [pd.Timestamp("2024-05-01", tz="UTC")]
    holder = AliasHolder(settings, clock=lambda: now[0])
    assert holder.refresh()  # the first refresh always loads (settings may hash ids)
    assert not holder.refresh() and holder.current.resolve(["a"]) == ["a"]  # no table
    write_table(
        settings,
        "identities",
        _identities([("a", "c", None), ("b", "c", pd.Timestamp("2024-06-01", tz="UTC"))]),
    )
    assert holder.refresh()
    assert holder.current.resolve(["a", "b"]) == ["c", "b"]
    assert not holder.refresh()  # nothing changed
    now[0] = pd.Timestamp("2024-06-02", tz="UTC")
    assert holder.refresh()
    assert holder.current.resolve(["a", "b"]) == ["c", "c"]


def test_score_ids_resolves_aliases_as_of_the_snapshot(
    settings: Settings, model: ClvModel, features: pd.DataFrame
) -> None:
    write_table(
        settings,
        "identities",
        _identities(
            [("device-1", "c0001", None), ("late", "c0002", SNAPSHOT)]  # at t: not yet
        ),
    )
    asked: list[pd.DataFrame] = []

    def entity_features(entities: pd.DataFrame) -> pd.DataFrame:
        asked.append(entities)
        rows = online_rows(features, entities["customer_id"].tolist())
        return rows.drop(columns="feature_timestamp")

    scores = score_ids(
        settings,
        ["device-1", "c0001", "late"],
        as_of=SNAPSHOT,
        model_source=lambda: Loaded(model, "7", "champion", "run-7"),
        reference_source=lambda run_id: features,
        entity_source=entity_features,
    )
    assert asked[0]["customer_id"].tolist() == ["c0001", "late"]  # each customer once
    assert scores["customer_id"].tolist() == ["c0001", "c0001", "late"]
    assert scores["requested_id"].tolist() == ["device-1", "c0001", "late"]
    assert scores["clv"].iloc[0] == scores["clv"].iloc[1]
    assert scores["cold_start"].tolist() == [False, False, True]


def test_cli_score_prints_each_requested_id_and_its_customer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[list[str]] = []

    def fake(settings: Settings, ids: list[str], *, as_of: pd.Timestamp | None) -> pd.DataFrame:
        asked.append(list(ids))
        return pd.DataFrame(
            {
                "customer_id": ["c0001", "c0002"],
                "requested_id": ["device-1", "c0002"],
                "clv": [12.5, 3.0],
                "clv_p10": [1.0, 0.5],
                "clv_p90": [30.0, 9.0],
                "churn_probability": [0.25, 0.75],
                "segment": ["high value / loyal", "low value / at risk"],
                "cold_start": [False, True],
                "model_version": ["7", "7"],
                "alias": ["champion", "champion"],
                "as_of": [SNAPSHOT, SNAPSHOT],
            }
        )

    monkeypatch.setattr("clv.serving.batch.score_ids", fake)
    app = typer.Typer()
    app.command("score")(score)
    app.command("other")(score)  # two commands keep `score` a subcommand
    result = CliRunner().invoke(app, ["score", "device-1", "c0002", "--as-of", "2024-06-01"])
    assert result.exit_code == 0, result.output
    assert asked == [["device-1", "c0002"]]
    lines = result.output.splitlines()
    assert lines[0].startswith("device-1 -> c0001: clv 12.50 [1.00, 30.00], churn 0.25")
    assert lines[1].startswith("c0002: clv 3.00") and lines[1].endswith("(cold start)")
    both = CliRunner().invoke(app, ["score", "device-1", "--all"])
    assert isinstance(both.exception, ClvError)
