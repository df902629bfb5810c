"""The compute side of the settings: the Dask cluster and the memory a process has used.

`dask_client` connects to `compute.dask_scheduler`, or starts a local cluster of
`compute.dask_workers` processes on loopback, each limited to `compute.dask_worker_memory_mb`
(default `compute.memory_budget_mb`), for the block it opens. Feature builds
(clv.features.build) and training (clv.training.distributed) use the same cluster settings.
"""

from __future__ import annotations

import logging
import resource
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from clv.core.errors import ConfigError
from clv.core.settings import Settings

if TYPE_CHECKING:
    from distributed import Client

MIN_WORKER_MB = 512
"""Below this a worker process (Python, pandas, XGBoost: ~250 MiB idle) is killed by its nanny
before it has held any data."""
WORKER_START_SECONDS = 60
SCHEDULER_TIMEOUT = "10s"


def worker_memory_mb(settings: Settings) -> int:
    """The memory limit of each local Dask worker; ConfigError when no worker could start."""
    compute = settings.compute
    memory = compute.dask_worker_memory_mb or compute.memory_budget_mb
    if compute.dask_scheduler is None and memory < MIN_WORKER_MB:
        raise ConfigError(
            f"a Dask worker needs more than {memory} MiB (compute.dask_worker_memory_mb, default "
            f"compute.memory_budget_mb): give each at least {MIN_WORKER_MB} MiB"
        )
    return memory


@contextmanager
def dask_client(settings: Settings) -> Iterator[Client]:
    """A client of the configured scheduler, or of a local cluster started for this block."""
    from distributed import Client, LocalCluster

    compute = settings.compute
    if compute.dask_scheduler:
        try:
            client = Client(compute.dask_scheduler, timeout=SCHEDULER_TIMEOUT)  # type: ignore[no-untyped-call]
        except (OSError, TimeoutError) as exc:
            raise ConfigError(
                f"cannot reach the Dask scheduler at {compute.dask_scheduler} "
                f"(compute.dask_scheduler): {exc.__class__.__name__}"
            ) from exc
        with client:
            client.wait_for_workers(1, timeout=WORKER_START_SECONDS)
            yield client
        return
    memory = worker_memory_mb(settings)
    with (
        LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=compute.dask_workers,
            threads_per_worker=settings.tuning.nthread,
            processes=True,
            memory_limit=f"{memory}MiB",
            host="127.0.0.1",
            dashboard_address=None,
            # The scheduler's HTTP endpoints (health, metrics) on loopback, any free port.
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            # Worker failures reach the client as exceptions (see DaskRefit); the workers'
            # own log lines (a heartbeat lost at shutdown) would only be noise on stderr.
            silence_logs=logging.CRITICAL,
        ) as cluster,
        Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):
        client.wait_for_workers(compute.dask_workers, timeout=WORKER_START_SECONDS)
        yield client


def peak_rss_mib() -> float:
    """This process's own peak resident memory in MiB.

    Linux: VmHWM of /proc/self/status. Not `getrusage`'s ru_maxrss, which Linux carries over
    fork and exec, so that a process started by a big parent reports the parent's peak (a
    worker spawned by a 1.4 GiB driver said 1.4 GiB). Elsewhere ru_maxrss (macOS: bytes)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / 2**20 if sys.platform == "darwin" else peak / 1024, 1)
