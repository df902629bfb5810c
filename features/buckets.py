"""The build's customer buckets: each bucket's feature rows, in this process or on Dask workers.

A bucket is one DuckDB query over that bucket's rows of every table, read straight from the
offline store's Parquet files (`clv.core.store.bucket_predicate`, the hash the training side
uses too; with identities it hashes each id's group, so no customer's ids are split). One code
path for one bucket and for many; see the Memory note of `clv.features.build`.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from clv.core.contracts import TableName
from clv.core.settings import Settings
from clv.core.store import bucket_predicate, table_path
from clv.features.offline import require_table
from clv.features.query import features_table
from clv.features.sources import Source, parquet_source
from clv.inputs.identities import IdentityMap


@dataclass(frozen=True)
class BucketJob:
    """One build's bucketing: everything a bucket's query needs besides the bucket's number."""

    settings: Settings
    snapshots: list[pd.Timestamp]
    buckets: int
    created: datetime
    identities: IdentityMap | None

    def table(self, bucket: int, *, temp_directory: Path) -> pa.Table:
        """The feature rows of one customer bucket: DuckDB reads that bucket's rows of every
        table straight from the offline store (the predicate of
        `clv.core.store.read_table_bucket`; with identities, a customer's aliases are in its
        bucket)."""
        settings = self.settings
        where = bucket_predicate(self.buckets, bucket, grouped=self.identities is not None)

        def source(table: TableName) -> Source | None:
            path = table_path(settings, table)
            return parquet_source(path, where=where) if path.exists() else None

        tx = parquet_source(require_table(settings, "transactions"), where=where)
        return features_table(
            tx=tx,
            cust=source("customers"),
            ev=source("events"),
            snapshots=self.snapshots,
            margin_rate=settings.model.margin_rate,
            created=self.created,
            identities=self.identities,
            memory_limit_mb=settings.compute.memory_budget_mb,
            temp_directory=temp_directory,
        )


def bucket_tables(job: BucketJob, *, spill: Path) -> Iterator[pa.Table]:
    """Each bucket's feature rows, in bucket order, one bucket in memory at a time.

    In this process; or, with `compute.dask_scheduler` set and several buckets, computed on
    that cluster's workers, each writing its bucket to a Parquet part under `spill` (shared
    storage, like the offline store the workers read), and read back here one by one."""
    if job.settings.compute.dask_scheduler is None or job.buckets == 1:
        for bucket in range(job.buckets):
            yield job.table(bucket, temp_directory=spill)
        return
    from clv.core.compute import dask_client

    with dask_client(job.settings) as client:
        futures = client.map(_bucket_part, range(job.buckets), job=job, spill=spill, pure=False)
        for future in futures:  # in bucket order: the file is the same as in process
            path = Path(future.result())
            yield pq.read_table(path)
            path.unlink()


def _bucket_part(bucket: int, *, job: BucketJob, spill: Path) -> str:
    """On a Dask worker: one bucket's feature rows written to a part file; its path."""
    own = Path(tempfile.mkdtemp(prefix=f"bucket-{bucket:05d}-", dir=spill))
    table = job.table(bucket, temp_directory=own)
    path = spill / f"part-{bucket:05d}.parquet"
    pq.write_table(table, path)
    shutil.rmtree(own, ignore_errors=True)
    return str(path)
