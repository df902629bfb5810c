from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from fastapi.testclient import TestClient
from serving_fixtures import SNAPSHOT, Loaded, online_rows
from typer.testing import CliRunner

from clv.cli.serving import score
from clv.core.errors import ClvError, DataError, NotReadyError
from clv.core.settings import Settings
from clv.core.time import parse_as_of
from clv.model.bundle import ClvModel
from clv.serving.app import create_app
from clv.serving.batch import BatchResult, latest_snapshot, score_all
from clv.serving.segments import HIGH_VALUE_AT_RISK


def _score_all(
    settings: Settings, model: ClvModel, features: pd.DataFrame, out: Path
) -> tuple[pd.DataFrame, BatchResult]:
    seen: list[pd.Timestamp] = []

    def snapshot(when: pd.Timestamp) -> pd.DataFrame:
        seen.append(when)
        return features

    result = score_all(
        settings,
        as_of=SNAPSHOT,
        out=out,
        model_source=lambda: Loaded(model, "7", "champion", "run-7"),
        reference_source=lambda run_id: features,
        snapshot_source=snapshot,
    )
    assert seen == [SNAPSHOT]
    return pd.read_parquet(out), result


def test_batch_scores_equal_online_scores_for_the_same_rows(
    settings: Settings, model: ClvModel, features: pd.DataFrame, tmp_path: Path
) -> None:
    batch, _ = _score_all(settings, model, features, tmp_path / "out" / "scores.parquet")
    ids = ["c0003", "c0100", "c0299", "c0150", "c0011"]
    app = create_app(
        settings,
        model_source=lambda: Loaded(model, "7", "champion", "run-7"),
        feature_source=lambda got: online_rows(features, got),
        reference_source=lambda run_id: features,
    )
    with TestClient(app) as client:
        online = client.post("/score", json={"customer_ids": ids}).json()["scores"]
    by_id = batch.set_index("customer_id")
    for row in online:
        b = by_id.loc[row["customer_id"]]
        for col in ("clv", "clv_p10", "clv_p90", "churn_probability"):
            assert row[col] == float(b[col]), col  # exact: one code path
        assert row["segment"] == b["segment"]
        assert row["cold_start"] == bool(b["cold_start"])


def test_score_all_writes_scores_and_at_risk(
    settings: Settings, model: ClvModel, features: pd.DataFrame, tmp_path: Path
) -> None:
    out = tmp_path / "scores.parquet"
    scores, result = _score_all(settings, model, features, out)
    assert list(scores.columns) == [
        "customer_id",
        "clv",
        "clv_p10",
        "clv_p90",
        "churn_probability",
        "segment",
        "cold_start",
        "model_version",
        "alias",
        "as_of",
    ]
    assert len(scores) == len(features) == result.rows
    assert set(scores["model_version"]) == {"7"}
    assert (pd.to_datetime(scores["as_of"], utc=True) == SNAPSHOT).all()
    at_risk = pd.read_csv(tmp_path / "at_risk.csv", dtype={"customer_id": str})
    expected = scores[scores["segment"] == HIGH_VALUE_AT_RISK]
    assert len(at_risk) == len(expected) == result.at_risk > 0
    assert set(at_risk["segment"]) == {HIGH_VALUE_AT_RISK}
    assert at_risk["clv"].is_monotonic_decreasing
    assert sum(result.segments.values()) == len(scores)


def test_score_all_on_an_empty_snapshot_is_a_data_error(
    settings: Settings, model: ClvModel, features: pd.DataFrame, tmp_path: Path
) -> None:
    with pytest.raises(DataError, match="no customers known before 2024-06-01"):
        score_all(
            settings,
            as_of=SNAPSHOT,
            out=tmp_path / "s.parquet",
            model_source=lambda: Loaded(model, "7", "champion", "run-7"),
            reference_source=lambda run_id: features,
            snapshot_source=lambda when: features.iloc[:0],
        )


def test_latest_snapshot_reads_the_feature_table(settings: Settings) -> None:
    with pytest.raises(NotReadyError, match="clv features build"):
        latest_snapshot(settings)
    settings.features_dir.mkdir(parents=True)
    pd.DataFrame(
        {
            "customer_id": ["a", "a", "b"],
            "event_timestamp": pd.to_datetime(
                ["2024-04-01", "2024-05-01", "2024-03-01"], utc=True
            ).as_unit("us"),
        }
    ).to_parquet(settings.features_dir / "customer_features.parquet")
    assert latest_snapshot(settings) == pd.Timestamp("2024-05-01", tz="UTC")


def test_parse_as_of() -> None:
    assert parse_as_of("2024-06-01") == pd.Timestamp("2024-06-01", tz="UTC")
    assert parse_as_of("2024-06-01T02:00+02:00") == pd.Timestamp("2024-06-01", tz="UTC")
    with pytest.raises(DataError, match="YYYY-MM-DD"):
        parse_as_of("yesterday-ish")


def test_cli_score_without_all_says_how() -> None:
    app = typer.Typer()
    app.command("score")(score)
    app.command("other")(score)  # two commands keep `score` a subcommand
    result = CliRunner().invoke(app, ["score"])
    assert isinstance(result.exception, ClvError)
    assert "pass --all" in str(result.exception)


def test_score_all_leaves_out_and_counts_customers_with_non_finite_features(
    settings: Settings, model: ClvModel, features: pd.DataFrame, tmp_path: Path
) -> None:
    """XGBoost's inplace predict scores +inf as an extreme value without a word (issue 15)."""
    corrupt = features.copy()
    corrupt.loc[[3, 8], "monetary_value"] = np.inf
    corrupt.loc[5, "avg_basket"] = 1e39  # finite in float64, inf in the model's float32
    said: list[str] = []

    def run(frame: pd.DataFrame, out: Path) -> BatchResult:
        return score_all(
            settings,
            as_of=SNAPSHOT,
            out=out,
            model_source=lambda: Loaded(model, "7", "champion", "run-7"),
            reference_source=lambda run_id: features,
            snapshot_source=lambda when: frame,
            warn=said.append,
        )

    result = run(corrupt, tmp_path / "bad" / "scores.parquet")
    assert (result.rows, result.excluded) == (len(features) - 3, 3)
    assert result.non_finite == {"monetary_value": 2, "avg_basket": 1}
    assert said == [
        f"warning: 3 of {len(features)} customers not scored, non-finite features (inf or -inf): "
        "monetary_value 2, avg_basket 1"
    ]
    scored = set(pd.read_parquet(result.path)["customer_id"])
    assert scored == set(features["customer_id"]) - {"c0003", "c0005", "c0008"}
    at_risk = pd.read_csv(result.at_risk_path, dtype={"customer_id": str})
    assert not {"c0003", "c0005", "c0008"} & set(at_risk["customer_id"])

    clean = run(features, tmp_path / "good" / "scores.parquet")
    assert (clean.rows, clean.excluded, clean.non_finite) == (len(features), 0, {})
    assert clean.warning is None and len(said) == 1
    with pytest.raises(DataError, match="every one has a non-finite feature"):
        run(features.assign(T=-np.inf), tmp_path / "none" / "scores.parquet")
