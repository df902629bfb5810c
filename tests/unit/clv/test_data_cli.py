"""`clv data generate | ingest | status` through the CLI root, as a user would run them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import clv.cli.main
from clv.cli import data as data_cli
from clv.inputs.generator import generate
from clv.inputs.saas import SAAS_FAMILIES
from clv.inputs.worlds import WORLDS


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    """The real root when every component is importable; else a root with only `data`."""
    try:
        if not any(g.name == "data" for g in clv.cli.main.app.registered_groups):
            clv.cli.main._register()
        return clv.cli.main.app
    except ImportError:
        root = typer.Typer(add_completion=False)
        root.callback()(clv.cli.main.root)
        root.add_typer(data_cli.app, name="data")
        return root


def run(app: typer.Typer, *args: str) -> dict[str, object]:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    payload: dict[str, object] = json.loads(result.stdout)
    return payload


def test_generate_ingest_status(app: typer.Typer, tmp_path: Path) -> None:
    ws = ["--workspace", str(tmp_path)]
    gen = ["--customers", "300", "--months", "12", "--seed", "1", "--json"]
    out = run(app, *ws, "data", "generate", *gen)
    rows = out["rows"]
    assert isinstance(rows, dict)
    assert rows["customers"] >= 300  # the default world, mixed: a row per attribute change
    assert rows["transactions"] > 300
    assert rows["events"] > 0
    assert out["world"] == "mixed"
    assert out["scenario"] == "baseline"
    assert out["change_date"] == "2023-09-01T00:00:00+00:00"
    raw = tmp_path / "data" / "raw"
    assert out["files"] == {
        t: str(raw / f"{t}.csv") for t in ("transactions", "customers", "events")
    }

    first = run(app, *ws, "data", "ingest", str(raw), "--json")
    results = first["results"]
    assert isinstance(results, list)
    by_table = {r["table"]: r for r in results}
    assert by_table["transactions"]["inserted"] == rows["transactions"]
    assert by_table["customers"]["stored_rows"] == rows["customers"]
    assert all(r["quarantined"] == {} for r in results)

    second = run(app, *ws, "data", "ingest", str(raw / "transactions.csv"), "--json")
    results = second["results"]
    assert isinstance(results, list)
    assert len(results) == 1
    again = results[0]
    assert again["inserted"] == 0
    assert again["unchanged"] == rows["transactions"]

    st = run(app, *ws, "data", "status", "--json")
    tables = st["tables"]
    assert isinstance(tables, dict)
    assert tables["events"]["rows"] == rows["events"]
    assert tables["transactions"]["end"] < "2024-01-01"


def test_generate_parquet_scenario_to_a_folder(app: typer.Typer, tmp_path: Path) -> None:
    out = run(
        app,
        "--workspace",
        str(tmp_path),
        "data",
        "generate",
        "--customers",
        "100",
        "--months",
        "6",
        "--scenario",
        "price_increase",
        "--world",
        "btyd",
        "--format",
        "parquet",
        "--out",
        str(tmp_path / "elsewhere"),
        "--json",
    )
    assert out["scenario"] == "price_increase"
    assert out["world"] == "btyd"
    same = generate(customers=100, months=6, seed=42, scenario="price_increase", world="btyd")
    assert out["rows"] == {table: len(frame) for table, frame in same.tables().items()}
    assert (tmp_path / "elsewhere" / "events.parquet").exists()


def test_human_summary_and_errors(app: typer.Typer, tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["--workspace", str(tmp_path), "data", "status"])
    assert res.exit_code == 0
    assert "transactions: not ingested" in res.output
    bad = tmp_path / "transactions.csv"
    bad.write_text("customer_id,ts\nC1,2024-01-01\n")
    res = runner.invoke(app, ["--workspace", str(tmp_path), "data", "ingest", str(bad)])
    assert res.exit_code != 0
    assert "missing required column 'amount'" in str(res.exception)


def test_world_choices_are_the_generators_worlds() -> None:
    assert tuple(w.value for w in data_cli.WorldChoice) == (*WORLDS, *SAAS_FAMILIES)


def test_a_subscription_world_generates_and_ingests_every_table(
    app: typer.Typer, tmp_path: Path
) -> None:
    ws = ["--workspace", str(tmp_path)]
    gen = ["--customers", "200", "--months", "12", "--seed", "3", "--world", "saas_mixed"]
    out = run(app, *ws, "data", "generate", *gen, "--json")
    rows = out["rows"]
    assert isinstance(rows, dict) and out["world"] == "saas_mixed"
    assert rows["subscriptions"] >= 200 and rows["subscription_changes"] > 0
    raw = tmp_path / "data" / "raw"
    ingested = run(app, *ws, "data", "ingest", str(raw), "--json")["results"]
    assert isinstance(ingested, list)
    by_table = {r["table"]: r for r in ingested}
    for table in ("subscriptions", "subscription_changes", "transactions", "customers"):
        assert by_table[table]["quarantined"] == {}, by_table[table]
    assert by_table["subscriptions"]["inserted"] == rows["subscriptions"]
    refused = CliRunner().invoke(app, [*ws, "data", "generate", *gen, "--decisions"])
    assert refused.exit_code == 1
    assert "a subscription world has no --scenario or --decisions" in str(refused.exception)
