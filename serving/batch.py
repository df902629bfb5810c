"""`clv score --all`: score every customer point-in-time at a snapshot date.

Features come from the offline store as of `as_of` (default: the latest feature snapshot), the
models from the registry: customers are routed to champion or canary by the same stable hash as
`/score` (shadow mode: the champion scores everyone). The numbers come from
`clv.serving.scorer.score_matrix`, the function `/score` uses. Writes `scores.parquet` and, beside
it, `at_risk.csv`: customers at or above `serving.at_risk_min_clv` (default: the high-value
cut) and `serving.at_risk_min_churn` (default: `churn_threshold`), cold starts excluded, highest
CLV first; when `serving.webhook_url` is set they are POSTed there (the CRM trigger).
A customer with a feature the models read as +inf or -inf is not scored (XGBoost would score
it as an extreme value without a word): it is counted per feature in the result and a one-line
warning says so (`non_finite_rows`).

`clv score ID...` (`score_ids`) scores chosen customers the same way: each id may be an alias
(`clv.inputs.identities`), answered for the customer it is at `as_of`, with the id as sent in
`requested_id`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

import numpy as np
import pandas as pd

from clv.core.contracts import CANARY, CHAMPION
from clv.core.errors import DataError, NotReadyError
from clv.core.live_stats import BatchScoring, write_batch_scoring
from clv.core.settings import ServingSettings, Settings
from clv.inputs.subscriptions import read_subscriptions
from clv.model.contractual_bundle import ContractualModel, with_contractual
from clv.registry.canary import route_many
from clv.serving.routing import MlflowRegistry, ModelRegistry, SingleModel
from clv.serving.scorer import (
    Champion,
    ModelSource,
    ReferenceSource,
    load_champion,
    registry_reference,
    score_features,
)
from clv.serving.webhook import WebhookResult, post_at_risk

SnapshotSource: TypeAlias = Callable[[pd.Timestamp], pd.DataFrame]
EntitySource: TypeAlias = Callable[[pd.DataFrame], pd.DataFrame]
"""Entity rows (customer_id, event_timestamp) -> their point-in-time features, same rows."""
AT_RISK_FILE = "at_risk.csv"


@dataclass(frozen=True)
class BatchResult:
    """What `score_all` wrote."""

    path: Path
    at_risk_path: Path
    rows: int
    at_risk: int
    cold_start: int
    model_version: str
    alias: str
    as_of: pd.Timestamp
    segments: dict[str, int]
    thresholds: tuple[float, float]
    thresholds_source: str
    canary_version: str | None = None
    canary_rows: int = 0
    webhook: WebhookResult | None = None
    excluded: int = 0
    """Customers not scored: a feature the models read is +inf or -inf (`non_finite_rows`)."""
    non_finite: dict[str, int] = field(default_factory=dict)
    """Per feature with any: the excluded customers with a non-finite value there."""
    record: BatchScoring | None = None
    """What the servers expose of this run (`clv.core.live_stats`): its time and coverage."""

    @property
    def warning(self) -> str | None:
        """One line saying who was not scored and why, or None when everyone was."""
        if not self.excluded:
            return None
        return (
            f"warning: {self.excluded:,} of {self.rows + self.excluded:,} customers not scored, "
            f"non-finite features (inf or -inf): {_counted(self.non_finite)}"
        )


def latest_snapshot(settings: Settings) -> pd.Timestamp:
    """The newest snapshot date in the built feature table."""
    from clv.features.snapshots import snapshot_times

    return snapshot_times(settings)[-1]


def score_snapshot(
    champion: Champion,
    features: pd.DataFrame,
    *,
    as_of: pd.Timestamp,
    canary: Champion | None = None,
    share: float = 0.0,
    shadow: bool = False,
    salt: str = "",
) -> pd.DataFrame:
    """Scores for every row of a point-in-time feature frame, tagged with version and alias.

    With a canary (not shadow), the customers `route` sends to it are scored by it.
    """
    features = features.reset_index(drop=True)
    ids = features["customer_id"].astype(str).tolist()
    to_canary = (
        route_many(ids, share, salt)
        if canary is not None and not shadow
        else np.zeros(len(features), dtype=bool)
    )
    parts = []
    for model, mask in ((champion, ~to_canary), (canary, to_canary)):
        if model is None or not mask.any():
            continue
        chosen = features if mask.all() else features.loc[mask]
        scores = score_features(model, chosen)
        scores["model_version"] = model.version
        scores["alias"] = model.alias
        parts.append(scores)
    scores = pd.concat(parts) if len(parts) > 1 else parts[0]
    scores = scores.sort_index(kind="stable") if len(parts) > 1 else scores
    scores["as_of"] = as_of
    return scores.reset_index(drop=True)


def non_finite_rows(
    models: Sequence[Champion], features: pd.DataFrame
) -> tuple[np.ndarray, dict[str, int]]:
    """Rows holding a feature some model reads as +inf or -inf (its float32 matrix, so a value
    beyond +/-3.4e38 too; NaN is missing, which the models handle), and per feature how many.
    XGBoost's inplace predict scores such a row as an extreme value without a word."""
    bad = np.zeros(len(features), dtype=bool)
    counts: dict[str, int] = {}
    for champion in models:
        with np.errstate(over="ignore"):
            inf = np.isinf(champion.model.matrix(features))
        bad |= inf.any(axis=1)
        for name, n in zip(champion.model.feature_names, inf.sum(axis=0), strict=True):
            if n:
                counts[name] = max(counts.get(name, 0), int(n))
    return bad, counts


def _counted(counts: dict[str, int], *, shown: int = 5) -> str:
    """Counts as text, most first: "a 3, b 1" (at most `shown`, then how many more)."""
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    more = f" and {len(ranked) - shown} more" if len(ranked) > shown else ""
    return ", ".join(f"{name} {n:,}" for name, n in ranked[:shown]) + more


def at_risk(scores: pd.DataFrame, *, min_clv: float, min_churn: float) -> pd.DataFrame:
    """Known customers with CLV >= min_clv and churn >= min_churn, highest CLV first."""
    chosen = scores[
        (scores["clv"] >= min_clv)
        & (scores["churn_probability"] >= min_churn)
        & ~scores["cold_start"].astype(bool)
    ]
    return chosen.sort_values(["clv", "customer_id"], ascending=[False, True], kind="stable")


def at_risk_thresholds(champion: Champion, serving: ServingSettings) -> tuple[float, float]:
    """(min CLV, min churn probability): config, else the high-value cut and churn threshold."""
    min_clv = (
        serving.at_risk_min_clv
        if serving.at_risk_min_clv is not None
        else champion.value_thresholds[1]
    )
    min_churn = (
        serving.at_risk_min_churn
        if serving.at_risk_min_churn is not None
        else champion.churn_threshold
    )
    return float(min_clv), float(min_churn)


def webhook_payload(
    risky: pd.DataFrame, *, as_of: pd.Timestamp, thresholds: tuple[float, float]
) -> dict[str, object]:
    """The JSON a CRM receives: who is at risk, how valuable, scored by which version."""
    cols = ["customer_id", "clv", "churn_probability", "segment", "model_version", "alias"]
    records = risky[cols].to_dict(orient="records")
    return {
        "event": "clv.at_risk",
        "as_of": as_of.isoformat(),
        "min_clv": thresholds[0],
        "min_churn_probability": thresholds[1],
        "count": len(records),
        "customers": records,
    }


@dataclass(frozen=True, eq=False)
class Scored:
    """Every customer known at `as_of`, scored by the served models (`score_everyone`)."""

    scores: pd.DataFrame
    as_of: pd.Timestamp
    models: _Models
    excluded: int
    """Customers not scored: a non-finite feature (`non_finite_rows`)."""
    non_finite: dict[str, int]


def score_everyone(
    settings: Settings,
    *,
    as_of: pd.Timestamp | None = None,
    model_source: ModelSource | None = None,
    registry: ModelRegistry | None = None,
    reference_source: ReferenceSource | None = None,
    snapshot_source: SnapshotSource | None = None,
) -> Scored:
    """Score every customer known at `as_of` (default: the latest snapshot) with the champion
    and the canary, as `/score` would; customers with a non-finite feature are left out."""
    when = as_of if as_of is not None else latest_snapshot(settings)
    if registry is None:
        registry = (
            SingleModel(model_source) if model_source is not None else MlflowRegistry(settings)
        )
    if reference_source is None:
        reference_source = registry_reference(settings)
    models = _models(settings, registry, reference_source)
    features = (snapshot_source or _offline_snapshot(settings))(when)
    if features.empty:
        raise DataError(f"no customers known before {when.date()}; check --as-of")
    served = [m for m in (models.champion, models.canary) if m is not None]
    bad, non_finite = non_finite_rows(served, features)
    if bad.all():
        raise DataError(
            f"no customer at {when.date()} scored: every one has a non-finite feature "
            f"({_counted(non_finite)})"
        )
    scores = models.score(settings, features[~bad] if bad.any() else features, as_of=when)
    return Scored(scores, when, models, int(bad.sum()), non_finite)


def score_all(
    settings: Settings,
    *,
    as_of: pd.Timestamp | None = None,
    out: Path,
    model_source: ModelSource | None = None,
    registry: ModelRegistry | None = None,
    reference_source: ReferenceSource | None = None,
    snapshot_source: SnapshotSource | None = None,
    warn: Callable[[str], object] | None = None,
) -> BatchResult:
    """Score every customer known at `as_of`; write scores.parquet and at_risk.csv (+ webhook).

    Customers with a non-finite feature are left out and counted; the one-line warning goes to
    `warn` (default: stderr, beside the command's progress lines)."""
    scored = score_everyone(
        settings,
        as_of=as_of,
        model_source=model_source,
        registry=registry,
        reference_source=reference_source,
        snapshot_source=snapshot_source,
    )
    scores, when, champion, canary = (
        scored.scores,
        scored.as_of,
        scored.models.champion,
        scored.models.canary,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    scores.to_parquet(out, index=False)
    thresholds = at_risk_thresholds(champion, settings.serving)
    risky = at_risk(scores, min_clv=thresholds[0], min_churn=thresholds[1])
    risk_path = out.parent / AT_RISK_FILE
    risky.to_csv(risk_path, index=False)
    hook = (
        post_at_risk(
            settings.serving.webhook_url,
            webhook_payload(risky, as_of=when, thresholds=thresholds),
        )
        if settings.serving.webhook_url
        else None
    )
    counts = scores["segment"].value_counts().sort_index()
    result = BatchResult(
        path=out,
        at_risk_path=risk_path,
        rows=len(scores),
        at_risk=len(risky),
        cold_start=int(scores["cold_start"].sum()),
        model_version=champion.version,
        alias=champion.alias,
        as_of=when,
        segments={str(k): int(v) for k, v in counts.items()},
        thresholds=champion.value_thresholds,
        thresholds_source=champion.thresholds_source,
        canary_version=canary.version if canary is not None else None,
        canary_rows=int((scores["alias"] == CANARY).sum()),
        webhook=hook,
        excluded=scored.excluded,
        non_finite=scored.non_finite,
    )
    active, active_scored = coverage(settings, scores["customer_id"])
    record = BatchScoring(
        finished_at=time.time(),
        scored=len(scores),
        active=active,
        active_scored=active_scored,
        model_version=champion.version,
    )
    write_batch_scoring(settings, record)
    result = dataclasses.replace(result, record=record)
    if result.warning is not None:
        (warn or _stderr)(result.warning)
    return result


def coverage(settings: Settings, scored: pd.Series) -> tuple[int | None, int | None]:
    """(active customers, those of them in `scored`): active = a purchase in the
    `model.churn_window_days` before the log's last transaction, under their canonical id then.
    (None, None) without a transactions table."""
    from clv.core.store import duckdb_connection, table_path
    from clv.inputs.identities import canonical_ids, read_identities

    path = table_path(settings, "transactions")
    if not path.exists():
        return None, None
    con = duckdb_connection()
    try:
        rows = con.execute(
            "WITH t AS (SELECT customer_id, CAST(ts AS TIMESTAMPTZ) AS ts FROM read_parquet(?)) "
            "SELECT DISTINCT CAST(customer_id AS VARCHAR), (SELECT max(ts) FROM t) FROM t "
            f"WHERE ts > (SELECT max(ts) FROM t) - INTERVAL {settings.model.churn_window_days} DAY",
            [str(path)],
        ).fetchall()
    finally:
        con.close()
    if not rows:
        return 0, 0
    end = pd.Timestamp(rows[0][1])
    end = end.tz_localize("UTC") if end.tzinfo is None else end.tz_convert("UTC")
    active = set(canonical_ids([r[0] for r in rows], read_identities(settings), end))
    return len(active), int(scored.astype(str).isin(active).sum())


def _stderr(message: str) -> None:
    from clv.core.console import progress

    progress(message)


def score_ids(
    settings: Settings,
    customer_ids: Sequence[str],
    *,
    as_of: pd.Timestamp | None = None,
    model_source: ModelSource | None = None,
    registry: ModelRegistry | None = None,
    reference_source: ReferenceSource | None = None,
    entity_source: EntitySource | None = None,
) -> pd.DataFrame:
    """Scores of the given ids at `as_of` (default: the latest snapshot), in request order:
    an alias is scored as the customer it is then (`customer_id`), the id as sent is
    `requested_id`; an id without features is a cold start."""
    from clv.inputs.identities import canonical_ids, read_identities

    if not customer_ids:
        raise DataError("no customer ids to score")
    when = as_of if as_of is not None else latest_snapshot(settings)
    if registry is None:
        registry = (
            SingleModel(model_source) if model_source is not None else MlflowRegistry(settings)
        )
    models = _models(settings, registry, reference_source or registry_reference(settings))
    resolved = canonical_ids(customer_ids, read_identities(settings), when)
    unique = list(dict.fromkeys(resolved))
    entities = pd.DataFrame(
        {"customer_id": unique, "event_timestamp": pd.Series([when] * len(unique))}
    )
    features = (entity_source or _offline_features(settings))(entities)
    scores = models.score(settings, features, as_of=when).set_index("customer_id")
    out = scores.loc[resolved].reset_index()
    out.insert(1, "requested_id", [str(i) for i in customer_ids])
    return out


@dataclass(frozen=True)
class _Models:
    """The champion, the canary (if any) and how the plan routes between them."""

    champion: Champion
    canary: Champion | None
    share: float
    shadow: bool
    contractual: dict[str, ContractualModel] = field(default_factory=dict)
    """The subscribers' contractual part of each serving version that has one."""

    def score(
        self, settings: Settings, features: pd.DataFrame, *, as_of: pd.Timestamp
    ) -> pd.DataFrame:
        scores = score_snapshot(
            self.champion,
            features,
            as_of=as_of,
            canary=self.canary,
            share=self.share,
            shadow=self.shadow,
            salt=settings.registry.route_salt,
        )
        log = read_subscriptions(settings) if self.contractual else None
        if log is None:
            return scores
        return with_contractual(scores, self.contractual, log, as_of=as_of)


def _models(
    settings: Settings, registry: ModelRegistry, reference_source: ReferenceSource
) -> _Models:
    plan = registry.plan()
    if plan.champion is None:
        raise NotReadyError("no champion yet: run `clv train`")

    def bind(version: str, alias: str) -> Champion:
        loaded = registry.load(version, alias)
        return load_champion(loaded, serving=settings.serving, reference_source=reference_source)

    canary = (
        bind(plan.canary, CANARY)
        if plan.canary is not None and plan.canary != plan.champion
        else None
    )
    parts: dict[str, ContractualModel] = {}
    if isinstance(registry, MlflowRegistry):
        from clv.registry.mlflow_io import load_contractual

        for version in {plan.champion, *([canary.version] if canary is not None else [])}:
            part = load_contractual(settings, version)
            if part is not None:
                parts[version] = part
    return _Models(bind(plan.champion, CHAMPION), canary, plan.share, plan.shadow, parts)


def _offline_features(settings: Settings) -> EntitySource:
    def load(entities: pd.DataFrame) -> pd.DataFrame:
        from clv.features.feast_io import historical_features

        frame: pd.DataFrame = historical_features(settings, entities)
        return frame

    return load


def _offline_snapshot(settings: Settings) -> SnapshotSource:
    def load(when: pd.Timestamp) -> pd.DataFrame:
        from clv.features.feast_io import historical_features, snapshot_entities

        entities = snapshot_entities(settings, when)
        frame: pd.DataFrame = historical_features(settings, entities)
        return frame

    return load
