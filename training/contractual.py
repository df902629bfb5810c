"""Training the contractual part of a version: fit, evaluate out of time, bundle.

When the workspace holds subscriptions, `clv train` also fits the retention hazard, the
expansion boosters and the one-off purchases' BG/NBD + Gamma-Gamma (clv.model.contractual_bundle)
and logs them with the version (`contractual/`, metrics `contractual.*`).

The protocol is the value model's (docs/decisions/contractual-model.md):
- **Test origin** T = the end of the log - H months (H = model.horizon_days in months), so that
  the H months after it are known. Every model scored there is fitted on what is known at T:
  features from rows before each training origin, labels known at T (the embargo), the sBG per
  billing kind and the Kaplan-Meier curve per plan likewise.
- **Realized**, for the subscriptions paying and active at T: churned in month t when ended_at
  falls before T + t months, renewed at the next renewal date unless it ended before it (15
  days of slack), the realized subscription margin sum_{t < H} MRR at T + t x margin x
  1(subscribed then) (1 + d)^-t, and the realized one-off margin of their customers in
  (T, T + H], discounted per day.
- **Served**: the same procedure at the end of the log, every label known then.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pandas as pd

from clv.core.contracts import SUBSCRIPTION_CHANNEL
from clv.core.errors import DataError
from clv.core.settings import Settings
from clv.core.tags import CONTRACTUAL_TAG
from clv.core.time import MONTH_DAYS
from clv.evaluation.calibration import expected_calibration_error
from clv.evaluation.metrics import normalized_gini
from clv.evaluation.survival import concordance_index, integrated_brier_score, retention_gap
from clv.features.subscription_features import (
    invoices_before,
    one_off_history,
    subscription_features,
)
from clv.inputs.subscriptions import SubscriptionLog, read_subscriptions
from clv.model.baseline import Baseline, fit_bgnbd, fit_gamma_gamma
from clv.model.contractual_bundle import (
    CONTRACTUAL_PATH,
    ONE_OFF_RATE,
    RATE_WINDOW_MONTHS,
    ContractualCard,
    ContractualModel,
    rfm_of_history,
)
from clv.model.subscription import (
    EXPANSION_MONTHS,
    RetentionForecast,
    model_forecast,
    value_frame,
)
from clv.training.expansion import expansion_rows, fit_expansion
from clv.training.hazard_fit import fit_served_hazard
from clv.training.survival import (
    fit_sbg_by_period,
    kaplan_meier_forecast,
    lifetimes,
    sbg_forecast,
    training_rows,
)

if TYPE_CHECKING:
    from clv.training.mlflow_io import TrainingRun

FloatArray = npt.NDArray[np.float64]
TRAIN_ORIGIN_MONTHS: tuple[int, ...] = tuple(range(1, 25))
"""Training origins, months before the fit's origin (chosen on SAAS_DEVELOPMENT:
docs/decisions/contractual-model.md)."""
MIN_HISTORY_MONTHS = 3
"""A training origin needs this much history after the log's start."""
RENEWAL_TOLERANCE = pd.Timedelta(days=15)
"""An end within this of the predicted renewal date is the non-renewal there."""
METHODS = ("model", "sbg", "kaplan_meier")


def horizon_months(settings: Settings) -> int:
    """model.horizon_days in whole months (at least 1)."""
    return max(1, round(settings.model.horizon_days / MONTH_DAYS))


def monthly_discount(settings: Settings) -> float:
    return float((1.0 + settings.model.annual_discount_rate) ** (1.0 / 12.0) - 1.0)


def training_origins(log: SubscriptionLog, at: pd.Timestamp) -> list[pd.Timestamp]:
    """TRAIN_ORIGIN_MONTHS before `at`, those MIN_HISTORY_MONTHS or more after the start."""
    first = log.start + pd.DateOffset(months=MIN_HISTORY_MONTHS)
    return [o for o in (at - pd.DateOffset(months=m) for m in TRAIN_ORIGIN_MONTHS) if o >= first]


def fit_one_off(log: SubscriptionLog, *, at: pd.Timestamp, margin_rate: float) -> Baseline | None:
    """BG/NBD + Gamma-Gamma on the one-off purchases before `at` (None: too few buyers)."""
    history = one_off_history(log.transactions, as_of=at)
    if len(history) < 50 or (history["frequency"] > 0).sum() < 10:
        return None
    rfm = rfm_of_history(history)
    usable = rfm.T > 0
    amount = float(history["amount"].sum())
    return Baseline(
        bgnbd=fit_bgnbd(rfm.frequency[usable], rfm.recency[usable], rfm.T[usable]),
        gamma_gamma=fit_gamma_gamma(rfm.frequency, rfm.monetary_value),
        margin_ratio=float(history["margin"].sum() / amount) if amount > 0 else margin_rate,
        fitted_rows=int(usable.sum()),
    )


def one_off_rate(log: SubscriptionLog, *, at: pd.Timestamp) -> float:
    """The paying subscribers' one-off margin per subscribed month over the year before `at`
    (subscribed months: each customer's longest tenure, capped at RATE_WINDOW_MONTHS)."""
    feats = subscription_features(*log.tables[:3], as_of=at, transactions=log.transactions)
    months = feats.groupby("customer_id")["tenure_months"].max().clip(upper=RATE_WINDOW_MONTHS)
    history = one_off_history(log.transactions, as_of=at).reindex(months.index)
    total = float(months.sum())
    return float(history["margin_recent"].fillna(0.0).sum() / total) if total > 0 else 0.0


def invoice_margin(log: SubscriptionLog, *, at: pd.Timestamp, fallback: float) -> float:
    inv = invoices_before(log.transactions, before=at)
    amount = float(inv["amount"].sum())
    return float(inv["margin"].sum() / amount) if amount > 0 else fallback


def fit_contractual(
    log: SubscriptionLog,
    *,
    at: pd.Timestamp,
    settings: Settings,
    nthread: int = 2,
    one_off_method: str = ONE_OFF_RATE,
) -> ContractualModel:
    """The contractual models fitted at `at` from what is known then (labels before it)."""
    h = horizon_months(settings)
    origins = training_origins(log, at)
    if not origins:
        raise DataError(
            f"subscriptions: no training origin before {at.date()} with "
            f"{MIN_HISTORY_MONTHS} months of history: the log is too short"
        )
    rows = training_rows(*log.tables, origins=origins, known_until=at, horizon_months=h)
    if rows.empty or rows["churned"].sum() < 10:
        raise DataError(
            f"subscriptions: {int(rows['churned'].sum()) if len(rows) else 0} cancellations "
            f"known before {at.date()}; the retention model needs at least 10"
        )
    hazard, rounds = fit_served_hazard(
        *log.tables,
        origins=origins,
        known_until=at,
        horizon_months=h,
        nthread=nthread,
        seed=settings.tuning.seed,
        rows=rows,
    )
    grown_at = [o for o in origins if o + pd.DateOffset(months=EXPANSION_MONTHS) <= at]
    erows = expansion_rows(*log.tables, origins=grown_at, known_until=at)
    expansion = fit_expansion(erows, nthread=nthread, seed=settings.tuning.seed)
    one_off = fit_one_off(log, at=at, margin_rate=settings.model.margin_rate)
    card = ContractualCard(
        horizon_months=h,
        margin=invoice_margin(log, at=at, fallback=settings.model.margin_rate),
        monthly_discount=monthly_discount(settings),
        trained_at=at.date().isoformat(),
        plans=hazard.plans,
        rows=hazard.rows,
        hazard_rounds=rounds.rounds,
        sbg={k: v.as_dict() for k, v in (hazard.sbg or {}).items()},
        expansion_rows=expansion.rows,
        one_off=one_off.as_dict() if one_off is not None else None,
        one_off_rate=one_off_rate(log, at=at),
        one_off_method=one_off_method,
    )
    return ContractualModel(hazard=hazard, expansion=expansion, card=card)


# ------------------------------------------------------------------------------- evaluation


@dataclass(frozen=True, eq=False)
class Realized:
    """What happened to the subscriptions of an origin over H months."""

    durations: npt.NDArray[np.int64]
    churned: npt.NDArray[np.bool_]
    renewed: npt.NDArray[np.bool_]
    value: FloatArray


def realized_outcomes(
    features: pd.DataFrame,
    *,
    ended_at: pd.Series,
    mrr_at: Callable[[pd.Timestamp], pd.Series],
    origin: pd.Timestamp,
    horizon: int,
    margin: float,
    monthly_discount: float,
) -> Realized:
    """Churned at t = the first month t <= H whose end (origin + t months) finds it ended
    (`ended_at`, by subscription id, NaT: never), else censored at H; renewed at the next
    renewal date (RENEWAL_TOLERANCE); the realized margin sum_{t < H} MRR_t x margin x
    1(subscribed at origin + t months) (1 + d)^-t, `mrr_at(ts)` the MRR by subscription id
    then."""
    end = ended_at.reindex(features.index)
    ts = end.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
    never = np.isnat(ts)
    bounds = [(origin + pd.DateOffset(months=t)) for t in range(horizon + 1)]
    naive = [b.tz_convert("UTC").tz_localize(None).to_datetime64() for b in bounds]
    alive = np.column_stack([never | (ts > b) for b in naive])
    gone = ~alive[:, 1:]
    churned: npt.NDArray[np.bool_] = np.asarray(gone.any(axis=1), dtype=np.bool_)
    durations = np.where(churned, np.argmax(gone, axis=1) + 1, horizon).astype(np.int64)
    due = (features["next_renewal"] + RENEWAL_TOLERANCE).dt.tz_convert("UTC")
    renewed = never | (ts > due.dt.tz_localize(None).to_numpy(dtype="datetime64[us]"))
    value = np.zeros(len(features))
    for t, b in enumerate(bounds[:-1]):
        mrr = mrr_at(b).reindex(features.index).fillna(0.0).to_numpy(dtype=np.float64)
        value += mrr * margin * alive[:, t] * (1.0 + monthly_discount) ** -t
    return Realized(durations, churned, np.asarray(renewed, dtype=np.bool_), value)


def _num(value: float, digits: int = 4) -> float | None:
    return round(float(value), digits) if np.isfinite(value) else None


def retention_scores(
    fc: RetentionForecast, out: Realized, clv: npt.ArrayLike
) -> dict[str, float | None]:
    """Harrell's C, the IPCW integrated Brier score over months 1..H, the next-renewal ECE,
    the largest gap of the mean predicted curve to the realized Kaplan-Meier curve, and the
    bias % of the summed CLV against the realized margin."""
    surv = fc.survival[:, 1:]
    total = float(out.value.sum())
    predicted = float(np.sum(clv))
    return {
        "c_index": _num(concordance_index(out.durations, out.churned, fc.risk()).c_index),
        "ibs": _num(integrated_brier_score(out.durations, out.churned, surv), 5),
        "renewal_ece": _num(expected_calibration_error(out.renewed, fc.renewal)),
        "retention_max_gap": _num(retention_gap(out.durations, out.churned, surv).max_abs_gap),
        "clv_bias_pct": _num(100.0 * (predicted - total) / total, 2) if total > 0 else None,
    }


def realized_one_off(
    transactions: pd.DataFrame,
    customers: pd.Index,
    *,
    origin: pd.Timestamp,
    horizon: int,
    annual_discount_rate: float,
) -> pd.Series:
    """Per customer of `customers`: the one-off margin in [origin, origin + H months),
    discounted by (1 + d)^-(days / 365)."""
    end = origin + pd.DateOffset(months=horizon)
    tx = transactions.loc[
        (transactions["channel"] != SUBSCRIPTION_CHANNEL)
        & (transactions["ts"] >= origin)
        & (transactions["ts"] < end)
        & transactions["customer_id"].isin(customers)
    ]
    days = (tx["ts"] - origin).dt.total_seconds() / 86_400.0
    disc = (1.0 + annual_discount_rate) ** -(days / 365.0)
    value = (tx["margin"] * disc).groupby(tx["customer_id"]).sum()
    return value.reindex(customers, fill_value=0.0)


def evaluate_contractual(
    log: SubscriptionLog, *, settings: Settings, nthread: int = 2
) -> dict[str, object]:
    """The contractual models and their baselines at the test origin (module docstring)."""
    h = horizon_months(settings)
    origin = log.end - pd.DateOffset(months=h)
    fitted = fit_contractual(log, at=origin, settings=settings, nthread=nthread)
    feats = subscription_features(*log.tables[:3], as_of=origin, transactions=log.transactions)
    if feats.empty:
        raise DataError(f"subscriptions: none paying and active at the test origin {origin.date()}")
    known = lifetimes(log.subscriptions, log.transactions, known_until=origin)
    card = fitted.card
    ended = log.subscriptions.set_index("subscription_id")["ended_at"]

    seen: dict[pd.Timestamp, pd.Series] = {}

    def mrr_at(ts: pd.Timestamp) -> pd.Series:
        """The MRR of the subscriptions paying at `ts` (read once per time)."""
        if ts not in seen:
            at = subscription_features(*log.tables[:3], as_of=ts, transactions=log.transactions)
            seen[ts] = at["mrr"]
        return seen[ts]

    out = realized_outcomes(
        feats,
        ended_at=ended,
        mrr_at=mrr_at,
        origin=origin,
        horizon=h,
        margin=card.margin,
        monthly_discount=card.monthly_discount,
    )
    forecasts = {
        "model": model_forecast(fitted.hazard, feats, origin=origin, horizon_months=h),
        "sbg": sbg_forecast(fit_sbg_by_period(known), feats, origin=origin, horizon_months=h),
        "kaplan_meier": kaplan_meier_forecast(known, feats, origin=origin, horizon_months=h),
    }
    served = fitted.subscription_values(feats, as_of=origin)
    figures: dict[str, object] = {
        "test_origin": origin.date().isoformat(),
        "horizon_months": h,
        "subscriptions": len(feats),
        "churned_within_horizon": int(out.churned.sum()),
        "person_period_rows": fitted.hazard.rows,
    }
    for who, fc in forecasts.items():
        held = value_frame(
            fc, feats["mrr"].to_numpy(), margin=card.margin, monthly_discount=card.monthly_discount
        )
        clv = served["clv"] if who == "model" else held["clv"]
        scores = retention_scores(fc, out, clv.to_numpy())
        if who == "model":
            inside = (out.value >= served["clv_p10"]) & (out.value <= served["clv_p90"])
            scores["clv_p10_p90_coverage"] = _num(float(np.mean(inside)))
            grown = fitted.expansion.predict(feats)
            later = mrr_at(origin + pd.DateOffset(months=EXPANSION_MONTHS)).reindex(feats.index)
            stay = later.notna().to_numpy() & (feats["mrr"].to_numpy() > 0)
            ratio = later.to_numpy()[stay] / feats["mrr"].to_numpy()[stay]
            scores["expansion_gini"] = _num(
                normalized_gini((ratio > 1.0 + 1e-9).astype(np.float64), grown.p_expansion[stay])
            )
        figures[who] = scores
    customers = pd.Index(feats["customer_id"].unique())
    history = one_off_history(log.transactions, as_of=origin)
    values = fitted.customer_values(feats, history, as_of=origin)
    real = realized_one_off(
        log.transactions,
        customers,
        origin=origin,
        horizon=h,
        annual_discount_rate=settings.model.annual_discount_rate,
    )
    total = float(real.sum())

    def bias(column: str) -> float | None:
        pred = float(values[column].sum())
        return _num(100.0 * (pred - total) / total, 2) if total > 0 else None

    figures["one_off"] = {
        "method": card.one_off_method,
        "realized": round(total, 2),
        "predicted": round(float(values["one_off_clv"].sum()), 2),
        "bias_pct": bias("one_off_clv"),
        "bias_pct_subscribed_rate": bias("one_off_clv_rate"),
        "bias_pct_bgnbd_gamma_gamma": bias("one_off_clv_btyd"),
        "gini_subscribed_rate": _num(
            normalized_gini(
                real.to_numpy(), values["one_off_clv_rate"].reindex(real.index).to_numpy()
            )
        ),
        "gini_bgnbd_gamma_gamma": _num(
            normalized_gini(
                real.to_numpy(), values["one_off_clv_btyd"].reindex(real.index).to_numpy()
            )
        ),
    }
    return figures


# ------------------------------------------------------------------------------ the version


@dataclass(frozen=True)
class ContractualSummary:
    """What `clv train` logged of the contractual part."""

    evaluation: dict[str, object]
    trained_at: str
    subscribers: int
    """Customers with a paying subscription active at the end of the log."""
    seconds: float

    def as_dict(self) -> dict[str, object]:
        return {
            "evaluation": self.evaluation,
            "trained_at": self.trained_at,
            "subscribers": self.subscribers,
            "seconds": self.seconds,
        }


def flat_metrics(evaluation: dict[str, object]) -> dict[str, float]:
    """`contractual.<method>.<metric>` and `contractual.one_off.<metric>`: the numbers."""
    out: dict[str, float] = {}
    for part in (*METHODS, "one_off"):
        block = evaluation.get(part)
        if isinstance(block, dict):
            for k, v in block.items():
                if isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v):
                    out[f"contractual.{part}.{k}"] = float(v)
    return out


def train_and_log(
    settings: Settings, mrun: TrainingRun, *, say: Callable[[str], object]
) -> ContractualSummary | None:
    """When the workspace holds subscriptions: evaluate the contractual part at the test
    origin, fit it at the end of the log, and log both with the run (metrics, params, the
    evaluation document and the bundle under CONTRACTUAL_PATH). None without subscriptions."""
    import tempfile
    import time
    from pathlib import Path

    from clv.training.mlflow_io import RunRecord

    log = read_subscriptions(settings)
    if log is None:
        return None
    started = time.perf_counter()
    say("contractual: the retention hazard, expansion and one-off models, out of time")
    try:
        evaluation = evaluate_contractual(log, settings=settings)
        say(f"contractual: served, fitted at the end of the log ({log.end.date()})")
        served = fit_contractual(log, at=log.end, settings=settings)
    except DataError as exc:  # the value model stands; the version says why it has no part
        say(f"contractual: not trained: {exc}")
        mrun.log_record(
            RunRecord(params={}, metrics={}, tags={CONTRACTUAL_TAG: str(exc)[:250]}, documents={})
        )
        return None
    feats = subscription_features(*log.tables[:3], as_of=log.end, transactions=log.transactions)
    card = served.card
    params: dict[str, str | int | float] = {
        "contractual.horizon_months": card.horizon_months,
        "contractual.trained_at": card.trained_at,
        "contractual.test_origin": str(evaluation["test_origin"]),
        "contractual.margin": round(card.margin, 4),
        "contractual.one_off": card.one_off_method,
        "contractual.person_period_rows": card.rows,
        "contractual.hazard_rounds": card.hazard_rounds,
        "contractual.expansion_rows": card.expansion_rows,
    }
    mrun.log_record(
        RunRecord(
            params=params,
            metrics=flat_metrics(evaluation),
            tags={CONTRACTUAL_TAG: "true"},
            documents={f"{CONTRACTUAL_PATH}/evaluation.json": evaluation},
        )
    )
    with tempfile.TemporaryDirectory(prefix="clv-contractual-") as tmp:
        bundle = served.save(Path(tmp) / CONTRACTUAL_PATH)
        mrun.log_files(bundle, artifact_path=CONTRACTUAL_PATH)
    return ContractualSummary(
        evaluation=evaluation,
        trained_at=card.trained_at,
        subscribers=int(feats["customer_id"].nunique()),
        seconds=round(time.perf_counter() - started, 1),
    )
