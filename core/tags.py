"""The version-tag schema: what training writes on a registered model version, and what the
gates, monitoring, the retrain job and `clv registry list` read. Every tag name is made here.

`eval.<who>.<metric>`: who is `model`, a baseline predictor (BASELINE_PREDICTORS), `default`,
`churn`, `interval`, `backtest` (the embargoed origins' aggregate) or `champion` (the live
champion scored on this version's test rows, with the paired-bootstrap differences).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

EMBARGOED_TAG = "evaluation.embargoed"
""""true" when the version's test metrics come from an embargoed out-of-time evaluation
(clv.evaluation.protocol); the gates refuse a version without it."""
EVALUATION_REASON = "evaluation.reason"
STATUS_TAG = "clv.status"
"""A version's registration state: training writes "complete" as its very last registry write
(after every evaluation tag); the registry writes "incomplete" on a version whose training
stopped before that (clv.registry.completion), and the gates refuse it."""
STATUS_COMPLETE = "complete"
STATUS_INCOMPLETE = "incomplete"
STATUS_REASON_TAG = "clv.status.reason"
"""Why a version was marked incomplete."""
RUN_OWNER_TAG = "clv.owner"
"""A training run's tag (not a version's): `host:pid:start` of the process that trains it
(`start` is the process's start time in clock ticks, or "-"), so that a later command can tell
a live registration from one whose process is gone."""
CONTRACTUAL_TAG = "clv.contractual"
""""true" on a version that carries the subscribers' contractual part (`contractual/` in its
run: clv.model.contractual_bundle); scoring reads that part only then."""
FEATURE_SERVICE = "feature_service"
FEATURE_NAMES_HASH = "feature_names_hash"
TEST_SNAPSHOT = "test_snapshot"

VALUE_METRICS = ("rmse", "mae", "spearman", "gini", "top_decile_share", "bias_pct")
"""The value metrics tagged per predictor as `eval.<who>.<metric>`."""
CHURN_METRICS = ("roc_auc", "pr_auc", "brier", "ece")
"""The churn metrics tagged as `eval.churn.<metric>`."""


def feature_names_hash(names: Sequence[str]) -> str:
    """The `feature_names_hash` tag: sha256 of the comma-joined ordered feature names, first 16
    hex digits (the gates compare it with the served FeatureService's)."""
    return hashlib.sha256(",".join(names).encode()).hexdigest()[:16]


def eval_tag(who: str, metric: str) -> str:
    """`eval.<who>.<metric>`."""
    return f"eval.{who}.{metric}"


def champion_tag(metric: str) -> str:
    """`eval.champion.<metric>`: the live champion on this version's test rows."""
    return eval_tag("champion", metric)


MODEL_GINI = eval_tag("model", "gini")
MODEL_RMSE = eval_tag("model", "rmse")
MODEL_MAE = eval_tag("model", "mae")
MODEL_BIAS_PCT = eval_tag("model", "bias_pct")
CHURN_ECE = eval_tag("churn", "ece")
CHURN_BRIER = eval_tag("churn", "brier")
INTERVAL_COVERAGE = eval_tag("interval", "coverage_p10_p90")
INTERVAL_WIDTH = eval_tag("interval", "mean_width")
CHAMPION_VERSION_TAG = champion_tag("version")
"""Written when a champion existed: the gates then compare with `eval.champion.*` (the
champion on this version's rows) instead of the champion's own tags (another snapshot)."""
CHAMPION_ERROR = champion_tag("error")
BOOTSTRAP_LEVEL = champion_tag("bootstrap_level")
