"""The contractual part of a model version: what a subscriber is worth.

A version trained on a workspace with subscriptions carries, beside the value model's bundle,
this bundle (`contractual/` in its MLflow run): the retention hazard, the expansion boosters
and a BG/NBD + Gamma-Gamma fit of the one-off purchases (add-ons, templates, services: every
transaction that is not a subscription's invoice). For a customer with a paying subscription
active at t it gives, per customer:

- `subscription_clv`: sum over the customer's subscriptions of sum_{t < H} E[MRR_t] x margin x
  S(t) x discount (clv.model.subscription.value_frame, the MRR path of the expansion model),
  with `subscription_clv_p10` / `_p90` the value at the lifetime's quantiles;
- `one_off_clv`: the BG/NBD + Gamma-Gamma expected discounted margin of the one-off purchases
  over the same horizon (clv.model.baseline.expected_clv);
- `clv` = the two summed, `renewal_probability` (of the subscription renewing soonest),
  `expected_lifetime_months` (the longest of its subscriptions, truncated at H), `mrr`,
  `p_expansion` and `expected_mrr_growth` (MRR-weighted over its subscriptions).

Why one-off purchases of subscribers take the classical model and not the value model: the
value model reads every transaction, invoices included, and would count the subscription twice
(docs/decisions/contractual-model.md, "Serving").
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import xgboost as xgb

from clv.core.time import MONTH_DAYS
from clv.features.subscription_features import one_off_history, subscription_features
from clv.inputs.subscriptions import SubscriptionLog
from clv.model.baseline import Baseline, Rfm, expected_clv, rfm_arrays
from clv.model.contractual import SbgParams
from clv.model.subscription import (
    ExpansionModel,
    HazardModel,
    model_forecast,
    mrr_path,
    value_frame,
)

FloatArray = npt.NDArray[np.float64]
CARD_FILE = "contractual.json"
HAZARD_FILE, CLASSIFIER_FILE, GROWTH_FILE = "hazard.json", "expansion.json", "growth.json"
CONTRACTUAL_PATH = "contractual"
"""The bundle's folder in a training run's artifacts."""
ONE_OFF_RATE, ONE_OFF_BTYD = "subscribed_rate", "bgnbd_gamma_gamma"
RATE_PRIOR_MONTHS = 6.0
"""A subscriber's one-off rate is shrunk to the population's as if she had shown it this many
months (a priori)."""
RATE_WINDOW_MONTHS = 12.0
"""The one-off rate is read over the subscribed months of the last year (one_off_history's)."""
CUSTOMER_COLUMNS: tuple[str, ...] = (
    "subscriptions",
    "mrr",
    "renewal_probability",
    "expected_lifetime_months",
    "p_expansion",
    "expected_mrr_growth",
    "subscription_clv",
    "subscription_clv_p10",
    "subscription_clv_p90",
    "one_off_clv",
    "clv",
)
"""A subscriber's contractual fields, in this order."""


@dataclass(frozen=True)
class ContractualCard:
    """What the bundle needs besides its boosters."""

    horizon_months: int
    margin: float
    """Invoice margin / amount, on the invoices before the training origin."""
    monthly_discount: float
    trained_at: str
    """The origin of the served fit (ISO date): the end of the log."""
    plans: tuple[str, ...]
    rows: int
    expansion_rows: int
    hazard_rounds: int
    sbg: dict[str, dict[str, float]]
    """The hazard's offset: SbgParams.as_dict per billing kind, fitted at `trained_at`."""
    one_off: dict[str, float] | None
    """clv.model.baseline.Baseline.as_dict of the one-off purchases; None: there were none."""
    one_off_rate: float = 0.0
    """The subscribers' one-off margin per subscribed month in the year before the origin."""
    one_off_method: str = ONE_OFF_RATE
    """ONE_OFF_RATE or ONE_OFF_BTYD: which one-off value is `one_off_clv`."""


@dataclass(frozen=True, eq=False)
class ContractualModel:
    """The retention hazard, the expansion boosters and the one-off baseline, as served."""

    hazard: HazardModel
    expansion: ExpansionModel
    card: ContractualCard

    @property
    def one_off(self) -> Baseline | None:
        return Baseline.from_dict(self.card.one_off) if self.card.one_off is not None else None

    def subscription_values(self, features: pd.DataFrame, *, as_of: pd.Timestamp) -> pd.DataFrame:
        """Per subscription (features' index, from clv.features.subscription_features at
        `as_of`): customer_id, mrr, renewal_probability, expected_lifetime_months, clv,
        clv_p10, clv_p90, p_expansion, expected_mrr_growth."""
        h = self.card.horizon_months
        forecast = model_forecast(self.hazard, features, origin=as_of, horizon_months=h)
        grown = self.expansion.predict(features)
        path = mrr_path(features["mrr"], grown.monthly_growth, horizon_months=h)
        value = value_frame(
            forecast, path, margin=self.card.margin, monthly_discount=self.card.monthly_discount
        )
        value.insert(0, "customer_id", features["customer_id"].to_numpy())
        value.insert(1, "mrr", features["mrr"].to_numpy(dtype=np.float64))
        value["p_expansion"] = grown.p_expansion
        value["expected_mrr_growth"] = grown.quarter_growth
        value["months_to_renewal"] = features["months_to_renewal"].to_numpy(dtype=np.float64)
        value["tenure_months"] = features["tenure_months"].to_numpy(dtype=np.float64)
        disc = (1.0 + self.card.monthly_discount) ** -np.arange(h)
        value["discounted_months"] = forecast.survival[:, :h] @ disc
        return value

    def one_off_rates(self, history: pd.DataFrame, subscribed_months: FloatArray) -> FloatArray:
        """Each subscriber's one-off margin per subscribed month: her margin_recent over her
        subscribed months in the window, shrunk to the population's rate by RATE_PRIOR_MONTHS."""
        m = history["margin_recent"].fillna(0.0).to_numpy(dtype=np.float64)
        n = np.minimum(subscribed_months, RATE_WINDOW_MONTHS)
        k = RATE_PRIOR_MONTHS
        return np.asarray((m + k * self.card.one_off_rate) / (n + k), dtype=np.float64)

    def one_off_values(self, history: pd.DataFrame) -> FloatArray:
        """The one-off purchases' BG/NBD + Gamma-Gamma expected discounted margin over the
        horizon per row of `history` (one_off_history's columns); zeros without that fit."""
        baseline = self.one_off
        if baseline is None or history.empty:
            return np.zeros(len(history))
        return expected_clv(
            baseline,
            rfm_of_history(history),
            horizon_days=self.card.horizon_months * MONTH_DAYS,
            annual_discount_rate=(1.0 + self.card.monthly_discount) ** 12 - 1.0,
        )

    def customer_values(
        self, features: pd.DataFrame, history: pd.DataFrame, *, as_of: pd.Timestamp
    ) -> pd.DataFrame:
        """Per customer with a paying active subscription at `as_of` (index customer_id):
        CUSTOMER_COLUMNS (then both one-off candidates, `one_off_clv` the card's), the
        subscriptions' values summed with the one-off part of `history`
        (one_off_history at `as_of`, indexed by customer_id; a customer without one-off
        purchases has a one-off value of a customer who has bought nothing yet)."""
        subs = self.subscription_values(features, as_of=as_of)
        if subs.empty:
            return pd.DataFrame(columns=list(CUSTOMER_COLUMNS)).rename_axis("customer_id")
        m = subs["mrr"].clip(lower=0.0)
        weight = m.where(m.groupby(subs["customer_id"]).transform("sum") > 0, 1.0)
        soonest = subs.sort_values("months_to_renewal", kind="stable").groupby("customer_id")
        g = subs.assign(_w=weight, _wp=weight * subs["p_expansion"]).assign(
            _wg=weight * subs["expected_mrr_growth"]
        )
        by = g.groupby("customer_id", sort=True)
        out = pd.DataFrame(
            {
                "subscriptions": by.size(),
                "mrr": by["mrr"].sum(),
                "renewal_probability": soonest["renewal_probability"].first(),
                "expected_lifetime_months": by["expected_lifetime_months"].max(),
                "p_expansion": by["_wp"].sum() / by["_w"].sum(),
                "expected_mrr_growth": by["_wg"].sum() / by["_w"].sum(),
                "subscription_clv": by["clv"].sum(),
                "subscription_clv_p10": by["clv_p10"].sum(),
                "subscription_clv_p90": by["clv_p90"].sum(),
            }
        )
        known = history.reindex(out.index)
        # a subscriber who never bought a one-off: nothing bought over her whole tenure
        tenure = (g["tenure_months"] * MONTH_DAYS).groupby(g["customer_id"]).max()
        known["tenure_days"] = known["tenure_days"].fillna(tenure)
        months = by["discounted_months"].max().to_numpy(dtype=np.float64)
        rates = self.one_off_rates(known, by["tenure_months"].max().to_numpy(dtype=np.float64))
        out["one_off_clv_rate"] = rates * months
        out["one_off_clv_btyd"] = self.one_off_values(known)
        chosen = "rate" if self.card.one_off_method == ONE_OFF_RATE else "btyd"
        out["one_off_clv"] = out[f"one_off_clv_{chosen}"]
        out["clv"] = out["subscription_clv"] + out["one_off_clv"]
        out.index.name = "customer_id"
        return out[[*CUSTOMER_COLUMNS, "one_off_clv_rate", "one_off_clv_btyd"]]

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        self.hazard.booster.save_model(str(directory / HAZARD_FILE))
        self.expansion.classifier.save_model(str(directory / CLASSIFIER_FILE))
        self.expansion.growth.save_model(str(directory / GROWTH_FILE))
        (directory / CARD_FILE).write_text(json.dumps(asdict(self.card), indent=2))
        return directory

    @classmethod
    def load(cls, directory: Path) -> ContractualModel:
        raw = json.loads((directory / CARD_FILE).read_text())
        card = ContractualCard(**{**raw, "plans": tuple(raw["plans"])})

        def booster(name: str) -> xgb.Booster:
            b = xgb.Booster()
            b.load_model(str(directory / name))
            return b

        sbg = {k: SbgParams(**v) for k, v in card.sbg.items()}
        hazard = HazardModel(
            booster=booster(HAZARD_FILE), plans=card.plans, rows=card.rows, sbg=sbg or None
        )
        expansion = ExpansionModel(
            booster(CLASSIFIER_FILE), booster(GROWTH_FILE), card.plans, card.expansion_rows
        )
        return cls(hazard=hazard, expansion=expansion, card=card)


ONE_OFF_COLUMNS = ("frequency", "recency", "T", "monetary_value", "tenure_days")
"""one_off_history's columns (days), the clv_v1 RFM conventions (clv.model.baseline)."""


def rfm_of_history(history: pd.DataFrame) -> Rfm:
    """RFM in weeks of one_off_history's rows (missing rows: nothing bought yet)."""
    cols = [history[c].to_numpy(dtype=np.float64) for c in ONE_OFF_COLUMNS]
    return rfm_arrays(*cols)


SCORE_COLUMNS: tuple[str, ...] = (*CUSTOMER_COLUMNS[:-1], "contractual_clv")
"""The columns `with_contractual` adds to a scores frame (NaN for a customer without a paying
active subscription, or scored by a version without the part); contractual_clv is the sum."""


def with_contractual(
    scores: pd.DataFrame,
    parts: dict[str, ContractualModel],
    log: SubscriptionLog,
    *,
    as_of: pd.Timestamp,
) -> pd.DataFrame:
    """`scores` (customer_id, model_version, ...) with SCORE_COLUMNS: each row from the
    contractual part of the version that scored it, at `as_of`."""
    out = scores.copy()
    for c in SCORE_COLUMNS:
        out[c] = np.nan
    if not parts:
        return out
    feats = subscription_features(*log.tables[:3], as_of=as_of, transactions=log.transactions)
    history = one_off_history(log.transactions, as_of=as_of)
    for version, part in parts.items():
        mine = (out["model_version"].astype(str) == str(version)).to_numpy()
        if not mine.any() or feats.empty:
            continue
        values = part.customer_values(feats, history, as_of=as_of)
        values = values.rename(columns={"clv": "contractual_clv"})
        got = values.reindex(out.loc[mine, "customer_id"].astype(str).to_numpy())
        for c in SCORE_COLUMNS:
            out.loc[mine, c] = got[c].to_numpy(dtype=np.float64)
    return out
