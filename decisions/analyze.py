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
from clv.decisions.experiments import Comparison, compare, outcomes, relative_uplift
from clv.decisions.retention import Selection, realized_roi, select
from clv.decisions.values import Customers, customers_at
from clv.inputs.identities import read_identities
from clv.serving.webhook import WebhookResult, post_at_risk

COHORTS_FILE = "cohorts.json"
TRIANGLE_FILE = "cohort_triangle.csv"
CHANNELS_FILE = "channels.json"
EXPERIMENTS_FILE = "experiments.json"


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


@dataclass(frozen=True, eq=False)
class ExperimentRun:
    as_of: pd.Timestamp
    comparisons: list[Comparison]
    path: Path


def _predicted_before(settings: Settings, when: pd.Timestamp) -> pd.Series:
    """The served model's predicted CLV by customer on the last snapshot at or before `when`
    (empty when no snapshot is that old)."""
    from clv.features.snapshots import snapshot_times
    from clv.serving.batch import score_everyone

    earlier = [t for t in snapshot_times(settings) if t <= when]
    if not earlier:
        return pd.Series(dtype=float)
    scores = score_everyone(settings, as_of=earlier[-1]).scores
    return scores.set_index(scores["customer_id"].astype(str))["clv"].astype(float)


def analyze_experiments(settings: Settings, *, values: Customers) -> ExperimentRun:
    """Every experiment of the assignments table judged on realized value (see
    clv.decisions.experiments); writes experiments.json."""
    if not has_table(settings, "assignments"):
        raise NotReadyError(
            "no assignments in the offline store: ingest experiment, customer_id, arm, "
            "assigned_at with `clv data ingest PATH --table assignments`"
        )
    assignments = read_table(settings, "assignments")
    results = outcomes(
        assignments,
        read_table(settings, "transactions"),
        as_of=values.as_of,
        margin_rate=settings.model.margin_rate,
        annual_discount_rate=settings.model.annual_discount_rate,
        identities=read_identities(settings),
    )
    after = values.frame.set_index("customer_id")["clv"]
    comparisons: list[Comparison] = []
    for _, rows in results.groupby("experiment", sort=True):
        before = _predicted_before(settings, rows["assigned_at"].min())
        comparisons += compare(
            rows,
            before=before,
            after=after,
            control=settings.decisions.control_arm,
            horizon_days=settings.model.horizon_days,
            as_of=values.as_of,
            samples=settings.decisions.bootstrap_samples,
        )
    path = decisions_dir(settings) / EXPERIMENTS_FILE
    _write(
        path,
        {"as_of": values.as_of.isoformat(), "experiments": [c.as_dict() for c in comparisons]},
    )
    return ExperimentRun(values.as_of, comparisons, path)


RETENTION_FILE = "retention.json"
RETENTION_PREFIX = "retention-"


@dataclass(frozen=True, eq=False)
class RetentionRun:
    selection: Selection
    as_of: pd.Timestamp
    path: Path
    basis: dict[str, object]
    """What the expected saved margin rests on: a save rate, or an experiment's uplift."""
    webhook: WebhookResult | None
    past: list[dict[str, object]]
    budget_left: float


def _past_retention(settings: Settings, run: ExperimentRun | None) -> list[dict[str, object]]:
    """Earlier selections, newest first, with their realized ROI once their experiment matured."""
    by_name = {c.experiment: c for c in (run.comparisons if run is not None else [])}
    out = []
    for path in sorted((decisions_dir(settings) / "runs").glob(f"{RETENTION_PREFIX}*.json")):
        doc = json.loads(path.read_text())
        comparison = by_name.get(str(doc["experiment"]))
        roi = None
        if comparison is not None and comparison.matured:
            roi = realized_roi(
                comparison.uplift.value, int(doc["treated"]), float(doc["offer_cost"])
            )
        out.append(
            {
                "experiment": doc["experiment"],
                "assigned_at": doc["assigned_at"],
                "treated": doc["treated"],
                "holdout": doc["holdout"],
                "expected_cost": doc["expected_cost"],
                "expected_roi": doc["expected_roi"],
                "matures_at": None if comparison is None else comparison.matures_at.isoformat(),
                "realized_roi": roi,
            }
        )
    return out[::-1]


def decide_retention(
    settings: Settings,
    *,
    budget: float,
    offer_cost: float,
    save_rate: float | None = None,
    experiment: str | None = None,
    name: str | None = None,
    now: pd.Timestamp | None = None,
) -> RetentionRun:
    """Choose this period's retention offers (clv.decisions.retention), record the selection
    and its holdout as an experiment in the assignments table (through ingest), POST the
    treated customers to `serving.webhook_url`, and write retention.json."""
    from clv.core.errors import DataError
    from clv.inputs.ingest import ingest
    from clv.serving.batch import at_risk_thresholds, score_everyone

    if (save_rate is None) == (experiment is None):
        raise DataError(
            "give --save-rate R or --experiment NAME (the measured uplift), one of them"
        )
    instant = pd.Timestamp.now(tz="UTC") if now is None else now
    scored = score_everyone(settings)
    decisions = settings.decisions
    measured: ExperimentRun | None = None
    if has_table(settings, "assignments"):
        values = load_values(settings, as_of=scored.as_of)
        measured = analyze_experiments(settings, values=values)
    basis: dict[str, object]
    uplift = None
    if experiment is not None:
        found = [c for c in (measured.comparisons if measured else []) if c.name == experiment]
        if not found:
            raise DataError(f"no experiment {experiment!r} in the assignments table")
        if found[0].srm:
            raise DataError(
                f"experiment {experiment!r} has a sample-ratio mismatch (p={found[0].srm_p:.2g}): "
                "its uplift cannot be trusted"
            )
        rel = relative_uplift(found[0])
        uplift = rel.value
        basis = {"from_experiment": experiment, "relative_uplift": rel.as_dict()}
    else:
        basis = {"save_rate": save_rate}
    recent: set[str] = set()
    if has_table(settings, "assignments"):
        a = read_table(settings, "assignments")
        since = instant - pd.Timedelta(days=decisions.retention_cooldown_days)
        mine = a["experiment"].astype(str).str.startswith(RETENTION_PREFIX)
        recent = set(a.loc[mine & (a["assigned_at"] >= since), "customer_id"].astype(str))
    past = _past_retention(settings, measured)
    left = budget
    if decisions.retention_max_spend is not None:
        start = instant - pd.Timedelta(days=decisions.retention_period_days)
        spent = 0.0
        for p in past:
            if pd.Timestamp(str(p["assigned_at"])) >= start:
                spent += float(str(p["expected_cost"]))
        left = max(0.0, min(budget, decisions.retention_max_spend - spent))
    chosen_name = name or f"{RETENTION_PREFIX}{instant.strftime('%Y-%m-%dT%H%M%S')}"
    selection = select(
        scored.scores,
        name=chosen_name,
        budget=left,
        offer_cost=offer_cost,
        min_churn=at_risk_thresholds(scored.models.champion, settings.serving)[1],
        holdout=decisions.retention_holdout,
        save_rate=save_rate,
        uplift=uplift,
        recent=recent,
    )
    if len(selection.chosen):
        staged = settings.state_dir / "decisions" / f"assignments-{chosen_name}.parquet"
        staged.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(
            {
                "experiment": chosen_name,
                "customer_id": selection.chosen["customer_id"].astype(str),
                "arm": selection.chosen["arm"],
                "assigned_at": instant,
            }
        ).to_parquet(staged, index=False)
        ingest(settings, staged, table="assignments", now=instant)
        staged.unlink()
    hook = None
    if settings.serving.webhook_url and len(selection.treated):
        records = selection.treated[["customer_id", "clv", "churn_probability", "expected_saved"]]
        hook = post_at_risk(
            settings.serving.webhook_url,
            {
                "event": "clv.retention",
                "experiment": chosen_name,
                "as_of": scored.as_of.isoformat(),
                "offer_cost": offer_cost,
                "count": len(records),
                "customers": records.to_dict(orient="records"),
            },
        )
    doc: dict[str, object] = {
        "as_of": scored.as_of.isoformat(),
        "assigned_at": instant.isoformat(),
        "experiment": chosen_name,
        "budget": budget,
        "budget_left": left,
        "offer_cost": offer_cost,
        **basis,
        "candidates": selection.candidates,
        "excluded_recent": selection.excluded_recent,
        "selected": len(selection.chosen),
        "treated": len(selection.treated),
        "holdout": len(selection.holdout),
        "expected_saved": selection.expected_saved,
        "expected_cost": selection.expected_cost,
        "expected_roi": selection.expected_roi,
        "customers": selection.treated[
            ["customer_id", "clv", "churn_probability", "expected_saved"]
        ].to_dict(orient="records"),
        "past": past,
    }
    path = decisions_dir(settings) / RETENTION_FILE
    _write(path, doc)
    _write(decisions_dir(settings) / "runs" / f"{chosen_name}.json", doc)
    return RetentionRun(selection, scored.as_of, path, basis, hook, past, left)
