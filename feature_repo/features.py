"""Feature views, split by kind. Rules and formulas: the docstring of `clv.features.build`.

TTL: 400 days. A snapshot older than the TTL is not served (point-in-time joins return null).
400 days covers the longest sensible snapshot spacing (12M) with slack, so a scoring date
between two snapshots always finds the earlier one; a customer missing from every snapshot
of the last 400 days gets nulls instead of a stale row.
"""

from __future__ import annotations

from datetime import timedelta

from feast import FeatureView, Field
from feast.types import Float64, Int64, String

from .data_sources import customer_features_source
from .entities import customer

TTL = timedelta(days=400)


def _customer_view(name: str, description: str, *schema: Field) -> FeatureView:
    """A view of the one customer snapshot source: same entity, TTL and online serving."""
    return FeatureView(
        name=name,
        entities=[customer],
        ttl=TTL,
        source=customer_features_source,
        online=True,
        description=description,
        schema=list(schema),
    )


rfm = _customer_view(
    "rfm",
    "Recency-frequency-monetary summary in lifetimes conventions (days).",
    Field(name="frequency", dtype=Int64, description="repeat purchase days"),
    Field(name="recency", dtype=Float64, description="days from first to last purchase day"),
    Field(name="T", dtype=Float64, description="days from the first purchase day to t"),
    Field(name="monetary_value", dtype=Float64, description="mean value of repeat days"),
    Field(name="first_purchase_value", dtype=Float64, description="first day's value"),
)

_WINDOW_FIELDS = [
    field
    for w in (30, 90, 180, 365)
    for field in (
        Field(name=f"spend_{w}d", dtype=Float64, description=f"net spend, last {w} days"),
        Field(name=f"margin_{w}d", dtype=Float64, description=f"margin, last {w} days"),
        Field(name=f"orders_{w}d", dtype=Int64, description=f"orders, last {w} days"),
        Field(name=f"active_days_{w}d", dtype=Int64, description=f"purchase days, last {w}"),
        Field(name=f"refunds_{w}d", dtype=Float64, description=f"refunded, last {w} days"),
    )
]

spend_windows = _customer_view(
    "spend_windows",
    "Spend, margin, orders, active days and refunds over trailing windows.",
    *_WINDOW_FIELDS,
    Field(name="days_since_last_purchase", dtype=Float64),
    Field(name="gap_mean_days", dtype=Float64, description="mean inter-purchase gap"),
    Field(name="gap_std_days", dtype=Float64, description="std of inter-purchase gaps"),
    Field(name="spend_trend_90_365", dtype=Float64, description="90-day / 365-day rate"),
    Field(
        name="margin_ly_90d",
        dtype=Float64,
        description="margin in the 90 days that began a year before t: the same window a "
        "year earlier",
    ),
)

calendar = _customer_view(
    "calendar",
    "Where the horizon falls in the calendar.",
    Field(name="snapshot_month", dtype=Int64, description="month of the year of t (1-12)"),
)

customer_profile = _customer_view(
    "customer_profile",
    "Who the customer is: tenure, cohort and the attributes in force at t.",
    Field(name="tenure_days", dtype=Int64, description="days since signup or first order"),
    Field(name="signup_cohort", dtype=String, description="YYYY-MM of signup"),
    Field(name="acquisition_channel", dtype=String),
    Field(name="country", dtype=String),
    Field(name="plan", dtype=String),
)

_BEHAVIOUR_FIELDS = [
    field
    for kind in ("logins", "support_tickets", "feature_use")
    for field in (
        Field(name=f"{kind}_30d", dtype=Int64),
        Field(name=f"{kind}_90d", dtype=Int64),
        Field(name=f"{kind}_trend", dtype=Float64, description="30-day / 90-day rate"),
    )
]

behaviour = _customer_view(
    "behaviour",
    "Product usage: event counts over 30 and 90 days and their trend.",
    *_BEHAVIOUR_FIELDS,
)
