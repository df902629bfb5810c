"""The Evidently report with the unshown widgets skipped is the report Evidently draws (the same
HTML and JSON, but for the random widget ids), on the verified version and off it; and run
alongside in a forked process it is the report run here, its failures raised here."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clv.monitoring import evidently_private
from clv.monitoring.evidently_io import DriftConfig, drift_runner, run_drift

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
DASHBOARD = re.compile(r"metric_[0-9a-f]{32}")


def _frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(4)
    n = 1_500

    def frame(shift: float) -> pd.DataFrame:
        x = rng.gamma(2.0, 1.0 + shift, n)
        x[rng.random(n) < 0.05] = np.nan
        return pd.DataFrame(
            {
                "x": x,
                "y": rng.normal(shift, 1.0, n),
                "orders": rng.poisson(1.0 + shift, n).astype(float),
                "plan": rng.choice(np.array(["free", "basic", "pro"], dtype=object), n),
                "flag": rng.choice(np.array(["yes", "no"], dtype=object), n),
            }
        )

    return frame(0.0), frame(0.6)


CONFIG = DriftConfig(
    numerical=("x", "y", "orders"),
    categorical=("plan", "flag"),
    psi_columns=("x", "plan"),  # PSI on some columns, Evidently's own choice on the others
    summary=True,
    index_charts=True,
)


def _text(path: Path) -> str:
    return DASHBOARD.sub("metric_ID", UUID.sub("ID", path.read_text()))


def test_skipping_unshown_widgets_changes_nothing_in_the_saved_report(tmp_path: Path) -> None:
    reference, current = _frames()
    runs = {}
    for lean in (False, True):
        out = tmp_path / str(lean)
        runs[lean] = run_drift(
            reference,
            current,
            config=CONFIG,
            html_path=out / "r.html",
            json_path=out / "r.json",
            lean=lean,
        )
    public, lean_run = runs[False], runs[True]
    assert lean_run.columns == public.columns and public.drifted  # something did drift
    assert _text(lean_run.html_path) == _text(public.html_path)
    assert _text(lean_run.json_path) == _text(public.json_path)


def test_an_unverified_evidently_runs_as_shipped(monkeypatch: pytest.MonkeyPatch) -> None:
    from evidently.metrics import column_statistics

    monkeypatch.setattr(evidently_private, "VERIFIED", ("0.0.0",))
    before = column_statistics.ValueDriftCalculation._render
    assert evidently_private.unavailable() is not None
    with evidently_private.unshown_widgets_skipped():
        assert column_statistics.ValueDriftCalculation._render is before
    monkeypatch.undo()
    with evidently_private.unshown_widgets_skipped():
        assert column_statistics.ValueDriftCalculation._render is not before
    assert column_statistics.ValueDriftCalculation._render is before  # put back


def test_the_report_run_alongside_is_the_report_run_here(tmp_path: Path) -> None:
    reference, current = _frames()
    here = run_drift(
        reference,
        current,
        config=CONFIG,
        html_path=tmp_path / "a.html",
        json_path=tmp_path / "a.json",
    )
    with drift_runner() as runner:
        pending = runner.submit(
            reference.assign(ignored=1.0),  # only the configured columns travel
            current,
            config=CONFIG,
            html_path=tmp_path / "b.html",
            json_path=tmp_path / "b.json",
        )
        there = pending.result()
        with pytest.raises(RuntimeError, match="one report"):
            runner.submit(
                reference,
                current,
                config=CONFIG,
                html_path=tmp_path / "x",
                json_path=tmp_path / "y",
            )
    assert there.columns == here.columns and there.drift_share == here.drift_share
    assert there.seconds > there.import_seconds > 0.0  # imported in its own process
    assert _text(there.json_path) == _text(here.json_path)
    assert _text(there.html_path) == _text(here.html_path)


def test_a_failed_report_alongside_raises_its_own_error_here(tmp_path: Path) -> None:
    reference, current = _frames()
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the report's folder should be")
    with drift_runner() as runner:
        pending = runner.submit(
            reference,
            current,
            config=CONFIG,
            html_path=blocker / "r.html",
            json_path=blocker / "r.json",
        )
        with pytest.raises(FileExistsError) as raised:
            pending.result()
    assert "run_drift" in "".join(raised.value.__notes__)  # the worker's traceback


def test_a_runner_never_given_a_report_is_stopped_with_its_block() -> None:
    with pytest.raises(ValueError, match="gathering failed"), drift_runner():
        raise ValueError("gathering failed")


def test_the_index_charts_left_out_change_only_the_drift_tables_details(tmp_path: Path) -> None:
    """A numerical column's chart against the row number goes (one per numerical column), its
    distribution stays, and the JSON is the same."""
    reference, current = _frames()
    runs = {}
    for charts in (True, False):
        out = tmp_path / str(charts)
        runs[charts] = run_drift(
            reference,
            current,
            config=replace(CONFIG, index_charts=charts),
            html_path=out / "r.html",
            json_path=out / "r.json",
        )
    with_charts, without = (_text(runs[c].html_path) for c in (True, False))
    assert with_charts.count("DATA DRIFT") == len(CONFIG.numerical)
    assert without.count("DATA DRIFT") == 0
    assert without.count("DATA DISTRIBUTION") == with_charts.count("DATA DISTRIBUTION") > 0
    assert _text(runs[False].json_path) == _text(runs[True].json_path)
    assert runs[False].columns == runs[True].columns
