"""Training sets larger than one process's memory budget: Parquet parts on disk, xgboost.dask.

`plan_scale` estimates what in-process training would hold: the training frame's bytes per
row (measured on the first rows of the feature file) times the entity rows times
`IN_PROCESS_FACTOR`, the ratio of a training run's peak memory to its frame (the Feast
point-in-time join, the matrices, the split copies, XGBoost's own). Within
`compute.memory_budget_mb` training runs in this process, as always. Above it:

1. `write_parts`: the training set is assembled customer bucket by customer bucket
   (clv.core.store.bucket_predicate; features through the same FeatureService, labels from the
   log) and written as one Parquet part per bucket; each bucket's estimate is under the budget.
2. Tuning, the value-model choice, evaluation, calibration and intervals run in this process on
   one bucket, a uniform customer sample (`sample_data`) that fits the budget.
3. `DaskRefit` fits the registered model's boosters (clv.training.refit) with `xgboost.dask` on a
   Dask cluster from every part: a local cluster of `compute.dask_workers` processes, each
   limited to `compute.dask_worker_memory_mb` (default: the budget), or the scheduler at
   `compute.dask_scheduler`. Workers then need clv installed and the workspace's parts path
   (a shared filesystem). The parts are removed when the run ends.

The workers' peak resident memory is reported with the run (`dask.worker_peak_rss_mb`).
"""

from __future__ import annotations

import math
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow.parquet as pq

from clv.core.compute import peak_rss_mib
from clv.core.errors import ClvError, DataError
from clv.core.settings import Settings
from clv.core.time import utc_series
from clv.training.dataset import (
    FeatureSource,
    Progress,
    TrainingData,
    labelled_rows,
    log_end,
)
from clv.training.refit import (
    OFFSET,
    BoosterJob,
    OffsetFn,
    RefitOutcome,
    label_of,
    prepare_rows,
    row_mask,
)

if TYPE_CHECKING:
    import dask.dataframe as dd
    import xgboost as xgb
    from distributed import Client

    from clv.model.bundle import ClvModel, ModelCard

IN_PROCESS_FACTOR = 10.0
"""Peak memory of in-process training over its training frame's bytes. Measured on the demo
world (228,134 labelled rows, frame 141 MiB, 650 B a row): loading through Feast's point-in-time
join took the process from 249 to 1,440 MiB (8.4x the frame) before any fit. Checked by the
`train_dask` benchmark: estimate 2,646 MiB, measured in-process peak 2,600 MiB."""
SAMPLE_ROWS = 20_000
"""Rows of the feature file read to measure the bytes per training row."""
LABEL_BYTES = 16
"""The two label columns a training row adds to its features."""


@dataclass(frozen=True)
class TrainingScale:
    """How big in-process training would be, and how the work is split when it is too big."""

    rows: int
    row_bytes: float
    budget_bytes: int

    @property
    def estimate_bytes(self) -> int:
        return int(self.rows * self.row_bytes * IN_PROCESS_FACTOR)

    @property
    def in_process(self) -> bool:
        return self.estimate_bytes <= self.budget_bytes

    @property
    def buckets(self) -> int:
        """1 in process; else the fewest customer buckets whose estimates are each within the
        budget (at least 2; one of them is the in-process sample)."""
        return math.ceil(self.estimate_bytes / self.budget_bytes)

    def describe(self) -> str:
        mib = 2**20
        return (
            f"{self.rows:,} entity rows x {self.row_bytes:.0f} B x {IN_PROCESS_FACTOR:g} = "
            f"~{self.estimate_bytes / mib:,.0f} MiB in process against a budget of "
            f"{self.budget_bytes / mib:,.0f} MiB"
        )


def plan_scale(settings: Settings) -> TrainingScale:
    """The in-process estimate from the feature file's metadata and its first rows."""
    from clv.features.snapshots import require_features

    path = require_features(settings)
    handle = pq.ParquetFile(path)
    rows = handle.metadata.num_rows
    head = next(handle.iter_batches(batch_size=SAMPLE_ROWS), None)
    if head is None or head.num_rows == 0:
        raise DataError(f"{path} has no rows: run `clv features build`")
    sample = head.to_pandas()
    row_bytes = float(sample.memory_usage(deep=True).sum()) / len(sample) + LABEL_BYTES
    budget = settings.compute.memory_budget_mb * 2**20
    return TrainingScale(rows=rows, row_bytes=row_bytes, budget_bytes=budget)


@dataclass(frozen=True)
class TrainingParts:
    """The training set on disk: one Parquet file per customer bucket that has rows (in the
    directory `write_parts` was given)."""

    paths: tuple[Path, ...]
    buckets: int
    rows: int
    seconds: float
    data_end: pd.Timestamp
    """The log's last timestamp, which every bucket's labels were cut at."""


def write_parts(
    settings: Settings,
    *,
    source: FeatureSource,
    buckets: int,
    directory: Path,
    progress: Progress | None = None,
) -> TrainingParts:
    """Assemble the training set bucket by bucket; only one bucket is in memory at a time."""
    say = progress or (lambda _msg: None)
    began = time.perf_counter()
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    end = log_end(settings)
    paths: list[Path] = []
    rows = 0
    for bucket in range(buckets):
        frame, _ = labelled_rows(
            settings, source=source, buckets=buckets, bucket=bucket, data_end=end
        )
        if frame.empty:
            continue
        path = directory / f"part-{bucket:05d}.parquet"
        frame.to_parquet(path, index=False)
        paths.append(path)
        rows += len(frame)
        say(f"training set: bucket {bucket + 1}/{buckets}, {len(frame):,} rows")
        del frame
    if not paths:
        raise DataError(
            f"no snapshot has a complete {settings.model.horizon_days}-day label window before "
            f"{end}: build features with earlier snapshots or generate a longer history"
        )
    return TrainingParts(tuple(paths), buckets, rows, time.perf_counter() - began, data_end=end)


def sample_data(settings: Settings, parts: TrainingParts, *, source: FeatureSource) -> TrainingData:
    """The first part (one hash bucket: a uniform sample of customers) as in-memory data."""
    frame = pd.read_parquet(parts.paths[0])
    frame["event_timestamp"] = utc_series(frame["event_timestamp"])
    return TrainingData(
        frame=frame,
        feature_names=tuple(source.feature_names(settings)),
        categorical=tuple(source.categorical_features(settings)),
        feature_service=settings.features.service,
        data_end=parts.data_end,
    )


@dataclass(frozen=True)
class _Prepare:
    """`prepare_rows` for one fit, shipped to the workers; Dask names its tasks by `token`
    (the model objects have no deterministic hash of their own)."""

    card: ModelCard
    offset: OffsetFn | None
    token: str

    def __call__(self, frame: pd.DataFrame) -> pd.DataFrame:
        import xgboost as xgb

        from clv.model.bundle import ClvModel

        # The encoder only maps features (its empty booster does not pickle): made per task.
        encoder = ClvModel(self.card, value=xgb.Booster())
        return prepare_rows(frame, encoder=encoder, offset=self.offset)

    def __dask_tokenize__(self) -> str:
        return self.token


@dataclass(frozen=True)
class DaskRefit:
    """`xgboost.dask` from the training set's parts (clv.training.refit.RefitBackend)."""

    client: Client
    parts: TrainingParts

    def fit(
        self, jobs: Sequence[BoosterJob], *, encoder: ClvModel, offset: OffsetFn | None
    ) -> RefitOutcome:
        import dask.dataframe as dd
        from dask.dataframe.dispatch import make_meta
        from distributed import KilledWorker

        began = time.perf_counter()
        names = encoder.feature_names
        raw = dd.read_parquet([str(p) for p in self.parts.paths])
        prepare = _Prepare(encoder.card, offset, token=uuid.uuid4().hex)
        prepared = raw.map_partitions(prepare, meta=prepare(make_meta(raw)))  # type: ignore[no-untyped-call]
        prepared = self.client.persist(prepared)  # type: ignore[no-untyped-call]
        rows = int(prepared.shape[0].compute())
        boosters: dict[str, xgb.Booster] = {}
        try:
            for job in jobs:
                boosters[job.name] = self._fit_one(job, prepared, names)
        except KilledWorker as exc:
            raise ClvError(
                f"a Dask worker died while fitting ({exc.__class__.__name__}); with a worker "
                f"memory limit of {self.client_budget_mb():.0f} MiB: raise "
                "compute.dask_worker_memory_mb or add workers"
            ) from exc
        del prepared
        peaks = self.client.run(peak_rss_mib)
        budget = float(self.client_budget_mb())
        return RefitOutcome(
            boosters,
            {
                "refit.backend": "dask",
                "refit.rows": rows,
                "refit.seconds": round(time.perf_counter() - began, 1),
                "dask.workers": len(peaks),
                "dask.parts": len(self.parts.paths),
                "training.sample": f"customer bucket 1 of {self.parts.buckets}",
                "dask.worker_peak_rss_mb": round(max(peaks.values()), 1),
                "dask.worker_peaks_rss_mb": ",".join(f"{v:.1f}" for v in peaks.values()),
                "dask.worker_memory_limit_mb": budget,
            },
        )

    def _fit_one(self, job: BoosterJob, prepared: dd.DataFrame, names: list[str]) -> xgb.Booster:
        import xgboost as xgb
        from xgboost import dask as dxgb

        from clv.training.booster import MAX_BIN

        sel = prepared[row_mask(prepared, job.rows)]
        matrix = dxgb.DaskQuantileDMatrix(
            self.client,
            sel[names],
            label=label_of(sel, job.label),
            base_margin=sel[OFFSET] if job.offset else None,
            feature_names=list(names),
            max_bin=MAX_BIN,
        )
        # The workers take XGBoost's global configuration from here: quiet, as in process.
        with xgb.config_context(verbosity=0):
            out = dxgb.train(
                self.client,
                dict(job.params),
                matrix,
                num_boost_round=job.rounds,
                verbose_eval=False,
            )
        booster: xgb.Booster = out["booster"]
        return booster

    def client_budget_mb(self) -> float:
        """The smallest worker memory limit the scheduler knows (0 when unlimited)."""
        info = self.client.scheduler_info()
        limits = [w.get("memory_limit", 0) or 0 for w in info.get("workers", {}).values()]
        return round(min(limits) / 2**20, 1) if limits else 0.0
