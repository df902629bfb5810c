"""`clv retrain`: the scheduled job that closes the loop from monitoring to a new canary.

Steps: monitor -> (RETRAIN, or --force) -> readiness (the check `clv train` runs:
clv.training.readiness_io.require_ready; it refuses an unready workspace before any work) -> build
features -> apply + materialize -> train a challenger -> verify it is fully logged -> mark it
challenger -> gates -> canary at `registry.canary_share`, or stop for a human when
`monitoring.retrain_approval` is "manual".

Safety:
- one run at a time: an exclusive non-blocking `flock` on `<ws>/.clv/retrain.lock`; a second
  run fails at once with a one-line message (exit code 4);
- a run record `<ws>/.clv/retrain/<UTC stamp>.json` is rewritten atomically after every step
  (steps, timings, outcome), so a killed run leaves a record saying where it stopped;
- only alias moves make a model live, and none happens before the new version is verified:
  registered and READY, its bundle artifact downloadable and loadable, and its evaluation
  tags written (training tags the version after registering it). A kill during training
  leaves at most an unaliased version.

Gates: training evaluates each version on its own test snapshot, the latest with a complete
label, so a challenger trained on newer data never shares the champion's. Training therefore
scores the champion's held-out bundle on the challenger's test rows (`eval.champion.*`,
clv.training.train.champion_tags) and the gates compare on those (`clv.registry.gates.
champion_on_candidate_rows`); the canary is then started through
`clv.registry.promotion.apply_moves`, which writes the history row with that gate result.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from clv.core.errors import ClvError
from clv.core.settings import Settings

if TYPE_CHECKING:
    from clv.registry.gates import GateResult

LOCK_FILE = "retrain.lock"
RECORD_DIR = "retrain"
LOCKED_EXIT = 4
GATES_EXIT = 1
Outcome = Literal[
    "running",
    "no_retrain",
    "canary_started",
    "awaiting_approval",
    "gates_failed",
    "failed",
]


class RetrainLockedError(ClvError):
    """Another `clv retrain` holds the lock."""


@dataclass
class RunRecord:
    """What the job did, step by step; rewritten after each step."""

    path: Path
    started_at: str
    forced: bool
    outcome: Outcome = "running"
    steps: list[dict[str, object]] = field(default_factory=list)
    result: dict[str, object] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "started_at": self.started_at,
            "forced": self.forced,
            "outcome": self.outcome,
            "steps": self.steps,
            "result": self.result,
            "pid": os.getpid(),
        }

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.as_dict(), indent=2, default=str) + "\n")
        tmp.replace(self.path)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[dict[str, object]]:
        """Time one step; its detail dict is filled by the caller; failures are recorded."""
        detail: dict[str, object] = {}
        entry: dict[str, object] = {"step": name, "status": "running", "detail": detail}
        self.steps.append(entry)
        self.save()
        started = time.perf_counter()
        try:
            yield detail
        except BaseException as exc:
            entry["status"] = "failed"
            entry["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            entry["seconds"] = round(time.perf_counter() - started, 2)
            self.outcome = "failed"
            self.save()
            raise
        entry["status"] = "done"
        entry["seconds"] = round(time.perf_counter() - started, 2)
        self.save()


@contextlib.contextmanager
def retrain_lock(settings: Settings) -> Iterator[Path]:
    """Hold `<ws>/.clv/retrain.lock` (flock, non-blocking) for the body; the OS frees it on
    exit, kill included."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    path = settings.state_dir / LOCK_FILE
    handle = path.open("a+")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise RetrainLockedError(
                f"another `clv retrain` is running ({holder}); lock {path}",
                exit_code=LOCKED_EXIT,
            ) from exc
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {datetime.now(UTC).isoformat(timespec='seconds')}")
        handle.flush()
        yield path
    finally:
        handle.close()


@dataclass(frozen=True)
class RetrainResult:
    outcome: Outcome
    record_path: Path
    verdict: str
    version: str | None = None
    message: str = ""
    gates: dict[str, object] | None = None

    @property
    def exit_code(self) -> int:
        return GATES_EXIT if self.outcome == "gates_failed" else 0


Progress = Callable[[str], None]


def run_retrain(
    settings: Settings,
    *,
    force: bool = False,
    n_trials: int | None = None,
    progress: Progress | None = None,
    skip_readiness: bool = False,
) -> RetrainResult:
    """The scheduled job (see the module docstring); raises RetrainLockedError when locked,
    ReadinessError when the data are below a readiness minimum (unless `skip_readiness`)."""
    say = progress or (lambda _m: None)
    with retrain_lock(settings):
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        record = RunRecord(
            path=settings.state_dir / RECORD_DIR / f"{stamp}.json",
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
            forced=force,
        )
        record.save()
        return _run(
            settings,
            record,
            force=force,
            n_trials=n_trials,
            say=say,
            skip_readiness=skip_readiness,
        )


def _run(
    settings: Settings,
    record: RunRecord,
    *,
    force: bool,
    n_trials: int | None,
    say: Progress,
    skip_readiness: bool,
) -> RetrainResult:
    from clv.monitoring.policy import Verdict
    from clv.monitoring.run import run_monitor

    say("monitor: judging the champion on the latest snapshot")
    with record.step("monitor") as d:
        monitored = run_monitor(settings)
        d.update(
            verdict=monitored.verdict.value,
            reasons=list(monitored.reasons[:3]),
            report=str(monitored.index_path),
            model_version=monitored.model_version,
        )
    verdict = monitored.verdict.value
    if monitored.verdict is not Verdict.RETRAIN and not force:
        return _finish(record, "no_retrain", verdict, message=f"{verdict}: no retraining needed")

    from clv.features import feast_io
    from clv.features.build import build_features
    from clv.registry.mlflow_io import live_champion
    from clv.training.readiness_io import require_ready
    from clv.training.train import run as train

    with record.step("readiness") as d:
        ready = require_ready(settings, skip=skip_readiness, progress=say)
        d.update(ready.summary() if ready is not None else {"status": "skipped"})
    say("features: rebuilding snapshots")
    with record.step("build_features") as d:
        built = build_features(settings)
        d.update(rows=built.rows, snapshots=len(built.snapshots))
    say("features: apply and materialize")
    with record.step("materialize") as d:
        feast_io.apply(settings)
        feast_io.materialize(settings)
    say("train: a challenger version")
    with record.step("train") as d:
        trained = train(settings, n_trials=n_trials, progress=say, champion=live_champion)
        version = str(trained.version)
        d.update(version=version, run_id=trained.run_id, metrics=trained.metrics.get("model"))
    with record.step("verify") as d:
        d.update(verify_logged(settings, version))
    with record.step("challenger") as d:
        from clv.registry.aliases import ensure_champion

        became = ensure_champion(settings, version)
        d.update(champion=became)
    if became:  # no champion existed: the first version is live, nothing to gate against
        return _finish(record, "canary_started", verdict, version, "first version is champion")

    say("gates: challenger vs champion on one test snapshot")
    with record.step("gates") as d:
        gates = gate_challenger(settings, version)
        d.update(gates.as_dict())
    if not gates.passed:
        return _finish(
            record,
            "gates_failed",
            verdict,
            version,
            f"version {version} stays challenger: {gates.summary()}",
            gates.as_dict(),
        )
    if settings.monitoring.retrain_approval == "manual":
        return _finish(
            record,
            "awaiting_approval",
            verdict,
            version,
            f"version {version} passed the gates and awaits approval: "
            f"`clv registry canary {version}`",
            gates.as_dict(),
        )
    say(f"canary: version {version} at {settings.registry.canary_share:.0%}")
    with record.step("canary") as d:
        moved = start_canary(settings, version, gates)
        d.update(moved)
    return _finish(
        record,
        "canary_started",
        verdict,
        version,
        f"canary -> version {version} ({settings.registry.canary_share:.0%} of customers)",
        gates.as_dict(),
    )


def _finish(
    record: RunRecord,
    outcome: Outcome,
    verdict: str,
    version: str | None = None,
    message: str = "",
    gates: dict[str, object] | None = None,
) -> RetrainResult:
    record.outcome = outcome
    record.result = {"verdict": verdict, "version": version, "message": message}
    record.save()
    return RetrainResult(outcome, record.path, verdict, version, message, gates)


REQUIRED_TAGS = ("eval.model.gini", "eval.churn.ece", "test_snapshot", "feature_names_hash")


def verify_logged(settings: Settings, version: str) -> dict[str, object]:
    """Raise unless `version` is READY, its bundle loads and its evaluation tags exist."""
    from clv.registry.mlflow_io import load_version, version_info

    info = version_info(settings, version)
    if info.status != "READY":
        raise ClvError(f"version {version} is {info.status}, not READY: no alias was moved")
    missing = [t for t in REQUIRED_TAGS if t not in info.version_tags]
    if missing:
        raise ClvError(f"version {version} lacks tags {missing}: no alias was moved")
    loaded = load_version(settings, version)
    return {
        "status": info.status,
        "bundle_features": len(loaded.model.feature_names),
        "test_snapshot": info.version_tags["test_snapshot"],
    }


# --------------------------------------------------------------------------- gates and canary


def gate_challenger(settings: Settings, version: str) -> GateResult:
    """Gate `version` against the champion evaluated on the challenger's test snapshot."""
    from clv.registry import mlflow_io
    from clv.registry.gates import VersionEvidence, evaluate_gates
    from clv.registry.promotion import served_contract, smoke_test

    held = mlflow_io.aliases(settings)
    champion = held.get(mlflow_io.CHAMPION)
    mine = mlflow_io.version_tags(settings, version)
    incumbent: VersionEvidence | None = None
    if champion is not None and champion != version:
        # Training scored this champion on the challenger's own test rows (eval.champion.*);
        # the gates compare on those (clv.registry.gates.champion_on_candidate_rows).
        incumbent = VersionEvidence(champion, mlflow_io.version_tags(settings, champion))
    result = evaluate_gates(
        VersionEvidence(version, mine),
        incumbent,
        settings=settings.registry,
        served=served_contract(settings),
        smoke=smoke_test(settings, version),
    )
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    tags = {**result.tags(), "gate.checked_at": stamp, "gate.by": "clv retrain"}
    mlflow_io.set_version_tags(settings, version, tags)
    return result


def start_canary(settings: Settings, version: str, gates: GateResult) -> dict[str, object]:
    """Point `canary` at `version` with the configured share, recording `gates` in the history.

    `clv.registry.promotion.start_canary` would re-run the gates on the stored tags, whose test
    snapshots differ (see the module docstring); `apply_moves` is its alias step with the
    same compare-and-set, lock and history row.
    """
    from clv.registry import mlflow_io
    from clv.registry.promotion import AliasMove, apply_moves

    held = mlflow_io.aliases(settings)
    share = settings.registry.canary_share
    rows = apply_moves(
        settings,
        [
            AliasMove(
                mlflow_io.CANARY,
                version,
                "canary",
                f"canary ({share:.0%} of customers) by clv retrain; {gates.summary()}",
            )
        ],
        expected={
            mlflow_io.CHAMPION: held.get(mlflow_io.CHAMPION),
            mlflow_io.CANARY: held.get(mlflow_io.CANARY),
        },
        actor="clv retrain",
        gates=gates,
        model_tags={
            mlflow_io.CANARY_SHARE_TAG: repr(float(share)),
            mlflow_io.CANARY_SHADOW_TAG: "false",
        },
    )
    return {"share": share, "history_rows": [r.as_dict() for r in rows]}
