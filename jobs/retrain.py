"""`clv retrain`: the scheduled job that closes the loop from monitoring to a new canary.

Steps: monitor -> (RETRAIN, or --force; never on DATA_QUALITY) -> readiness (the check `clv
train` runs: clv.training.readiness_io.require_ready; it refuses an unready workspace before any
work) -> build features -> apply + materialize -> train a challenger -> verify it is fully
logged -> mark it challenger -> gates -> canary at `registry.canary_share`, or stop for a human when
`monitoring.retrain_approval` is "manual".

Safety (`clv.jobs.run_record`): one run at a time (a lock; a second run exits with code 4), and
a run record rewritten after every step. Only alias moves make a model live, and none happens
before the new version is verified: registered and READY, its bundle artifact downloadable and
loadable, and its evaluation tags written (training tags the version after registering it). A
kill during training leaves at most an unaliased version.

Gates: training evaluates each version on its own test snapshot, the latest with a complete
label, so a challenger trained on newer data never shares the champion's. Training therefore
scores the champion's held-out bundle on the challenger's test rows (`eval.champion.*`,
clv.training.champion.champion_tags) and the gates compare on those (`clv.registry.gates.
champion_on_candidate_rows`). The job runs the registry's gate check
(`clv.registry.evidence.check_gates`, signed `gate.by`) and, when it passes, its canary move
(`clv.registry.promotion.move_canary`, the history row carrying that gate result); a failed
check leaves the version challenger without a `rejected` row, for a human to look at.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from pathlib import Path

from clv.core.errors import ClvError
from clv.core.settings import Settings
from clv.core.tags import (
    CHURN_ECE,
    FEATURE_NAMES_HASH,
    MODEL_GINI,
    STATUS_COMPLETE,
    STATUS_TAG,
    TEST_SNAPSHOT,
)
from clv.jobs.run_record import Outcome, RunRecord, abandon_stale, new_record, retrain_lock

GATES_EXIT = 1
DATA_QUALITY_EXIT = 5
"""The monitor found non-finite features: the job trains nothing, even with --force."""
ACTOR = "clv retrain"
"""Who the job's gate checks and alias moves are recorded as."""


@dataclass(frozen=True)
class RetrainResult:
    outcome: Outcome
    record_path: Path
    verdict: str
    _: KW_ONLY
    version: str | None = None
    message: str = ""
    gates: dict[str, object] | None = None

    @property
    def exit_code(self) -> int:
        return {"gates_failed": GATES_EXIT, "data_quality": DATA_QUALITY_EXIT}.get(self.outcome, 0)


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
    ReadinessError when the data are below a readiness minimum (unless `skip_readiness`).
    Whatever its outcome, it then redraws reports/dashboard.html (clv.decisions.dashboard)."""
    say = progress or (lambda _m: None)
    result = _run(settings, force=force, n_trials=n_trials, say=say, skip_readiness=skip_readiness)
    _redraw_dashboard(settings, say)
    return result


def _redraw_dashboard(settings: Settings, say: Progress) -> None:
    """The dashboard with this run's verdict and aliases; a page that cannot be drawn is said,
    never the job's failure (the page is a view of what the job did)."""
    from clv.decisions.dashboard import render_dashboard

    try:
        say(f"dashboard: {render_dashboard(settings)}")
    except (ClvError, OSError, ValueError) as exc:
        say(f"dashboard: not redrawn ({exc})")


def _run(
    settings: Settings, *, force: bool, n_trials: int | None, say: Progress, skip_readiness: bool
) -> RetrainResult:
    with retrain_lock(settings):
        for stale in abandon_stale(settings):
            say(f"retrain: {stale.name} was left running by a killed run: marked abandoned")
        record = new_record(settings, forced=force)
        verdict, retrain = _monitor(settings, record, say)
        if verdict == "DATA_QUALITY":  # a challenger trained on corrupt data is no fix
            return _finish(
                record,
                "data_quality",
                verdict,
                message="DATA_QUALITY: non-finite features (see the monitor report); fix the "
                "data and ingest again before retraining",
            )
        if not retrain and not force:
            return _finish(
                record, "no_retrain", verdict, message=f"{verdict}: no retraining needed"
            )
        _refresh_features(settings, record, say, skip_readiness=skip_readiness)
        version = _train_challenger(settings, record, say, n_trials=n_trials)
        if _first_champion(settings, record, version):
            return _finish(record, "canary_started", verdict, version, "first version is champion")
        return _gate_and_canary(settings, record, say, verdict=verdict, version=version)


def _monitor(settings: Settings, record: RunRecord, say: Progress) -> tuple[str, bool]:
    """The monitor's verdict on the champion, and whether it asks for a retrain."""
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
    return monitored.verdict.value, monitored.verdict is Verdict.RETRAIN


def _refresh_features(
    settings: Settings, record: RunRecord, say: Progress, *, skip_readiness: bool
) -> None:
    """Readiness, then the feature snapshots rebuilt, applied and materialized."""
    from clv.features import feast_io
    from clv.features.build import build_features
    from clv.training.readiness_io import require_ready

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


def _train_challenger(
    settings: Settings, record: RunRecord, say: Progress, *, n_trials: int | None
) -> str:
    """A new version, trained and verified fully logged; its number."""
    from clv.registry.mlflow_io import live_champion
    from clv.training.train import run as train

    say("train: a challenger version")
    with record.step("train") as d:
        trained = train(settings, n_trials=n_trials, progress=say, champion=live_champion)
        version = str(trained.version)
        d.update(version=version, run_id=trained.run_id, metrics=trained.metrics.get("model"))
    with record.step("verify") as d:
        d.update(verify_logged(settings, version))
    return version


def _first_champion(settings: Settings, record: RunRecord, version: str) -> bool:
    """Mark `version` challenger, or champion when none exists (nothing to gate against)."""
    from clv.registry.aliases import ensure_champion

    with record.step("challenger") as d:
        became = ensure_champion(settings, version)
        d.update(champion=became)
    return became


def _gate_and_canary(
    settings: Settings, record: RunRecord, say: Progress, *, verdict: str, version: str
) -> RetrainResult:
    """The registry's gate check; on a pass, the canary (or a stop for manual approval)."""
    from clv.registry.evidence import check_gates
    from clv.registry.promotion import move_canary

    say("gates: challenger vs champion on one test snapshot")
    with record.step("gates") as d:
        gates = check_gates(settings, version, by=ACTOR)
        d.update(gates.as_dict())
    if not gates.passed:
        message = f"version {version} stays challenger: {gates.summary()}"
        return _finish(record, "gates_failed", verdict, version, message, gates.as_dict())
    if settings.monitoring.retrain_approval == "manual":
        message = (
            f"version {version} passed the gates and awaits approval: "
            f"`clv registry canary {version}`"
        )
        return _finish(record, "awaiting_approval", verdict, version, message, gates.as_dict())
    share = settings.registry.canary_share
    say(f"canary: version {version} at {share:.0%}")
    with record.step("canary") as d:
        rows = move_canary(settings, version, gates, share=share, by=ACTOR)
        d.update(share=share, history_rows=[r.as_dict() for r in rows])
    message = f"canary -> version {version} ({share:.0%} of customers)"
    return _finish(record, "canary_started", verdict, version, message, gates.as_dict())


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
    return RetrainResult(
        outcome, record.path, verdict, version=version, message=message, gates=gates
    )


REQUIRED_TAGS = (MODEL_GINI, CHURN_ECE, TEST_SNAPSHOT, FEATURE_NAMES_HASH)


def verify_logged(settings: Settings, version: str) -> dict[str, object]:
    """Raise unless `version` is READY, its bundle loads and its evaluation tags exist."""
    from clv.registry.mlflow_io import load_version, version_info

    info = version_info(settings, version)
    if info.status != "READY":
        raise ClvError(f"version {version} is {info.status}, not READY: no alias was moved")
    missing = [t for t in REQUIRED_TAGS if t not in info.version_tags]
    if missing:
        raise ClvError(f"version {version} lacks tags {missing}: no alias was moved")
    if info.version_tags.get(STATUS_TAG) != STATUS_COMPLETE:
        raise ClvError(f"version {version}'s registration did not complete: no alias was moved")
    loaded = load_version(settings, version)
    return {
        "status": info.status,
        "bundle_features": len(loaded.model.feature_names),
        "test_snapshot": info.version_tags[TEST_SNAPSHOT],
    }
