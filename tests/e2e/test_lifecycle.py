"""The whole lifecycle, small, through the CLI exactly as `make demo` runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clv.cli.main import main


@pytest.mark.slow
def test_demo_runs_every_stage_and_serves_over_http(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # 600 customers keep this test fast but have fewer than readiness.min_repeat_buyers: the
    # check runs and reports, it does not refuse (`make demo`'s 20,000 pass it outright).
    monkeypatch.setenv("CLV_READINESS__ENFORCE", "false")
    argv = ["--workspace", str(tmp_path), "demo", "--customers", "600", "--months", "48"]
    code = main([*argv, "--trials", "2", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    out = json.loads(captured.out)
    steps = out["steps"]

    data = steps["data"]
    # the demo's world (mixed) stores a row per customer version: plans and countries change
    assert data["customers"]["stored"] == data["customers"]["read"] >= 600
    assert data["transactions"]["stored"] > 600  # repeat buyers exist
    assert data["transactions"]["quarantined"] == 0

    assert steps["features"]["snapshots"] >= 20
    assert steps["features"]["service"] == "clv_v1"

    train = steps["train"]
    assert train["version"] == "1"
    assert (tmp_path / "reports" / "readiness.html").exists()
    assert train["readiness"] is not None
    assert train["aliases"] == ["champion"]
    gini = train["test_metrics"]["model"]["gini"]
    assert 0.3 < gini <= 1.0  # a ranking far better than chance on the generator's world

    report = Path(steps["monitor"]["report"])
    assert (report / "data_drift.html").stat().st_size > 10_000
    verdict = json.loads((report / "summary.json").read_text())["verdict"]
    assert verdict in {"OK", "WARN", "RETRAIN"}
    assert verdict in Path(steps["monitor"]["page"]).read_text()  # the page leads with it

    scores = steps["score"]["scores"]
    assert [s["customer_id"] for s in scores][-1] == "C_NEW_CUSTOMER"
    assert all(s["model_version"] == "1" and s["alias"] == "champion" for s in scores)
    assert scores[-1]["cold_start"] is True
    assert all(not s["cold_start"] for s in scores[:-1])
    assert all(s["clv"] is not None and s["clv"] >= 0 for s in scores)


def test_every_stage_refuses_to_run_out_of_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = ["--workspace", str(tmp_path)]
    for argv in (["features", "build"], ["train"], ["score", "--all"], ["monitor", "run"]):
        code = main([*ws, *argv])
        err = capsys.readouterr().err
        assert code != 0, argv
        last = err.strip().splitlines()[-1]
        assert last.startswith("error: ") and "Traceback" not in err, (argv, err)
        assert "run `clv" in last, (argv, err)  # names the command that fixes it
