"""The one Evidently adapter (Evidently 0.7 API: `Report`, `Dataset`, `DataDefinition`).

The report is data first (`DriftConfig`), then an Evidently `Report` with `DataDriftPreset`
(features and predictions; PSI for the key features via `per_column_method`) and, when asked,
`DataSummaryPreset` (the data-quality statistics of both sides), run on reference vs current,
saved as HTML and JSON. Per-column drift is read back from the saved
JSON document: each `ValueDrift` metric carries the column's score, method and threshold, and
its test (status FAIL) says whether Evidently judged the column drifted. Evidently picks the
method per column from its size and type (K-S / chi-square or Z-test p-values up to 1000 rows,
normed Wasserstein / Jensen-Shannon distance above) unless `method` is set.

A report's time is Plotly figures per column and importing Evidently: the widgets the presets
never show are skipped (clv.monitoring.evidently_private), and `drift_runner` runs the report
in a forked process that imports Evidently while the caller gathers and judges.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np
import pandas as pd

from clv.monitoring.evidently_private import unshown_widgets_skipped

if TYPE_CHECKING:
    import multiprocessing
    from multiprocessing.connection import Connection

ColumnKind = Literal["numerical", "categorical"]


@dataclass(frozen=True)
class DriftConfig:
    """What to compare and how: the report as data, before Evidently sees it."""

    numerical: tuple[str, ...]
    categorical: tuple[str, ...] = ()
    drift_share: float = 0.5
    """The share of drifted columns at which Evidently's own dataset-drift test fails."""
    method: str | None = None
    """One Evidently stat test for every column (e.g. "psi", "wasserstein"); None = per column."""
    threshold: float | None = None
    psi_columns: tuple[str, ...] = ()
    """Columns judged by PSI whatever their type (the key features)."""
    psi_threshold: float = 0.1
    summary: bool = False
    """Add Evidently's DataSummaryPreset (missing values, ranges, categories per column)."""
    index_charts: bool = False
    """Evidently's chart of each numerical column against the row number, in the drift
    table's details: off, because a snapshot's rows are customers in no order (the chart
    says nothing and is a quarter of the report's time); the distributions stay. Only the
    lean report (`run_drift(lean=True)`) leaves it out."""

    @property
    def columns(self) -> tuple[str, ...]:
        return (*self.numerical, *self.categorical)


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    kind: ColumnKind
    method: str
    threshold: float
    score: float
    drifted: bool


@dataclass(frozen=True)
class DriftResult:
    columns: tuple[ColumnDrift, ...]
    drifted_count: int
    drift_share: float
    html_path: Path
    json_path: Path
    seconds: float = 0.0
    """The whole `run_drift`, importing Evidently included."""
    import_seconds: float = 0.0
    """Importing Evidently (0 when it was imported already)."""

    @property
    def drifted(self) -> tuple[str, ...]:
        return tuple(c.column for c in self.columns if c.drifted)


def run_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    config: DriftConfig,
    html_path: Path,
    json_path: Path,
    lean: bool = True,
) -> DriftResult:
    """Run the data-drift report on reference vs current; save HTML and JSON; read it back.

    `lean`: skip the widgets the presets compute and never show (clv.monitoring.evidently_private).
    """
    started = time.perf_counter()
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset, DataSummaryPreset

    imported = time.perf_counter()

    cols = list(config.columns)
    missing = [c for c in cols if c not in reference.columns or c not in current.columns]
    if missing:
        raise KeyError(f"columns missing from reference or current: {missing}")
    definition = DataDefinition(
        numerical_columns=list(config.numerical), categorical_columns=list(config.categorical)
    )
    psi = [c for c in config.psi_columns if c in cols]
    presets: list[DataDriftPreset | DataSummaryPreset] = [
        DataDriftPreset(
            columns=cols,
            drift_share=config.drift_share,
            method=config.method,
            threshold=config.threshold,
            per_column_method=dict.fromkeys(psi, "psi") or None,
            per_column_threshold=dict.fromkeys(psi, config.psi_threshold) or None,
        )
    ]
    if config.summary:
        presets.append(DataSummaryPreset(columns=cols))
    report = Report(presets, include_tests=True)
    with unshown_widgets_skipped(enabled=lean, index_charts=config.index_charts):
        snapshot = report.run(
            current_data=Dataset.from_pandas(_typed(current, config), data_definition=definition),
            reference_data=Dataset.from_pandas(
                _typed(reference, config), data_definition=definition
            ),
        )
    html_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(html_path))
    snapshot.save_json(str(json_path))
    document = json.loads(json_path.read_text())
    columns, count, share = parse_drift(document, config=config)
    return DriftResult(
        columns=columns,
        drifted_count=count,
        drift_share=share,
        html_path=html_path,
        json_path=json_path,
        seconds=time.perf_counter() - started,
        import_seconds=imported - started,
    )


class PendingDrift(Protocol):
    """A drift report being run; `result` waits for it."""

    def result(self) -> DriftResult: ...


class DriftRunner(Protocol):
    """Where a drift report runs (`drift_runner`)."""

    def submit(
        self,
        reference: pd.DataFrame,
        current: pd.DataFrame,
        *,
        config: DriftConfig,
        html_path: Path,
        json_path: Path,
    ) -> PendingDrift: ...


@contextlib.contextmanager
def drift_runner() -> Iterator[DriftRunner]:
    """A process for one drift report, forked now: it imports Evidently while this one works
    (gathers, judges), then runs the report it is given alongside, so that the report's seconds
    (an import and Plotly figures, on one core) overlap the caller's. Off Linux (fork is Linux's
    safe default only) the report runs in this process when its result is asked for. The
    process is stopped when the block ends, whether or not it ran a report."""
    if sys.platform != "linux":
        yield _InProcess()
        return
    worker = _Worker()
    try:
        yield worker
    finally:
        worker.stop()


@dataclass(frozen=True)
class _Job:
    """One report's frames and where it goes."""

    reference: pd.DataFrame
    current: pd.DataFrame
    config: DriftConfig
    html_path: Path
    json_path: Path

    def result(self) -> DriftResult:
        return run_drift(
            self.reference,
            self.current,
            config=self.config,
            html_path=self.html_path,
            json_path=self.json_path,
        )


class _Runner:
    """A `DriftRunner`: `submit` makes the job, `_start` runs it (or sends it) somewhere."""

    def submit(
        self,
        reference: pd.DataFrame,
        current: pd.DataFrame,
        *,
        config: DriftConfig,
        html_path: Path,
        json_path: Path,
    ) -> PendingDrift:
        return self._start(_Job(reference, current, config, html_path, json_path))

    def _start(self, job: _Job) -> PendingDrift:
        raise NotImplementedError


class _InProcess(_Runner):
    def _start(self, job: _Job) -> PendingDrift:
        return job  # runs when its result is asked for


class _Worker(_Runner):
    """The forked process of `drift_runner`: it is sent one report's frames (the configured
    columns only, through a queue whose feeder thread writes while this process goes on) and
    sends back its DriftResult or its exception."""

    def __init__(self) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("fork")
        self._jobs: multiprocessing.Queue[_Job] = ctx.Queue()
        self._receive, send = ctx.Pipe(duplex=False)
        self._process = ctx.Process(target=_serve, args=(self._jobs, send), daemon=True)
        self._process.start()
        send.close()
        self._submitted = False

    def _start(self, job: _Job) -> PendingDrift:
        if self._submitted:
            raise RuntimeError("a drift runner runs one report")
        self._submitted = True
        cols = list(job.config.columns)
        self._jobs.put(replace(job, reference=job.reference[cols], current=job.current[cols]))
        return self

    def result(self) -> DriftResult:
        try:
            ok, payload = self._receive.recv()
        except EOFError:
            self._process.join()
            raise RuntimeError(
                "the Evidently report process ended without a result "
                f"(exit code {self._process.exitcode})"
            ) from None
        self._process.join()
        if not ok:
            raise payload
        assert isinstance(payload, DriftResult)
        return payload

    def stop(self) -> None:
        if self._process.is_alive():  # never given a report, or its caller failed
            self._process.terminate()
        self._process.join()
        self._jobs.cancel_join_thread()  # never wait at exit on a queue nobody reads
        self._jobs.close()
        self._receive.close()


def _serve(jobs: multiprocessing.Queue[_Job], send: Connection) -> None:
    """The worker: import Evidently, wait for the report, run it, send its result back."""
    started = time.perf_counter()
    import evidently.presets  # noqa: F401  (the import this process is here to pay early)

    imported = time.perf_counter() - started
    job = jobs.get()
    try:
        drift = job.result()
        reply: tuple[bool, object] = (
            True,
            replace(drift, seconds=drift.seconds + imported, import_seconds=imported),
        )
    except Exception as exc:  # sent back whole: the parent raises it
        exc.add_note(traceback.format_exc())
        reply = (False, exc)
    try:
        send.send(reply)
    except Exception:  # an exception that does not pickle: its text
        send.send((False, RuntimeError(traceback.format_exc())))
    finally:
        send.close()


def parse_drift(
    document: Mapping[str, object], *, config: DriftConfig
) -> tuple[tuple[ColumnDrift, ...], int, float]:
    """Per-column drift and the drifted count/share from an Evidently 0.7 snapshot document."""
    metrics = _records(document.get("metrics"))
    tests = _records(document.get("tests"))
    failed = {
        str(_get(t, "metric_config", "metric_id"))
        for t in tests
        if t.get("status") == "FAIL" and t.get("id") == "drift"
    }
    tested = {str(_get(t, "metric_config", "metric_id")) for t in tests if t.get("id") == "drift"}
    kinds: dict[str, ColumnKind] = {c: "numerical" for c in config.numerical}
    kinds.update({c: "categorical" for c in config.categorical})
    columns: list[ColumnDrift] = []
    count: int | None = None
    share: float | None = None
    for m in metrics:
        cfg = m.get("config")
        kind = cfg.get("type") if isinstance(cfg, Mapping) else None
        if kind == "evidently:metric_v2:DriftedColumnsCount":
            value = m.get("value")
            if isinstance(value, Mapping):
                count = int(_number(value.get("count")))
                share = _number(value.get("share"))
        elif kind == "evidently:metric_v2:ValueDrift" and isinstance(cfg, Mapping):
            name = str(cfg.get("column"))
            method = str(cfg.get("method"))
            threshold = _number(cfg.get("threshold"))
            score = _number(m.get("value"))
            metric_id = str(m.get("id"))
            if metric_id in tested:
                drifted = metric_id in failed
            else:  # no test attached: p-values drift below, distances at or above
                drifted = score < threshold if "p_value" in method else score >= threshold
            columns.append(
                ColumnDrift(
                    column=name,
                    kind=kinds.get(name, "numerical"),
                    method=method,
                    threshold=threshold,
                    score=score,
                    drifted=drifted,
                )
            )
    n_drifted = sum(c.drifted for c in columns)
    if count is None or share is None:
        count = n_drifted
        share = n_drifted / len(columns) if columns else float("nan")
    return tuple(columns), count, share


def _typed(frame: pd.DataFrame, config: DriftConfig) -> pd.DataFrame:
    """Only the configured columns: numbers as float, categories as strings (missing kept).

    +inf and -inf are given as missing: Evidently's bins need a finite range (it raises
    otherwise), and clv.monitoring.quality counts them as a data-quality failure."""
    out = pd.DataFrame(index=frame.index)
    for c in config.numerical:
        values = pd.to_numeric(frame[c], errors="coerce").astype("float64")
        out[c] = values.where(~np.isinf(values))
    for c in config.categorical:
        out[c] = frame[c].astype("string").astype(object).where(frame[c].notna(), None)
    return out.reset_index(drop=True)


def _records(value: object) -> list[Mapping[str, object]]:
    if not isinstance(value, Sequence) or isinstance(value, str):
        return []
    return [v for v in value if isinstance(v, Mapping)]


def _get(record: Mapping[str, object], *keys: str) -> object:
    cur: object = record
    for k in keys:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(k)
    return cur


def _number(value: object) -> float:
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return float("nan")
    return float("nan")
