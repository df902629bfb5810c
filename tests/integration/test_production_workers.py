"""`clv train --workers N`: several processes tune one Optuna study on PostgreSQL, each trial a
nested MLflow run of the one parent run; a worker killed mid-study does not stop training."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from clv_cli import clv_json as _clv

pytestmark = [pytest.mark.integration]


def _world(workspace: Path, *, db: Callable[[str], str]) -> dict[str, str]:
    """A small featured workspace whose MLflow and Optuna live on PostgreSQL."""
    uris = {"mlflow": db("mlflow"), "optuna": db("optuna")}
    (workspace / "clv.yaml").write_text(
        f"mlflow:\n  tracking_uri: {uris['mlflow']}\ntuning:\n  storage: {uris['optuna']}\n"
    )
    _clv(workspace, "data", "generate", "--customers", "600", "--months", "24", "--seed", "5")
    _clv(workspace, "data", "ingest", str(workspace / "data" / "raw"))
    _clv(workspace, "features", "apply")
    _clv(workspace, "features", "build")
    return uris


def _nested_runs(tracking_uri: str, run_id: str) -> list[object]:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    experiment = client.get_run(run_id).info.experiment_id
    return list(
        client.search_runs([experiment], f"tags.mlflow.parentRunId = '{run_id}'", max_results=100)
    )


def test_two_workers_share_one_study(tmp_path: Path, postgres_db: Callable[[str], str]) -> None:
    import mlflow
    import optuna

    uris = _world(tmp_path, db=postgres_db)
    trained = _clv(tmp_path, "train", "--workers", "2", "--trials", "6")

    (summary,) = optuna.get_all_study_summaries(storage=uris["optuna"])
    study = optuna.load_study(study_name=summary.study_name, storage=uris["optuna"])
    states = [t.state.name for t in study.trials]
    assert len(study.trials) == 6, states
    assert all(s in ("COMPLETE", "PRUNED") for s in states), states
    pids = {t.user_attrs.get("worker_pid") for t in study.trials}
    assert os.getpid() in pids  # the parent tunes too
    assert len(pids) >= 2 and None not in pids, pids

    runs = _nested_runs(uris["mlflow"], str(trained["run_id"]))
    names = sorted(r.info.run_name for r in runs)  # type: ignore[attr-defined]
    assert names == [f"trial-{i:03d}" for i in range(6)]
    client = mlflow.MlflowClient(tracking_uri=uris["mlflow"], registry_uri=uris["mlflow"])
    params = client.get_run(str(trained["run_id"])).data.params
    assert params["tuning.workers"] == "2"
    assert params["tuning.reproducible"].startswith("no:")
    assert params["tuning.worker_exit_codes"] == "0"
    version = client.get_model_version("clv", str(trained["version"]))
    assert version.run_id == trained["run_id"]


class _WorkerKiller(threading.Thread):
    """SIGKILLs the first worker process (not this one) seen running a trial of the study."""

    def __init__(self, storage_url: str) -> None:
        super().__init__(daemon=True)
        self.storage_url = storage_url
        self.killed: int | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        import optuna

        storage = optuna.storages.RDBStorage(self.storage_url)
        running = (optuna.trial.TrialState.RUNNING,)
        while not self.stop.is_set():
            for study in storage.get_all_studies():
                for trial in storage.get_all_trials(study._study_id, states=running):
                    pid = trial.user_attrs.get("worker_pid")
                    if isinstance(pid, int) and pid != os.getpid():
                        os.kill(pid, signal.SIGKILL)
                        self.killed = pid
                        return
            time.sleep(0.02)


def test_killed_worker_does_not_stop_the_study(
    tmp_path: Path, postgres_db: Callable[[str], str]
) -> None:
    import mlflow
    import optuna

    uris = _world(tmp_path, db=postgres_db)
    killer = _WorkerKiller(uris["optuna"])
    killer.start()
    try:
        trained = _clv(tmp_path, "train", "--workers", "2", "--trials", "6")
    finally:
        killer.stop.set()
        killer.join(timeout=5)
    assert killer.killed is not None, "no worker was seen running a trial"

    (summary,) = optuna.get_all_study_summaries(storage=uris["optuna"])
    study = optuna.load_study(study_name=summary.study_name, storage=uris["optuna"])
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    failed = [t for t in study.trials if t.state.name == "FAIL"]
    assert len(finished) == 6, [t.state.name for t in study.trials]
    assert [t.user_attrs.get("worker_pid") for t in failed] == [killer.killed]
    assert not [t for t in study.trials if t.state.name == "RUNNING"]

    client = mlflow.MlflowClient(tracking_uri=uris["mlflow"], registry_uri=uris["mlflow"])
    params = client.get_run(str(trained["run_id"])).data.params
    assert params["tuning.worker_exit_codes"] == str(-signal.SIGKILL)
    # Failed by the heartbeat (another process's next trial) or, if sooner, by the parent.
    assert int(params["tuning.orphaned_trials"]) <= 1
    runs = _nested_runs(uris["mlflow"], str(trained["run_id"]))
    states = sorted(r.data.tags["optuna.state"] for r in runs)  # type: ignore[attr-defined]
    assert states.count("FAIL") == 1 and len(states) == 7, states
    assert client.get_model_version("clv", str(trained["version"])).run_id == trained["run_id"]
