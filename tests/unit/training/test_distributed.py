"""Training sets over the memory budget: bucketed parts on disk, xgboost.dask final fits."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from clv_cli import clv_json

from clv.core import compute
from clv.core.errors import ConfigError
from clv.core.processes import free_port
from clv.core.settings import Settings, load_settings
from clv.features import feast_io
from clv.model.bundle import ClvModel
from clv.training import distributed
from clv.training.card import card_for
from clv.training.card import encoder as _encoder
from clv.training.churn import churn_params
from clv.training.dataset import load_training_data
from clv.training.labels import KEYS
from clv.training.objective import ValueParams
from clv.training.offsets import fit_offsets
from clv.training.refit import BaselineOffset, InMemoryRefit, refit_jobs
from clv.training.train import run

pytestmark = pytest.mark.slow
WORKER_MB = "1024"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated world with features built and the Feast declarations applied."""
    ws = tmp_path_factory.mktemp("dask-world")
    clv_json(ws, "data", "generate", "--customers", "600", "--months", "24", "--seed", "5")
    clv_json(ws, "data", "ingest", str(ws / "data" / "raw"))
    clv_json(ws, "features", "build")
    clv_json(ws, "features", "apply")
    return ws


def _settings(ws: Path, budget_mb: int, **extra: str) -> Settings:
    env = {
        "CLV_COMPUTE__MEMORY_BUDGET_MB": str(budget_mb),
        "CLV_COMPUTE__DASK_WORKER_MEMORY_MB": WORKER_MB,
        **extra,
    }
    return load_settings(ws, environ=env)


@pytest.fixture(scope="module")
def client(world: Path) -> Iterator[object]:
    with compute.dask_client(_settings(world, 4096)) as c:
        yield c


def test_scale_goes_to_buckets_only_over_the_budget(world: Path) -> None:
    roomy = distributed.plan_scale(_settings(world, 4096))
    assert roomy.rows > 5_000
    assert 200 < roomy.row_bytes < 5_000
    assert roomy.in_process and roomy.buckets == 1
    budget_mb = max(1, roomy.estimate_bytes // 2**20 // 3)
    tight = distributed.plan_scale(_settings(world, budget_mb))
    assert not tight.in_process
    assert tight.estimate_bytes == roomy.estimate_bytes
    expected = -(-tight.estimate_bytes // (budget_mb * 2**20))
    assert tight.buckets == expected >= 3
    assert tight.estimate_bytes / tight.buckets <= budget_mb * 2**20


def test_parts_together_are_the_in_process_training_set(world: Path, tmp_path: Path) -> None:
    settings = _settings(world, 4096)
    whole = load_training_data(settings, source=feast_io).frame
    parts = distributed.write_parts(
        settings, source=feast_io, buckets=3, directory=tmp_path / "parts"
    )
    frames = [pd.read_parquet(p) for p in parts.paths]
    assert len(frames) == 3 and parts.rows == len(whole)
    customers = [set(f["customer_id"]) for f in frames]
    assert not customers[0] & customers[1] and not customers[1] & customers[2]
    assert all(len(c) > 100 for c in customers)  # a hash spreads 600 customers about evenly

    def ordered(frame: pd.DataFrame) -> pd.DataFrame:
        out = frame.sort_values(list(KEYS)).reset_index(drop=True)
        out["event_timestamp"] = pd.to_datetime(out["event_timestamp"], utc=True)
        return out[sorted(out.columns)]

    pd.testing.assert_frame_equal(
        ordered(pd.concat(frames, ignore_index=True)), ordered(whole), check_dtype=False
    )


def test_dask_refit_fits_the_same_jobs_as_in_process(world: Path, client: object) -> None:
    settings = _settings(world, 4096)
    data = load_training_data(settings, source=feast_io)
    offsets = fit_offsets(data, margin_rate=0.3, seed=1)
    assert offsets is not None
    offset = BaselineOffset(offsets, horizon_days=365, annual_discount_rate=0.1)
    encoder = _encoder(card_for(settings, data, data.frame))
    value = ValueParams(max_depth=4, learning_rate=0.1, num_boost_round=40)
    jobs = refit_jobs(
        value=(value.booster_params(nthread=1, seed=1, offset=True), 40),
        purchase=None,
        quantiles={},
        churn=(churn_params(nthread=1, seed=1), 60),
        offset=True,
    )
    local = InMemoryRefit(data.frame).fit(jobs, encoder=encoder, offset=offset)
    with tempfile.TemporaryDirectory() as tmp:
        parts = distributed.write_parts(settings, source=feast_io, buckets=4, directory=Path(tmp))
        remote = distributed.DaskRefit(client, parts).fit(  # type: ignore[arg-type]
            jobs, encoder=encoder, offset=offset
        )
    report = remote.report
    assert report["refit.backend"] == "dask" and report["dask.workers"] == 2
    assert report["refit.rows"] == len(data.frame) and report["dask.parts"] == 4
    assert 0 < float(report["dask.worker_peak_rss_mb"]) < float(WORKER_MB)
    assert remote.boosters["value"].num_boosted_rounds() == 40
    assert remote.boosters["churn"].num_boosted_rounds() == 60

    x = encoder.matrix(data.frame)
    labelled = data.frame["clv_label"].notna().to_numpy()
    margin = offset(data.frame)[labelled]
    y = np.clip(data.frame["clv_label"].to_numpy(dtype=float)[labelled], 0, None)

    def value_pred(booster: object) -> np.ndarray:
        model = ClvModel(encoder.card, value=booster)  # type: ignore[arg-type]
        return np.asarray(model.value.inplace_predict(x[labelled], base_margin=margin))

    mine, theirs = value_pred(local.boosters["value"]), value_pred(remote.boosters["value"])
    assert np.corrcoef(mine, theirs)[0, 1] > 0.97
    rmse = [float(np.sqrt(np.mean((p - y) ** 2))) for p in (mine, theirs)]
    assert abs(rmse[1] - rmse[0]) / rmse[0] < 0.05, rmse
    churn_local = local.boosters["churn"].inplace_predict(x)
    churn_dask = remote.boosters["churn"].inplace_predict(x)
    assert np.corrcoef(churn_local, churn_dask)[0, 1] > 0.97


def test_run_over_budget_registers_a_model_fitted_on_dask(world: Path) -> None:
    import shutil

    ws = world.parent / "dask-run"
    shutil.copytree(world, ws)
    scale = distributed.plan_scale(_settings(ws, 4096))
    budget_mb = max(1, scale.estimate_bytes // 2**20 // 2)
    settings = _settings(ws, budget_mb, CLV_TUNING__N_TRIALS="2")
    result = run(settings, source=feast_io)

    mlflow.set_tracking_uri(settings.tracking_uri)
    params = mlflow.get_run(result.run_id).data.params
    assert params["refit.backend"] == "dask"
    buckets = distributed.plan_scale(settings).buckets
    assert int(params["dask.parts"]) == buckets >= 2
    # The final fits saw every labelled row; tuning and evaluation one bucket of customers.
    every = load_training_data(settings, source=feast_io).frame
    assert int(params["refit.rows"]) == len(every)
    at_test = int((every["event_timestamp"] == result.evaluation.origin).sum())
    assert 0 < len(result.evaluation.rows) < 1.6 * at_test / buckets
    assert not any((settings.state_dir / "training-sets").iterdir())  # parts removed
    from clv.registry.mlflow_io import load_version

    model = load_version(settings, result.version).model
    features = pd.read_parquet(settings.features_dir / "customer_features.parquet")
    latest = features.loc[features["event_timestamp"] == features["event_timestamp"].max()]
    pred = model.predict(latest)
    assert len(pred) == len(latest) and np.isfinite(pred["clv"]).all()
    assert (pred["clv_p10"] <= pred["clv_p90"]).all()


def test_a_configured_scheduler_runs_the_final_fits(world: Path, dask_scheduler: str) -> None:
    import shutil

    ws = world.parent / "dask-scheduler-run"
    shutil.copytree(world, ws)
    budget_mb = max(1, distributed.plan_scale(_settings(ws, 4096)).estimate_bytes // 2**20 // 2)
    settings = _settings(
        ws, budget_mb, CLV_TUNING__N_TRIALS="1", CLV_COMPUTE__DASK_SCHEDULER=dask_scheduler
    )
    result = run(settings, source=feast_io)
    mlflow.set_tracking_uri(settings.tracking_uri)
    params = mlflow.get_run(result.run_id).data.params
    assert params["refit.backend"] == "dask"
    assert params["dask.workers"] == "1"  # the external worker, not a local cluster of 2
    assert float(params["dask.worker_memory_limit_mb"]) == 1024.0


def test_unreachable_scheduler_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(compute, "SCHEDULER_TIMEOUT", "2s")
    port = free_port()  # nothing listens there
    settings = load_settings(
        tmp_path, environ={"CLV_COMPUTE__DASK_SCHEDULER": f"tcp://127.0.0.1:{port}"}
    )
    with (
        pytest.raises(ConfigError, match=f"Dask scheduler at tcp://127.0.0.1:{port}"),
        compute.dask_client(settings),
    ):
        pass


def test_a_worker_limit_too_small_to_start_is_a_config_error(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, environ={"CLV_COMPUTE__MEMORY_BUDGET_MB": "40"})
    with pytest.raises(ConfigError, match="at least 512 MiB"), compute.dask_client(settings):
        pass


def test_peak_memory_is_the_process_own_not_its_parents() -> None:
    import subprocess
    import sys

    ballast = np.ones(50_000_000)  # 400 MB held by this (parent) process while the child runs
    code = "from clv.core.compute import peak_rss_mib; print(peak_rss_mib())"
    child = float(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
    )
    assert ballast.sum() == 50_000_000
    assert compute.peak_rss_mib() > 400
    assert 10 < child < 350  # the child imports pandas and pyarrow, far less than the ballast
