"""The production profile: the same commands on PostgreSQL (MLflow, Optuna, Feast registry) and
Redis (online store), chosen by configuration alone."""

from __future__ import annotations

from pathlib import Path

import pytest
from clv_cli import clv_json as _clv

from clv.cli.main import main
from clv.core.processes import free_port

pytestmark = [pytest.mark.integration]


@pytest.mark.slow
def test_lifecycle_on_postgres_and_redis(
    tmp_path: Path, production_profile: dict[str, str]
) -> None:
    import mlflow
    import optuna
    import redis

    uris = production_profile
    with (tmp_path / "clv.yaml").open("a") as config:  # 24 months: enough for an embargo
        config.write("model:\n  horizon_days: 90\n")
        config.write("evaluation:\n  backtest_origins: 0\n")  # the services, not backtests
        # 382 repeat buyers, below readiness.min_repeat_buyers: this test is about the services
        config.write("readiness:\n  enforce: false\n")
    _clv(tmp_path, "data", "generate", "--customers", "500", "--months", "24", "--seed", "3")
    _clv(tmp_path, "data", "ingest", str(tmp_path / "data" / "raw"))
    _clv(tmp_path, "features", "apply")
    _clv(tmp_path, "features", "build")
    _clv(tmp_path, "features", "apply")
    _clv(tmp_path, "features", "materialize")
    trained = _clv(tmp_path, "train", "--trials", "2")

    # The state went to the services, not to workspace files.
    assert not (tmp_path / ".clv" / "mlflow.db").exists()
    assert not (tmp_path / ".clv" / "optuna.db").exists()
    assert not (tmp_path / ".clv" / "feast" / "online.db").exists()
    client = mlflow.MlflowClient(tracking_uri=uris["mlflow"], registry_uri=uris["mlflow"])
    version = client.get_model_version("clv", str(trained["version"]))
    assert version.run_id == trained["run_id"]
    assert client.get_model_version_by_alias("clv", "champion").version == version.version
    # One study per evaluated origin (test and backtests) and one for the served recipe.
    run = client.get_run(str(trained["run_id"]))
    origins = run.data.params["evaluation.origins"].split(",")
    studies = optuna.get_all_study_summaries(storage=uris["optuna"])
    assert len(studies) == len(origins) + 1 >= 2
    assert [s.n_trials for s in studies] == [2] * len(studies)
    assert run.data.tags["optuna.study"] in {s.study_name for s in studies}
    host, port = uris["redis"].rsplit(":", 1)
    assert redis.Redis(host=host, port=int(port)).dbsize() >= 400  # one hash per customer

    # Online reads come from Redis and equal the point-in-time offline features.
    online = _clv(tmp_path, "features", "get", "C000002")
    as_of = str(online["feature_timestamp"])[:10]
    offline = _clv(tmp_path, "features", "get", "C000002", "--as-of", as_of)
    assert online.pop("source") == "online"
    assert offline.pop("source") != "online"
    assert str(online.pop("feature_timestamp")) == str(offline["event_timestamp"])
    shared = sorted(set(online) & set(offline) - {"as_of", "event_timestamp"})
    assert len(shared) >= 40
    assert {k: online[k] for k in shared} == {k: offline[k] for k in shared}


def test_unreachable_postgres_at_train_start_is_one_line_without_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:

    port = free_port()  # a loopback port with nothing listening
    uri = f"postgresql+psycopg://clv:topsecret@127.0.0.1:{port}/mlflow"
    (tmp_path / "clv.yaml").write_text(f"mlflow:\n  tracking_uri: {uri}\n")
    code = main(["--workspace", str(tmp_path), "train"])
    err = capsys.readouterr().err
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: cannot reach the MLflow tracking database at ")
    assert f"clv:***@127.0.0.1:{port}/mlflow" in lines[0]
    assert "topsecret" not in err
