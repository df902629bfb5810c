"""Experiments judged on realized value: did the change raise what customers bring, or only
this month's revenue?

From the `assignments` table (experiment, customer_id, arm, assigned_at), each arm other than
the control (`decisions.control_arm`) is compared with the control:
- Outcome: each customer's realized margin strictly after their assignment and before as_of,
  discounted to the assignment (`model.annual_discount_rate`). Nothing before the assignment
  counts; a customer with no purchase since brings 0.
- Uplift: the difference of the arms' means, with a 95% interval (Welch's t), and a bootstrap
  percentile interval as a check (`decisions.bootstrap_samples` resamples of each arm, seeded
  by the experiment's name).
- CUPED: the same difference after removing what the pre-assignment predicted CLV (the served
  model on the last feature snapshot at or before the first assignment) explains; the variance
  reduction says how much narrower the interval gets for it.
- Surrogate: the difference in the served model's predicted CLV at as_of, an early read to be
  read as such: a prediction of value, not value.
- Sample-ratio mismatch: a chi-square test of the arms' sizes against an even split (p below
  SRM_P flags it: the randomization or the logging is broken, and no estimate can be trusted).
- Maturity: the outcome covers the model's whole horizon once as_of is past the last
  assignment plus `model.horizon_days`.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from clv.core.contracts import TS_DTYPE
from clv.core.time import utc_series
from clv.decisions.values import Interval
from clv.inputs.identities import IdentityMap, canonical_ids
from clv.training.labels import order_margins

SRM_P = 0.001
"""The chi-square p-value below which the arms' sizes flag a sample-ratio mismatch (the usual
threshold for SRM alarms: strict, since a flag voids the experiment)."""


@dataclass(frozen=True)
class Estimate:
    """A difference of means with its 95% interval."""

    value: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float | None]:
        return {
            k: _finite(v)
            for k, v in (("value", self.value), ("low", self.low), ("high", self.high))
        }


NOTHING = Estimate(float("nan"), float("nan"), float("nan"))
"""No estimate yet: no outcome has been observed."""


def _finite(x: float) -> float | None:
    """JSON has no NaN: an estimate that does not exist yet is null."""
    return None if math.isnan(x) else float(x)


def welch(treated: np.ndarray, control: np.ndarray) -> Estimate:
    """mean(treated) - mean(control), 95% Welch interval (NaN with fewer than 2 per arm)."""
    nt, nc = len(treated), len(control)
    diff = float(np.mean(treated) - np.mean(control)) if nt and nc else float("nan")
    if nt < 2 or nc < 2:
        return Estimate(diff, float("nan"), float("nan"))
    vt, vc = np.var(treated, ddof=1) / nt, np.var(control, ddof=1) / nc
    se = float(np.sqrt(vt + vc))
    if se == 0:
        return Estimate(diff, diff, diff)
    df = (vt + vc) ** 2 / (vt**2 / (nt - 1) + vc**2 / (nc - 1))
    half = float(stats.t.ppf(0.975, df)) * se
    return Estimate(diff, diff - half, diff + half)


def bootstrap(treated: np.ndarray, control: np.ndarray, *, samples: int, seed: int) -> Estimate:
    """The difference of means with a 95% percentile interval over `samples` resamples."""
    rng = np.random.default_rng(seed)
    diff = float(np.mean(treated) - np.mean(control))
    t = rng.choice(treated, size=(samples, len(treated)), replace=True).mean(axis=1)
    c = rng.choice(control, size=(samples, len(control)), replace=True).mean(axis=1)
    low, high = np.percentile(t - c, [2.5, 97.5])
    return Estimate(diff, float(low), float(high))


def cuped(y: np.ndarray, x: np.ndarray, treated: np.ndarray) -> tuple[Estimate, float]:
    """Welch on y - theta (x - mean x), theta = cov(y, x) / var(x) over both arms; and the
    variance reduction 1 - var(adjusted) / var(y)."""
    vx = float(np.var(x, ddof=1)) if len(x) > 1 else 0.0
    theta = float(np.cov(y, x, ddof=1)[0, 1] / vx) if vx > 0 else 0.0
    adjusted = y - theta * (x - x.mean())
    vy = float(np.var(y, ddof=1)) if len(y) > 1 else 0.0
    reduction = 1.0 - float(np.var(adjusted, ddof=1)) / vy if vy > 0 else 0.0
    return welch(adjusted[treated], adjusted[~treated]), reduction


def sample_ratio(counts: dict[str, int]) -> tuple[float, bool]:
    """The chi-square p-value of the arms' sizes against an even split, and whether it flags."""
    observed = np.array(list(counts.values()), dtype=float)
    if len(observed) < 2 or observed.sum() == 0:
        return 1.0, False
    p = float(stats.chisquare(observed).pvalue)
    return p, p < SRM_P


@dataclass(frozen=True)
class Comparison:
    """One treatment arm of an experiment against its control."""

    name: str
    experiment: str
    arm: str
    control: str
    arms: dict[str, int]
    uplift: Estimate
    bootstrap: Estimate
    cuped: Estimate
    variance_reduction: float
    surrogate: Estimate
    srm_p: float
    srm: bool
    assigned_from: pd.Timestamp
    assigned_to: pd.Timestamp
    matures_at: pd.Timestamp
    matured: bool
    control_mean: float

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "experiment": self.experiment,
            "arm": self.arm,
            "control": self.control,
            "arms": self.arms,
            "outcome": "realized discounted margin per customer since assignment",
            "control_mean": _finite(self.control_mean),
            "observed": self.uplift is not NOTHING,
            "uplift": self.uplift.as_dict(),
            "bootstrap": {"low": _finite(self.bootstrap.low), "high": _finite(self.bootstrap.high)},
            "cuped": {
                **self.cuped.as_dict(),
                "variance_reduction": _finite(self.variance_reduction),
            },
            "surrogate": {
                **self.surrogate.as_dict(),
                "label": "surrogate: the difference in predicted CLV at as_of, not realized",
            },
            "srm": {"p_value": self.srm_p, "flagged": self.srm},
            "assigned_from": self.assigned_from.isoformat(),
            "assigned_to": self.assigned_to.isoformat(),
            "matures_at": self.matures_at.isoformat(),
            "matured": self.matured,
        }


def outcomes(
    assignments: pd.DataFrame,
    transactions: pd.DataFrame,
    *,
    as_of: pd.Timestamp,
    margin_rate: float,
    annual_discount_rate: float,
    identities: IdentityMap | None = None,
) -> pd.DataFrame:
    """One row per assignment: experiment, customer_id (canonical at as_of), arm, assigned_at,
    `observed` (assigned before as_of: an outcome can exist) and `outcome`, the realized margin
    after the assignment (see the module; 0 when not observed)."""
    a = assignments.assign(
        customer_id=canonical_ids(assignments["customer_id"].astype(str), identities, as_of),
        assigned_at=utc_series(assignments["assigned_at"]).astype(TS_DTYPE),
    )
    a = a.assign(observed=a["assigned_at"] < as_of).reset_index(drop=True)
    tx = transactions.assign(
        customer_id=canonical_ids(transactions["customer_id"].astype(str), identities, as_of),
        ts=utc_series(transactions["ts"]).astype(TS_DTYPE),
    )
    tx = tx.loc[tx["ts"] < as_of]
    tx = tx.assign(_margin=order_margins(tx, margin_rate=margin_rate))[
        ["customer_id", "ts", "_margin"]
    ]
    joined = a.reset_index().merge(tx, on="customer_id", how="left")
    after = joined["ts"] > joined["assigned_at"]
    years = (joined["ts"] - joined["assigned_at"]).dt.total_seconds() / (365.0 * 86_400.0)
    joined["_pv"] = np.where(
        after, joined["_margin"] / np.power(1.0 + annual_discount_rate, years.fillna(0.0)), 0.0
    )
    total = joined.groupby("index")["_pv"].sum()
    a["outcome"] = total.reindex(a.index, fill_value=0.0).to_numpy(dtype=float)
    return a


def _seed(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")


def compare(
    results: pd.DataFrame,
    *,
    before: pd.Series,
    after: pd.Series,
    control: str,
    horizon_days: int,
    as_of: pd.Timestamp,
    samples: int,
) -> list[Comparison]:
    """Each experiment's treatment arms against its control (an experiment without a control
    arm has nothing to be compared with and is left out). `results`: `outcomes`;
    `before`/`after`: predicted CLV by customer_id before the assignment and at as_of."""
    out: list[Comparison] = []
    for experiment, rows in results.groupby("experiment", sort=True):
        arms = {
            str(k): int(v) for k, v in rows["arm"].astype(str).value_counts().sort_index().items()
        }
        p, srm = sample_ratio(arms)
        base = rows.loc[rows["arm"].astype(str) == control]
        if base.empty:
            continue
        first, last = rows["assigned_at"].min(), rows["assigned_at"].max()
        matures = last + pd.Timedelta(days=horizon_days)
        seen = rows.loc[rows["observed"]] if "observed" in rows.columns else rows
        base = base.loc[base["observed"]] if "observed" in base.columns else base
        for arm in [a for a in arms if a != control]:
            treated_rows = seen.loc[seen["arm"].astype(str) == arm]
            name = str(experiment) if len(arms) == 2 else f"{experiment}: {arm}"
            if treated_rows.empty or base.empty:  # assigned after as_of: no outcome yet
                out.append(
                    Comparison(
                        name,
                        str(experiment),
                        arm,
                        control,
                        arms,
                        NOTHING,
                        NOTHING,
                        NOTHING,
                        float("nan"),
                        NOTHING,
                        p,
                        srm,
                        first,
                        last,
                        matures,
                        False,
                        float("nan"),
                    )
                )
                continue
            both = pd.concat([treated_rows, base], ignore_index=True)
            is_treated = (both["arm"].astype(str) == arm).to_numpy()
            y = both["outcome"].to_numpy(dtype=float)
            x = before.reindex(both["customer_id"]).fillna(0.0).to_numpy(dtype=float)
            z = after.reindex(both["customer_id"]).fillna(0.0).to_numpy(dtype=float)
            adjusted, reduction = cuped(y, x, is_treated)
            out.append(
                Comparison(
                    name=name,
                    experiment=str(experiment),
                    arm=arm,
                    control=control,
                    arms=arms,
                    uplift=welch(y[is_treated], y[~is_treated]),
                    bootstrap=bootstrap(
                        y[is_treated], y[~is_treated], samples=samples, seed=_seed(name)
                    ),
                    cuped=adjusted,
                    variance_reduction=reduction,
                    surrogate=welch(z[is_treated], z[~is_treated]),
                    srm_p=p,
                    srm=srm,
                    assigned_from=first,
                    assigned_to=last,
                    matures_at=matures,
                    matured=bool(as_of >= matures),
                    control_mean=float(y[~is_treated].mean()),
                )
            )
    return out


def relative_uplift(comparison: Comparison) -> Interval:
    """The uplift as a share of the control's mean outcome (what a retention offer is expected
    to add to a customer's value), with its 95% interval."""
    base = comparison.control_mean
    if base <= 0:
        return Interval(0.0, 0.0, 0.0)
    u = comparison.uplift
    return Interval(u.value / base, u.low / base, u.high / base)
