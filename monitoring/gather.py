"""Gather one monitoring run's inputs from the workspace: champion, features, transaction log.

Monitoring reads what the others write: the champion from the registry (its bundle, version
tags and run params), point-in-time features from Feast, labels from the transaction log
through `clv.training.labels.make_labels`, and the simple baselines of the matured value cohort
from its own features and the log before it (clv.monitoring.baselines). Nothing is written here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from clv.core.errors import DataError
from clv.core.settings import Settings
from clv.core.time import utc, utc_series
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


def scored(
    settings: Settings, model: ClvModel, whens: Sequence[pd.Timestamp], *, log: _Log
) -> dict[pd.Timestamp, pd.DataFrame]:
    """Per snapshot of `whens`: every customer known before it, with its point-in-time features
    and the model's predictions. One Feast retrieval for all of them: a row's features depend
    on its own (customer, timestamp) only, and each retrieval costs seconds of fixed work."""
    from clv.features.feast_io import historical_features
    from clv.features.query import known_entities

    distinct = list(dict.fromkeys(whens))
    entities = [
        known_entities(log.tx, log.customers, w, identities=log.identities) for w in distinct
    ]
    features = historical_features(settings, pd.concat(entities, ignore_index=True))
    out: dict[pd.Timestamp, pd.DataFrame] = {}
    start = 0
    for when, rows in zip(distinct, entities, strict=True):
        if rows.empty:
            raise DataError(f"no customers known before {when.date()}; check --as-of")
        part = features.iloc[start : start + len(rows)].reset_index(drop=True)
        start += len(rows)
        out[when] = pd.concat([part, model.predict(part)], axis=1)
    return out


def gather(
    settings: Settings,
    *,
    as_of: pd.Timestamp | None = None,
    windows: Callable[[MonitorInputs], None] | None = None,
) -> MonitorInputs:
    """The judged champion, its reference and current windows, and the matured cohorts.

    `windows` is called with the windows (no backtests yet) as soon as they are scored, so
    that what compares only them (the Evidently report) starts before the backtests."""
    from clv.registry.mlflow_io import load_alias, reference_frame, version_info

    loaded = load_alias(settings, alias="champion")
    model = loaded.model
    info = version_info(settings, loaded.version)
    snaps = snapshot_times(settings)
    when = as_of if as_of is not None else snaps[-1]
    notes: list[str] = []
    log = _read_log(settings)
    label_end = min(pd.Timestamp(utc_series(log.tx["ts"]).max()), when)

    data_end = _timestamp(info.params.get("data_end"))
    window = settings.monitoring.reference_window
    ref_snap: pd.Timestamp | None = None
    ref_what = ""
    if window == "training_end" and data_end is not None:
        ref_snap = max((s for s in snaps if s <= min(data_end, when)), default=None)
        ref_what = f"the last snapshot of the champion's training data (ends {data_end.date()})"
    m = settings.model
    churn_cohort = (
        _cohort("churn", m.churn_window_days, snaps, label_end=label_end, data_end=data_end)
        if model.churn is not None
        else None
    )
    value_cohort = _cohort("value", m.horizon_days, snaps, label_end=label_end, data_end=data_end)
    cohorts = [c.snapshot for c in (churn_cohort, value_cohort) if c is not None]
    frames = scored(
        settings, model, [when, *([ref_snap] if ref_snap is not None else []), *cohorts], log=log
    )

    current = frames[when]
    if ref_snap is not None:
        reference = frames[ref_snap]
        ref_label = (
            f"all {len(reference):,} customers at {ref_snap.date()}, {ref_what}, "
            "rebuilt point-in-time"
        )
    else:
        logged = reference_frame(settings, loaded.run_id)
        reference = reference_window(logged, window="all" if window == "all" else "latest")
        ref_label = f"the champion's logged training reference sample ({len(reference):,} rows)"
        if window == "training_end":
            notes.append("the training-end snapshot could not be rebuilt: used the logged sample")
    cur_label = f"all {len(current):,} customers at {when.date()}"
    compared = MonitorInputs(
        as_of=when,
        reference=reference,
        current=current,
        reference_label=ref_label,
        current_label=cur_label,
        importance=importance(model),
        model_version=str(loaded.version),
        model_tags=dict(info.version_tags),
    )
    if windows is not None:
        windows(compared)

    labelled = _Labelled(settings, frames, log=log, label_end=label_end)
    churn = _churn_backtest(labelled, churn_cohort)
    value = _value_backtest(labelled, value_cohort)
    if churn is None:
        notes.append(f"no churn cohort has matured its {m.churn_window_days}-day window yet")
    if value is None:
        notes.append(f"no value cohort has matured its {m.horizon_days}-day horizon yet")
    return replace(compared, churn=churn, value=value, notes=tuple(notes))


@dataclass(frozen=True, eq=False)
class _Log:
    """The transaction log, the customers table and the identities its aliases resolve with
    (what `clv.features.feast_io.snapshot_entities` reads, read once for every snapshot)."""

    tx: pd.DataFrame
    customers: pd.DataFrame | None
    identities: IdentityMap | None


def _read_log(settings: Settings) -> _Log:
    from clv.core.store import has_table, read_table

    tx = read_table(settings, "transactions")
    if tx.empty:
        raise DataError("no transactions ingested: run `clv data ingest`")
    customers = read_table(settings, "customers") if has_table(settings, "customers") else None
    return _Log(tx, customers, read_identities(settings))


def _cohort(
    kind: str,
    window_days: int,
    snaps: Sequence[pd.Timestamp],
    *,
    label_end: pd.Timestamp,
    data_end: pd.Timestamp | None,
) -> Cohort | None:
    """The newest cohort of `kind` matured by `label_end`; in training unless after the
    champion's matured data at `data_end` (None: unknown)."""
    trained = matured_snapshot(snaps, as_of=data_end, window_days=window_days) if data_end else None
    return choose_cohort(
        kind, snaps, as_of=label_end, window_days=window_days, trained_through=trained
    )


@dataclass(frozen=True, eq=False)
class _Labelled:
    """Where a matured cohort's predictions and labels come from: the scored snapshot `frames`,
    labels from `log` up to `label_end`."""

    settings: Settings
    frames: Mapping[pd.Timestamp, pd.DataFrame]
    log: _Log
    label_end: pd.Timestamp

    def __call__(self, cohort: Cohort) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The cohort's predictions and its labels over `cohort.window_days` (same row order)."""
        from clv.training.labels import make_labels

        frame = self.frames[cohort.snapshot]
        m = self.settings.model
        labels = make_labels(
            self.log.tx,
            frame[["customer_id", "event_timestamp"]],
            horizon_days=cohort.window_days,
            churn_window_days=m.churn_window_days,
            annual_discount_rate=m.annual_discount_rate,
            margin_rate=m.margin_rate,
            data_end=self.label_end,
            identities=self.log.identities,
        )
        return frame, labels


def _churn_backtest(labelled: _Labelled, cohort: Cohort | None) -> ChurnBacktest | None:
    if cohort is None:
        return None
    frame, labels = labelled(cohort)
    y, value = _floats(labels, "churn_label", "clv_label")
    p, clv = _floats(frame, "churn_probability", "clv")
    return churn_backtest(cohort, churn_label=y, churn_probability=p, window_value=value, clv=clv)


def _value_backtest(labelled: _Labelled, cohort: Cohort | None) -> ValueBacktest | None:
    if cohort is None:
        return None
    settings, log = labelled.settings, labelled.log
    frame, labels = labelled(cohort)
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
