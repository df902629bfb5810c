"""Gated canary, promotion, rollback and the alias history on a real MLflow SQLite store."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import pytest
from typer.testing import CliRunner

from clv.cli import registry as registry_cli
from clv.core.console import CliState
from clv.core.errors import ClvError
from clv.core.live_stats import live_stats_path
from clv.core.settings import Settings
from clv.core.tags import feature_names_hash
from clv.registry import evidence, mlflow_io
from clv.registry.aliases import ensure_champion
from clv.registry.gates import ServedContract
from clv.registry.history import History
from clv.registry.moves import AliasMove, ConflictError, apply_moves, history
from clv.registry.promotion import GateError, promote, rollback, start_canary
from clv.registry.status import status

pytestmark = pytest.mark.slow
Register = Callable[..., tuple[str, str]]
NAMES = ("spend", "channel")


@pytest.fixture(autouse=True)
def served(monkeypatch: pytest.MonkeyPatch) -> None:
    """The online store serves the tiny models' contract (no Feast in these tests)."""
    monkeypatch.setattr(
        evidence, "served_contract", lambda settings: ServedContract("clv_v1", NAMES)
    )


def evaluated(settings: Settings, version: str, *, gini: float, rmse: float = 10.0) -> None:
    mlflow_io.set_version_tags(
        settings,
        version,
        {
            "eval.model.gini": str(gini),
            "eval.model.rmse": str(rmse),
            "eval.churn.ece": "0.02",
            "eval.interval.coverage_p10_p90": "0.8",
            "feature_service": "clv_v1",
            "feature_names_hash": feature_names_hash(NAMES),
            "test_snapshot": "2024-06-01T00:00:00+00:00",
            "evaluation.embargoed": "true",
        },
    )


def three_versions(settings: Settings, register_version: Register) -> None:
    for scale in (1.0, 2.0, 3.0):
        register_version(settings, scale=scale)
    ensure_champion(settings, "1")
    evaluated(settings, "1", gini=0.50)
    evaluated(settings, "2", gini=0.55)
    evaluated(settings, "3", gini=0.40)


def test_first_champion_then_challenger_are_recorded(
    settings: Settings, register_version: Register
) -> None:
    register_version(settings, scale=1.0)
    register_version(settings, scale=2.0)
    assert ensure_champion(settings, "1") is True
    assert ensure_champion(settings, "2") is False
    assert ensure_champion(settings, "1") is False
    assert mlflow_io.aliases(settings) == {"champion": "1", "challenger": "2"}
    rows = history(settings).rows(settings.mlflow.model_name)
    assert [(r.alias, r.action, r.from_version, r.to_version, r.status) for r in rows] == [
        ("challenger", "challenger", None, "2", "done"),
        ("champion", "initial", None, "1", "done"),
    ]
    assert rows[0].actor and rows[0].at.endswith("+00:00")


def test_canary_promote_rollback_with_gates_in_tags_and_history(
    settings: Settings, register_version: Register
) -> None:
    three_versions(settings, register_version)
    started = start_canary(settings, "2", share=0.25)
    assert started.gates is not None and started.gates.passed
    state = mlflow_io.registry_state(settings)
    assert state.aliases == {"champion": "1", "canary": "2"}
    assert (state.canary_share, state.canary_shadow) == (0.25, False)
    tags = mlflow_io.version_tags(settings, "2")
    assert tags["gate.passed"] == "true" and tags["gate.primary"].startswith("pass: gini 0.5500")

    promoted = promote(settings, "2")
    assert mlflow_io.aliases(settings) == {"champion": "2"}
    assert [(r.alias, r.to_version) for r in promoted.rows] == [("champion", "2"), ("canary", None)]

    back = rollback(settings)
    assert mlflow_io.aliases(settings) == {"champion": "1"}
    assert "version 1" in back.message
    rows = history(settings).rows(settings.mlflow.model_name)
    assert [(r.alias, r.action, r.from_version, r.to_version) for r in rows[:4]] == [
        ("champion", "rollback", "2", "1"),
        ("canary", "end-canary", "2", None),
        ("champion", "promote", "1", "2"),
        ("canary", "canary", None, "2"),
    ]
    assert rows[3].gates is not None and rows[3].gates["passed"] is True
    assert all(r.status == "done" and not r.forced for r in rows)


def test_failed_gates_refuse_and_force_is_recorded(
    settings: Settings, register_version: Register
) -> None:
    three_versions(settings, register_version)
    with pytest.raises(GateError, match=r"failed gates: primary: gini 0\.4000 vs 0\.5000"):
        start_canary(settings, "3", share=0.1)
    assert "canary" not in mlflow_io.aliases(settings)
    rejected = history(settings).rows(settings.mlflow.model_name)[0]
    assert (rejected.action, rejected.status, rejected.to_version) == ("rejected", "rejected", "3")
    assert mlflow_io.version_tags(settings, "3")["gate.passed"] == "false"

    forced = start_canary(settings, "3", share=0.1, shadow=True, force=True)
    assert forced.gates is not None and forced.gates.forced and not forced.gates.passed
    row = history(settings).rows(settings.mlflow.model_name)[0]
    assert row.forced and row.alias == "canary" and "FORCED" in row.reason
    assert mlflow_io.version_tags(settings, "3")["gate.forced"] == "true"
    assert mlflow_io.registry_state(settings).canary_shadow is True


def test_a_failing_alias_call_leaves_no_history_row(
    settings: Settings, register_version: Register, monkeypatch: pytest.MonkeyPatch
) -> None:
    three_versions(settings, register_version)
    before = len(history(settings).rows(settings.mlflow.model_name))

    def broken(*args: object) -> None:
        raise RuntimeError("registry down")

    monkeypatch.setattr(mlflow_io, "move_alias", broken)
    with pytest.raises(RuntimeError, match="registry down"):
        apply_moves(
            settings,
            [AliasMove("champion", "2", "promote", "test")],
            expected={"champion": "1"},
        )
    assert len(history(settings).rows(settings.mlflow.model_name)) == before


def test_a_failing_history_write_restores_the_alias(
    settings: Settings, register_version: Register, monkeypatch: pytest.MonkeyPatch
) -> None:
    three_versions(settings, register_version)
    ensure_champion(settings, "3")  # challenger 3

    def broken(self: History, row_id: int, *, status: str = "done") -> None:
        raise RuntimeError("history table unwritable")

    monkeypatch.setattr(History, "finish", broken)
    with pytest.raises(RuntimeError, match="unwritable"):
        apply_moves(
            settings,
            [
                AliasMove("champion", "2", "promote", "test"),
                AliasMove("challenger", None, "promote", "test"),
            ],
            expected={"champion": "1"},
        )
    assert mlflow_io.aliases(settings) == {"champion": "1", "challenger": "3"}
    rows = history(settings).rows(settings.mlflow.model_name)
    assert not [r for r in rows if r.action == "promote"]


def test_two_concurrent_promotions_only_one_wins(
    settings: Settings, register_version: Register
) -> None:
    three_versions(settings, register_version)
    barrier = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def attempt(version: str) -> None:
        barrier.wait()
        try:
            apply_moves(
                settings,
                [AliasMove("champion", version, "promote", f"race {version}")],
                expected={"champion": "1"},
            )
            outcomes[version] = "won"
        except ConflictError as exc:
            outcomes[version] = f"lost: {exc}"

    threads = [threading.Thread(target=attempt, args=(v,)) for v in ("2", "3")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    won = [v for v, o in outcomes.items() if o == "won"]
    assert len(won) == 1 and len(outcomes) == 2
    lost = next(o for o in outcomes.values() if o != "won")
    assert f"champion moved to version {won[0]} (expected version 1)" in lost
    assert mlflow_io.aliases(settings)["champion"] == won[0]
    promoted = [r for r in history(settings).rows(settings.mlflow.model_name) if "race" in r.reason]
    assert [r.to_version for r in promoted] == won


def test_status_rolls_back_a_breaching_canary_from_live_stats(
    settings: Settings, register_version: Register
) -> None:
    three_versions(settings, register_version)
    start_canary(settings, "2", share=0.5)
    path = live_stats_path(settings)
    path.parent.mkdir(parents=True)
    # What a server writes (clv.serving.metrics.LiveMetrics.snapshot): cumulative buckets.
    latency = [["0.002", 500.0], ["+Inf", 500.0]]
    predictions = [["10.0", 100.0], ["50.0", 500.0], ["+Inf", 500.0]]
    doc = {
        "written_at": time.time(),
        "routing": {"champion": "1", "canary": "2", "share": 0.5, "shadow": False},
        "aliases": {
            "champion": {
                "version": "1",
                "requests": 500,
                "errors": 0,
                "latency_buckets": latency,
                "prediction_buckets": predictions,
            },
            "canary": {
                "version": "2",
                "requests": 500,
                "errors": 40,
                "latency_buckets": latency,
                "prediction_buckets": predictions,
            },
        },
    }
    path.write_text(json.dumps(doc))
    quiet = status(settings)  # without --enforce: reported, not rolled back
    assert quiet.verdict is not None and quiet.verdict.action == "rollback"
    assert quiet.aliases.get("canary") == "2"
    assert quiet.live is not None and quiet.live.prediction_psi == pytest.approx(0.0)
    report = status(settings, enforce=True)
    assert report.rolled_back is not None and "canary" not in report.aliases
    row = history(settings).rows(settings.mlflow.model_name)[0]
    assert row.action == "rollback" and row.reason.startswith("auto: canary v2 error rate 8.00%")


def test_cli_registry_commands_json(settings: Settings, register_version: Register) -> None:
    three_versions(settings, register_version)
    runner = CliRunner()
    obj = CliState(workspace=settings.workspace)

    def call(*args: str) -> dict[str, object]:
        res = runner.invoke(registry_cli.app, [*args, "--json"], obj=obj)
        assert res.exit_code == 0, res.output
        doc = json.loads(res.stdout)
        assert isinstance(doc, dict)
        return doc

    assert call("status")["aliases"] == {"champion": "1"}
    canary = call("canary", "2", "--share", "0.2")
    assert canary["gates"]["passed"] is True  # type: ignore[index]
    shown = call("status")
    assert shown["aliases"] == {"canary": "2", "champion": "1"}
    assert shown["canary"] == {"share": 0.2, "shadow": False}
    assert "no live stats" in str(shown["notes"])
    listed = call("list")["versions"]
    assert [v["version"] for v in listed] == ["3", "2", "1"]  # type: ignore[union-attr,index]
    assert call("show", "2")["version_tags"]["gate.passed"] == "true"  # type: ignore[index]
    assert call("promote", "2")["changes"][0]["to_version"] == "2"  # type: ignore[index]
    assert call("rollback", "--reason", "bad week")["changes"][0]["reason"] == "bad week"  # type: ignore[index]
    rows = call("history", "--limit", "3")["history"]
    assert [r["action"] for r in rows] == ["rollback", "end-canary", "promote"]  # type: ignore[union-attr,index]
    res = runner.invoke(registry_cli.app, ["canary", "3"], obj=obj)
    assert res.exit_code != 0 and isinstance(res.exception, GateError)
    res = runner.invoke(registry_cli.app, ["promote", "9"], obj=obj)
    assert isinstance(res.exception, ClvError) and "no version 9" in str(res.exception)


def test_registry_list_shows_the_embargo_status(
    settings: Settings, register_version: Register
) -> None:
    three_versions(settings, register_version)
    mlflow_io.set_version_tags(
        settings,
        "3",
        {
            "evaluation.embargoed": "false",
            "eval.baseline.gini": "0.61",
            "eval.run_rate.gini": "0.7",
        },
    )
    res = CliRunner().invoke(registry_cli.app, ["list"], obj=CliState(workspace=settings.workspace))
    assert res.exit_code == 0, res.output
    lines = {line.split()[0]: line for line in res.stdout.splitlines()[1:]}
    assert "NOT EMBARGOED" in lines["v3"] and "(best baseline 0.700)" in lines["v3"]
    assert "NOT EMBARGOED" not in lines["v2"] and "embargoed" in lines["v2"]
