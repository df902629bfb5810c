"""The whole lifecycle, small, through the CLI exactly as `make demo` runs it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pandas as pd
import pytest

from clv.cli.main import main
from clv.core.settings import load_settings
from clv.core.store import read_table


@pytest.fixture
def crm() -> Iterator[tuple[str, list[dict[str, object]]]]:
    """A CRM's webhook on loopback: its URL and the JSON documents it received."""
    received: list[dict[str, object]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()


@pytest.mark.slow
def test_demo_runs_every_stage_and_serves_over_http(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    crm: tuple[str, list[dict[str, object]]],
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

    # Decisions: channels on the planted costs, cohorts one snapshot back and now, a retention
    # selection recorded as an experiment, the dashboard.
    decisions = steps["decisions"]
    best, worst = decisions["best_channel"], decisions["worst_channel"]
    assert best["clv_cac"]["value"] >= worst["clv_cac"]["value"]
    assert {best["cac"], worst["cac"]} <= {8.0, 90.0, 60.0, 40.0, 80.0}  # the planted CACs
    assert decisions["largest_drop"] is not None  # two runs were compared
    assert Path(decisions["dashboard"]).read_text().count("<svg") >= 3
    retention = decisions["retention"]
    settings = load_settings(tmp_path, environ={})
    assigned = read_table(settings, "assignments")
    assert assigned["arm"].value_counts().to_dict() == {
        k: v
        for k, v in (("treatment", retention["treated"]), ("control", retention["holdout"]))
        if v
    }
    code = main(["--workspace", str(tmp_path), "analyze", "experiments", "--json"])
    experiments = json.loads(capsys.readouterr().out)["experiments"]
    assert code == 0 and [e["matured"] for e in experiments] == [False]

    # A second selection a day later, with the CRM's webhook: nobody of the first is chosen
    # again, and the webhook hears of the treated only.
    url, received = crm
    monkeypatch.setenv("CLV_SERVING__WEBHOOK_URL", url)
    spent = json.loads((tmp_path / "reports" / "decisions" / "retention.json").read_text())
    cap = float(spent["expected_cost"]) + 20.0  # the period's cap leaves 20 of the 200
    monkeypatch.setenv("CLV_DECISIONS__RETENTION_MAX_SPEND", str(cap))
    argv = ["--workspace", str(tmp_path), "decide", "retention", "--budget", "200"]
    code = main([*argv, "--offer-cost", "2", "--save-rate", "0.5", "--json"])
    second = json.loads(capsys.readouterr().out)
    assert code == 0 and second["excluded_recent"] == retention["treated"] + retention["holdout"]
    after = read_table(load_settings(tmp_path, environ={}), "assignments")
    mine = after.loc[after["experiment"] == second["experiment"]]
    first = set(assigned["customer_id"])
    assert not set(mine["customer_id"]) & first
    assert len(mine) == second["selected"] and second["budget_left"] == pytest.approx(20.0)
    assert 0 < second["expected_cost"] <= 20.0
    (posted,) = received
    treated = set(mine.loc[mine["arm"] == "treatment", "customer_id"])
    assert {c["customer_id"] for c in posted["customers"]} == treated  # type: ignore[union-attr]
    assert pd.Timestamp(str(posted["as_of"])) == pd.Timestamp(str(retention_as_of(tmp_path)))


def retention_as_of(workspace: Path) -> str:
    doc = json.loads((workspace / "reports" / "decisions" / "retention.json").read_text())
    return str(doc["as_of"])


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
