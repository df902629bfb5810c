"""The generated worlds that make modelling choices apart from the worlds that judge them.

Every modelling choice (features, hyper-parameter ranges, defaults, thresholds) is made on
DEVELOPMENT only. JUDGEMENT holds what the tests, the model_quality benchmark and the README
judge on: other seeds, two sizes, both label horizons, and families that DEVELOPMENT never
shows (`comeback`, `decline`), so a choice that merely fits the development worlds loses there.
TEST_WORLDS are the small judgement worlds the model tests use. The subscription (SaaS) worlds
are apart, in SAAS_WORLDS (SAAS_DEVELOPMENT, SAAS_JUDGEMENT), by the same rules: judgement
has other seeds, both sizes, and two families development never shows: `saas_price_change`,
and `saas_wear`, whose retention is not shaped like the sBG baseline's (the generator is not
the world: docs/decisions/saas-world.md).

History needed by a horizon: an embargoed evaluation closes the train label windows before
validation's and validation's before the test origin, so a 365-day horizon needs at least 48
months of history and a 90-day horizon about 18.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

import pandas as pd

from clv.inputs.generator import GeneratedData, generate
from clv.inputs.saas import SaasData, SaasWorld, generate_saas
from clv.inputs.worlds import WorldName

if TYPE_CHECKING:
    from clv.core.settings import Settings
    from clv.training.dataset import TrainingData

CATEGORICAL = ("signup_cohort", "acquisition_channel", "country", "plan")


@dataclass(frozen=True)
class World:
    """One generated world and the label horizon evaluated on it."""

    name: str
    family: WorldName
    seed: int
    customers: int
    months: int
    horizon_days: int


WORLDS: tuple[World, ...] = (
    World("dev-mixed-s101", "mixed", 101, 3_000, 24, 90),
    World("dev-mixed-s102-h365", "mixed", 102, 3_000, 48, 365),
    World("dev-btyd-s103", "btyd", 103, 3_000, 24, 90),
    World("dev-seasonal-s104", "seasonal", 104, 3_000, 36, 90),
    World("dev-tenure-s105", "tenure", 105, 3_000, 36, 90),
    World("dev-behaviour-s106", "behaviour", 106, 3_000, 36, 90),
    World("dev-lines-s107", "lines", 107, 3_000, 24, 90),
    World("dev-growth-s108-h365", "growth", 108, 3_000, 48, 365),
    World("test-mixed-s301", "mixed", 301, 2_000, 24, 90),
    World("test-comeback-s302", "comeback", 302, 2_000, 24, 90),
    World("judge-mixed-s201", "mixed", 201, 12_000, 36, 90),
    World("judge-mixed-s202-h365", "mixed", 202, 12_000, 48, 365),
    World("judge-btyd-s203", "btyd", 203, 3_000, 24, 90),
    World("judge-comeback-s204", "comeback", 204, 3_000, 36, 90),
    World("judge-decline-s205-h365", "decline", 205, 3_000, 48, 365),
    World("judge-seasonal-s206", "seasonal", 206, 12_000, 36, 90),
    World("judge-behaviour-s207-h365", "behaviour", 207, 3_000, 48, 365),
)
"""Every world, its stage the first part of its name: dev, test or judge."""


class _Named(Protocol):
    @property
    def name(self) -> str: ...


W = TypeVar("W", bound=_Named)


def _stage(worlds: tuple[W, ...], stage: str) -> tuple[W, ...]:
    return tuple(w for w in worlds if w.name.startswith(f"{stage}-"))


def _named(by_name: dict[str, W], name: str, *, what: str) -> W:
    try:
        return by_name[name]
    except KeyError:
        known = ", ".join(sorted(by_name))
        raise KeyError(f"no {what} named {name!r}: choose one of {known}") from None


DEVELOPMENT = _stage(WORLDS, "dev")
"""Every modelling choice is made on these worlds only."""

TEST_WORLDS = _stage(WORLDS, "test")
"""The small judgement worlds the model tests use (each generates in well under a second)."""

JUDGEMENT = (*_stage(WORLDS, "judge"), *TEST_WORLDS)
"""Tests, the model_quality benchmark and the README judge on these worlds."""

_BY_NAME: dict[str, World] = {w.name: w for w in (*DEVELOPMENT, *JUDGEMENT)}


def world(name: str) -> World:
    """The development or judgement world called `name`."""
    return _named(_BY_NAME, name, what="world")


def generate_world(w: World) -> GeneratedData:
    """The world's data (seeded: the same world, the same rows)."""
    return generate(customers=w.customers, months=w.months, seed=w.seed, world=w.family)


@dataclass(frozen=True)
class SaasCase:
    """One generated subscription world (clv.inputs.saas) and the label horizon evaluated on it."""

    name: str
    family: SaasWorld
    seed: int
    customers: int
    months: int
    horizon_days: int


SAAS_WORLDS: tuple[SaasCase, ...] = (
    SaasCase("dev-saas-s111", "saas", 111, 3_000, 24, 90),
    SaasCase("dev-saas-mixed-s112-h365", "saas_mixed", 112, 3_000, 48, 365),
    SaasCase("dev-saas-s113-h365", "saas", 113, 3_000, 48, 365),
    SaasCase("dev-saas-mixed-s114", "saas_mixed", 114, 3_000, 36, 90),
    SaasCase("judge-saas-s211", "saas", 211, 12_000, 36, 90),
    SaasCase("judge-saas-mixed-s212-h365", "saas_mixed", 212, 12_000, 48, 365),
    SaasCase("judge-saas-price-s213", "saas_price_change", 213, 3_000, 36, 90),
    SaasCase("judge-saas-price-s214-h365", "saas_price_change", 214, 12_000, 48, 365),
    SaasCase("judge-saas-mixed-s215", "saas_mixed", 215, 3_000, 24, 90),
    SaasCase("judge-saas-wear-s216", "saas_wear", 216, 3_000, 36, 90),
    SaasCase("judge-saas-wear-s217-h365", "saas_wear", 217, 12_000, 48, 365),
)
"""Every subscription world, its stage the first part of its name: dev or judge."""


SAAS_DEVELOPMENT = _stage(SAAS_WORLDS, "dev")
"""Every modelling choice for subscriptions is made on these worlds only."""

SAAS_JUDGEMENT = _stage(SAAS_WORLDS, "judge")
"""Subscription models are judged on these worlds."""

_SAAS_BY_NAME: dict[str, SaasCase] = {w.name: w for w in SAAS_WORLDS}


def saas_world(name: str) -> SaasCase:
    """The development or judgement subscription world called `name`."""
    return _named(_SAAS_BY_NAME, name, what="SaaS world")


def generate_saas_world(w: SaasCase) -> SaasData:
    """The subscription world's data (seeded: the same world, the same rows)."""
    return generate_saas(customers=w.customers, months=w.months, seed=w.seed, world=w.family)


class ParquetSource:
    """The feature build's parquet file as the feature source (no Feast needed)."""

    def __init__(self, path: Path) -> None:
        self.frame = pd.read_parquet(path)
        skip = {"customer_id", "event_timestamp", "created_timestamp"}
        self.names = [c for c in self.frame.columns if c not in skip]

    def feature_names(self, settings: Settings) -> list[str]:
        return self.names

    def categorical_features(self, settings: Settings) -> list[str]:
        return [c for c in CATEGORICAL if c in self.names]

    def historical_features(self, settings: Settings, entities: pd.DataFrame) -> pd.DataFrame:
        feats = self.frame.assign(customer_id=self.frame["customer_id"].astype(str))
        return entities.merge(feats, on=["customer_id", "event_timestamp"], how="left")


def world_training_data(
    root: Path, name: str, *, backtest_origins: int | None = None
) -> tuple[Settings, TrainingData]:
    """A world generated, ingested and built in a workspace under `root`, with its horizon
    (every other setting the default; `backtest_origins` overrides the evaluation's); the
    training frame read through `ParquetSource`."""
    from clv.core.settings import load_settings
    from clv.features.build import build_features
    from clv.inputs.generator import write_raw
    from clv.inputs.ingest import ingest_all
    from clv.training.dataset import load_training_data

    w = world(name)
    env = {"CLV_MODEL__HORIZON_DAYS": str(w.horizon_days)}
    if backtest_origins is not None:
        env["CLV_EVALUATION__BACKTEST_ORIGINS"] = str(backtest_origins)
    settings = load_settings(root, environ=env)
    settings.ensure_dirs()
    write_raw(generate_world(w), settings.raw_dir, fmt="parquet")
    ingest_all(settings, settings.raw_dir)
    built = build_features(settings)
    return settings, load_training_data(settings, source=ParquetSource(built.path))
