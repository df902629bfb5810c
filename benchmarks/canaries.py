"""A canary scenario on real parts, shared by the canary tests and the load benchmark: two
(or more) `clv serve` replicas of one workspace, a real Prometheus (Debian's package) scraping
them every second, and the versions a canary can be: the champion's own model registered again
(a good canary), or one trained on a column the online store does not serve (a bad canary:
training and serving skew; it scores its training frame, so it registers, and fails online).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from clv.core.processes import stop_process, wait_for_http
from clv.core.settings import Settings

SKEWED_FEATURE = "offline_only_score"
"""The column the bad canary reads that the online store does not serve."""


def prometheus_binary() -> str | None:
    """Debian's prometheus (CLV_TEST_PROMETHEUS, else on PATH), or None."""
    return os.environ.get("CLV_TEST_PROMETHEUS") or shutil.which("prometheus")


@contextlib.contextmanager
def prometheus(
    binary: str, targets: list[str], root: Path, *, port: int, rules: Path | None = None
) -> Iterator[str]:
    """A Prometheus scraping `targets` (host:port) every second as job "clv" (evaluating
    `rules`, e.g. deploy/prometheus/rules.yml, every second too); its URL."""
    config = root / "prometheus.yml"
    shutil.rmtree(root / "tsdb", ignore_errors=True)  # this run's series only
    listed = ", ".join(f'"{t}"' for t in targets)
    loaded = f'rule_files: ["{rules.resolve()}"]\n' if rules is not None else ""
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"{loaded}"
        f"scrape_configs:\n  - job_name: clv\n    static_configs:\n      - targets: [{listed}]\n"
    )
    cmd = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={root / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    url = f"http://127.0.0.1:{port}"
    with (root / "prometheus.log").open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_http(f"{url}/-/ready", proc, timeout=60)
            yield url
        finally:
            stop_process(proc)


@contextlib.contextmanager
def replicas(
    workspace: Path, ports: list[int], *, env: dict[str, str] | None = None
) -> Iterator[list[str]]:
    """`clv serve` on each port (child processes, logs in the workspace); host:port each."""
    procs: list[subprocess.Popen[bytes]] = []
    with contextlib.ExitStack() as logs:
        try:
            for i, port in enumerate(ports):
                log = logs.enter_context((workspace / f"replica-{i}.log").open("wb"))
                cmd = [sys.executable, "-m", "clv", "--workspace", str(workspace), "serve"]
                cmd += ["--host", "127.0.0.1", "--port", str(port)]
                procs.append(
                    subprocess.Popen(
                        cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
                    )
                )
            for proc, port in zip(procs, ports, strict=True):
                wait_for_http(f"http://127.0.0.1:{port}/readyz", proc, timeout=120)
            yield [f"127.0.0.1:{p}" for p in ports]
        finally:
            for proc in procs:
                stop_process(proc)


def register_canary(settings: Settings, champion: str, *, skewed: bool) -> str:
    """A new version: the champion's model again, or (skewed) a value booster fitted to the
    champion's CLV on its reference frame plus `SKEWED_FEATURE`. Logged the way training logs
    a version (bundle, reference, pyfunc, completion tag)."""
    import xgboost as xgb

    from clv.core.tags import EMBARGOED_TAG
    from clv.model.bundle import ClvModel, ModelCard
    from clv.registry.mlflow_io import load_version, reference_frame
    from clv.training.mlflow_io import training_run

    loaded = load_version(settings, champion)
    reference = reference_frame(settings, loaded.run_id)
    model = loaded.model
    if skewed:
        frame = reference.assign(**{SKEWED_FEATURE: np.linspace(0.0, 1.0, len(reference))})
        card = ModelCard(
            feature_service=model.card.feature_service,
            feature_names=[*model.feature_names, SKEWED_FEATURE],
            categories=model.card.categories,
            excluded_features=model.card.excluded_features,
            data_end=model.card.data_end,
        )
        x = ClvModel(card, value=xgb.Booster()).matrix(frame)
        booster = xgb.train(
            {"objective": "reg:tweedie", "nthread": 1, "verbosity": 0},
            xgb.DMatrix(x, label=reference["clv"].to_numpy(), feature_names=card.feature_names),
            num_boost_round=20,
        )
        model, reference = ClvModel(card, value=booster), frame
    with training_run(settings, run_name="skewed" if skewed else "same-again") as run:
        example = reference[list(model.feature_names)].head(3)
        logged = run.log_model(model, reference=reference, input_example=example)
        run.tag_version(logged.version, {EMBARGOED_TAG: "true"})
    return str(logged.version)
