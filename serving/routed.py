"""Routed scoring for `/score`: one online batch, the champion and, for its share, the canary.

A customer goes to the canary when `clv.registry.canary.route(id, share, salt)` says so (a
stable hash; batch scoring uses the same function). In shadow mode the canary scores its share
too, but the champion answers. A canary that fails falls back to the champion for those
customers (counted as a canary error), so a bad canary never fails a request. The rows come
back in request order, with what each alias did (`Observation`, for the live metrics).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import pandas as pd

from clv.core.contracts import CANARY, CHAMPION
from clv.core.telemetry import MIXED_TIER
from clv.features.online_read import OnlineBatch
from clv.registry.canary import route_many
from clv.serving.reader import CallableReader
from clv.serving.scorer import Champion, Explanation, batch_matrix, explain, score_matrix
from clv.serving.state import ServingState

JsonValue: TypeAlias = dict[str, "JsonValue"] | list["JsonValue"] | str | int | float | bool | None


@dataclass(frozen=True)
class Observation:
    """What one alias did for one request (recorded in the live metrics)."""

    alias: str
    version: str
    customers: int
    error: bool
    cold_start: int
    predictions: np.ndarray
    tier: str = MIXED_TIER
    """The value tier of the customers this alias answered (`MIXED_TIER` when they differ)."""


@dataclass(frozen=True)
class Scored:
    """A scored batch: one answer row per id, and what the canary did (for the metrics)."""

    state: ServingState
    rows: list[dict[str, JsonValue]]
    to_canary: np.ndarray
    canary_clv: np.ndarray
    """The canary's CLV where it scored a known customer (NaN elsewhere), shadow included."""
    canary_failed: bool
    feature_seconds: np.ndarray
    """Each row's feature timestamp (epoch seconds; NaN where the store had none)."""

    def payload(
        self, start: int = 0, stop: int | None = None, *, requested: Sequence[str] | None = None
    ) -> dict[str, JsonValue]:
        """The `/score` body for rows [start, stop); `requested`: the ids as sent (an alias
        where the row's customer_id is the customer it resolved to), default the same."""
        rows: list[JsonValue] = []
        for i, row in enumerate(self.rows[start:stop]):
            rid = requested[i] if requested is not None else row["customer_id"]
            rows.append({"customer_id": row["customer_id"], "requested_id": rid, **row})
        return {
            "scores": rows,
            "model_version": self.state.champion.version,
            "alias": CHAMPION,
        }

    def observations(self, start: int = 0, stop: int | None = None) -> list[Observation]:
        """What each alias did for rows [start, stop) (one request's share of a batch)."""
        rows = self.rows[start:stop]
        out: list[Observation] = []
        mask = self.to_canary[start:stop]
        canary = self.state.canary
        if canary is not None and mask.any():
            n = int(mask.sum())
            if self.canary_failed:
                out.append(Observation(CANARY, canary.version, n, True, 0, np.empty(0)))
            else:
                clv = self.canary_clv[start:stop][mask]
                known = clv[~np.isnan(clv)]
                tier = _tier([r for r, m in zip(rows, mask.tolist(), strict=True) if m])
                out.append(
                    Observation(CANARY, canary.version, n, False, n - known.size, known, tier)
                )
        champion = [r for r in rows if r["alias"] == CHAMPION]
        if champion:
            cold = sum(1 for r in champion if r["cold_start"])
            clv = np.array(
                [r["clv"] for r in champion if not r["cold_start"] and r["clv"] is not None],
                dtype=np.float64,
            )
            version = self.state.champion.version
            out.append(
                Observation(CHAMPION, version, len(champion), False, cold, clv, _tier(champion))
            )
        return out

    def stored_feature_seconds(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """The feature timestamps of rows [start, stop) served from stored features."""
        seconds = self.feature_seconds[start:stop]
        return seconds[~np.isnan(seconds)]


def score_batch(state: ServingState, batch: OnlineBatch, *, explain_rows: bool = False) -> Scored:
    """Score a batch with the champion and, for its share, the canary (fallback: champion)."""
    n = len(batch.customer_ids)
    champion, canary = state.champion, state.canary
    to_canary = (
        route_many(batch.customer_ids, state.share, state.salt)
        if canary is not None
        else np.zeros(n, dtype=bool)
    )
    x = batch_matrix(champion, batch)
    answer_by = [champion] * n
    canary_preds: dict[str, np.ndarray] | None = None
    canary_clv = np.full(n, np.nan)
    canary_failed = False
    if canary is not None and to_canary.any():
        picked = np.flatnonzero(to_canary)
        try:
            cx = x if canary.model.feature_names == champion.model.feature_names else None
            cx = (cx if cx is not None else batch_matrix(canary, batch))[picked]
            canary_preds = score_matrix(canary, cx)
            clv = np.where(canary_preds["cold_start"], np.nan, canary_preds["clv"])
            canary_clv[picked] = clv
        except Exception:  # a failing canary never fails a request: the champion answers
            canary_preds = None
            canary_failed = True
        if canary_preds is not None and not state.shadow:
            for r in picked.tolist():
                answer_by[r] = canary
    answered = canary_preds is not None and not state.shadow
    champion_rows = np.flatnonzero(~to_canary) if answered else np.arange(n)
    champ_preds: dict[str, np.ndarray] = {}
    if len(champion_rows):
        champ_preds = score_matrix(champion, x if len(champion_rows) == n else x[champion_rows])
    # Assemble answers in request order.
    where: list[tuple[dict[str, np.ndarray], int]] = [({}, 0)] * n
    for k, i in enumerate(champion_rows.tolist()):
        where[i] = (champ_preds, k)
    if canary_preds is not None and answered:
        for k, i in enumerate(np.flatnonzero(to_canary).tolist()):
            where[i] = (canary_preds, k)
    explanations = _explanations(batch, answer_by) if explain_rows else None
    rows_out: list[dict[str, JsonValue]] = []
    for i in range(n):
        preds, k = where[i]
        model = answer_by[i]
        row: dict[str, JsonValue] = {
            "customer_id": batch.customer_ids[i],
            "clv": _finite(float(preds["clv"][k])),
            "clv_p10": _finite(float(preds["clv_p10"][k])),
            "clv_p90": _finite(float(preds["clv_p90"][k])),
            "churn_probability": _finite(float(preds["churn_probability"][k])),
            "segment": str(preds["segment"][k]),
            "model_version": model.version,
            "alias": model.alias,
            "feature_timestamp": _iso(batch.timestamps[i]),
            "cold_start": bool(preds["cold_start"][k]),
        }
        if explanations is not None:  # a cold start is the prior: no feature explains it
            row["explanation"] = None if row["cold_start"] else _explanation(explanations[i])
        rows_out.append(row)
    seconds = np.array([np.nan if ts is None else ts for ts in batch.timestamps], dtype=np.float64)
    return Scored(state, rows_out, to_canary, canary_clv, canary_failed, seconds)


def score_routed(
    state: ServingState, batch: OnlineBatch, *, explain_rows: bool = False
) -> tuple[dict[str, JsonValue], list[Observation]]:
    """The `/score` body for a batch, and what each alias did."""
    scored = score_batch(state, batch, explain_rows=explain_rows)
    return scored.payload(), scored.observations()


def score_payload(
    champion: Champion, features: pd.DataFrame, *, explain_rows: bool = False
) -> dict[str, JsonValue]:
    """The `/score` body for a frame of online features, scored by one model (no routing)."""
    reader = CallableReader(lambda ids: features)
    state = ServingState(champion=champion, canary=None, share=0.0, shadow=False, salt="")
    payload, _ = score_routed(
        state, reader.read(features["customer_id"].astype(str).tolist()), explain_rows=explain_rows
    )
    return payload


def _explanations(batch: OnlineBatch, answer_by: list[Champion]) -> list[Explanation]:
    frame = batch.frame()
    out: list[Explanation | None] = [None] * len(answer_by)
    for model in {id(m): m for m in answer_by}.values():
        rows = [i for i, m in enumerate(answer_by) if m is model]
        for i, e in zip(rows, explain(model.model, frame.iloc[rows]), strict=True):
            out[i] = e
    return [e for e in out if e is not None]


def _explanation(e: Explanation) -> dict[str, JsonValue]:
    return {
        "space": "margin (log CLV): bias + sum(top) + other = margin",
        "bias": _finite(e.bias),
        "top": [
            {"feature": c.feature, "value": c.value, "contribution": _finite(c.contribution)}
            for c in e.top
        ],
        "other": _finite(e.other),
        "margin": _finite(e.margin),
    }


def _tier(rows: Sequence[dict[str, JsonValue]]) -> str:
    """The value tier of the rows' segments ("high value / at risk" -> "high value"), or
    `MIXED_TIER` when they differ."""
    tiers = {str(r["segment"]).split(" / ", 1)[0] for r in rows}
    return tiers.pop() if len(tiers) == 1 else MIXED_TIER


def _finite(v: float) -> float | None:
    return v if v == v and abs(v) != float("inf") else None


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return _iso_of(seconds)


@functools.lru_cache(maxsize=4096)
def _iso_of(seconds: float) -> str:
    """A feature timestamp as ISO text; memoized: a materialization stamps many customers with
    the same few timestamps, and pandas takes ~15 us to format one."""
    return pd.Timestamp(seconds, unit="s", tz="UTC").isoformat()
