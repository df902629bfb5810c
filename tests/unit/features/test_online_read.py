"""The direct SQLite online read returns exactly what Feast's online read returns."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pytest

from clv.core.settings import Settings, load_settings
from clv.core.store import write_table
from clv.features import feast_io
from clv.features.build import build_features
from clv.features.online_read import (
    FeastOnlineReader,
    OnlineBatch,
    RedisOnlineReader,
    SqliteOnlineReader,
    decode_value,
    online_frame,
    online_source,
    sqlite_layout,
)


def _ts(values: list[str]) -> pd.Series:
    return pd.Series(pd.to_datetime(values, utc=True)).astype("datetime64[us, UTC]")


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    settings = load_settings(tmp_path_factory.mktemp("ws"), environ={})
    write_table(
        settings,
        "transactions",
        pd.DataFrame(
            {
                "customer_id": ["a", "a", "b", "a", "d"],
                "ts": _ts(["2024-01-05", "2024-01-20", "2024-01-10", "2024-02-10", "2024-02-11"]),
                "amount": [15.0, 30.0, 7.0, 20.0, 99.5],
            }
        ),
    )
    write_table(
        settings,
        "customers",
        pd.DataFrame(
            {
                "customer_id": ["a", "b", "c", "d"],
                "signup_ts": _ts(["2023-12-20", "2024-01-09", "2024-02-20", "2024-02-01"]),
                "acquisition_channel": ["ads", "seo", "ads", "referral"],
                "country": ["DE", "FR", "NL", "DE"],
                "plan": ["pro", "free", "free", "pro"],
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
    build_features(settings)
    feast_io.apply(settings)
    feast_io.materialize(settings)
    yield settings


def test_direct_read_equals_feast_online_features(settings: Settings) -> None:
    ids = ["a", "nobody", "b", "c", "d", "a", "zz"]  # unknown ids and a repeat
    expected = feast_io.online_features(settings, ids)
    got = online_frame(settings, ids)
    pd.testing.assert_frame_equal(got, expected)
    assert got["feature_timestamp"].isna().tolist() == expected["feature_timestamp"].isna().tolist()
    assert expected["feature_timestamp"].notna().sum() >= 4  # the parity is not all-null


@pytest.mark.parametrize("ids", [["a"], ["b"], ["d"], ["nobody"], ["a", "a"]])
def test_one_customers_read_equals_feast_online_features(
    settings: Settings, ids: list[str]
) -> None:
    """One customer (a repeat included) is read in one statement over every view."""
    expected = feast_io.online_features(settings, ids)
    pd.testing.assert_frame_equal(online_frame(settings, ids), expected)


def test_sqlite_layout_names_feasts_tables_and_features(settings: Settings) -> None:
    layout = sqlite_layout(settings)
    assert {v.table for v in layout.views} == {
        "clv_rfm",
        "clv_spend_windows",
        "clv_customer_profile",
        "clv_behaviour",
        "clv_calendar",
    }
    assert list(layout.feature_names) == feast_io.feature_names(settings)
    assert layout.strings == frozenset(feast_io.categorical_features(settings))
    assert layout.join_key == "customer_id" and layout.key_version == 3


def test_feast_fallback_reader_gives_the_same_batch(settings: Settings) -> None:
    ids = ["b", "nobody", "a"]
    fast = SqliteOnlineReader(sqlite_layout(settings)).read(ids)
    slow = FeastOnlineReader(settings).read(ids)
    pd.testing.assert_frame_equal(fast.frame(), slow.frame())
    assert fast.timestamps[1] is None and fast.timestamps[0] is not None


def test_config_chooses_the_reader(settings: Settings) -> None:
    reader = online_source(settings)
    assert reader.ping() is None
    assert isinstance(reader.read(["a"]), OnlineBatch)
    redis = settings.model_copy(
        update={"feast": settings.feast.model_copy(update={"online_store": "redis"})}
    )
    chosen = online_source(redis)
    chosen._get()  # type: ignore[attr-defined]
    assert isinstance(chosen._reader, RedisOnlineReader)  # type: ignore[attr-defined]


def test_decode_value_reads_feasts_wire_forms() -> None:
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto

    assert decode_value(ValueProto(double_val=2.5).SerializeToString()) == 2.5
    assert decode_value(ValueProto(int64_val=7).SerializeToString()) == 7.0
    assert decode_value(ValueProto(string_val="ads").SerializeToString()) == "ads"
    assert decode_value(b"") is None
    assert decode_value(None) is None


def test_missing_store_is_reported_by_ping(tmp_path: object) -> None:
    from pathlib import Path

    from clv.features.online_read import OnlineLayout

    layout = OnlineLayout(
        path=str(Path(str(tmp_path)) / "none.db"),
        key_version=3,
        join_key="customer_id",
        views=(),
        feature_names=(),
        strings=frozenset(),
    )
    problem = SqliteOnlineReader(layout).ping()
    assert problem is not None and "does not exist" in problem
