"""Channels: what a customer costs (CAC) and what they are worth (CLV), by channel and month.

From the `acquisition_costs` table (channel, month, spend, optional new_customers):
- CAC = spend / new customers: the table's `new_customers`, else the customers whose first
  version names the channel and who were acquired that month (`clv.decisions.values`).
- CLV per acquired customer = the discounted margin they brought from acquisition to as_of plus
  the served model's predicted value over its horizon, with P10-P90 (realized is known; the
  prediction's spread is that of a sum of independent customers, divided by their number). So
  it is the value to as_of + horizon, not a lifetime.
- CLV:CAC with the same interval divided by CAC; a row whose P90 is below 1 is flagged: even
  the optimistic end of the interval does not pay the acquisition back.
- Payback: the first month of age at which the cumulative realized margin per customer (over
  the customers observed then) reaches CAC ("realized"); else, when realized plus predicted
  reaches it, the month at which it would if the predicted value came in evenly over the
  horizon ("projected"); else none within the horizon.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import pandas as pd

from clv.core.time import utc_series
from clv.decisions.values import (
    MONTH_DAYS,
    Customers,
    Interval,
    predicted_sum,
    realized_by_month,
    realized_to_date,
)

Payback = Literal["realized", "projected"]


@dataclass(frozen=True)
class ChannelRow:
    """One channel in one month (month None: every month of the channel together)."""

    channel: str
    month: pd.Timestamp | None
    spend: float
    new_customers: int
    counted: Literal["table", "signups"]
    """Where new_customers comes from."""
    cac: float | None
    clv: Interval | None
    """Per acquired customer; None without customers."""
    clv_cac: Interval | None
    payback_months: int | None
    payback: Payback | None
    flagged: bool

    def as_dict(self) -> dict[str, object]:
        return {
            "channel": self.channel,
            "month": None if self.month is None else self.month.strftime("%Y-%m"),
            "spend": self.spend,
            "new_customers": self.new_customers,
            "new_customers_from": self.counted,
            "cac": self.cac,
            "clv_per_customer": None if self.clv is None else self.clv.as_dict(),
            "clv_cac": None if self.clv_cac is None else self.clv_cac.as_dict(),
            "payback_months": self.payback_months,
            "payback": self.payback,
            "flagged": self.flagged,
        }


def month_start(ts: pd.Series) -> pd.Series:
    """The first instant (UTC) of each timestamp's calendar month."""
    t = utc_series(ts)
    return t.dt.tz_convert(None).dt.to_period("M").dt.to_timestamp().dt.tz_localize("UTC")


def _row(
    values: Customers,
    realized: pd.Series,
    *,
    channel: str,
    month: pd.Timestamp | None,
    spend: float,
    reported: float | None,
    ids: pd.Index,
    horizon_days: int,
) -> ChannelRow:
    counted: Literal["table", "signups"] = "table" if reported is not None else "signups"
    n = int(reported) if reported is not None else len(ids)
    cac = spend / n if n > 0 else None
    clv: Interval | None = None
    ratio: Interval | None = None
    payback_months: int | None = None
    payback: Payback | None = None
    if len(ids):
        members = values.frame.set_index("customer_id").loc[ids]
        per = realized.reindex(ids).mean()
        clv = predicted_sum(members).scaled(1.0 / len(ids)).shifted(float(per))
        if cac is not None and cac > 0:
            ratio = clv.scaled(1.0 / cac)
            payback_months, payback = _payback(
                values,
                ids,
                cac=cac,
                realized=float(per),
                predicted=clv.value - float(per),
                age=int(members["age_months"].median()),
                horizon_days=horizon_days,
            )
    flagged = ratio is not None and ratio.p90 < 1.0
    return ChannelRow(
        channel, month, spend, n, counted, cac, clv, ratio, payback_months, payback, flagged
    )


def _payback(
    values: Customers,
    ids: pd.Index,
    *,
    cac: float,
    realized: float,
    predicted: float,
    age: int,
    horizon_days: int,
) -> tuple[int | None, Payback | None]:
    triangle = realized_by_month(values, ids)
    reached = triangle.loc[triangle["cumulative_margin"] >= cac, "month"]
    if len(reached):
        return int(reached.iloc[0]) + 1, "realized"
    if predicted > 0 and realized + predicted >= cac:
        per_month = predicted / (horizon_days / MONTH_DAYS)
        return age + math.ceil((cac - realized) / per_month), "projected"
    return None, None


def channel_table(
    values: Customers, costs: pd.DataFrame, *, horizon_days: int
) -> tuple[list[ChannelRow], list[ChannelRow]]:
    """(every channel and month of `costs`, every channel over all its months), CAC:CLV and
    payback as the module says. Months before the first acquisition count their spend."""
    realized = realized_to_date(values)
    frame = values.frame.assign(month=month_start(values.frame["acquired_at"]))
    costs = costs.assign(month=month_start(costs["month"]), channel=costs["channel"].astype(str))
    have_reported = "new_customers" in costs.columns
    rows: list[ChannelRow] = []
    totals: list[ChannelRow] = []
    for channel, part in costs.groupby("channel", sort=True):
        all_ids: list[pd.Index] = []
        reported_all = 0.0
        every_reported = have_reported
        for month, one in part.groupby("month", sort=True):
            ids = pd.Index(
                frame.loc[(frame["channel"] == channel) & (frame["month"] == month), "customer_id"]
            )
            reported = None
            if have_reported and one["new_customers"].notna().all():
                reported = float(one["new_customers"].sum())
                reported_all += reported
            else:
                every_reported = False
            all_ids.append(ids)
            rows.append(
                _row(
                    values,
                    realized,
                    channel=str(channel),
                    month=pd.Timestamp(month),
                    spend=float(one["spend"].sum()),
                    reported=reported,
                    ids=ids,
                    horizon_days=horizon_days,
                )
            )
        ids = all_ids[0].append(all_ids[1:]) if all_ids else pd.Index([])
        totals.append(
            _row(
                values,
                realized,
                channel=str(channel),
                month=None,
                spend=float(part["spend"].sum()),
                reported=reported_all if every_reported else None,
                ids=ids,
                horizon_days=horizon_days,
            )
        )
    return rows, totals


def ranked(totals: list[ChannelRow]) -> list[ChannelRow]:
    """Channels with a CLV:CAC, best first."""
    return sorted((t for t in totals if t.clv_cac is not None), key=lambda t: -t.clv_cac.value)  # type: ignore[union-attr]
