"""Every command that reaches a shared service gives up within `services.connect_timeout_seconds`
with one line naming it (password hidden), whether the service refuses the connection or never
answers; MLflow's own retries (about 100 s, nine multi-line warnings) never start.

The commands run in process (tests/clv_cli.py) under a deadline, so that a command that would
wait for minutes fails the test in seconds; `clv serve` and one registry command run as real
processes (a fresh interpreter's logging, the server's start-up path).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest
from clv_cli import run_clv

from clv.core.processes import free_port

TIMEOUT = 1.0
"""`services.connect_timeout_seconds` in these tests."""
SLACK = 4.0
"""What a failed command may add to the timeout in process (its imports are done already)."""
PROCESS_LIMIT = 60.0
"""A `clv` process must end well within this (it imports for 5-15 s on a loaded machine; the
code before the timeout took 110 s on a refused port and never ended on a silent one)."""
PASSWORD = "hunter2"
REFUSED = "Connection refused"
LAZY_IMPORTS = (
    "clv.monitoring.run",
    "clv.registry.promotion",
    "clv.registry.status",
    "clv.serving.batch",
    "clv.training.train",
)


class Overran(BaseException):
    """The deadline passed (a BaseException: `clv`'s main must not turn it into a message)."""


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise Overran in the main thread after `seconds` (SIGALRM interrupts sleeps and waits)."""

    def fire(signum: int, frame: FrameType | None) -> None:
        raise Overran(f"still running after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module", autouse=True)
def imported() -> None:
    """Import what the commands import lazily, so that a command's time is its own."""
    for module in LAZY_IMPORTS:
        importlib.import_module(module)


def _uri(port: int, db: str = "mlflow") -> str:
    return f"postgresql+psycopg://clv:{PASSWORD}@127.0.0.1:{port}/{db}"


def _port(kind: str, silent_port: int) -> int:
    return silent_port if kind == "silent" else free_port()


def _expected(
    kind: str, port: int, db: str = "mlflow", what: str = "MLflow tracking database"
) -> str:
    """The one line on stderr: the service, its URI without the password, the reason."""
    reason = f"no answer within {TIMEOUT:g} s" if kind == "silent" else REFUSED
    where = f"postgresql+psycopg://clv:***@127.0.0.1:{port}/{db}"
    return f"error: cannot reach the {what} at {where}: {reason}"


COMMANDS = [
    ("registry", "list"),
    ("registry", "history"),
    ("registry", "promote", "1"),
    ("registry", "rollback"),
    ("registry", "status"),
    ("train",),
    ("score", "--all", "--as-of", "2024-06-30"),
    ("monitor", "run"),
]


@pytest.mark.parametrize("kind", ["refused", "silent"])
@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_a_command_on_an_unreachable_tracking_database_fails_in_one_line_at_the_timeout(
    tmp_path: Path,
    silent_port: int,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    argv: tuple[str, ...],
) -> None:
    port = _port(kind, silent_port)
    monkeypatch.setenv("CLV_MLFLOW__TRACKING_URI", _uri(port))
    monkeypatch.setenv("CLV_TUNING__STORAGE", _uri(port, "optuna"))
    monkeypatch.setenv("CLV_SERVICES__CONNECT_TIMEOUT_SECONDS", str(TIMEOUT))
    started = time.monotonic()
    with deadline(TIMEOUT + 10.0):
        code, printed = run_clv(tmp_path, *argv)
    seconds = time.monotonic() - started
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error")]
    assert (code, printed, errors) == (1, "", [_expected(kind, port)])
    assert seconds < TIMEOUT + SLACK, f"{' '.join(argv)} failed after {seconds:.1f} s"


def _clv(workspace: Path, *argv: str, env: dict[str, str]) -> tuple[int, str, str]:
    """Run the real `clv` command; its exit code, stdout and stderr."""
    clv = str(Path(sys.executable).with_name("clv"))
    proc = subprocess.Popen(
        [clv, "--workspace", str(workspace), *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "CLV_SERVICES__CONNECT_TIMEOUT_SECONDS": str(TIMEOUT), **env},
    )
    try:
        out, err = proc.communicate(timeout=PROCESS_LIMIT)
    except subprocess.TimeoutExpired:
        proc.kill()  # the server of the old code ignored SIGTERM while it waited
        proc.communicate()
        pytest.fail(f"clv {' '.join(argv)} still running after {PROCESS_LIMIT:g} s")
    return proc.returncode, out, err


@pytest.mark.slow
def test_registry_list_on_a_refused_database_prints_one_line_and_no_retry_warnings(
    tmp_path: Path,
) -> None:
    port = free_port()
    code, out, err = _clv(
        tmp_path, "registry", "list", env={"CLV_MLFLOW__TRACKING_URI": _uri(port)}
    )
    assert (code, out, err.splitlines()) == (1, "", [_expected("refused", port)])
    assert PASSWORD not in err


@pytest.mark.slow
@pytest.mark.parametrize("service", ["tracking", "feast registry", "redis"])
def test_serve_on_an_unreachable_service_exits_in_one_line_before_it_listens(
    tmp_path: Path, silent_port: int, service: str
) -> None:
    if service == "tracking":
        env = {"CLV_MLFLOW__TRACKING_URI": _uri(silent_port)}
        expected = _expected("silent", silent_port)
    elif service == "feast registry":
        env = {"CLV_FEAST__REGISTRY": _uri(silent_port, "feast")}
        expected = _expected("silent", silent_port, "feast", "Feast registry database")
    else:
        where = f"127.0.0.1:{free_port()}"
        env = {"CLV_FEAST__ONLINE_STORE": "redis", "CLV_FEAST__REDIS_CONNECTION": where}
        expected = f"error: cannot reach the Feast online store (Redis) at {where}: {REFUSED}"
    code, out, err = _clv(tmp_path, "serve", "--port", "0", env=env)
    assert (code, out, err.splitlines()) == (1, "", [expected])
