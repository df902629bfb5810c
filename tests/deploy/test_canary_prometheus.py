"""Canary analysis across replicas: a real Prometheus (Debian's package) scrapes two `clv serve`
replicas on loopback; `clv registry status --enforce`, the scheduled judge, reads both
replicas' series by PromQL and moves the aliases. Default guardrails throughout.

- A bad canary: a version trained on a column the online store does not serve (training and
  serving skew). It scores its training frame, so it registers; online, every customer routed
  to it fails and falls back to the champion. The judge rolls it back within a bounded time.
- A good canary: the champion's own model registered again. Judged healthy on the traffic of
  both replicas, and left alone.

Both canaries are started with `--force`: the offline gates would refuse them (the bad one
fails the feature contract and the smoke test, the good one is a tie), and what is under test
here is the online judge, which is told nothing of that.

The replicas only read the registry: nothing in `clv serve` can move an alias.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from clv_cli import clv_json as _clv

from benchmarks.canaries import prometheus, prometheus_binary, register_canary, replicas
from clv.core.processes import free_port
from clv.core.settings import load_settings

CUSTOMERS = 600
JUDGE_WITHIN_SECONDS = 90.0
"""The bound on a rollback: Prometheus scrapes every second, the replicas poll the registry
every second, the judge runs every few seconds here (every minute from cron)."""


def _world(workspace: Path, prometheus_port: int) -> None:
    """A small trained workspace on the embedded default; its judge reads Prometheus."""
    (workspace / "clv.yaml").write_text(
        f"registry:\n  prometheus_url: http://127.0.0.1:{prometheus_port}\n"
        "serving:\n  reload_seconds: 1\n"
        "model:\n  horizon_days: 90\n"
        "evaluation:\n  backtest_origins: 0\n"
        "readiness:\n  enforce: false\n"
    )
    _clv(workspace, "data", "generate", "--customers", str(CUSTOMERS), "--months", "24")
    _clv(workspace, "data", "ingest", str(workspace / "data" / "raw"))
    _clv(workspace, "features", "apply")
    _clv(workspace, "features", "build")
    _clv(workspace, "features", "materialize")
    _clv(workspace, "train", "--trials", "1")


def _load(urls: list[str], ids: list[str], *, seconds: float, stop: Callable[[], bool]) -> dict:
    """Single-customer /score requests spread over the replicas until `stop()` or `seconds`;
    the answers' status codes and aliases."""
    codes: dict[int, int] = {}
    aliases: dict[str, int] = {}
    deadline = time.monotonic() + seconds
    with httpx.Client(timeout=10) as http:
        i = 0
        while time.monotonic() < deadline and not stop():
            url = urls[i % len(urls)]
            response = http.post(f"http://{url}/score", json={"customer_ids": [ids[i % len(ids)]]})
            codes[response.status_code] = codes.get(response.status_code, 0) + 1
            if response.status_code == 200:
                for row in response.json()["scores"]:
                    aliases[row["alias"]] = aliases.get(row["alias"], 0) + 1
            i += 1
    return {"codes": codes, "aliases": aliases, "requests": i}


def _judge(workspace: Path) -> dict[str, Any]:
    return _clv(workspace, "registry", "status", "--enforce")


def test_the_scheduled_judge_rolls_back_a_bad_canary_across_replicas_and_keeps_a_good_one(
    tmp_path: Path,
) -> None:
    binary = prometheus_binary()
    if binary is None:
        pytest.skip("install Debian's prometheus package (.ci/run does)")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    prometheus_port = free_port()
    _world(workspace, prometheus_port)
    settings = load_settings(workspace)
    bad = register_canary(settings, "1", skewed=True)
    good = register_canary(settings, "1", skewed=False)
    ids = [f"C{i:06d}" for i in range(1, CUSTOMERS + 1)]

    with (
        replicas(workspace, [free_port(), free_port()]) as targets,
        prometheus(binary, targets, tmp_path, port=prometheus_port),
    ):
        # 1. The bad canary, on half the customers.
        started = _clv(workspace, "registry", "canary", bad, "--share", "0.5", "--force")
        assert started["changes"][0]["forced"] is True, started
        t0 = time.monotonic()
        verdicts: list[dict[str, Any]] = []

        def rolled_back() -> bool:
            verdicts.append(_judge(workspace))
            return verdicts[-1]["rolled_back"] is not None

        load = _load(targets, ids, seconds=5, stop=lambda: False)
        while not rolled_back():
            assert time.monotonic() - t0 < JUDGE_WITHIN_SECONDS, verdicts[-1]
            load = _load(targets, ids, seconds=3, stop=lambda: False)
        took = time.monotonic() - t0
        report = verdicts[-1]
        # Every request was answered (a failing canary falls back to the champion), and
        # the verdict came from both replicas' series in Prometheus.
        assert set(load["codes"]) == {200}, load
        assert report["live"]["source"].startswith("prometheus http://127.0.0.1:"), report
        # (one replica's series may already breach before the other has picked it up)
        assert report["live"]["replicas"] in (1, 2), report
        assert report["verdict"]["action"] == "rollback", report
        assert report["verdict"]["reason"].startswith(f"canary v{bad} error rate 100.00%")
        assert "canary" not in report["aliases"], report
        history = _clv(workspace, "registry", "history")["history"]
        assert history[0]["action"] == "rollback" and history[0]["reason"].startswith(
            "auto: canary v"
        ), history[0]
        print(f"bad canary rolled back {took:.1f} s after it started")

        # 2. The good canary: judged healthy on both replicas' traffic, left alone.
        _clv(workspace, "registry", "canary", good, "--share", "0.5", "--force")
        t1 = time.monotonic()
        while True:
            load = _load(targets, ids, seconds=4, stop=lambda: False)
            report = _judge(workspace)
            if (report["verdict"] or {}).get("action") == "healthy":
                break
            assert report["rolled_back"] is None, report
            assert time.monotonic() - t1 < JUDGE_WITHIN_SECONDS, report
        assert set(load["codes"]) == {200}, load
        assert load["aliases"].get("canary", 0) > 0, load
        assert report["aliases"]["canary"] == good and report["rolled_back"] is None
        assert report["live"]["replicas"] == 2
        canary = report["live"]["canary"]
        assert canary["requests"] >= 200 and canary["errors"] == 0, report
