"""The Feast adapter on a tiny workspace: declarations, point-in-time reads, online parity, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from clv.cli.features import app
from clv.core.errors import NotReadyError
from clv.core.settings import Settings, load_settings
from clv.core.store import write_table
from clv.features import feast_io
from clv.features.build import build_features

FEB = pd.Timestamp("2024-02-01", tz="UTC")
MAR = pd.Timestamp("2024-03-01", tz="UTC")


def _ts(values: list[str]) -> pd.Series:
    return pd.Series(pd.to_datetime(values, utc=True)).astype("datetime64[us, UTC]")


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    ws = tmp_path_factory.mktemp("ws")
    settings = load_settings(ws, environ={})
    write_table(
        settings,
        "transactions",
        pd.DataFrame(
            {
                "customer_id": ["a", "a", "b", "a"],
                "ts": _ts(["2024-01-05", "2024-01-20", "2024-01-10", "2024-02-10"]),
                "amount": [15.0, 30.0, 7.0, 20.0],
            }
        ),
    )
    write_table(
        settings,
        "customers",
        pd.DataFrame(
            {
                "customer_id": ["a", "b", "c"],
                "signup_ts": _ts(["2023-12-20", "2024-01-09", "2024-02-20"]),
                "acquisition_channel": ["ads", "seo", "ads"],
                "country": ["DE", "FR", "NL"],
                "plan": ["pro", "free", "free"],
            }
        ),
    )
    write_table(
        settings,
        "events",
        pd.DataFrame(
            {
                "customer_id": ["a", "b"],
                "ts": _ts(["2024-01-30", "2024-02-15"]),
                "event_type": ["login", "support_ticket"],
            }
        ),
    )
    build_features(settings)  # snapshots Feb 1 and Mar 1
    feast_io.apply(settings)
    feast_io.materialize(settings)
    yield settings


def test_store_state_lives_in_the_workspace(settings: Settings) -> None:
    feast_dir = settings.workspace / ".clv" / "feast"
    assert (feast_dir / "registry.db").exists() and (feast_dir / "online.db").exists()
    source = feast_io.feature_store(settings).get_data_source("customer_features")
    assert Path(source.path) == settings.features_dir / "customer_features.parquet"  # type: ignore[attr-defined]
    assert not (Path(feast_io.__file__).parent.parent / "feature_repo" / "data").exists()


def test_feature_service_names_and_categoricals(settings: Settings) -> None:
    names = feast_io.feature_names(settings)
    assert names[:5] == ["frequency", "recency", "T", "monetary_value", "first_purchase_value"]
    assert len(names) == len(set(names)) == 45  # rfm 5, windows 25, profile 5, behaviour 9, month 1
    assert feast_io.categorical_features(settings) == [
        "signup_cohort",
        "acquisition_channel",
        "country",
        "plan",
    ]


def test_build_columns_match_the_declared_schema(settings: Settings) -> None:
    schema = pq.read_schema(settings.features_dir / "customer_features.parquet")
    built = [n for n in schema.names if n not in ("customer_id", "created_timestamp")]
    assert built[0] == "event_timestamp"
    assert built[1:] == feast_io.feature_names(settings)
    strings = set(feast_io.categorical_features(settings))
    for name in built[1:]:
        kind = str(schema.field(name).type)
        assert (kind == "string") == (name in strings), name


def test_point_in_time_between_snapshots_gets_the_earlier_snapshot(settings: Settings) -> None:
    entities = pd.DataFrame(
        {
            "customer_id": ["a", "a", "c", "c", "zz"],
            "event_timestamp": [
                pd.Timestamp("2024-02-20", tz="UTC"),  # between Feb 1 and Mar 1
                pd.Timestamp("2024-01-15", tz="UTC"),  # before any snapshot
                pd.Timestamp("2024-02-25", tz="UTC"),  # c known only from Mar 1
                pd.Timestamp("2024-03-02", tz="UTC"),
                pd.Timestamp("2024-03-02", tz="UTC"),  # unknown customer
            ],
        }
    )
    out = feast_io.historical_features(settings, entities)
    assert len(out) == 5 and list(out["customer_id"]) == ["a", "a", "c", "c", "zz"]
    assert out.loc[0, "frequency"] == 1  # Feb 1 snapshot; Feb 10 order not yet counted
    assert out.loc[0, "T"] == 27.0
    assert out.loc[0, "plan"] == "pro"
    assert out["frequency"].isna().tolist() == [False, True, True, False, True]
    assert out.loc[3, "tenure_days"] == 10.0  # Feb 20 -> Mar 1


def test_entity_rows_sharing_key_and_timestamp_are_all_returned_in_order(
    settings: Settings,
) -> None:
    t = pd.Timestamp("2024-03-05", tz="UTC")
    entities = pd.DataFrame(
        {
            "customer_id": ["b", "a", "b", "a", "b"],
            "event_timestamp": [t, t, t, FEB, t],
            "label": [1, 2, 3, 4, 5],
        },
        index=[10, 11, 12, 13, 14],
    )
    out = feast_io.historical_features(settings, entities)
    assert list(out["label"]) == [1, 2, 3, 4, 5]
    assert list(out["customer_id"]) == ["b", "a", "b", "a", "b"]
    assert out["frequency"].tolist() == [0.0, 2.0, 0.0, 1.0, 0.0]
    assert str(out["event_timestamp"].dtype) == "datetime64[us, UTC]"


def test_online_equals_offline_at_the_latest_snapshot(settings: Settings) -> None:
    ids = ["a", "b", "c"]
    online = feast_io.online_features(settings, ids)
    offline = feast_io.historical_features(
        settings, pd.DataFrame({"customer_id": ids, "event_timestamp": [MAR] * 3})
    )
    names = feast_io.feature_names(settings)
    pd.testing.assert_frame_equal(
        online[["customer_id", *names]], offline[["customer_id", *names]], check_dtype=True
    )
    assert (online["feature_timestamp"] == MAR).all()
    assert online.loc[0, "frequency"] == 2  # the latest snapshot, not the first


def test_online_unknown_ids_get_nulls(settings: Settings) -> None:
    out = feast_io.online_features(settings, ["nobody", "a"])
    names = feast_io.feature_names(settings)
    assert out.loc[0, names].isna().all() and pd.isna(out.loc[0, "feature_timestamp"])
    assert out.loc[1, "plan"] == "pro"


def test_snapshot_entities_are_customers_known_before_as_of(settings: Settings) -> None:
    out = feast_io.snapshot_entities(settings, "2024-01-10")
    assert list(out["customer_id"]) == ["a", "b"]  # b signed up Jan 9
    assert (out["event_timestamp"] == pd.Timestamp("2024-01-10", tz="UTC")).all()
    assert list(feast_io.snapshot_entities(settings, "2024-01-09")["customer_id"]) == ["a"]


def test_reads_before_build_or_apply_say_what_to_run(tmp_path: Path) -> None:
    fresh = load_settings(tmp_path, environ={})
    with pytest.raises(NotReadyError, match="clv features build"):
        feast_io.materialize(fresh)
    with pytest.raises(NotReadyError, match="clv features apply"):
        feast_io.feature_names(fresh)


def test_cli_get_online_and_as_of(settings: Settings) -> None:
    runner = CliRunner()
    env = {"CLV_WORKSPACE": str(settings.workspace)}
    online = runner.invoke(app, ["get", "a", "--json"], env=env)
    assert online.exit_code == 0, online.output
    payload = json.loads(online.stdout)
    assert payload["frequency"] == 2 and payload["source"] == "online"
    past = runner.invoke(app, ["get", "a", "--as-of", "2024-02-15", "--json"], env=env)
    assert past.exit_code == 0, past.output
    assert json.loads(past.stdout)["frequency"] == 1
    human = runner.invoke(app, ["get", "b"], env=env)
    assert human.exit_code == 0 and "support_tickets_30d" in human.stdout


def test_historical_features_scales_with_row_order_kept(settings: Settings) -> None:
    rng = np.random.default_rng(0)
    n = 2_000
    entities = pd.DataFrame(
        {
            "customer_id": rng.choice(["a", "b", "c", "x"], size=n),
            "event_timestamp": pd.Timestamp("2024-01-01", tz="UTC")
            + pd.to_timedelta(rng.integers(0, 90, size=n), unit="D"),
        }
    )
    out = feast_io.historical_features(settings, entities)
    assert len(out) == n
    assert (out["customer_id"].to_numpy() == entities["customer_id"].to_numpy()).all()
    first_snapshot = entities["customer_id"].map({"a": FEB, "b": FEB, "c": MAR})
    served = first_snapshot.notna() & (entities["event_timestamp"] >= first_snapshot)
    assert (out["frequency"].notna() == served).all()


def test_production_profile_is_only_configuration(tmp_path: Path) -> None:
    prod = load_settings(
        tmp_path,
        environ={
            "CLV_FEAST__ONLINE_STORE": "redis",
            "CLV_FEAST__REDIS_CONNECTION": "redis.internal:6379",
            "CLV_FEAST__REGISTRY": "postgresql+psycopg://feast@db/feast",
        },
    )
    # The mapping handed to RepoConfig is what the profile changes; redis-py's retries are
    # turned off unless the user chose a policy (a request fails fast with 503, not after ~14 s).
    assert feast_io._online_config(prod) == {
        "type": "redis",
        "connection_string": "redis.internal:6379,retry=null",
    }
    chosen = load_settings(
        tmp_path,
        environ={"CLV_FEAST__ONLINE_STORE": "redis", "CLV_FEAST__REDIS_CONNECTION": "h:1,retry=3"},
    )
    assert feast_io._online_config(chosen)["connection_string"] == "h:1,retry=3"
    assert feast_io._registry_config(prod) == {
        "registry_type": "sql",
        "path": "postgresql+psycopg://feast@db/feast",
        "cache_ttl_seconds": 60,
    }
    local = feast_io._repo_config(
        load_settings(tmp_path, environ={"CLV_FEAST__ONLINE_PATH": "state/online.db"})
    )
    assert local.offline_store.type == "duckdb"
    assert local.online_store.path == str(tmp_path.resolve() / "state" / "online.db")
    assert local.registry.path == str(tmp_path.resolve() / ".clv" / "feast" / "registry.db")
    assert local.repo_path == tmp_path.resolve() / ".clv"


def test_build_registers_missing_declarations_so_reads_work_without_apply(
    tmp_path: Path,
) -> None:
    fresh = load_settings(tmp_path, environ={})
    write_table(
        fresh,
        "transactions",
        pd.DataFrame({"customer_id": ["a"], "ts": _ts(["2024-01-05"]), "amount": [15.0]}),
    )
    runner = CliRunner()
    env = {"CLV_WORKSPACE": str(tmp_path)}
    first = runner.invoke(app, ["build", "--json"], env=env)
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["applied"] is True
    assert "frequency" in feast_io.feature_names(fresh)  # no `clv features apply` was run
    again = runner.invoke(app, ["build", "--json"], env=env)
    assert json.loads(again.stdout)["applied"] is False  # registered already: not re-applied


def test_feasts_own_cli_reads_the_workspace_through_the_generated_yaml(settings: Settings) -> None:
    folder = settings.workspace / ".clv" / "feast"
    doc = yaml.safe_load((folder / feast_io.FEATURE_STORE_YAML).read_text())
    assert doc["registry"]["path"] == str(folder / "registry.db")
    assert doc["online_store"]["path"] == str(folder / "online.db")
    feast = Path(sys.executable).with_name("feast")
    out = subprocess.run(
        [str(feast), "-c", str(folder), "feature-views", "list"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    listed = out.stdout.split()
    assert {"rfm", "customer_profile", "behaviour"} <= set(listed), out.stdout


def test_the_generated_yaml_holds_no_password(tmp_path: Path) -> None:
    prod = load_settings(
        tmp_path,
        environ={
            "CLV_FEAST__ONLINE_STORE": "redis",
            "CLV_FEAST__REDIS_CONNECTION": "redis.internal:6379,password=s3cret-redis",
            "CLV_FEAST__REGISTRY": "postgresql+psycopg://feast:s3cret-db@db/feast",
        },
    )
    text = feast_io.write_feature_store_yaml(prod).read_text()
    assert "s3cret" not in text
    doc = yaml.safe_load(text)
    assert doc["registry"]["path"] == "postgresql+psycopg://feast:${CLV_FEAST_PASSWORD}@db/feast"
    assert "password=${CLV_FEAST_PASSWORD}" in doc["online_store"]["connection_string"]
