"""The hazard's calibration step on a tiny hand-counted world: which rows it is fitted and
calibrated on (the embargo), and that the served hazard and survival go through it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clv.evaluation.calibration import CalibrationChoice, Platt
from clv.features.subscription_features import subscription_features
from clv.model.subscription import model_forecast
from clv.training.survival import fit_hazard
from clv.training.survival_calibration import CalibrationRows, calibrate_hazard, calibration_rows

START = pd.Timestamp("2023-01-01", tz="UTC")
T = pd.Timestamp("2024-06-20", tz="UTC")
"""The evaluation origin; with months=2 the cut is 2024-04-20."""
ORIGINS = [pd.Timestamp(f"2024-0{m}-15", tz="UTC") for m in range(2, 7)]
"""Feb..Jun 15th: three before the cut, two held out."""
GROUPS: tuple[tuple[str, int, int, str | None, int], ...] = (
    # name, subscriptions, seats (tells the groups apart in the rows), ended_at, invoices
    ("D", 4, 4, "2024-03-01", 14),  # last invoice 2024-02-01: churns before the cut
    ("A", 25, 1, "2024-06-01", 17),  # last invoice 2024-05-01: churns between cut and T
    ("B", 15, 2, None, 20),  # invoices until 2024-08-01, the last two after T
    ("C", 10, 3, "2024-08-01", 19),  # churns after T: invisible at T
)


def _world() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Monthly starter subscriptions, all started and first billed 2023-01-01, billed on the
    1st; each ends at a renewal date (its ended_at), as the generator's do."""
    subs, inv = [], []
    for name, count, seats, ended, invoices in GROUPS:
        for i in range(count):
            sid, cid = f"{name}{i}", f"c-{name}{i}"
            subs.append(
                {
                    "customer_id": cid,
                    "subscription_id": sid,
                    "plan": "starter",
                    "seats": seats,
                    "mrr": 10.0 * seats,
                    "started_at": START,
                    "ended_at": pd.Timestamp(ended, tz="UTC") if ended else pd.NaT,
                    "billing_period": "month",
                    "trial": False,
                }
            )
            inv += [
                {
                    "customer_id": cid,
                    "ts": START + pd.DateOffset(months=n),
                    "amount": 10.0 * seats,
                    "margin": 8.0 * seats,
                    "order_id": f"{sid}-{n + 1:03d}",
                    "channel": "subscription",
                }
                for n in range(invoices)
            ]
    changes = pd.DataFrame(  # a no-op change: same plan, same seats
        {
            "subscription_id": ["B0"],
            "ts": [pd.Timestamp("2023-06-10", tz="UTC")],
            "plan": ["starter"],
            "seats": [2],
            "mrr": [20.0],
        }
    )
    events = pd.DataFrame(
        {
            "customer_id": ["c-B0"],
            "ts": [pd.Timestamp("2024-01-10", tz="UTC")],
            "event_type": ["login"],
        }
    )
    return pd.DataFrame(subs), changes, events, pd.DataFrame(inv)


@pytest.fixture(scope="module")
def rows() -> CalibrationRows:
    return calibration_rows(*_world(), origins=ORIGINS, known_until=T, horizon_months=1, months=2)


def test_the_cut_splits_the_origins_and_each_side_sees_labels_until_its_own_end(
    rows: CalibrationRows,
) -> None:
    assert rows.cut == pd.Timestamp("2024-04-20", tz="UTC")
    fit, held = rows.fit, rows.held_out
    # fit, labels at the cut: Feb 15th's 54 active renew on Mar 1st but D (4) churn; Mar 15th's
    # 50 renew on Apr 1st; Apr 15th's renewal (May 1st) is after the cut: no row.
    assert fit.groupby("origin").size().to_dict() == {ORIGINS[0]: 54, ORIGINS[1]: 50}
    assert fit.loc[fit["churned"] == 1, "seats"].tolist() == [4] * 4
    # A's churn (Jun 1st) is after the cut: the fit never sees it
    assert fit.loc[fit["seats"] == 1, "churned"].sum() == 0
    # held out, labels at T: May 15th's A (25) churn on Jun 1st, B and C renew; Jun 15th's
    # renewal (Jul 1st) is after T: no row, and C's churn (Aug 1st) is never seen.
    assert held.groupby("origin").size().to_dict() == {ORIGINS[3]: 50}
    assert held.loc[held["churned"] == 1, "seats"].tolist() == [1] * 25
    assert held.loc[held["seats"] == 3, "churned"].sum() == 0


def test_an_origin_at_the_evaluation_origin_is_refused() -> None:
    with pytest.raises(ValueError, match="embargo"):
        calibration_rows(
            *_world(), origins=[*ORIGINS, T], known_until=T, horizon_months=1, months=2
        )


def test_the_calibration_is_fitted_on_the_held_out_rows(rows: CalibrationRows) -> None:
    # The fit's 104 rows hold too little hessian for any split (min_child_weight 20): the
    # early hazard is one constant, about the fit's churn rate 4 / 104; the held-out rate is
    # 25 / 50, so the calibration must map that margin to 0.5.
    early, _ = fit_hazard(rows.fit, nthread=1)
    margin = early.margin(rows.held_out)
    assert np.ptp(margin) == 0.0
    assert early.hazard(rows.held_out)[0] == pytest.approx(4 / 104, abs=0.01)
    choice = calibrate_hazard(rows, nthread=1)
    assert choice.method != "raw", choice.reason
    assert early.calibrated(choice).hazard(rows.held_out) == pytest.approx(
        np.full(50, 0.5), abs=0.01
    )


def test_the_served_hazard_is_calibrated_and_survival_its_product(rows: CalibrationRows) -> None:
    model, _ = fit_hazard(rows.fit, nthread=1)
    subs, changes, events, inv = _world()
    feats = subscription_features(subs, changes, events, as_of=T, transactions=inv)
    assert len(feats) == 25  # B and C; C's end (Aug 1st) reads as not ended at T
    by_hand = CalibrationChoice("platt", Platt(a=0.0, b=float(np.log(0.2 / 0.8))), "h = 0.2")
    served = model.calibrated(by_hand)
    per = served.period_survival(feats, periods=3)
    np.testing.assert_allclose(per, np.tile([1.0, 0.8, 0.64, 0.512], (25, 1)))
    # renewal dates Jul 1st, Aug 1st, Sep 1st fall in months 1, 2, 3 after Jun 20th
    fc = model_forecast(served, feats, origin=T, horizon_months=3)
    np.testing.assert_allclose(fc.renewal, 0.8)
    np.testing.assert_allclose(fc.survival, np.tile([1.0, 0.8, 0.64, 0.512], (25, 1)))
    raw = model_forecast(model, feats, origin=T, horizon_months=3)
    assert raw.renewal[0] == pytest.approx(1 - 4 / 104, abs=0.01)  # uncalibrated: not 0.8
