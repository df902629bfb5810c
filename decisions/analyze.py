"""`clv analyze`: the workspace's cohorts and channels, scored by the served models, written to
`reports/decisions/` (JSON a dashboard or a notebook reads, and the cohort triangle as CSV).

Each run keeps the previous one's cohorts (`cohorts.json` is read before it is replaced, and a
copy of every run stays in `reports/decisions/runs/`), so that a cohort whose outlook fell is
flagged against the run before.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from clv.core.errors import NotReadyError
from clv.core.settings import Settings
from clv.core.store import has_table, read_table
from clv.decisions.channels import ChannelRow, channel_table, ranked
from clv.decisions.cohorts import (
    Cohort,
    adopters,
    cohort_table,
    largest_drop,
    signup_months,
    triangle_frame,
)
from clv.decisions.values import Customers, customers_at
from clv.inputs.identities import read_identities

COHORTS_FILE = "cohorts.json"
TRIANGLE_FILE = "cohort_triangle.csv"
CHANNELS_FILE = "channels.json"


def decisions_dir(settings: Settings) -> Path:
    return settings.reports_dir / "decisions"


def load_values(settings: Settings, *, as_of: pd.Timestamp | None = None) -> Customers:
    """Every customer at `as_of` (default: the latest snapshot), scored by the served models."""
    from clv.serving.batch import score_everyone

    scored = score_everyone(settings, as_of=as_of)
    customers = read_table(settings, "customers") if has_table(settings, "customers") else None
    return customers_at(
        read_table(settings, "transactions"),
        customers,
        scored.scores,
        as_of=scored.as_of,
        margin_rate=settings.model.margin_rate,
        annual_discount_rate=settings.model.annual_discount_rate,
        identities=read_identities(settings),
    )


@dataclass(frozen=True, eq=False)
class CohortRun:
    as_of: pd.Timestamp
    signup: list[Cohort]
    adoption: list[Cohort]
    path: Path
    triangle_path: Path
    previous_run: str | None

    @property
    def flagged(self) -> list[Cohort]:
        return [c for c in self.signup + self.adoption if c.flagged]

    @property
    def largest_drop(self) -> Cohort | None:
        return largest_drop(self.signup + self.adoption)


def _previous(path: Path) -> tuple[dict[str, dict[str, dict[str, float]]], str | None]:
    """The last run's outlook per customer, by kind and cohort name, and when it ran."""
    if not path.exists():
        return {}, None
    doc = json.loads(path.read_text())
    out: dict[str, dict[str, dict[str, float]]] = {}
    for c in doc.get("cohorts", []):
        out.setdefault(str(c["kind"]), {})[str(c["name"])] = c["outlook_per_customer"]
    return out, str(doc.get("ran_at"))


def _write(path: Path, doc: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str))
    tmp.replace(path)


def analyze_cohorts(settings: Settings, *, values: Customers) -> CohortRun:
    """Signup-month and early-adoption cohorts at the values' as_of; writes cohorts.json (the
    previous one kept in runs/) and the triangle CSV."""
    out = decisions_dir(settings)
    path = out / COHORTS_FILE
    previous, previous_run = _previous(path)
    signup = cohort_table(
        values, signup_months(values), kind="signup_month", previous=previous.get("signup_month")
    )
    adoption: list[Cohort] = []
    if has_table(settings, "events"):
        events = read_table(settings, "events")
        kinds = settings.decisions.adoption_events or tuple(
            sorted(events["event_type"].dropna().astype(str).unique())
        )
        for event_type in kinds:
            groups = adopters(
                values, events, event_type=event_type, days=settings.decisions.adoption_days
            )
            adoption += cohort_table(
                values, groups, kind="adoption", previous=previous.get("adoption")
            )
    ran_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    doc: dict[str, object] = {
        "as_of": values.as_of.isoformat(),
        "ran_at": ran_at,
        "previous_run": previous_run,
        "cohorts": [c.as_dict() for c in signup + adoption],
    }
    _write(path, doc)
    _write(out / "runs" / f"cohorts-{ran_at.replace(':', '')}.json", doc)
    triangle_path = out / TRIANGLE_FILE
    triangle_frame(signup + adoption).to_csv(triangle_path, index=False)
    return CohortRun(values.as_of, signup, adoption, path, triangle_path, previous_run)


@dataclass(frozen=True, eq=False)
class ChannelRun:
    as_of: pd.Timestamp
    months: list[ChannelRow]
    channels: list[ChannelRow]
    path: Path

    @property
    def ranked(self) -> list[ChannelRow]:
        return ranked(self.channels)

    @property
    def flagged(self) -> list[ChannelRow]:
        return [r for r in self.channels + self.months if r.flagged]


def analyze_channels(settings: Settings, *, values: Customers) -> ChannelRun:
    """CAC, CLV per acquired customer, CLV:CAC and payback per channel and month, from the
    acquisition_costs table; writes channels.json."""
    if not has_table(settings, "acquisition_costs"):
        raise NotReadyError(
            "no acquisition_costs in the offline store: ingest a file of channel, month, spend "
            "(and optionally new_customers) with `clv data ingest PATH --table acquisition_costs`"
        )
    costs = read_table(settings, "acquisition_costs")
    months, channels = channel_table(values, costs, horizon_days=settings.model.horizon_days)
    path = decisions_dir(settings) / CHANNELS_FILE
    _write(
        path,
        {
            "as_of": values.as_of.isoformat(),
            "channels": [r.as_dict() for r in channels],
            "months": [r.as_dict() for r in months],
        },
    )
    return ChannelRun(values.as_of, months, channels, path)
