"""The training benchmarks: tuning with and without pruning and XGBoost threads (issue 4), 1
against 2 tuning workers, and training over the memory budget with Dask (issue 7, each run in
a fresh process: benchmarks.children.train)."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from benchmarks.case import WORK, Figures, workspace
from benchmarks.children import train
from clv.core.compute import peak_rss_mib
from clv.core.settings import Settings, load_settings

if TYPE_CHECKING:
    from clv.training.dataset import TrainingData


def labelled_world(settings: Settings, *, customers: int, months: int) -> TrainingData:
    """Generator -> ingest -> feature build -> labels, keeping the 12 latest labelled snapshots.

    Features are read from the build's Parquet (the same rows Feast would serve point in time),
    so the tuning benchmarks measure training, not the offline store.
    """
    import pandas as pd

    from clv.features.build import build_features
    from clv.inputs.generator import generate, write_raw
    from clv.inputs.ingest import ingest_all
    from clv.training.dataset import TrainingData, load_training_data

    generated = generate(customers=customers, months=months, seed=7, world="btyd")
    write_raw(generated, settings.raw_dir, fmt="parquet")
    ingest_all(settings, settings.raw_dir)
    built = build_features(settings)
    features = pd.read_parquet(built.path)
    features["customer_id"] = features["customer_id"].astype(str)
    names = [
        c
        for c in features.columns
        if c not in ("customer_id", "event_timestamp", "created_timestamp")
    ]
    categorical = [
        c for c in ("signup_cohort", "acquisition_channel", "country", "plan") if c in names
    ]

    class Source:
        def feature_names(self, settings: Settings) -> list[str]:
            return names

        def categorical_features(self, settings: Settings) -> list[str]:
            return categorical

        def historical_features(self, settings: Settings, entities: pd.DataFrame) -> pd.DataFrame:
            return entities.merge(features, on=["customer_id", "event_timestamp"], how="left")

    data = load_training_data(settings, source=Source())
    labelled = sorted(data.frame.loc[data.frame["clv_label"].notna(), "event_timestamp"].unique())
    frame = data.frame.loc[data.frame["event_timestamp"].isin(labelled[-12:])]
    return TrainingData(
        frame=frame.reset_index(drop=True),
        feature_names=data.feature_names,
        categorical=data.categorical,
        data_end=data.data_end,
    )


def _study_seconds(settings: Settings, study_name: str) -> float:
    """Wall time of an Optuna study: first trial start to last trial end (from its storage)."""
    import optuna

    trials = optuna.load_study(study_name=study_name, storage=settings.optuna_storage).trials
    starts = [t.datetime_start for t in trials if t.datetime_start is not None]
    ends = [t.datetime_complete for t in trials if t.datetime_complete is not None]
    return round((max(ends) - min(starts)).total_seconds(), 1)


def train_study(*, quick: bool) -> Figures:
    """Tuning on 100,000 customers x 12 labelled monthly snapshots (generator -> ingest ->
    feature build -> labels, the real pipeline; features read from the build's parquet).

    - 50 trials with the MedianPruner (training's default), then the same study size without
      pruning (NopPruner; fewer trials when that would run past ~10 minutes, extrapolated
      linearly and labelled so);
    - 1 vs 2 XGBoost threads on a short unpruned study.
    Tuning uses a seeded sample of customers (`tuning.sample_customers`, recorded in the run).
    No backtest origins (`evaluation.backtest_origins` 0), so that each run fits the recipe
    twice, at the test origin and at the end of the log; the figures are the served study's.
    """
    from optuna.pruners import NopPruner

    from clv.training.objective import default_pruner
    from clv.training.train import fit_and_log

    customers, months = (3_000, 24) if quick else (100_000, 24)
    trials, nop_trials, thread_trials = (6, 6, 3) if quick else (50, 10, 3)
    sample = 1_000 if quick else 20_000
    settings = workspace("train-study-quick" if quick else "train-study")
    t0 = time.perf_counter()
    data = labelled_world(settings, customers=customers, months=months)
    prepared = time.perf_counter() - t0

    def run(n: int, *, pruned: bool, nthread: int) -> dict[str, object]:
        s = load_settings(
            settings.workspace,
            environ={
                "CLV_TUNING__SAMPLE_CUSTOMERS": str(sample),
                "CLV_TUNING__NTHREAD": str(nthread),
                "CLV_EVALUATION__BACKTEST_ORIGINS": "0",
            },
        )
        started = time.perf_counter()
        result = fit_and_log(
            s,
            data,
            n_trials=n,
            pruner=default_pruner() if pruned else NopPruner(),
        )
        return {
            "trials": n,
            "study_seconds": _study_seconds(s, result.study_name),
            "fit_and_log_seconds": round(time.perf_counter() - started, 1),
            "trials_by_state": result.trials,
            "value_model": result.objective.kind if result.objective else "tweedie",
            "test_gini": round(result.model_metrics.gini, 4),
            "test_rmse": round(result.model_metrics.rmse, 2),
        }

    threads = {f"nthread_{k}": run(thread_trials, pruned=False, nthread=k) for k in (1, 2)}
    best_thread = min((1, 2), key=lambda k: float(threads[f"nthread_{k}"]["study_seconds"]))  # type: ignore[arg-type]
    pruned = run(trials, pruned=True, nthread=best_thread)
    unpruned = run(nop_trials, pruned=False, nthread=best_thread)
    per_trial = float(unpruned["study_seconds"]) / nop_trials  # type: ignore[arg-type]
    unpruned_at_size = per_trial * trials
    return {
        "customers": customers,
        "months": months,
        "snapshots": int(data.frame["event_timestamp"].nunique()),
        "rows": len(data.frame),
        "tuning_sample_customers": sample,
        "prepare_seconds": round(prepared, 1),
        "threads": threads,
        "nthread_chosen": best_thread,
        "median_pruner": pruned,
        "no_pruning": unpruned,
        "no_pruning_seconds_at_study_size": round(unpruned_at_size, 1),
        "no_pruning_extrapolated": nop_trials != trials,
        "pruning_speedup": round(unpruned_at_size / float(pruned["study_seconds"]), 2),  # type: ignore[arg-type]
        "peak_rss_mib": peak_rss_mib(),
    }


def tuning_workers(*, quick: bool) -> Figures:
    """`clv train --workers 2` against 1 on the same study: 20 unpruned trials on the tuning
    arrays of 20,000 customers x 12 labelled monthly snapshots (generator -> ingest -> feature
    build -> labels; features from the build's parquet), SQLite storage, 1 XGBoost thread.

    No backtest origins (`evaluation.backtest_origins` 0): each run tunes a study at the test
    origin and one at the end of the log; the figures are the latter's (the served study).
    Its tuning wall time runs from training's last "tuning:" progress line to the study's last
    trial end, so it includes spawning the worker and its data load; the study time is first
    trial start to last trial end; the summed trial seconds show how much work each study's
    sampled configurations were (TPE samples differ between the runs).
    """
    from datetime import datetime

    import optuna
    from optuna.pruners import NopPruner

    from clv.training.train import fit_and_log

    customers, months, trials = (3_000, 24, 6) if quick else (20_000, 24, 20)
    name = "tuning-workers-quick" if quick else "tuning-workers"
    workspace(name)
    settings = load_settings(WORK / name, environ={"CLV_EVALUATION__BACKTEST_ORIGINS": "0"})
    data = labelled_world(settings, customers=customers, months=months)
    # Create the MLflow and Optuna databases first, so that neither run pays for it.
    from clv.training import mlflow_io

    mlflow_io.ensure_experiment(settings, mlflow_io.connect(settings))
    optuna.delete_study(
        study_name=optuna.create_study(storage=settings.optuna_storage).study_name,
        storage=settings.optuna_storage,
    )
    load_before = round(os.getloadavg()[0], 2)

    def run(workers: int) -> dict[str, object]:
        starts: list[datetime] = []  # naive local times, as Optuna's trial times are

        def progress(msg: str) -> None:
            if msg.startswith("tuning: ") and " trial(s) of the " in msg:
                starts.append(datetime.now())

        result = fit_and_log(
            settings,
            data,
            n_trials=trials,
            workers=workers,
            pruner=NopPruner(),
            progress=progress,
        )
        study = optuna.load_study(study_name=result.study_name, storage=settings.optuna_storage)
        done = [t.duration for t in study.trials if t.duration is not None]
        ended = max(t.datetime_complete for t in study.trials if t.datetime_complete is not None)
        return {
            "tuning_wall_seconds": round((ended - starts[-1]).total_seconds(), 1),
            "study_seconds": _study_seconds(settings, result.study_name),
            "sum_trial_seconds": round(sum(d.total_seconds() for d in done), 1),
            "trials_by_state": result.trials,
            "processes": len({t.user_attrs.get("worker_pid", 0) for t in study.trials}),
            "rows": len(data.frame),
        }

    one = run(1)
    two = run(2)
    w1, w2 = float(one["tuning_wall_seconds"]), float(two["tuning_wall_seconds"])  # type: ignore[arg-type]
    s1, s2 = float(one["sum_trial_seconds"]), float(two["sum_trial_seconds"])  # type: ignore[arg-type]
    return {
        "customers": customers,
        "months": months,
        "snapshots": 12,
        "trials": trials,
        "storage": "sqlite",
        "workers_1": one,
        "workers_2": two,
        "speedup_wall": round(w1 / w2, 2),
        "speedup_per_unit_work": round((s2 / w2) / (s1 / w1), 2),
        "cpus": os.cpu_count(),
        "load_average_1m_before": load_before,
        "load_average_1m_after": round(os.getloadavg()[0], 2),
    }


def train_dask(*, quick: bool) -> Figures:
    """`clv train` on a world whose in-process estimate is several times the memory budget.

    The same generated world (generator -> ingest -> feature build -> Feast apply) is trained
    twice, each in a fresh process with the same trials: with `compute.memory_budget_mb` =
    1024 (over budget: the training set is written in customer buckets, tuning and evaluation
    run on one bucket, the final boosters are fitted by `xgboost.dask` on a local cluster of 2
    workers limited to 1024 MiB each), and with a budget large enough for in-process training.
    Reported: wall time, the driver's peak RSS, each Dask worker's peak RSS (from the run's
    parameters) and the in-process run's peak RSS against the same budget.
    """
    from clv.features import feast_io
    from clv.features.build import build_features
    from clv.inputs.generator import generate, write_raw
    from clv.inputs.ingest import ingest_all

    customers, months, trials = (3_000, 24, 2) if quick else (40_000, 24, 5)
    budget = "64" if quick else "1024"
    settings = workspace("train-dask")
    t0 = time.perf_counter()
    data = generate(customers=customers, months=months, seed=7, world="btyd")
    write_raw(data, settings.raw_dir, fmt="parquet")
    ingest_all(settings, settings.raw_dir)
    built = build_features(settings)
    feast_io.apply(settings)
    prepared = time.perf_counter() - t0
    out: Figures = {
        "customers": customers,
        "months": months,
        "feature_rows": built.rows,
        "trials": trials,
        "memory_budget_mb": int(budget),
        "dask_workers": 2,
        "prepare_seconds": round(prepared, 1),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
    }
    runs = {
        name: train.in_child(settings.workspace, budget=memory, trials=trials)
        for name, memory in (("dask", budget), ("in_process", "65536"))
    }
    out.update(runs)
    out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    peaks = [float(v) for v in runs["dask"]["params"]["dask.worker_peaks_rss_mb"].split(",")]
    out["worker_peak_rss_mib"] = peaks
    out["workers_under_budget"] = all(p < int(budget) for p in peaks) if not quick else None
    return out
