from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from clv.core.settings import Settings, load_settings
from clv.jobs.retrain import run_retrain
from clv.jobs.run_record import LOCKED_EXIT, RetrainLockedError, retrain_lock


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(tmp_path, environ={})


def test_a_second_run_is_refused_while_the_lock_is_held(settings: Settings) -> None:
    with retrain_lock(settings) as path:
        assert path == settings.state_dir / "retrain.lock"
        with pytest.raises(RetrainLockedError, match="another `clv retrain` is running") as err:
            run_retrain(settings)
        assert err.value.exit_code == LOCKED_EXIT
    with retrain_lock(settings):  # released on exit
        pass


def test_the_lock_is_held_across_processes(settings: Settings) -> None:
    code = (
        "import sys, time; from clv.core.settings import load_settings; "
        "from clv.jobs.run_record import retrain_lock\n"
        f"with retrain_lock(load_settings({str(settings.workspace)!r}, environ={{}})):\n"
        "    print('held', flush=True); time.sleep(30)"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        with pytest.raises(RetrainLockedError, match=r"pid \d+"):
            run_retrain(settings)
    finally:
        child.kill()  # a killed holder frees the lock (the OS closes its descriptor)
        child.wait()
    with retrain_lock(settings):
        pass


def test_no_retrain_on_ok_writes_a_run_record(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    import clv.monitoring.run

    rng = np.random.default_rng(1)
    reference = pd.DataFrame(
        {
            "event_timestamp": pd.Timestamp("2024-06-01", tz="UTC"),
            "x": rng.normal(0, 1, 300),
            "clv": rng.gamma(2.0, 100.0, 300),
        }
    )
    real = clv.monitoring.run.run_monitor

    def with_frames(s: Settings, **_: object) -> object:
        return real(s, reference=reference, current=reference.sample(frac=1.0, random_state=3))

    monkeypatch.setattr(clv.monitoring.run, "run_monitor", with_frames)
    result = run_retrain(settings)
    assert result.outcome == "no_retrain" and result.exit_code == 0
    record = json.loads(result.record_path.read_text())
    assert record["outcome"] == "no_retrain"
    assert [s["step"] for s in record["steps"]] == ["monitor"]
    assert record["steps"][0]["status"] == "done"
    assert record["steps"][0]["detail"]["verdict"] == "OK"
    assert result.record_path.parent == settings.state_dir / "retrain"
    assert pd.Timestamp(record["started_at"]).tzinfo is not None


def test_a_retrain_on_an_unready_workspace_refuses_like_train(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scheduled job runs the check `clv train` runs (clv.training.readiness_io.require_ready)
    before rebuilding features: 12 months cannot hold a 365-day horizon."""
    import numpy as np

    import clv.monitoring.run
    from clv.core.errors import ReadinessError
    from clv.inputs.generator import generate, write_raw
    from clv.inputs.ingest import ingest_all

    settings = load_settings(tmp_path, environ={})
    data = generate(customers=300, months=12, seed=3, world="mixed", start="2025-01-01")
    write_raw(data, settings.raw_dir, fmt="parquet")
    ingest_all(settings, settings.raw_dir)
    rng = np.random.default_rng(1)
    reference = pd.DataFrame(
        {
            "event_timestamp": pd.Timestamp("2025-06-01", tz="UTC"),
            "x": rng.normal(0, 1, 300),
            "clv": rng.gamma(2.0, 100.0, 300),
        }
    )
    real = clv.monitoring.run.run_monitor

    def with_frames(s: Settings, **_: object) -> object:
        return real(s, reference=reference, current=reference)

    monkeypatch.setattr(clv.monitoring.run, "run_monitor", with_frames)
    with pytest.raises(ReadinessError, match=r"not ready to train: .*--skip-readiness"):
        run_retrain(settings, force=True)
    record = json.loads(max((settings.state_dir / "retrain").glob("*.json")).read_text())
    assert record["outcome"] == "failed"
    assert [(s["step"], s["status"]) for s in record["steps"]] == [
        ("monitor", "done"),
        ("readiness", "failed"),
    ]
    assert "not ready to train" in record["steps"][1]["error"]
