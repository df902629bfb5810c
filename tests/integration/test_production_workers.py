"""`clv train --workers N`: several processes tune each Optuna study on PostgreSQL (one per
evaluated origin, one for the served recipe), each trial a nested MLflow run of the one parent
run; a worker killed mid-study does not stop training."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from clv_cli import clv_json as _clv

if TYPE_CHECKING:
    import optuna
    from mlflow.entities import Run

pytestmark = [pytest.mark.integration]


def _world(workspace: Path, *, db: Callable[[str], str]) -> dict[str, str]:
    """A small featured workspace whose MLflow and Optuna live on PostgreSQL; a 90-day horizon,
    which its 24 months of history support with an embargo."""
    uris = {"mlflow": db("mlflow"), "optuna": db("optuna")}
    (workspace / "clv.yaml").write_text(
        f"mlflow:\n  tracking_uri: {uris['mlflow']}\ntuning:\n  storage: {uris['optuna']}\n"
        "model:\n  horizon_days: 90\n"
        # the workers' tests read the test origin's and the served recipe's studies: a faster loop
        "evaluation:\n  backtest_origins: 0\n"
        # 460 repeat buyers, below readiness.min_repeat_buyers: these tests are about workers
        "readiness:\n  enforce: false\n"
    )
    _clv(workspace, "data", "generate", "--customers", "600", "--months", "24", "--seed", "5")
    _clv(workspace, "data", "ingest", str(workspace / "data" / "raw"))
    _clv(workspace, "features", "apply")
    _clv(workspace, "features", "build")
    return uris


def _nested_runs(tracking_uri: str, run_id: str) -> list[Run]:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    experiment = client.get_run(run_id).info.experiment_id
    return list(
        client.search_runs([experiment], f"tags.mlflow.parentRunId = '{run_id}'", max_results=500)
    )


def _studies(storage: str, params: dict[str, str]) -> list[optuna.Study]:
    """The run's studies: one per evaluated origin (`evaluation.origins`) and the served one."""
    import optuna

    summaries = optuna.get_all_study_summaries(storage=storage)
    assert len(summaries) == len(params["evaluation.origins"].split(",")) + 1 >= 2, summaries
    return [optuna.load_study(study_name=s.study_name, storage=storage) for s in summaries]


def test_two_workers_share_one_study(tmp_path: Path, postgres_db: Callable[[str], str]) -> None:
    import mlflow

    uris = _world(tmp_path, db=postgres_db)
    trained = _clv(tmp_path, "train", "--workers", "2", "--trials", "6")
    client = mlflow.MlflowClient(tracking_uri=uris["mlflow"], registry_uri=uris["mlflow"])
    params = client.get_run(str(trained["run_id"])).data.params

    studies = _studies(uris["optuna"], params)
    for study in studies:
        states = [t.state.name for t in study.trials]
        assert len(study.trials) == 6, (study.study_name, states)
        assert all(s in ("COMPLETE", "PRUNED") for s in states), (study.study_name, states)
        pids = {t.user_attrs.get("worker_pid") for t in study.trials}
        assert os.getpid() in pids  # the parent tunes too
        assert len(pids) >= 2 and None not in pids, (study.study_name, pids)

    runs = _nested_runs(uris["mlflow"], str(trained["run_id"]))
    names: dict[str, list[str]] = {}
    for r in runs:
        names.setdefault(r.data.tags["optuna.study"], []).append(r.info.run_name)
    assert {k: sorted(v) for k, v in names.items()} == {
        s.study_name: [f"trial-{i:03d}" for i in range(6)] for s in studies
    }
    assert params["tuning.workers"] == "2"
    assert params["tuning.reproducible"].startswith("no:")
    # One worker exit code per study, study after study (the served study last).
    assert params["tuning.worker_exit_codes"] == ",".join("0" for _ in studies)
    version = client.get_model_version("clv", str(trained["version"]))
    assert version.run_id == trained["run_id"]


class _WorkerKiller(threading.Thread):
    """SIGKILLs the first worker process (not this one) seen running a trial of a study whose
    name ends with `suffix`, and only while that trial is unfinished: the worker is frozen
    (SIGSTOP) and the trial read again, so a trial that finished between the two reads is
    left alone (the worker resumes, SIGCONT) rather than counted as killed."""

    def __init__(self, storage_url: str, *, suffix: str) -> None:
        super().__init__(daemon=True)
        self.storage_url = storage_url
        self.suffix = suffix
        self.killed: int | None = None
        self.study: str | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        import optuna

        storage = optuna.storages.RDBStorage(self.storage_url)
        running = (optuna.trial.TrialState.RUNNING,)
        while not self.stop.is_set():
            for study in storage.get_all_studies():
                if not study.study_name.endswith(self.suffix):
                    continue
                for trial in storage.get_all_trials(study._study_id, states=running):
                    pid = trial.user_attrs.get("worker_pid")
                    if not isinstance(pid, int) or pid == os.getpid():
                        continue
                    try:
                        os.kill(pid, signal.SIGSTOP)
                    except ProcessLookupError:
                        continue
                    time.sleep(0.2)  # a commit already sent by the frozen worker lands first
                    if storage.get_trial(trial._trial_id).state in running:
                        os.kill(pid, signal.SIGKILL)
                        self.killed, self.study = pid, study.study_name
                        return
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGCONT)
            time.sleep(0.02)


def test_killed_worker_does_not_stop_the_study(
    tmp_path: Path, postgres_db: Callable[[str], str]
) -> None:
    import mlflow

    from clv.core.settings import load_settings
    from clv.training.dataset import log_end

    uris = _world(tmp_path, db=postgres_db)
    # The served recipe's study (fitted at the end of the log): the one whose processes the
    # run's `tuning.*` parameters report.
    served = f"-origin-{log_end(load_settings(tmp_path)).date().isoformat()}"
    killer = _WorkerKiller(uris["optuna"], suffix=served)
    killer.start()
    try:
        trained = _clv(tmp_path, "train", "--workers", "2", "--trials", "6")
    finally:
        killer.stop.set()
        killer.join(timeout=5)
    assert killer.killed is not None, "no worker was seen running a trial of the served study"

    client = mlflow.MlflowClient(tracking_uri=uris["mlflow"], registry_uri=uris["mlflow"])
    params = client.get_run(str(trained["run_id"])).data.params
    studies = _studies(uris["optuna"], params)
    assert client.get_run(str(trained["run_id"])).data.tags["optuna.study"] == killer.study
    for study in studies:
        finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
        failed = [t for t in study.trials if t.state.name == "FAIL"]
        assert len(finished) == 6, (study.study_name, [t.state.name for t in study.trials])
        killed = [killer.killed] if study.study_name == killer.study else []
        assert [t.user_attrs.get("worker_pid") for t in failed] == killed, study.study_name
        assert not [t for t in study.trials if t.state.name == "RUNNING"]

    # One exit code per study, the served study (where the worker was killed) last.
    codes = params["tuning.worker_exit_codes"].split(",")
    assert codes == ["0"] * (len(studies) - 1) + [str(-signal.SIGKILL)], codes
    # Failed by the heartbeat (another process's next trial) or, if sooner, by the parent.
    assert int(params["tuning.orphaned_trials"]) <= 1
    runs = _nested_runs(uris["mlflow"], str(trained["run_id"]))
    states = sorted(r.data.tags["optuna.state"] for r in runs)
    assert states.count("FAIL") == 1 and len(states) == 6 * len(studies) + 1, states
    assert client.get_model_version("clv", str(trained["version"])).run_id == trained["run_id"]
