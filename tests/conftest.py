"""Fixtures shared across test folders."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from clv.core.processes import free_port, stop_process


@pytest.fixture(scope="session")
def dask_scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `dask scheduler` and one `dask worker` process on loopback, started with the
    `dask` command of this environment (what `compute.dask_scheduler` points at in a
    deployment, not a LocalCluster); its address."""
    address = f"tcp://127.0.0.1:{free_port()}"
    dask = str(Path(sys.executable).with_name("dask"))
    log = (tmp_path_factory.mktemp("dask") / "dask.log").open("wb")
    port = address.rsplit(":", 1)[1]
    loopback = ["--host", "127.0.0.1", "--no-dashboard"]
    commands = [
        [dask, "scheduler", "--port", port, *loopback],
        [dask, "worker", address, "--nthreads", "1", "--memory-limit", "1GiB", *loopback],
    ]
    procs = [subprocess.Popen(c, stdout=log, stderr=subprocess.STDOUT) for c in commands]
    try:
        yield address
    finally:
        for proc in reversed(procs):
            stop_process(proc)
        log.close()


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """`make test` runs on two pytest-xdist workers. A file's tests stay on one worker (its
    module fixtures are built once), and every test on the real services runs on the same one,
    in order: they share one Redis, which one of them restarts. (A scheduler, not
    `xdist_group` marks: pytest 9 ignores the node ids pytest-xdist 3.8 rewrites for them.)"""
    from xdist.scheduler import LoadScopeScheduling

    class FileOrServices(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "services" if path.startswith("tests/integration/") else path

    return FileOrServices(config, log)
