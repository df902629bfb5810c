"""The pages reviewers read: `reports/<as-of>/index.html` per run and `reports/index.html`.

Plain HTML with inline CSS and PNG plots saved beside the page: no script, font or style
sheet from the network, so a page renders offline and without console errors. Each page is
written from the run's `summary.json` document (plus the plot files), so what the page says
and what machines read cannot disagree.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

INDEX_FILE = "index.html"
SUMMARY_FILE = "summary.json"
COLOURS = {"OK": "#1b7f3b", "WARN": "#b26a00", "RETRAIN": "#b3261e", "DATA_QUALITY": "#6a1b9a"}
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;
max-width:1100px;color:#1d1d1f;line-height:1.45;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:1px solid #ddd;
padding-bottom:.2rem}.verdict{display:inline-block;color:#fff;font-weight:700;font-size:1.6rem;
padding:.3rem 1rem;border-radius:.4rem;margin:.6rem 0}.muted{color:#666;font-size:.9rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}th,td{border:1px solid #ddd;
padding:.25rem .55rem;text-align:right}th{background:#f4f4f6}td.l,th.l{text-align:left}
tr.hit td{background:#fff3e0}img{max-width:100%;border:1px solid #eee;margin:.4rem 0}
ul.reasons li{margin:.25rem 0}.pill{padding:0 .4rem;border-radius:.3rem;color:#fff;
font-size:.8rem;font-weight:600}
"""


def _e(value: object) -> str:
    return html.escape(str(value))


def _num(value: object, fmt: str = ".3f") -> str:
    if isinstance(value, int | float) and math.isfinite(float(value)):
        return format(float(value), fmt)
    return "n/a"


def _pill(verdict: str) -> str:
    return (
        f'<span class="pill" style="background:{COLOURS.get(verdict, "#555")}">{_e(verdict)}</span>'
    )


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>\n{body}\n</body></html>\n"
    )


def _table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    left: int = 1,
    hits: set[int] | None = None,
) -> str:
    hits = hits or set()
    head = "".join(
        f'<th class="{"l" if i < left else ""}">{_e(h)}</th>' for i, h in enumerate(header)
    )
    body = []
    for r, row in enumerate(rows):
        cells = "".join(
            f'<td class="{"l" if i < left else ""}">{c}</td>' for i, c in enumerate(row)
        )
        body.append(f'<tr class="{"hit" if r in hits else ""}">{cells}</tr>')
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


# --------------------------------------------------------------------------- plots


def _plt() -> ModuleType:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Figure, path: Path) -> Path:
    """Lay `fig` out, write it to `path` (110 dpi) and close it."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def psi_chart(rows: Sequence[Mapping[str, object]], threshold: float, path: Path) -> Path:
    """Horizontal bars of PSI per column (largest 20), the drift threshold as a line."""
    plt = _plt()
    top = sorted(rows, key=lambda r: -_f(r["psi"]))[:20]
    names = [str(r["column"]) for r in top][::-1]
    values = [_f(r["psi"]) for r in top][::-1]
    colours = ["#b3261e" if r["drifted"] else "#7a8ca3" for r in top][::-1]
    fig, ax = plt.subplots(figsize=(7.5, 0.28 * len(names) + 1.2))
    ax.barh(names, values, color=colours)
    ax.axvline(threshold, color="#333", linestyle="--", linewidth=1)
    ax.set_xlabel(f"PSI (dashed: drift threshold {threshold:g}; red: drifted)")
    ax.tick_params(axis="y", labelsize=8)
    return _save(fig, path)


def distribution_chart(
    reference: Mapping[str, np.ndarray], current: Mapping[str, np.ndarray], path: Path
) -> Path:
    """Reference vs current histograms of each prediction (shared bins per panel)."""
    plt = _plt()
    names = [n for n in reference if n in current]
    fig, axes = plt.subplots(1, max(len(names), 1), figsize=(4.2 * max(len(names), 1), 3.0))
    axes = np.atleast_1d(axes)
    for ax, name in zip(axes, names, strict=False):
        r = reference[name][np.isfinite(reference[name])]
        c = current[name][np.isfinite(current[name])]
        both = np.concatenate([r, c])
        if both.size == 0:
            continue
        hi = float(np.quantile(both, 0.99)) if both.size else 1.0
        bins = np.linspace(float(both.min()), max(hi, float(both.min()) + 1e-9), 30)
        ax.hist(r, bins=bins, alpha=0.55, density=True, label="reference", color="#7a8ca3")
        ax.hist(c, bins=bins, alpha=0.55, density=True, label="current", color="#d9822b")
        ax.set_title(name, fontsize=10)
        ax.legend(fontsize=8)
    return _save(fig, path)


def reliability_chart(table: pd.DataFrame, path: Path, *, title: str) -> Path:
    """Observed churn rate against mean predicted probability per bin (size ~ rows)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.plot([0, 1], [0, 1], color="#999", linestyle="--", linewidth=1, label="perfect")
    if not table.empty:
        sizes = 20 + 200 * table["n"] / table["n"].max()
        ax.plot(table["mean_predicted"], table["observed_rate"], color="#1f5f99", linewidth=1)
        ax.scatter(table["mean_predicted"], table["observed_rate"], s=sizes, color="#1f5f99")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean predicted churn probability")
    ax.set_ylabel("observed churn rate")
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def decile_chart(table: pd.DataFrame, path: Path, *, title: str) -> Path:
    """Mean predicted vs mean realised CLV per predicted decile (1 = highest predicted)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    x = table["decile"].to_numpy()
    ax.bar(x - 0.2, table["mean_predicted"], width=0.4, label="predicted", color="#7a8ca3")
    ax.bar(x + 0.2, table["mean_actual"], width=0.4, label="realised", color="#d9822b")
    ax.set_xticks(x)
    ax.set_xlabel("decile of predicted CLV (1 = highest)")
    ax.set_ylabel("mean CLV")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path)


def trend_chart(runs: Sequence[Mapping[str, object]], path: Path) -> Path:
    """Key metrics over the runs' as-of dates."""
    plt = _plt()
    dates = [pd.Timestamp(str(r["as_of"])) for r in runs]
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    for key, label in (
        ("drift_share", "drifted importance share"),
        ("max_prediction_psi", "max prediction PSI"),
        ("churn_ece", "matured churn ECE"),
        ("value_gini", "backtest Gini"),
    ):
        ys = [_f(r.get(key), np.nan) for r in runs]
        if not all(np.isnan(ys)):
            ax.plot(dates, ys, marker="o", label=label)
    ax.set_xlabel("as-of")
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    return _save(fig, path)


def _f(value: object, default: float = 0.0) -> float:
    if isinstance(value, int | float) and math.isfinite(float(value)):
        return float(value)
    return default


# --------------------------------------------------------------------------- run page


def write_run_page(summary: Mapping[str, object], out_dir: Path) -> Path:
    """`<out_dir>/index.html` from a run's summary document and the plots beside it."""
    verdict = str(summary["verdict"])
    reasons = summary.get("reasons", [])
    assert isinstance(reasons, list)
    metrics = summary.get("metrics", {})
    assert isinstance(metrics, dict)
    files = summary.get("files", {})
    assert isinstance(files, dict)
    parts = [
        f"<h1>CLV monitoring report, as of {_e(str(summary['as_of'])[:10])}</h1>",
        f'<div class="verdict" style="background:{COLOURS.get(verdict, "#555")}">'
        f"{_e(verdict)}</div>",
        f'<p class="muted">Model version {_e(summary.get("model_version") or "n/a")} judged. '
        f"Reference: {_e(summary.get('reference', ''))}. Current: {_e(summary.get('current', ''))}."
        "</p>",
        "<h2>Why</h2>",
        '<ul class="reasons">' + "".join(f"<li>{_e(r)}</li>" for r in reasons) + "</ul>",
    ]
    parts += _drift_section(summary, metrics, out_dir)
    parts += _quality_section(metrics)
    parts += _calibration_section(metrics, out_dir)
    parts += _backtest_section(metrics, out_dir)
    sampling = summary.get("sampling", {})
    assert isinstance(sampling, dict)
    parts.append("<h2>Sampling and files</h2>")
    parts.append(f"<p>{_e(sampling.get('statement', ''))}</p>")
    links = [f'<a href="{_e(v)}">{_e(k)}: {_e(v)}</a>' for k, v in files.items() if v]
    parts.append(
        "<p>" + " &middot; ".join(links) + ' &middot; <a href="../index.html">all runs</a></p>'
    )
    path = out_dir / INDEX_FILE
    path.write_text(_page(f"clv monitor {str(summary['as_of'])[:10]}: {verdict}", "\n".join(parts)))
    return path


def _drift_section(
    summary: Mapping[str, object], metrics: Mapping[str, object], out_dir: Path
) -> list[str]:
    out = ["<h2>Drift</h2>"]
    columns = metrics.get("psi", [])
    assert isinstance(columns, list)
    thresholds = summary.get("thresholds", {})
    assert isinstance(thresholds, dict)
    threshold = float(thresholds.get("psi_threshold", 0.1))
    shares = metrics.get("drift_share", {})
    assert isinstance(shares, dict)
    out.append(
        "<p>Drifted key features carry "
        + ", ".join(
            f"{_num(v, '.0%')} of the {_e(k)} model's importance" for k, v in shares.items()
        )
        + f". A feature drifted when its PSI is at least {threshold:g} and above the bound that "
        "sampling noise stays under (99%).</p>"
    )
    if columns:
        psi_chart(columns, threshold, out_dir / "psi.png")
        out.append('<img src="psi.png" alt="PSI per column">')
        rows, hits = [], set()
        for i, c in enumerate(c for c in columns if c.get("key") or c.get("prediction")):
            rows.append(
                [
                    _e(c["column"]) + (" (prediction)" if c.get("prediction") else ""),
                    _num(c["psi"]),
                    _num(c["noise_bound"]),
                    _num(c.get("importance"), ".1%") if c.get("key") else "",
                    "yes" if c["drifted"] else "no",
                ]
            )
            if c["drifted"]:
                hits.add(i)
        out.append(
            _table(
                ["key feature / prediction", "PSI", "noise bound", "importance", "drifted"],
                rows,
                hits=hits,
            )
        )
    if (out_dir / "predictions.png").exists():
        out.append('<img src="predictions.png" alt="prediction distributions">')
    evidently = summary.get("files", {})
    if isinstance(evidently, dict) and evidently.get("evidently_html"):
        out.append(
            "<p>Every column, with Evidently's own tests: "
            f'<a href="{_e(evidently["evidently_html"])}">the Evidently report</a>.</p>'
        )
    return out


def _quality_section(metrics: Mapping[str, object]) -> list[str]:
    out = ["<h2>Data quality</h2>"]
    quality = metrics.get("quality", {})
    assert isinstance(quality, dict)
    issues = quality.get("issues", [])
    assert isinstance(issues, list)
    out += _non_finite_table(quality.get("non_finite"))
    out.append(
        "<ul>" + "".join(f"<li>{_e(i)}</li>" for i in issues) + "</ul>"
        if issues
        else "<p>No missing-value rise, new category or out-of-range share above threshold.</p>"
    )
    cols = quality.get("columns", [])
    assert isinstance(cols, list)
    rows = [
        [
            _e(c["column"]),
            _num(c["missing_reference"], ".1%"),
            _num(c["missing_current"], ".1%"),
            _num(c["out_of_range"], ".1%"),
            _e(", ".join(c["new_categories"][:5])),
        ]
        for c in cols
        if c["missing_current"]
        or c["missing_reference"]
        or c["out_of_range"]
        or c["new_categories"]
    ]
    if rows:
        out.append(
            _table(
                ["column", "missing (ref)", "missing (cur)", "out of range", "new categories"], rows
            )
        )
    return out + _columns_tables(cols)


def _pair(reference: object, current: object, fmt: str = ".4g") -> str:
    return f"{_num(reference, fmt)} / {_num(current, fmt)}"


def _columns_tables(cols: Sequence[Mapping[str, object]]) -> list[str]:
    """Every compared column described on both sides, on every row (reference / current)."""
    numbers, categories = [], []
    for c in cols:
        ref, cur = c.get("reference"), c.get("current")
        if not isinstance(ref, dict) or not isinstance(cur, dict):
            continue
        if ref.get("levels") is None:
            numbers.append(
                [_e(c["column"])]
                + [_pair(ref.get(k), cur.get(k)) for k in ("mean", "std", "min", "max")]
                + [_pair(ref["missing"], cur["missing"], ",.0f")]
            )
        else:
            categories.append(
                [
                    _e(c["column"]),
                    _pair(ref["levels"], cur["levels"], ",.0f"),
                    _e(f"{ref.get('most_common') or 'n/a'} / {cur.get('most_common') or 'n/a'}"),
                    _pair(ref.get("most_common_share"), cur.get("most_common_share"), ".1%"),
                    _pair(ref["missing"], cur["missing"], ",.0f"),
                ]
            )
    if not numbers and not categories:
        return []
    out = ["<p>Every compared column on every row, reference / current:</p>"]
    if numbers:
        header = ["numerical column", "mean", "std", "min", "max", "missing rows"]
        out.append(_table(header, numbers))
    if categories:
        header = ["categorical column", "levels", "most common", "its share", "missing rows"]
        out.append(_table(header, categories))
    return out


def _non_finite_table(counts: object) -> list[str]:
    """Every column of the current window holding +inf / -inf values, with its count."""
    if not isinstance(counts, dict) or not counts:
        return ["<p>No non-finite value (inf or -inf) in the current window.</p>"]
    rows = [[_e(c), f"{int(n):,}"] for c, n in sorted(counts.items(), key=lambda kv: -kv[1])]
    return [
        "<p><strong>Non-finite values (inf or -inf) in the current window: a data-quality "
        "failure.</strong> The model scores them as extreme values without a word; fix the data "
        "before trusting its scores or retraining on it.</p>",
        _table(["column", "non-finite values"], rows, hits=set(range(len(rows)))),
    ]


def _calibration_section(metrics: Mapping[str, object], out_dir: Path) -> list[str]:
    out = ["<h2>Calibration</h2>"]
    churn = metrics.get("churn_backtest")
    if not isinstance(churn, dict):
        out.append("<p>No churn cohort has matured yet: calibration cannot be judged.</p>")
    else:
        out.append(
            f"<p>Churn cohort of {_e(churn['snapshot'][:10])} ({churn['n']:,} customers, "
            f"{churn['window_days']}-day window, {_e(churn['training_note'])}): observed churn "
            f"{_num(churn['churn_rate'], '.1%')}, mean predicted "
            f"{_num(churn['mean_predicted'], '.1%')}, "
            f"ECE {_num(churn['ece'])} (test ECE at training {_num(churn.get('ece_test'))}), "
            f"Brier {_num(churn['brier'])}.</p>"
        )
        table = pd.DataFrame(churn.get("reliability", []))
        if not table.empty:
            reliability_chart(table, out_dir / "reliability.png", title="churn reliability")
            out.append('<img src="reliability.png" alt="churn reliability diagram">')
    value = metrics.get("value_backtest")
    if isinstance(value, dict):
        table = pd.DataFrame(value.get("deciles", []))
        out.append(
            "<p>Value model: P10-P90 interval covered "
            f"{_num(value['coverage'], '.1%')} of realised "
            f"CLV (nominal 80%, test {_num(value.get('coverage_test'), '.1%')}); deciles below.</p>"
        )
        if not table.empty:
            decile_chart(table, out_dir / "deciles.png", title="value decile calibration")
            out.append('<img src="deciles.png" alt="value decile calibration">')
    return out


def _backtest_section(metrics: Mapping[str, object], out_dir: Path) -> list[str]:
    out = ["<h2>Backtest: predicted then vs happened</h2>"]
    value = metrics.get("value_backtest")
    churn = metrics.get("churn_backtest")
    if not isinstance(value, dict) and not isinstance(churn, dict):
        return [*out, "<p>No cohort has matured since the data begins.</p>"]
    if isinstance(value, dict):
        out.append(
            f"<p>Value cohort of {_e(value['snapshot'][:10])} ({value['n']:,} customers, "
            f"{value['window_days']}-day horizon, {_e(value['training_note'])}).</p>"
        )
        out.append(
            _table(
                ["metric", "matured cohort", "test at training"],
                [
                    ["normalized Gini", _num(value["gini"]), _num(value.get("gini_test"))],
                    ["RMSE", _num(value["rmse"], ".2f"), _num(value.get("rmse_test"), ".2f")],
                    ["bias %", _num(value["bias_pct"], ".1f"), _num(value.get("bias_test"), ".1f")],
                ],
            )
        )
        out += _baselines_table(value)
        deciles = value.get("deciles", [])
        assert isinstance(deciles, list)
        out.append(
            _table(
                ["decile", "n", "mean predicted", "mean realised"],
                [
                    [
                        str(d["decile"]),
                        str(d["n"]),
                        _num(d["mean_predicted"], ".2f"),
                        _num(d["mean_actual"], ".2f"),
                    ]
                    for d in deciles
                ],
            )
        )
    else:
        out.append("<p>No value cohort has matured its full horizon yet.</p>")
    if isinstance(churn, dict):
        out.append(
            f"<p>Early signal from the churn cohort of {_e(churn['snapshot'][:10])}: "
            "normalized Gini "
            f"of predicted CLV against the value realised in its {churn['window_days']} days: "
            f"{_num(churn['early_gini'])}.</p>"
        )
    return out


def _baselines_table(value: Mapping[str, object]) -> list[str]:
    """The champion beside every simple baseline on the cohort's rows, and the one sentence
    saying whether it beats the best of them (rows of a baseline that beats it are marked)."""
    predictors = value.get("predictors")
    comparison = value.get("comparison")
    if not isinstance(predictors, list) or not isinstance(comparison, dict):
        return []
    champion: Mapping[str, object] = next(
        (p for p in predictors if p["predictor"] == "champion"), {}
    )
    rows, hits = [], set()
    for i, p in enumerate(predictors):
        rows.append(
            [
                _e(p["predictor"]),
                _num(p["gini"]),
                _num(p["rmse"], ".2f"),
                _num(p["mae"], ".2f"),
                _num(p["bias_pct"], ".1f"),
                _num(p.get("gini_test")),
                _num(p.get("rmse_test"), ".2f"),
                _e(p.get("reason") or ""),
            ]
        )
        if p["predictor"] != "champion" and _beats(p, champion):
            hits.add(i)
    header = [
        "predictor",
        "normalized Gini",
        "RMSE",
        "MAE",
        "bias %",
        "Gini at training",
        "RMSE at training",
        "note",
    ]
    return [
        "<p>The champion beside every simple baseline on the same rows: <code>baseline</code> "
        "is BG/NBD + Gamma-Gamma fitted on this snapshot's RFM features, "
        "<code>last_horizon</code> repeats the margin of the horizon before the snapshot and "
        "<code>run_rate</code> extrapolates the lifetime margin per day (highlighted: a "
        "baseline that beats the champion on Gini or RMSE).</p>",
        _table(header, rows, hits=hits),
        f"<p><strong>{_e(comparison.get('sentence', ''))}</strong></p>",
        *(
            [
                '<p class="muted">In-sample: the champion was fitted on these rows\' labels and '
                "the baselines were not, so the comparison favours the champion.</p>"
            ]
            if value.get("in_training")
            else []
        ),
    ]


def _beats(row: Mapping[str, object], champion: Mapping[str, object]) -> bool:
    """Whether a baseline's row is better than the champion's on Gini or on RMSE."""
    nan = math.nan  # an unmeasured side never beats
    on_gini = _f(row.get("gini"), nan) > _f(champion.get("gini"), nan)
    on_rmse = _f(row.get("rmse"), nan) < _f(champion.get("rmse"), nan)
    return on_gini or on_rmse


# --------------------------------------------------------------------------- all runs


def run_rows(reports_dir: Path) -> list[dict[str, object]]:
    """One row per run folder with a summary.json, oldest as-of first."""
    rows: list[dict[str, object]] = []
    for path in sorted(reports_dir.glob(f"*/{SUMMARY_FILE}")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        trend = doc.get("trend", {}) if isinstance(doc, dict) else {}
        rows.append(
            {
                "folder": path.parent.name,
                "as_of": doc.get("as_of"),
                "verdict": doc.get("verdict"),
                "model_version": doc.get("model_version"),
                **(trend if isinstance(trend, dict) else {}),
            }
        )
    return sorted(rows, key=lambda r: str(r["as_of"]))


def write_runs_index(reports_dir: Path) -> Path:
    """`reports/index.html`: every run with its verdict, and the key metrics' trend."""
    rows = run_rows(reports_dir)
    parts = ["<h1>CLV monitoring runs</h1>"]
    if rows:
        latest = rows[-1]
        parts.append(
            f"<p>Latest: {_pill(str(latest['verdict']))} as of {_e(str(latest['as_of'])[:10])} "
            f"(model version {_e(latest.get('model_version') or 'n/a')}).</p>"
        )
        trend_chart(rows, reports_dir / "trend.png")
        parts.append('<img src="trend.png" alt="key metrics over time">')
    table = [
        [
            f'<a href="{_e(r["folder"])}/index.html">{_e(str(r["as_of"])[:10])}</a>',
            _pill(str(r["verdict"])),
            _e(r.get("model_version") or "n/a"),
            _num(r.get("drift_share"), ".0%"),
            _num(r.get("max_prediction_psi")),
            _num(r.get("churn_ece")),
            _num(r.get("value_gini")),
        ]
        for r in reversed(rows)
    ]
    parts.append(
        _table(
            [
                "as-of",
                "verdict",
                "model",
                "drift share",
                "prediction PSI",
                "churn ECE",
                "backtest Gini",
            ],
            table,
        )
        if table
        else "<p>No monitoring run yet: run <code>clv monitor run</code>.</p>"
    )
    path = reports_dir / INDEX_FILE
    reports_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(_page("clv monitoring runs", "\n".join(parts)))
    return path
