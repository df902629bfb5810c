"""The registered model's final fits, as data: which boosters, on which rows, for how long.

After evaluation, `clv.training.final` refits every booster of the registered model with fixed
parameters and rounds on every row with a complete label (`refit_jobs`). What is fitted is
decided once, here; where it is fitted is a backend:

- `InMemoryRefit`: XGBoost in this process, on the training frame it holds;
- `clv.training.distributed.DaskRefit`: `xgboost.dask` on a Dask cluster, from the training set's
  Parquet parts on disk (training sets larger than `compute.memory_budget_mb`).

Both read the same columns (`prepare_rows`): the model's feature matrix in contract order, the
value target, the log-baseline offset and the churn label, so a job means the same rows and
labels whichever backend runs it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np
import pandas as pd

from clv.model.baseline import SnapshotBaselines
from clv.training.booster import MAX_BIN, BoosterParams

if TYPE_CHECKING:
    import xgboost as xgb

    from clv.model.bundle import ClvModel

RowSet = Literal["value", "buyers", "churn"]
"""value: rows with a CLV label; buyers: value rows with a positive target; churn: rows with
a churn label."""
Label = Literal["value", "purchase", "churn"]
"""value: max(CLV, 0); purchase: target > 0 as 0/1; churn: the churn label."""

Y_VALUE = "__y_value"
OFFSET = "__offset"
CHURN = "__churn"
OffsetFn = Callable[[pd.DataFrame], np.ndarray]
"""Per row, the log BG/NBD + Gamma-Gamma baseline (the value booster's base_margin)."""


@dataclass(frozen=True)
class BaselineOffset:
    """The per-snapshot baselines as an `OffsetFn` (a plain object, so it pickles to workers)."""

    baselines: SnapshotBaselines
    horizon_days: float
    annual_discount_rate: float

    def __call__(self, frame: pd.DataFrame) -> np.ndarray:
        return self.baselines.log_offset(
            frame,
            horizon_days=self.horizon_days,
            annual_discount_rate=self.annual_discount_rate,
        )


@dataclass(frozen=True)
class BoosterJob:
    """One booster of the registered model: parameters, rounds, rows, label, offset or not."""

    name: str
    params: BoosterParams
    rounds: int
    rows: RowSet
    label: Label
    offset: bool = False


@dataclass(frozen=True)
class RefitOutcome:
    """The fitted boosters by job name, and what the backend reports about the fit."""

    boosters: dict[str, xgb.Booster]
    report: dict[str, str | int | float] = field(default_factory=dict)


class RefitBackend(Protocol):
    """Fits the jobs on every training row; `encoder` makes the feature matrix, `offset` the
    per-row log baseline (None: the value model has no offset)."""

    def fit(
        self, jobs: Sequence[BoosterJob], *, encoder: ClvModel, offset: OffsetFn | None
    ) -> RefitOutcome: ...


def prepare_rows(
    frame: pd.DataFrame, *, encoder: ClvModel, offset: OffsetFn | None
) -> pd.DataFrame:
    """The columns every job reads: features (float32, contract order) and the three labels."""
    names = encoder.feature_names
    out = pd.DataFrame(encoder.matrix(frame), columns=names, index=frame.index)
    clv = pd.to_numeric(frame["clv_label"], errors="coerce").to_numpy(dtype=np.float64)
    out[Y_VALUE] = np.where(np.isnan(clv), np.nan, np.clip(clv, 0.0, None))
    out[OFFSET] = offset(frame) if offset is not None else np.nan
    out[CHURN] = pd.to_numeric(frame["churn_label"], errors="coerce").to_numpy(dtype=np.float64)
    return out


def row_mask(rows: pd.DataFrame, which: RowSet) -> pd.Series:
    """Which prepared rows a job fits on."""
    if which == "churn":
        return rows[CHURN].notnull()
    if which == "buyers":
        return rows[Y_VALUE] > 0
    return rows[Y_VALUE].notnull()


def label_of(rows: pd.DataFrame, label: Label) -> pd.Series:
    if label == "churn":
        return rows[CHURN]
    if label == "purchase":
        return (rows[Y_VALUE] > 0).astype(np.float64)
    return rows[Y_VALUE]


def refit_jobs(
    *,
    value: tuple[BoosterParams, int],
    purchase: tuple[BoosterParams, int] | None,
    quantiles: Mapping[str, tuple[BoosterParams, int]],
    churn: tuple[BoosterParams, int] | None,
    offset: bool,
) -> list[BoosterJob]:
    """The registered model's boosters: the value booster (on buyers, for a hurdle, whose
    purchase classifier fits every value row), the quantile boosters and the churn booster."""
    hurdle = purchase is not None
    jobs = [
        BoosterJob(
            "value", value[0], value[1], "buyers" if hurdle else "value", "value", offset=offset
        )
    ]
    if purchase is not None:
        jobs.append(BoosterJob("purchase", purchase[0], purchase[1], "value", "purchase"))
    jobs += [BoosterJob(k, p, r, "value", "value") for k, (p, r) in quantiles.items()]
    if churn is not None:
        jobs.append(BoosterJob("churn", churn[0], churn[1], "churn", "churn"))
    return jobs


@dataclass(frozen=True)
class InMemoryRefit:
    """XGBoost in this process, on a frame of training rows (features and labels)."""

    frame: pd.DataFrame

    def fit(
        self, jobs: Sequence[BoosterJob], *, encoder: ClvModel, offset: OffsetFn | None
    ) -> RefitOutcome:
        import xgboost as xgb

        rows = prepare_rows(self.frame, encoder=encoder, offset=offset)
        names = encoder.feature_names
        out: dict[str, xgb.Booster] = {}
        for job in jobs:
            sel = rows.loc[row_mask(rows, job.rows)]
            matrix = xgb.QuantileDMatrix(
                sel[names].to_numpy(dtype=np.float32),
                label=label_of(sel, job.label).to_numpy(dtype=np.float64),
                base_margin=sel[OFFSET].to_numpy(dtype=np.float64) if job.offset else None,
                feature_names=list(names),
                max_bin=MAX_BIN,
                nthread=int(job.params.get("nthread", 1)),
            )
            out[job.name] = xgb.train(
                job.params, matrix, num_boost_round=job.rounds, verbose_eval=False
            )
        return RefitOutcome(out, {"refit.backend": "in-process", "refit.rows": len(rows)})
