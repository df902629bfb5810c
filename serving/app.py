"""The scoring service: `POST /score`, `GET /healthz`, `GET /readyz`.

`create_app` wires a model source (default: the registry's champion alias) and a feature source
(default: the Feast online store) into a FastAPI app. Both are injectable, so the app runs on a
real model and a frame of features without MLflow or Feast. The champion is loaded at startup
and swapped atomically by `ChampionHolder.reload()` (optionally polled every
`serving.reload_seconds`); issue 5 adds canary routing, auth and metrics on top of this.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TypeAlias

import numpy as np
import pandas as pd
from fastapi import FastAPI
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict

from clv.settings import Settings
from serving.scorer import (
    Champion,
    Explanation,
    LoadedModelLike,
    ModelSource,
    ReferenceSource,
    explain,
    load_champion,
    registry_champion,
    registry_reference,
    score_features,
)

FeatureSource: TypeAlias = Callable[[Sequence[str]], pd.DataFrame]
JsonValue: TypeAlias = dict[str, "JsonValue"] | list["JsonValue"] | str | int | float | bool | None


class ScoreRequest(BaseModel):
    """Body of `POST /score`."""

    model_config = ConfigDict(extra="forbid")

    customer_ids: list[str]
    explain: bool = False


class ChampionHolder:
    """The model being served; `reload()` re-reads the alias and swaps in a new version."""

    def __init__(self, load: ModelSource, bind: Callable[[LoadedModelLike], Champion]) -> None:
        self._load = load
        self._bind = bind
        self._lock = threading.Lock()
        self.current: Champion | None = None
        self.error: str | None = None

    def reload(self) -> bool:
        """Read the alias; swap if its version changed. Keeps the old model when loading fails."""
        with self._lock:
            try:
                loaded = self._load()
                if self.current is not None and self.current.version == str(loaded.version):
                    self.error = None
                    return False
                champion = self._bind(loaded)
            except Exception as exc:  # a registry outage must not take serving down
                self.error = f"{type(exc).__name__}: {_first_line(exc)}"
                return False
            self.error = None
            self.current = champion  # one reference assignment: readers see old or new
            return True


def create_app(
    settings: Settings,
    *,
    model_source: ModelSource | None = None,
    feature_source: FeatureSource | None = None,
    reference_source: ReferenceSource | None = None,
) -> FastAPI:
    """The scoring app; sources default to the champion alias (MLflow) and Feast online."""
    models = model_source or registry_champion(settings)
    features = feature_source or _online_source(settings)
    if reference_source is None and settings.serving.value_thresholds is None:
        reference_source = registry_reference(settings)
    holder = ChampionHolder(
        models,
        lambda loaded: load_champion(
            loaded, serving=settings.serving, reference_source=reference_source
        ),
    )
    max_batch = settings.serving.max_batch
    every = settings.serving.reload_seconds

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(holder.reload)
        task = asyncio.create_task(_poll(holder, every)) if every > 0 else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = FastAPI(title="clv scoring", version="1", lifespan=lifespan)
    app.state.champion = holder
    app.state.feature_source = features

    @app.get("/healthz")
    def healthz() -> Response:
        return _json({"status": "ok"})

    @app.get("/readyz")
    def readyz() -> Response:
        champion = holder.current
        if champion is None:
            return _json({"ready": False, "reason": holder.error or "model not loaded"}, 503)
        if not callable(features):
            return _json({"ready": False, "reason": "feature source is not callable"}, 503)
        return _json({"ready": True, "model_version": champion.version, "alias": champion.alias})

    @app.post("/score")
    def score(body: ScoreRequest) -> Response:
        ids = body.customer_ids
        if not 1 <= len(ids) <= max_batch:
            return _json(
                {"detail": f"customer_ids must hold 1 to {max_batch} ids (got {len(ids)})"}, 422
            )
        champion = holder.current
        if champion is None:
            return _json({"detail": f"no model loaded ({holder.error or 'starting'})"}, 503)
        try:
            frame = features(ids)
        except Exception as exc:
            return _json(
                {"detail": f"feature store unavailable: {type(exc).__name__}: {_first_line(exc)}"},
                503,
            )
        if len(frame) != len(ids):
            return _json(
                {"detail": f"feature source returned {len(frame)} rows for {len(ids)} ids"}, 502
            )
        return _json(score_payload(champion, frame, explain_rows=body.explain))

    return app


def score_payload(
    champion: Champion, features: pd.DataFrame, *, explain_rows: bool = False
) -> dict[str, JsonValue]:
    """The `/score` response for a frame of online features (customer_id, features, ts)."""
    scores = score_features(champion, features)
    n = len(scores)
    ts: list[str | None] = [None] * n
    if "feature_timestamp" in features.columns:
        ts = _timestamps(features["feature_timestamp"])
    explanations = explain(champion.model, features) if explain_rows else None
    cols = {
        c: _floats(scores[c].to_numpy()) for c in ("clv", "clv_p10", "clv_p90", "churn_probability")
    }
    ids = scores["customer_id"].tolist()
    segments = scores["segment"].tolist()
    cold = scores["cold_start"].tolist()
    rows: list[JsonValue] = []
    for i in range(n):
        row: dict[str, JsonValue] = {
            "customer_id": ids[i],
            "clv": cols["clv"][i],
            "clv_p10": cols["clv_p10"][i],
            "clv_p90": cols["clv_p90"][i],
            "churn_probability": cols["churn_probability"][i],
            "segment": segments[i],
            "model_version": champion.version,
            "alias": champion.alias,
            "feature_timestamp": ts[i],
            "cold_start": bool(cold[i]),
        }
        if explanations is not None:
            row["explanation"] = _explanation(explanations[i])
        rows.append(row)
    return {"scores": rows, "model_version": champion.version, "alias": champion.alias}


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


def _floats(values: np.ndarray) -> list[float | None]:
    return [v if v == v and abs(v) != float("inf") else None for v in values.tolist()]


def _finite(v: float) -> float | None:
    return v if np.isfinite(v) else None


def _timestamps(col: pd.Series) -> list[str | None]:
    ts = pd.to_datetime(col, utc=True, errors="coerce")
    return [None if pd.isna(t) else t.isoformat() for t in ts]


@functools.cache
def _dumps() -> Callable[[object], bytes]:
    try:
        import orjson
    except ImportError:
        return lambda o: json.dumps(o, separators=(",", ":"), allow_nan=False).encode()
    return lambda o: bytes(orjson.dumps(o))


def _json(payload: dict[str, JsonValue], status: int = 200) -> Response:
    return Response(_dumps()(payload), status_code=status, media_type="application/json")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


async def _poll(holder: ChampionHolder, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        await asyncio.to_thread(holder.reload)


def _online_source(settings: Settings) -> FeatureSource:
    def load(customer_ids: Sequence[str]) -> pd.DataFrame:
        from features.feast_io import online_features

        frame: pd.DataFrame = online_features(settings, list(customer_ids))
        return frame

    return load
