"""Gather one monitoring run's inputs from the workspace: champion, features, transaction log.

Monitoring reads what the others write: the champion from the registry (its bundle, version
tags and run params), point-in-time features from Feast, labels from the transaction log
through `clv.training.labels.make_labels`, and the simple baselines of the matured value cohort
from its own features and the log before it (clv.monitoring.baselines). Nothing is written here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from clv.core.errors import DataError
from clv.core.settings import Settings
from clv.core.time import utc
from clv.features.snapshots import snapshot_times
from clv.inputs.identities import IdentityMap, read_identities
from clv.model.bundle import ClvModel
from clv.monitoring.backtest import (
    ChurnBacktest,
    Cohort,
    ValueBacktest,
    choose_cohort,
    churn_backtest,
    matured_snapshot,
    value_backtest,
)
from clv.monitoring.baselines import cohort_baselines
from clv.monitoring.drift import MonitorInputs, reference_window


def importance(model: ClvModel) -> dict[str, dict[str, float]]:
    """Per booster ("value", "churn"): XGBoost total gain per feature, as shares summing to 1."""
    out: dict[str, dict[str, float]] = {}
    boosters = {"value": model.value, "churn": model.churn}
    for name, booster in boosters.items():
        if booster is None:
            continue
        scores = booster.get_score(importance_type="total_gain")
        gain = {k: float(np.sum(v)) for k, v in scores.items()}
        total = sum(gain.values())
        if total > 0:
            out[name] = {k: v / total for k, v in gain.items()}
    return out


def scored(settings: Settings, model: ClvModel, when: pd.Timestamp) -> pd.DataFrame:
    """Every customer known before `when`: point-in-time features plus the model's predictions."""
    from clv.features.feast_io import historical_features, snapshot_entities

    features = historical_features(settings, snapshot_entities(settings, when))
    if features.empty:
        raise DataError(f"no customers known before {when.date()}; check --as-of")
    return pd.concat([features, model.predict(features)], axis=1)


def gather(settings: Settings, *, as_of: pd.Timestamp | None = None) -> MonitorInputs:
    """The judged champion, its reference and current windows, and the matured cohorts."""
    from clv.core.store import read_table
    from clv.core.time import utc_series
    from clv.registry.mlflow_io import load_alias, reference_frame, version_info

    loaded = load_alias(settings, alias="champion")
    model = loaded.model
    info = version_info(settings, loaded.version)
    snaps = snapshot_times(settings)
    when = as_of if as_of is not None else snaps[-1]
    current = scored(settings, model, when)
    notes: list[str] = []

    data_end = _timestamp(info.params.get("data_end"))
    window = settings.monitoring.reference_window
    reference: pd.DataFrame | None = None
    ref_label = ""
    if window == "training_end" and data_end is not None:
        ref_snap = max((s for s in snaps if s <= min(data_end, when)), default=None)
        if ref_snap is not None:
            reference = scored(settings, model, ref_snap)
            ref_label = (
                f"all {len(reference):,} customers at {ref_snap.date()}, the last snapshot of "
                f"the champion's training data (ends {data_end.date()}), rebuilt point-in-time"
            )
    if reference is None:
        logged = reference_frame(settings, loaded.run_id)
        reference = reference_window(logged, window="all" if window == "all" else "latest")
        ref_label = f"the champion's logged training reference sample ({len(reference):,} rows)"
        if window == "training_end":
            notes.append("the training-end snapshot could not be rebuilt: used the logged sample")
    cur_label = f"all {len(current):,} customers at {when.date()}"

    tx = read_table(settings, "transactions")
    if tx.empty:
        raise DataError("no transactions ingested: run `clv data ingest`")
    label_end = min(pd.Timestamp(utc_series(tx["ts"]).max()), when)
    m = settings.model
    log = _Log(tx, read_identities(settings))
    cohorts = _Cohorts(settings, model, snaps, label_end=label_end, data_end=data_end, log=log)
    churn = _churn_cohort(cohorts)
    value = _value_cohort(cohorts)
    if churn is None:
        notes.append(f"no churn cohort has matured its {m.churn_window_days}-day window yet")
    if value is None:
        notes.append(f"no value cohort has matured its {m.horizon_days}-day horizon yet")
    return MonitorInputs(
        as_of=when,
        reference=reference,
        current=current,
        reference_label=ref_label,
        current_label=cur_label,
        importance=importance(model),
        model_version=str(loaded.version),
        model_tags=dict(info.version_tags),
        churn=churn,
        value=value,
        notes=tuple(notes),
    )


@dataclass(frozen=True, eq=False)
class _Log:
    """The transaction log and the identities its aliases resolve with."""

    tx: pd.DataFrame
    identities: IdentityMap | None


def _labelled(
    settings: Settings,
    model: ClvModel,
    cohort: Cohort,
    *,
    log: _Log,
    label_end: pd.Timestamp,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The cohort's predictions and its labels over `cohort.window_days` (same row order)."""
    from clv.training.labels import make_labels

    frame = scored(settings, model, cohort.snapshot)
    m = settings.model
    labels = make_labels(
        log.tx,
        frame[["customer_id", "event_timestamp"]],
        horizon_days=cohort.window_days,
        churn_window_days=m.churn_window_days,
        annual_discount_rate=m.annual_discount_rate,
        margin_rate=m.margin_rate,
        data_end=label_end,
        identities=log.identities,
    )
    return frame, labels


@dataclass(frozen=True, eq=False)
class _Cohorts:
    """Where the matured cohorts come from: snapshots `snaps`, labels from `log` up to
    `label_end`; a cohort is in training unless after the champion's matured data at
    `data_end` (None: unknown)."""

    settings: Settings
    model: ClvModel
    snaps: list[pd.Timestamp]
    label_end: pd.Timestamp
    data_end: pd.Timestamp | None
    log: _Log

    def labelled(
        self, kind: str, window_days: int
    ) -> tuple[Cohort, pd.DataFrame, pd.DataFrame] | None:
        """The newest matured cohort of `kind`, its predictions and its labels (`_labelled`)."""
        snaps, data_end, w = self.snaps, self.data_end, window_days
        trained = matured_snapshot(snaps, as_of=data_end, window_days=w) if data_end else None
        cohort = choose_cohort(
            kind, snaps, as_of=self.label_end, window_days=w, trained_through=trained
        )
        if cohort is None:
            return None
        frame, labels = _labelled(
            self.settings, self.model, cohort, log=self.log, label_end=self.label_end
        )
        return cohort, frame, labels


def _churn_cohort(cohorts: _Cohorts) -> ChurnBacktest | None:
    if cohorts.model.churn is None:
        return None
    found = cohorts.labelled("churn", cohorts.settings.model.churn_window_days)
    if found is None:
        return None
    cohort, frame, labels = found
    y, value = _floats(labels, "churn_label", "clv_label")
    p, clv = _floats(frame, "churn_probability", "clv")
    return churn_backtest(cohort, churn_label=y, churn_probability=p, window_value=value, clv=clv)


def _value_cohort(cohorts: _Cohorts) -> ValueBacktest | None:
    settings, log = cohorts.settings, cohorts.log
    found = cohorts.labelled("value", settings.model.horizon_days)
    if found is None:
        return None
    cohort, frame, labels = found
    m = settings.model
    given = cohort_baselines(
        frame,
        log.tx,
        horizon_days=cohort.window_days,
        annual_discount_rate=m.annual_discount_rate,
        margin_rate=m.margin_rate,
        seed=settings.tuning.seed,
        identities=log.identities,
    )
    (y,) = _floats(labels, "clv_label")
    clv, p10, p90 = _floats(frame, "clv", "clv_p10", "clv_p90")
    return value_backtest(cohort, clv_label=y, clv=clv, clv_p10=p10, clv_p90=p90, baselines=given)


def _floats(frame: pd.DataFrame, *columns: str) -> list[np.ndarray]:
    """`columns` of `frame` as float64 arrays."""
    return [frame[c].to_numpy(np.float64) for c in columns]


def _timestamp(value: object) -> pd.Timestamp | None:
    if value is None or str(value) in ("", "unknown"):
        return None
    try:
        return utc(str(value))
    except ValueError:
        return None
