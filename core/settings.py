"""Settings: one YAML file (`clv.yaml` in the workspace) plus `CLV_*` environment variables.

Precedence, lowest first: documented defaults, `clv.yaml`, environment variables.
`${NAME}` in YAML values expands from the environment (secrets stay out of the file).
Nested keys in the environment use a double underscore: `CLV_MODEL__HORIZON_DAYS=180`,
`CLV_MLFLOW__TRACKING_URI=postgresql://...`. Nothing is read at import time.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from clv.core.errors import ConfigError

CONFIG_FILE = "clv.yaml"
ENV_PREFIX = "CLV_"
STATE_DIR = ".clv"
CODE_ROOT = Path(__file__).resolve().parent.parent


Band = tuple[float, float]
"""A (low, high) pair of cut points or bounds."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


_D = TypeVar("_D")


def _zero(default: object) -> float:
    """The bound's type follows the default's: `greater than 0` for a count, `0.0` for a float."""
    return 0.0 if isinstance(default, float) else 0


def _positive(default: _D, description: str | None = None) -> _D:
    """A setting that must be above zero."""
    return Field(default, gt=_zero(default), description=description)


def _nonnegative(default: _D, description: str | None = None) -> _D:
    """A setting that must not be below zero."""
    return Field(default, ge=_zero(default), description=description)


def _share(default: _D, description: str) -> _D:
    """A share or probability: within [0, 1]."""
    return Field(default, ge=0.0, le=1.0, description=description)


class ModelSettings(_Frozen):
    """What the models predict."""

    horizon_days: int = _positive(365, "CLV prediction horizon in days")
    churn_window_days: int = _positive(90, "churn = no purchase in this window")
    annual_discount_rate: float = Field(0.10, ge=0.0, lt=1.0, description="annual discount rate")
    margin_rate: float = Field(
        0.30, gt=0.0, le=1.0, description="gross margin rate when the data has no margin column"
    )


class FeatureSettings(_Frozen):
    """How feature snapshots are built."""

    snapshot_every: str = Field("1M", description="snapshot spacing: Nd, Nw or NM")
    service: str = Field("clv_v1", description="the FeatureService that training and serving use")


class IngestSettings(_Frozen):
    """How raw files are read: plausibility bounds (clv.inputs.ingest.Plausibility), order lines,
    cancellations, currencies, personal data (clv.inputs.personal) and chunked reading."""

    min_date: str = Field(
        "1970-01-01", description="timestamps before this date are quarantined (before_min_date)"
    )
    max_abs_amount: float | None = _positive(
        None,
        "amounts above this magnitude are quarantined (implausible_amount); "
        "default: 10000 x the file's median nonzero amount",
    )
    grain: Literal["auto", "order", "line"] = Field(
        "auto",
        description="transactions rows are orders or order lines; auto: lines when the file has "
        "line_id, sku, quantity or unit_price, or an order id on rows that differ",
    )
    cancellation_pattern: str | None = Field(
        None,
        description="regular expression an order id matches when the row cancels an order "
        "(e.g. '^C'): the row becomes a refund, linked to the order it cancels",
    )
    currency: str | None = Field(
        None,
        description="the workspace's currency; default: the stored rows' currency, else the "
        "file's most frequent one; rows in another currency without a rate: mixed_currency",
    )
    currency_rates: tuple[tuple[str, float], ...] = Field(
        (),
        description="units of `currency` per unit of another currency, as a mapping "
        "(EUR: 0.86): rows in those currencies are converted",
    )
    personal_columns: tuple[str, ...] = Field(
        (),
        description="columns holding personal data (email, name, phone, address, or an id): "
        "never stored in clear (see personal_action)",
    )
    personal_action: Literal["hash", "drop"] = Field(
        "hash", description="hash: keyed HMAC-SHA256 pseudonym; drop: the column is removed"
    )
    personal_key_env: str = Field(
        "CLV_PERSONAL_KEY",
        description="environment variable holding the key of the personal-data hash",
    )

    @field_validator("currency_rates", mode="before")
    @classmethod
    def _rates_as_pairs(cls, value: object) -> object:
        """A mapping in YAML; stored as sorted pairs (settings are frozen and hashable)."""
        if isinstance(value, Mapping):
            return tuple(sorted((str(k).strip().upper(), v) for k, v in value.items()))
        return value

    chunk_rows: int = _positive(
        500_000,
        "rows parsed per chunk (memory is bounded by the chunk)",
    )
    max_id_length: int = _positive(
        256,
        "ids (customer_id, order_id, line_id, alias_id) longer than this many characters are "
        "quarantined (invalid_id), as are ids holding a control character",
    )
    dayfirst: bool | Literal["auto"] = Field(
        "auto",
        description="numeric dates (01/02/2024): true: day first; false: month first; auto: "
        "decided once per file by a day above 12, else quarantined (ambiguous_date)",
    )
    epoch_unit: Literal["none", "s", "ms"] = Field(
        "none",
        description="timestamps written as a bare number: seconds (s) or milliseconds (ms) "
        "since 1970-01-01 UTC; none: not timestamps (unparseable_timestamp)",
    )
    encoding: str = Field(
        "utf-8",
        description="the text encoding of CSV files (utf-8, latin-1, cp1252, ...); a row with "
        "bytes that are not text in it is quarantined (invalid_encoding)",
    )
    delimiter: str = Field(
        ",", min_length=1, max_length=1, description="the field separator of CSV files"
    )
    on_key_conflict: Literal["replace", "quarantine"] = Field(
        "replace",
        description="a row with the key of a stored row (an order, or an order line) and other "
        "values: replace: it replaces the stored row (a corrected export); quarantine: it is "
        "quarantined (key_conflict) and the stored row stays",
    )
    lock_timeout_seconds: float = _positive(
        600.0,
        "how long an ingest waits for another ingest into the same workspace to finish "
        "before it gives up (nothing stored)",
    )


class EvaluationSettings(_Frozen):
    """The out-of-time evaluation protocol (clv.evaluation.protocol)."""

    backtest_origins: int = _nonnegative(
        3,
        "earlier origins the recipe is also fitted and scored at",
    )
    origin_spacing_days: int = Field(
        90, ge=1, description="days between the test origin and each backtest origin"
    )


class ReadinessSettings(_Frozen):
    """The readiness report (clv.training.readiness): warnings, and the minimums below which
    training refuses unless overridden (`--skip-readiness` or `enforce: false`)."""

    min_repeat_buyers: int = _nonnegative(
        500,
        "refuse below this many repeat buyers (customers with purchases on 2+ days)",
    )
    min_history_horizons: float = _nonnegative(
        2.0,
        "refuse when the history is shorter than this many horizons "
        "(model.horizon_days) plus one snapshot spacing (features.snapshot_every)",
    )
    enforce: bool = Field(
        True,
        description="refuse below the minimums; false: report the refusals as warnings and train",
    )
    gap_warn_days: int = _positive(
        7,
        "warn when the calendar has a run of this many days without rows",
    )
    refund_share_warn: float = _nonnegative(
        0.2,
        "warn when refunds reach this share of gross sales",
    )
    zero_value_share_warn: float = _share(
        0.05,
        "warn when this share of orders totals zero",
    )
    top1_share_warn: float = _share(
        0.5,
        "warn when the top 1% of customers hold this share of net revenue",
    )
    seasonality_warn: float = _share(
        0.5,
        "warn when seasonality strength reaches this and the horizon is not a "
        "whole number of years",
    )


class TuningSettings(_Frozen):
    """The Optuna study's budget."""

    n_trials: int = _positive(20)
    timeout_seconds: float | None = _positive(None)
    seed: int = 42
    sample_customers: int | None = _positive(
        None,
        "tune on a sample of customers; final models use all",
    )
    storage: str | None = Field(None, description="Optuna storage URI; default SQLite in .clv/")
    nthread: int = _positive(
        1,
        "XGBoost threads per model",
    )
    workers: int = _positive(
        1,
        "processes tuning the one study (> 1: trial order not reproducible)",
    )


class ComputeSettings(_Frozen):
    """How much one process may hold, and the Dask cluster that takes over above it."""

    memory_budget_mb: int = _positive(
        4096,
        "memory one process may use for the data of a training run or a "
        "feature-build chunk (the interpreter and libraries come on top: ~0.5 GiB for "
        "training); larger work is chunked (features) or goes to Dask (training)",
    )
    dask_scheduler: str | None = Field(
        None, description="Dask scheduler address (tcp://host:8786); default: a local cluster"
    )
    dask_workers: int = _positive(
        2,
        "workers of the local Dask cluster",
    )
    dask_worker_memory_mb: int | None = _positive(
        None,
        "memory limit of each local Dask worker; default memory_budget_mb",
    )


class MLflowSettings(_Frozen):
    """Where runs and registered models live."""

    tracking_uri: str | None = Field(None, description="default: SQLite file .clv/mlflow.db")
    artifact_root: str | None = Field(None, description="default: .clv/mlartifacts")
    experiment: str = "clv"
    model_name: str = "clv"


class FeastSettings(_Frozen):
    """The Feast feature store."""

    repo_path: Path = Field(CODE_ROOT / "feature_repo", description="Feast declarations")
    project: str = "clv"
    registry: str | None = Field(None, description="default: .clv/feast/registry.db")
    online_store: Literal["sqlite", "redis"] = "sqlite"
    online_path: str | None = Field(None, description="SQLite file; default .clv/feast/online.db")
    redis_connection: str = "localhost:6379"
    redis_timeout_seconds: float = _positive(
        2.0,
        "socket and connect timeout of every Redis client clv and Feast open (a "
        "stalled Redis fails a read instead of freezing the server); a connection string's own "
        "socket_timeout= / socket_connect_timeout= wins",
    )


class ServingSettings(_Frozen):
    """The scoring server."""

    host: str = "127.0.0.1"
    port: int = Field(8000, gt=0, lt=65536)
    max_batch: int = _positive(1000)
    max_body_bytes: int = _positive(
        1_048_576,
        "largest /score request body in bytes; a larger one is refused with 413, unread",
    )
    max_id_length: int = _positive(
        256,
        "longest customer id /score accepts, in characters; a longer one is refused with 422",
    )
    value_thresholds: Band | None = Field(
        default=None,
        description="CLV cut points low|mid and mid|high; default: terciles of the champion's "
        "predictions on its training reference sample",
    )
    churn_threshold: float = _share(
        0.5,
        "churn probability at or above which a customer is at risk",
    )
    reload_seconds: float = _nonnegative(
        5.0,
        "poll the registry aliases every N seconds and swap models; 0 = off",
    )
    auth_token_env: str = Field(
        default="CLV_SERVING_TOKEN",
        description="environment variable holding the bearer token /score requires (unset: "
        "open; set but empty: `clv serve` refuses to start)",
    )
    webhook_url: str | None = Field(
        default=None, description="`clv score --all` posts the at-risk customers here (JSON)"
    )
    at_risk_min_clv: float | None = Field(
        default=None, description="at-risk trigger: CLV at or above; default the high-tier cut"
    )
    at_risk_min_churn: float | None = _share(
        None,
        "at-risk trigger: churn probability at or above; default churn_threshold",
    )
    cold_start_tenure_days: float = _positive(
        30.0,
        "cold-start prior: reference customers with tenure_days below this",
    )
    stats_seconds: float = _positive(
        2.0,
        "write this replica's live canary stats (.clv/serving/) and check the online store "
        "every N seconds",
    )
    read_timeout_seconds: float = _positive(
        2.0,
        "an online-store read slower than this (a locked or hung store) is given up: /score "
        "answers 503 with Retry-After; also SQLite's wait for a lock, and the bound of the "
        "store check behind /readyz",
    )
    worker_threads: int = _positive(
        4,
        "threads that run the server's blocking work (online-store reads, explain, batches of "
        "256 rows or more) off the event loop, so that /healthz always answers",
    )
    worker_queue: int = _positive(
        16,
        "jobs those threads hold at once, running or waiting; one more is refused at once "
        "with 503 and Retry-After rather than queued",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_auto_rollback(cls, data: object) -> object:
        if isinstance(data, dict) and "auto_rollback" in data:
            raise ValueError(
                "auto_rollback was removed: the server only reads the registry; schedule "
                "`clv registry status --enforce` to judge the canary (README, Operations)"
            )
        return data

    @model_validator(mode="after")
    def _ordered_thresholds(self) -> ServingSettings:
        t = self.value_thresholds
        if t is not None and t[0] > t[1]:
            raise ValueError("value_thresholds must be ascending: [low|mid, mid|high]")
        return self


class RegistrySettings(_Frozen):
    """Promotion gates and canary guardrails (see clv.registry.gates, clv.registry.canary)."""

    min_gini_gain: float = Field(
        0.0, description="candidate normalized Gini minus champion's must be at least this"
    )
    rmse_tolerance_pct: float = _nonnegative(
        5.0,
        "candidate RMSE may exceed the champion's by at most this %",
    )
    ece_tolerance: float = _nonnegative(
        0.02,
        "candidate churn ECE may exceed the champion's by at most this",
    )
    coverage_band: Band = Field(
        (0.70, 0.90), description="P10-P90 interval coverage must lie in this band (nominal 0.8)"
    )
    noise_level: float = Field(
        0.95,
        ge=0.0,
        lt=1.0,
        description="level of the paired bootstrap CI of candidate minus champion on the "
        "candidate's test rows: a Gini gain counts only when its CI lies above 0 (0: off)",
    )
    bootstrap_samples: int = Field(
        1000, ge=100, description="resamples of the test rows behind that CI (training)"
    )
    canary_share: float = Field(0.1, gt=0.0, le=1.0, description="default canary traffic share")
    canary_max_error_rate: float = Field(0.01, ge=0.0, le=1.0)
    canary_max_latency_ratio: float = _positive(
        1.5,
        "canary p95 latency / champion p95 latency at most this",
    )
    canary_max_psi: float = _nonnegative(
        0.2,
        "PSI of canary vs champion CLV predictions at most this",
    )
    canary_min_requests: int = Field(
        200, ge=1, description="requests the canary must have served before it is judged"
    )
    route_salt: str = Field("clv", description="salt of the customer-id hash that routes")
    prometheus_url: str | None = Field(
        None,
        description="the canary judge (`clv registry status`) reads every replica's metrics "
        "from this Prometheus server (PromQL); unset: the one local server's live-stats file",
    )
    prometheus_selector: str = Field(
        'job="clv"',
        description="label matchers that pick clv's replicas in Prometheus, e.g. "
        '\'job="clv",env="prod"\'',
    )
    lock_timeout_seconds: float = _positive(
        30.0,
        "wait this long for the lock",
    )
    incomplete_grace_seconds: float = _positive(
        3600.0,
        "a version without training's completion tag, whose training process cannot be "
        "checked from this host, is marked incomplete this long after it was created",
    )

    @model_validator(mode="after")
    def _ordered_band(self) -> RegistrySettings:
        lo, hi = self.coverage_band
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError("coverage_band must be [low, high] within [0, 1]")
        return self

    @model_validator(mode="after")
    def _noise_level_off_or_a_level(self) -> RegistrySettings:
        if 0.0 < self.noise_level < 0.5:
            raise ValueError("noise_level must be 0 (off) or a CI level in [0.5, 1)")
        return self


class DecisionSettings(_Frozen):
    """The analyses teams act on (clv.decisions): cohorts, channels, experiments, retention."""

    adoption_days: int = _positive(
        14,
        "an early-adoption cohort: customers who used an event type within this many days of "
        "their acquisition, against those who did not",
    )
    adoption_events: tuple[str, ...] = Field(
        (),
        description="the event types whose early use defines adoption cohorts; empty: every "
        "event type of the events table",
    )
    control_arm: str = Field(
        "control", description="the arm of an experiment the other arms are compared with"
    )
    bootstrap_samples: int = _positive(
        2000, "resamples of each arm for the bootstrap check of an experiment's interval"
    )
    retention_holdout: float = Field(
        0.1,
        gt=0.0,
        lt=1.0,
        description="share of a retention selection held out untreated at random: the control "
        "that measures its realized ROI",
    )
    retention_cooldown_days: int = _positive(
        30,
        "a customer in a retention selection (treated or held out) is not selected again "
        "within this many days",
    )
    retention_max_spend: float | None = _positive(
        None, "most that retention offers may cost per period (null: only --budget bounds it)"
    )
    retention_period_days: int = _positive(30, "the period of retention_max_spend, in days")


class MonitoringSettings(_Frozen):
    """Monitoring evidence and the retrain policy's thresholds (see clv.monitoring.policy)."""

    drift_share_warn: float = _share(
        0.15,
        "WARN when drifted key features carry this share of a model's importance",
    )
    drift_share_retrain: float = _share(
        0.3,
        "RETRAIN when drifted key features carry this share of a model's importance",
    )
    sample_rows: int = _positive(
        50_000,
        "the Evidently report compares at most this many rows per side (seeded)",
    )
    reference_window: Literal["training_end", "latest", "all"] = Field(
        default="training_end",
        description="reference: the snapshot at the champion's training data end (rebuilt "
        "point-in-time), or the logged reference sample's latest snapshot, or all of it",
    )
    psi_threshold: float = _positive(
        0.1,
        "a feature drifted at PSI at or above this",
    )
    key_features: int = _positive(
        10,
        "key features: the top N by the models' importance",
    )
    prediction_psi_warn: float = _nonnegative(
        0.1,
        "WARN when a prediction's PSI is at or above this",
    )
    prediction_psi_retrain: float = _nonnegative(
        0.25,
        "RETRAIN when a prediction's PSI is at or above this",
    )
    ece_warn: float = _nonnegative(
        0.03,
        "WARN: matured-cohort churn ECE above test ECE by this",
    )
    ece_retrain: float = _nonnegative(
        0.06,
        "RETRAIN: matured-cohort churn ECE above test ECE by this",
    )
    gini_drop_warn: float = _nonnegative(
        0.05,
        "WARN: backtest normalized Gini below test Gini by this",
    )
    gini_drop_retrain: float = _nonnegative(
        0.10,
        "RETRAIN: backtest normalized Gini below test by this",
    )
    coverage_band: Band = Field(
        default=(0.70, 0.90), description="WARN when backtest P10-P90 coverage leaves this band"
    )
    missing_share_warn: float = _share(
        0.10,
        "WARN when a feature's missing share rises by this",
    )
    out_of_range_warn: float = _share(
        0.05,
        "WARN when this share of a feature's values lies outside the reference range",
    )
    min_backtest_rows: int = _positive(
        200,
        "a matured cohort smaller than this is not judged",
    )
    baseline_loss_warns: bool = Field(
        True,
        description="WARN when the champion loses to the best simple baseline on a matured "
        "cohort (Gini or RMSE)",
    )
    retrain_approval: Literal["auto", "manual"] = Field(
        default="auto",
        description="`clv retrain`: start the canary itself (auto) or stop for a human (manual)",
    )

    @model_validator(mode="after")
    def _ordered_shares(self) -> MonitoringSettings:
        if self.drift_share_warn > self.drift_share_retrain:
            raise ValueError("drift_share_warn must not exceed drift_share_retrain")
        return self


class ServicesSettings(_Frozen):
    """Reaching the shared services a profile names (clv.core.services)."""

    connect_timeout_seconds: float = _positive(
        10.0,
        "how long a command waits for the MLflow tracking database or server and the Optuna "
        "storage (and, as `clv serve` starts, the Feast SQL registry and Redis) before it stops "
        "with one line naming the service; a refused connection stops it at once",
    )


class Settings(_Frozen):
    """Everything clv reads from configuration, bound to one workspace."""

    workspace: Path
    model: ModelSettings = ModelSettings()
    features: FeatureSettings = FeatureSettings()
    ingest: IngestSettings = IngestSettings()
    tuning: TuningSettings = TuningSettings()
    evaluation: EvaluationSettings = EvaluationSettings()
    readiness: ReadinessSettings = ReadinessSettings()  # checks of the data before training
    compute: ComputeSettings = ComputeSettings()  # memory budget, Dask cluster
    mlflow: MLflowSettings = MLflowSettings()
    feast: FeastSettings = FeastSettings()
    serving: ServingSettings = ServingSettings()
    registry: RegistrySettings = RegistrySettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    decisions: DecisionSettings = DecisionSettings()
    services: ServicesSettings = ServicesSettings()  # connect timeout of shared services

    # Paths inside the workspace, the only place clv writes: the state folder and what lives
    # there, then the workspace's own folders.
    @property
    def state_dir(self) -> Path:
        return self.workspace / STATE_DIR

    @property
    def offline_dir(self) -> Path:
        return self.state_dir / "offline"

    @property
    def features_dir(self) -> Path:
        return self.offline_dir / "features"

    @property
    def quarantine_dir(self) -> Path:
        return self.state_dir / "quarantine"

    @property
    def tracking_uri(self) -> str:
        return self.mlflow.tracking_uri or f"sqlite:///{self.state_dir / 'mlflow.db'}"

    @property
    def feast_dir(self) -> Path:
        return self.state_dir / "feast"

    @property
    def artifact_root(self) -> str:
        return self.mlflow.artifact_root or (self.state_dir / "mlartifacts").as_uri()

    @property
    def optuna_storage(self) -> str:
        return self.tuning.storage or f"sqlite:///{self.state_dir / 'optuna.db'}"

    @property
    def raw_dir(self) -> Path:
        return self.workspace / "data" / "raw"

    @property
    def reports_dir(self) -> Path:
        return self.workspace / "reports"

    def ensure_dirs(self) -> None:
        """Create the workspace's state folders (idempotent)."""
        for d in (self.state_dir, self.offline_dir, self.quarantine_dir, self.feast_dir):
            d.mkdir(parents=True, exist_ok=True)


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand(value: object, source: str, env: Mapping[str, str]) -> object:
    if isinstance(value, str):

        def repl(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in env:
                raise ConfigError(f"{source}: ${{{name}}} is not set in the environment")
            return env[name]

        return _ENV_REF.sub(repl, value)
    if isinstance(value, dict):
        return {k: _expand(v, source, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, source, env) for v in value]
    return value


def _env_overrides(environ: Mapping[str, str]) -> dict[str, object]:
    """`CLV_SECTION__KEY=value` -> {"section": {"key": value}}; CLV_WORKSPACE is not a setting."""
    out: dict[str, object] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX) or key == "CLV_WORKSPACE" or key == "CLV_DEBUG":
            continue
        parts = key[len(ENV_PREFIX) :].lower().split("__")
        if len(parts) != 2:
            continue
        section = out.setdefault(parts[0], {})
        assert isinstance(section, dict)
        section[parts[1]] = value
    return out


def _merge(base: dict[str, object], extra: Mapping[str, object]) -> dict[str, object]:
    merged = dict(base)
    for k, v in extra.items():
        cur = merged.get(k)
        if isinstance(cur, dict) and isinstance(v, Mapping):
            merged[k] = _merge(cur, v)
        else:
            merged[k] = v
    return merged


def resolve_workspace(workspace: Path | str | None = None) -> Path:
    """The workspace: the argument, else $CLV_WORKSPACE, else the current directory."""
    chosen = workspace or os.environ.get("CLV_WORKSPACE") or Path.cwd()
    return Path(chosen).expanduser().resolve()


def load_settings(
    workspace: Path | str | None = None, *, environ: Mapping[str, str] | None = None
) -> Settings:
    """Load settings for a workspace from its `clv.yaml` (if any) and the environment."""
    env = os.environ if environ is None else environ
    ws = resolve_workspace(workspace)
    data: dict[str, object] = {}
    cfg = ws / CONFIG_FILE
    if cfg.exists():
        try:
            loaded = yaml.safe_load(cfg.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{cfg}: not valid YAML ({exc.__class__.__name__})") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{cfg}: expected a mapping at the top level")
        expanded = _expand(loaded, str(cfg), env)
        assert isinstance(expanded, dict)
        data = expanded
    data = _merge(data, _env_overrides(env))
    data["workspace"] = ws
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(
            f"{cfg if cfg.exists() else 'environment'}: {where}: {first['msg']}"
        ) from exc


def reference_table() -> str:
    """The configuration reference as a Markdown table (the README's copy is checked by a test)."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for section, info in Settings.model_fields.items():
        model = info.annotation
        if section == "workspace" or not isinstance(model, type):
            continue
        for key, field in model.model_fields.items():
            default = field.default
            if isinstance(default, Path):
                default = "<repo>/" + default.name if default.is_absolute() else str(default)
            shown = "null" if default is None else default
            doc = (field.description or "").replace("|", "\\|")
            rows.append(f"| `{section}.{key}` | `{shown}` | {doc} |")
    return "\n".join(rows)
