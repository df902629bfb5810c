"""Optuna's private storage calls, used only on the Optuna versions they were verified against.

After the tuning workers have exited, a trial still RUNNING will never finish: the parent marks
it FAIL. On a verified Optuna this writes the state through `study._storage` with the trial's
`_trial_id` (no sampler callback runs, as when a worker's heartbeat lapses); on any other
version it calls the public `Study.tell(number, state=FAIL)`, which stores the same state
(tests/unit/training/test_optuna_private.py).
"""

from __future__ import annotations

import optuna

from clv.core.dependencies import dependency_version, unverified

VERIFIED = ("5.0.0",)
"""Optuna versions whose private storage calls were checked against `Study.tell`."""


def installed_version() -> str | None:
    """The installed Optuna's version, None when unknown."""
    return dependency_version("optuna")


def private_available() -> bool:
    """True when Optuna's private storage calls may be used (a fallback is logged once)."""
    return (
        unverified("optuna", installed_version(), VERIFIED, public="Study.tell", logger=__name__)
        is None
    )


def fail_running(
    study: optuna.Study, trial: optuna.trial.FrozenTrial
) -> optuna.trial.FrozenTrial | None:
    """Mark a RUNNING trial FAIL; the trial as stored then, or None when it finished meanwhile."""
    fail = optuna.trial.TrialState.FAIL
    if private_available():
        storage = study._storage
        try:
            changed = storage.set_trial_state_values(trial._trial_id, state=fail)
        except optuna.exceptions.UpdateFinishedTrialError:
            return None
        return storage.get_trial(trial._trial_id) if changed else None
    try:
        return study.tell(trial.number, state=fail, skip_if_finished=False)
    except (ValueError, RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
        return None
