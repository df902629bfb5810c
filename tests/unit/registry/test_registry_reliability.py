"""Registry fault recovery (issue 15): rollback once, versions left by a killed training,
retrain records left by a killed run, and database errors that are not contention.

Real MLflow on a SQLite store in a tmp workspace; the kills are real SIGKILLs of child
processes (a training run that registered a version, a retrain inside a step).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from clv.cli.main import main
from clv.core.errors import ClvError
from clv.core.processes import process_state, run_owner
from clv.core.settings import Settings
from clv.core.tags import STATUS_COMPLETE, STATUS_INCOMPLETE, STATUS_REASON_TAG, STATUS_TAG
from clv.jobs.retrain import run_retrain
from clv.jobs.run_record import abandon_stale, retrain_lock
from clv.model.bundle import ClvModel
from clv.registry import evidence, mlflow_io
from clv.registry.completion import judge_registration, owner_alive
from clv.registry.gates import ServedContract
from clv.registry.history import History, HistoryDatabaseError, is_contention
from clv.registry.moves import history
from clv.registry.promotion import GateError, promote, rollback
from clv.training.mlflow_io import connect, training_run

pytestmark = pytest.mark.slow
Register = Callable[..., tuple[str, str]]
HERE = Path(__file__).resolve().parent


def tiny_model(scale: float) -> tuple[ClvModel, pd.DataFrame]:
    """The registry tests' tiny model (tests/unit/registry/conftest.py), loaded by path."""
    spec = importlib.util.spec_from_file_location("registry_conftest", HERE / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    made: tuple[ClvModel, pd.DataFrame] = module.tiny_model(scale)
    return made


@pytest.fixture(autouse=True)
def served(monkeypatch: pytest.MonkeyPatch) -> None:
    """The online store serves the tiny models' contract (no Feast in these tests)."""
    monkeypatch.setattr(
        evidence, "served_contract", lambda settings: ServedContract("clv_v1", ("spend", "channel"))
    )


def cli(workspace: Path, *argv: str) -> tuple[int, str, str]:
    """`clv --workspace WS ARGV` in process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--workspace", str(workspace), *argv])
    return code, out.getvalue(), err.getvalue()


# ---------------------------------------------------------------- rollback once


def test_a_second_rollback_is_refused_with_the_history_line(
    settings: Settings, register_version: Register
) -> None:
    for scale in (1.0, 2.0):
        register_version(settings, scale=scale)
    code, _, _ = cli(settings.workspace, "registry", "promote", "1", "--force")
    assert code == 0
    assert promote(settings, "2", force=True).rows[0].to_version == "2"

    code, printed, _ = cli(settings.workspace, "registry", "rollback")
    assert code == 0 and "champion -> version 1 (was version 2)" in printed
    assert mlflow_io.aliases(settings) == {"champion": "1"}
    done = history(settings).rows(settings.mlflow.model_name)[0]
    assert (done.action, done.from_version, done.to_version) == ("rollback", "2", "1")

    code, printed, err = cli(settings.workspace, "registry", "rollback")
    assert code == 1 and printed == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("error: not rolled back: already rolled back from version 2 to version 1")
    assert f"at {done.at[:19].replace('T', ' ')} UTC (history #{done.id})" in err
    assert mlflow_io.aliases(settings) == {"champion": "1"}  # v2 is not champion again

    refused = history(settings).rows(settings.mlflow.model_name)[0]
    assert (refused.action, refused.status) == ("rollback", "refused")
    assert (refused.from_version, refused.to_version) == ("1", "2")
    assert refused.reason.startswith("refused: already rolled back from version 2 to version 1")

    # A promotion through the gates makes a rollback possible again, once.
    promote(settings, "2", force=True)
    assert "champion -> version 1" in rollback(settings).message
    with pytest.raises(ClvError, match=r"already rolled back from version 2 to version 1"):
        rollback(settings)


# ---------------------------------------------------------------- killed registration

CHILD = """
import sys, time
from pathlib import Path
import importlib.util
spec = importlib.util.spec_from_file_location("registry_conftest", {conftest!r})
helpers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(helpers)
tiny_model = helpers.tiny_model
from clv.core.settings import load_settings
from clv.training.mlflow_io import training_run
settings = load_settings(Path({ws!r}), environ={{}})
model, frame = tiny_model(1.0)
with training_run(settings, run_name="killed") as run:
    logged = run.log_model(
        model, reference=frame.assign(clv=model.predict(frame)["clv"]), input_example=frame.head(3)
    )
    print(f"Created version {{logged.version}}", flush=True)
    time.sleep(600)
"""


@contextlib.contextmanager
def registering_child(settings: Settings) -> Iterator[subprocess.Popen[str]]:
    """A real process that registers a version and then hangs before tagging it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLV_")}
    code = CHILD.format(conftest=str(HERE / "conftest.py"), ws=str(settings.workspace))
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "Created version 1", line
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def test_a_version_left_by_a_sigkilled_training_is_marked_and_refused(
    settings: Settings,
) -> None:
    with registering_child(settings) as proc:
        # The training process is alive and may still tag: nothing is marked.
        assert mlflow_io.mark_incomplete(settings) == ()
        assert STATUS_TAG not in mlflow_io.version_tags(settings, "1")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    run_id = mlflow_io.version_info(settings, "1").run_id
    assert connect(settings).get_run(run_id).info.status == "RUNNING"  # what the kill left

    code, printed, _ = cli(settings.workspace, "registry", "list")
    assert code == 0
    assert "v1" in printed and "INCOMPLETE (registration did not complete)" in printed
    tags = mlflow_io.version_tags(settings, "1")
    assert tags[STATUS_TAG] == STATUS_INCOMPLETE
    assert f":{proc.pid}:" in tags[STATUS_REASON_TAG] and "is gone" in tags[STATUS_REASON_TAG]
    assert connect(settings).get_run(run_id).info.status == "FAILED"
    assert mlflow_io.mark_incomplete(settings) == ()  # marked once

    gates = evidence.check_gates(settings, "1")
    assert not gates.passed
    assert gates.checks[0].name == "registration"
    assert gates.checks[0].reason.startswith("registration incomplete: its training process")
    with pytest.raises(GateError, match=r"registration: registration incomplete"):
        promote(settings, "1")


def test_training_marks_its_versions_complete_or_incomplete_as_it_ends(
    settings: Settings, register_version: Register
) -> None:
    run_id, version = register_version(settings, scale=1.0)
    assert mlflow_io.version_tags(settings, version)[STATUS_TAG] == STATUS_COMPLETE
    owner = connect(settings).get_run(run_id).data.tags["clv.owner"]
    assert owner == run_owner() and owner.startswith(f"{socket.gethostname()}:{os.getpid()}:")

    model, frame = tiny_model(2.0)
    with pytest.raises(RuntimeError, match="boom"), training_run(settings, run_name="x") as run:
        logged = run.log_model(model, reference=frame.assign(clv=1.0), input_example=frame.head(3))
        raise RuntimeError("boom")
    tags = mlflow_io.version_tags(settings, logged.version)
    assert tags[STATUS_TAG] == STATUS_INCOMPLETE
    assert tags[STATUS_REASON_TAG] == "training failed: RuntimeError: boom"
    assert connect(settings).get_run(logged.run_id).info.status == "FAILED"
    listed = {v.version: v.version_tags.get(STATUS_TAG) for v in mlflow_io.list_versions(settings)}
    assert listed == {version: STATUS_COMPLETE, logged.version: STATUS_INCOMPLETE}


def judge(**given: object) -> tuple[str, str]:
    args: dict[str, object] = {
        "run_status": "RUNNING",
        "owner": "elsewhere:12:34",
        "owner_alive": None,
        "age_seconds": 10.0,
        "grace_seconds": 3600.0,
    }
    args.update(given)
    tags = args.pop("tags", {})
    result = judge_registration(tags, **args)  # type: ignore[arg-type]
    return result.state, result.reason


def test_registration_judgement_covers_each_kind_of_evidence() -> None:
    assert judge(tags={STATUS_TAG: STATUS_COMPLETE}, run_status="FAILED")[0] == "complete"
    assert judge(run_status="FINISHED")[0] == "complete"  # registered before completion tags
    assert judge(run_status="FAILED") == (
        "incomplete",
        "its training run ended FAILED before the registration completed",
    )
    assert judge(owner_alive=True, age_seconds=1e6)[0] == "in_progress"
    assert judge(owner_alive=False)[0] == "incomplete"
    assert judge(age_seconds=3599.0)[0] == "in_progress"  # another host: wait the grace period
    state, reason = judge(age_seconds=3601.0)
    assert state == "incomplete" and "3601 s" in reason and "3600" in reason
    assert judge(run_status=None, age_seconds=4000.0)[0] == "incomplete"  # the run is gone


def test_owner_liveness_reads_this_hosts_process_table() -> None:
    host = socket.gethostname()
    assert owner_alive(run_owner(), host=host) is True
    state = process_state(os.getpid())
    assert state is not None and state[0] in "RS"
    assert owner_alive(f"{host}:{os.getpid()}:{int(state[1]) + 1}", host=host) is False  # reused
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert owner_alive(f"{host}:{int(done.stdout)}:-", host=host) is False
    assert owner_alive(f"other-host:{os.getpid()}:-", host=host) is None
    assert owner_alive(None, host=host) is None


# ---------------------------------------------------------------- killed retrain

RETRAIN_CHILD = """
import time
from pathlib import Path
from clv.core.settings import load_settings
from clv.jobs.run_record import new_record, retrain_lock
settings = load_settings(Path({ws!r}), environ={{}})
with retrain_lock(settings):
    record = new_record(settings, forced=False)
    with record.step("monitor"):
        print("in step", flush=True)
        time.sleep(600)
"""


def test_a_killed_retrains_record_is_marked_abandoned_by_the_next_run(
    settings: Settings,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLV_")}
    proc = subprocess.Popen(
        [sys.executable, "-c", RETRAIN_CHILD.format(ws=str(settings.workspace))],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "in step"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    (path,) = (settings.state_dir / "retrain").glob("*.json")
    left = json.loads(path.read_text())
    assert (left["outcome"], left["pid"], left["steps"][0]["status"]) == (
        "running",
        proc.pid,
        "running",
    )

    with pytest.raises(ClvError):  # an empty workspace: the monitor step fails
        run_retrain(settings)
    assert len(list((settings.state_dir / "retrain").glob("*.json"))) == 2  # none overwritten
    record = json.loads(path.read_text())
    assert record["outcome"] == "abandoned" and record["pid"] == proc.pid
    assert record["abandoned"]["pid"] == proc.pid
    assert f"process {proc.pid} stopped without finishing" in record["abandoned"]["reason"]
    assert record["steps"][0]["status"] == "abandoned"
    with retrain_lock(settings):
        assert abandon_stale(settings) == []  # marked once; the failed run is not "running"


# ---------------------------------------------------------------- database errors


def test_a_read_only_database_is_reported_at_once_not_as_contention(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    with History(f"sqlite:///{db}").lease("clv"):
        pass  # tables and the lock row exist
    read_only = History(f"sqlite:///file:{db}?mode=ro&uri=true", lock_timeout=20.0)
    started = time.monotonic()
    with (
        pytest.raises(HistoryDatabaseError, match=r"attempt to write a readonly database"),
        read_only.lease("clv"),
    ):
        pass
    assert time.monotonic() - started < 5.0


def test_only_lock_and_busy_errors_count_as_contention(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN EXCLUSIVE")
    engine = sa.create_engine(f"sqlite:///{db}", connect_args={"timeout": 0.1})
    with pytest.raises(OperationalError) as locked, engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO t VALUES (1)"))
    holder.execute("ROLLBACK")
    holder.close()
    assert "database is locked" in str(locked.value) and is_contention(locked.value)
    ro = sa.create_engine(f"sqlite:///file:{db}?mode=ro&uri=true")
    with pytest.raises(OperationalError) as readonly, ro.begin() as conn:
        conn.execute(sa.text("INSERT INTO t VALUES (1)"))
    assert not is_contention(readonly.value)
