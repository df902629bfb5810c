"""The run's figures as PNG files: decile chart, reliability diagram, Optuna history."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    import optuna
    from matplotlib.figure import Figure


def _pyplot() -> ModuleType:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def decile_chart(tables: dict[str, pd.DataFrame], path: Path) -> Path:
    """Mean predicted against mean actual CLV per predicted decile, one panel per predictor."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(tables), figsize=(4.5 * len(tables), 3.8), squeeze=False)
    for ax, (name, table) in zip(axes[0], tables.items(), strict=True):
        x = table["decile"].to_numpy()
        ax.bar(x - 0.2, table["mean_predicted"], width=0.4, label="predicted")
        ax.bar(x + 0.2, table["mean_actual"], width=0.4, label="actual")
        ax.set_title(name)
        ax.set_xlabel("predicted decile (1 = highest)")
        ax.set_ylabel("mean CLV")
        ax.legend()
    return _save(fig, path)


def reliability_diagram(tables: dict[str, pd.DataFrame], path: Path) -> Path:
    """Observed churn rate against mean predicted probability per bin."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    for name, table in tables.items():
        ax.plot(table["mean_predicted"], table["observed_rate"], marker="o", label=name)
    ax.set_xlabel("mean predicted churn probability")
    ax.set_ylabel("observed churn rate")
    ax.legend()
    return _save(fig, path)


def optuna_history(study: optuna.Study, path: Path) -> Path:
    """Each complete trial's validation score and the running best."""
    import optuna

    plt = _pyplot()
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    values = [float(t.value) for t in done if t.value is not None]
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    if values:
        numbers = [t.number for t in done if t.value is not None]
        best = pd.Series(values).cummin().to_numpy()
        ax.scatter(numbers, values, s=12, label="trial")
        ax.step(numbers, best, where="post", color="C1", label="best so far")
        ax.legend()
    ax.set_xlabel("trial")
    ax.set_ylabel("validation RMSE")
    return _save(fig, path)


def _save(fig: Figure, path: Path) -> Path:
    """Lay `fig` out, write it to `path` (100 dpi) and close it."""
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return path
