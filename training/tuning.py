"""Parallel tuning: N processes share one Optuna study in the configured storage.

`clv train --workers N` (`tuning.workers`): the parent has loaded and split the data once; it
spawns N - 1 worker processes (the "spawn" context, so that no MLflow or SQLAlchemy state
crosses a fork), hands each the tuning rows as arrays (XGBoost matrices are rebuilt in the
worker) and tunes in-process as the N-th. Every process runs `optuna.load_study(...)` trials
one at a time, each after claiming a ticket from a shared counter, so that exactly n_trials
are started while all processes live. A worker that dies leaves its running trial behind: the
storage's heartbeat fails it (a stale trial is failed by whichever process starts the next
trial), and when the workers have ended the parent fails any trial still RUNNING (no process
is left to finish it) and runs trials itself until the study has n_trials finished (complete
or pruned) ones. Each trial is a nested MLflow run of the parent run (`TrialLogger`).

SQLite is fine for a few local processes; PostgreSQL in production. With N > 1 the order in
which TPE sees finished trials depends on timing: the trial sequence is not reproducible.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from clv.core.services import uri_scheme

if TYPE_CHECKING:
    from multiprocessing.sharedctypes import Synchronized

    import optuna

    from clv.training.mlflow_io import TrialLogger
    from clv.training.objective import TuningArrays

HEARTBEAT_SECONDS = 5
"""A running trial's heartbeat interval in the study's storage."""
GRACE_SECONDS = 20
"""A running trial without a heartbeat for this long belongs to a dead process: failed."""
READY_TIMEOUT_SECONDS = 120.0
"""The parent waits this long at most for the workers to load before it starts tuning."""
FINISHED = ("COMPLETE", "PRUNED")


@dataclass(frozen=True)
class WorkerJob:
    """What a tuning worker needs (pickled to the spawned process)."""

    storage: str
    study_name: str
    arrays: TuningArrays
    n_trials: int
    nthread: int
    seed: int
    pruner: optuna.pruners.BasePruner
    logger: TrialLogger
    deadline: float | None = None
    """Wall-clock time (`time.time()`) after which no trial starts; None = no limit."""


@dataclass(frozen=True)
class ParallelOutcome:
    """What happened to the processes of a parallel study."""

    workers: int
    exit_codes: tuple[int | None, ...]
    """Exit codes of the spawned workers (negative: killed by that signal)."""
    orphaned: int
    """Trials left RUNNING by dead workers, failed by the parent."""
    taken_over: int
    """Trials the parent ran after the workers had ended, to reach n_trials finished."""


def rdb_storage(url: str, *, logger: TrialLogger | None = None) -> optuna.storages.RDBStorage:
    """The study's storage with a heartbeat (stale trials are failed and logged by `logger`);
    SQLite waits up to 60 s for a lock instead of 5 s, as several processes write to it."""
    import optuna

    engine_kwargs: dict[str, object] = {}
    if uri_scheme(url) == "sqlite":
        engine_kwargs["connect_args"] = {"timeout": 60}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=HEARTBEAT_SECONDS,
            grace_period=GRACE_SECONDS,
            heartbeat_stale_trial_callback=logger,
        )


def parallel_sampler(seed: int) -> optuna.samplers.BaseSampler:
    """TPE with the constant liar (running trials count as bad, so that concurrent processes
    do not all sample the same region); each process gets its own seed."""
    import optuna

    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


class PidObjective:
    """The objective, recording the process that runs each trial (user attr `worker_pid`)."""

    def __init__(self, objective: Callable[[optuna.Trial], float]) -> None:
        self.objective = objective

    def __call__(self, trial: optuna.Trial) -> float:
        trial.set_user_attr("worker_pid", os.getpid())
        return self.objective(trial)


def _claim(tickets: Synchronized[int], *, n_trials: int, deadline: float | None) -> bool:
    """Take one of the n_trials tickets; False when none is left or time is up."""
    if deadline is not None and time.time() >= deadline:
        return False
    with tickets.get_lock():
        if tickets.value >= n_trials:
            return False
        tickets.value += 1
        return True


def _worker(
    job: WorkerJob, index: int, tickets: Synchronized[int], ready: Synchronized[int]
) -> None:
    """A spawned worker's body: its own storage, study, matrices and MLflow client."""
    import optuna

    from clv.training.mlflow_io import quiet
    from clv.training.objective import ValueObjective

    quiet()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(
        study_name=job.study_name,
        storage=rdb_storage(job.storage, logger=job.logger),
        sampler=parallel_sampler(job.seed + index),
        pruner=job.pruner,
    )
    objective = PidObjective(
        ValueObjective(job.arrays.data(nthread=job.nthread), nthread=job.nthread, seed=job.seed)
    )
    with ready.get_lock():
        ready.value += 1
    while _claim(tickets, n_trials=job.n_trials, deadline=job.deadline):
        study.optimize(objective, n_trials=1, callbacks=[job.logger])


def finished_trials(study: optuna.Study) -> int:
    return sum(1 for t in study.get_trials(deepcopy=False) if t.state.name in FINISHED)


def optimize_parallel(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    job: WorkerJob,
    *,
    workers: int,
    progress: Callable[[str], None] | None = None,
) -> ParallelOutcome:
    """Tune `study` (created by the caller on `rdb_storage`, with `parallel_sampler`) in this
    process and `workers - 1` spawned ones until it has `job.n_trials` finished trials."""
    import optuna

    say = progress or (lambda _msg: None)
    ctx = multiprocessing.get_context("spawn")
    tickets = ctx.Value("i", 0)
    ready = ctx.Value("i", 0)
    procs = [
        ctx.Process(
            target=_worker,
            args=(job, index, tickets, ready),
            name=f"clv-tuning-{index}",
            daemon=True,
        )
        for index in range(1, workers)
    ]
    mine = PidObjective(objective)
    try:
        for proc in procs:
            proc.start()
        # Start together: on small data the parent would otherwise run every trial while the
        # workers are still importing XGBoost and building their matrices.
        waited = time.monotonic() + READY_TIMEOUT_SECONDS
        while ready.value < len(procs) and time.monotonic() < waited:
            if all(p.exitcode is not None for p in procs):
                break
            time.sleep(0.05)
        while _claim(tickets, n_trials=job.n_trials, deadline=job.deadline):
            study.optimize(mine, n_trials=1, callbacks=[job.logger])
        for proc in procs:
            proc.join()
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()
    exit_codes = tuple(p.exitcode for p in procs)
    for proc, code in zip(procs, exit_codes, strict=True):
        if code != 0:
            say(f"tuning: worker {proc.name} (pid {proc.pid}) exited with code {code}")

    # No worker is left: a trial still RUNNING will never finish.
    from clv.training.optuna_private import fail_running

    orphaned = 0
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        failed = fail_running(study, trial)
        if failed is not None:
            orphaned += 1
            job.logger(study, failed)
    missing = job.n_trials - finished_trials(study)
    taken_over = 0
    if missing > 0:
        say(f"tuning: {missing} trial(s) missing after the workers ended; the parent runs them")
    while missing > 0 and (job.deadline is None or time.time() < job.deadline):
        study.optimize(mine, n_trials=1, callbacks=[job.logger])
        taken_over += 1
        missing = job.n_trials - finished_trials(study)
    return ParallelOutcome(
        workers=workers, exit_codes=exit_codes, orphaned=orphaned, taken_over=taken_over
    )
