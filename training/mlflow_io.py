"""The one MLflow adapter for training: experiment, parent run, nested trial runs, model version.

Everything stays local: the tracking store is the workspace's SQLite file (or the configured
URI), artifacts go under the workspace, telemetry is off and pip requirements are given
explicitly so that logging a model never inspects the network or the environment.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import os
import shutil
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.pyfunc.model import PythonModel, PythonModelContext

from clv.core.processes import run_owner
from clv.core.services import require_tracking
from clv.core.settings import CODE_ROOT, Settings
from clv.core.tags import (
    RUN_OWNER_TAG,
    STATUS_COMPLETE,
    STATUS_INCOMPLETE,
    STATUS_REASON_TAG,
    STATUS_TAG,
)
from clv.model.bundle import ClvModel

if TYPE_CHECKING:
    import optuna

BUNDLE_PATH = "bundle"
REFERENCE_PATH = "reference"
EVAL_BUNDLE_PATH = "bundle_eval"
REFERENCE_FILE = "reference.parquet"
MODEL_NAME = "model"
_PINNED = ("xgboost", "pandas", "numpy", "pyarrow", "mlflow")
PYFUNC_PACKAGES = ("core", "model", "training")
"""The clv subpackages the logged pyfunc model imports (its code travels with it)."""
_QUIET_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "GIT_PYTHON_REFRESH": "quiet",
}


def quiet() -> None:
    """No telemetry, no progress bars, no INFO lines: MLflow's database migrations, signature
    checks and SQLAlchemy deprecation warnings are noise on a command's stderr (real warnings
    and errors still show)."""
    for key, value in _QUIET_ENV.items():
        os.environ.setdefault(key, value)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    # Its engine retries (ten attempts over ~100 s) log each failure in five lines, a failed
    # session its traceback; connect() checks the store first, and the error itself still
    # reaches the command's one line.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module=r"mlflow\.")


def connect(settings: Settings) -> MlflowClient:
    """Point MLflow at the workspace's tracking store and return a client for it. A store that
    does not answer within `services.connect_timeout_seconds` stops here with one line
    (ServiceUnavailable), not after MLflow's own retries (minutes)."""
    quiet()
    require_tracking(settings)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def ensure_experiment(settings: Settings, client: MlflowClient) -> str:
    """The experiment's id, creating it with the workspace's artifact root when missing."""
    name = settings.mlflow.experiment
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    return str(client.create_experiment(name, artifact_location=settings.artifact_root))


class ClvPyfunc(PythonModel):
    """The pyfunc face of a ClvModel bundle, for `mlflow models serve` and `pyfunc.load_model`."""

    _skip_type_hint_validation = True

    def load_context(self, context: PythonModelContext) -> None:
        self._model = ClvModel.load(Path(context.artifacts[BUNDLE_PATH]))

    def predict(
        self,
        context: PythonModelContext,
        model_input: pd.DataFrame,
        params: Mapping[str, object] | None = None,
    ) -> pd.DataFrame:
        return self._model.predict(pd.DataFrame(model_input))


@dataclass(frozen=True)
class LoggedVersion:
    run_id: str
    version: str


@dataclass(frozen=True)
class RunRecord:
    """What the parent run records besides the model (all plain values)."""

    params: Mapping[str, str | int | float]
    metrics: Mapping[str, float]
    tags: Mapping[str, str]
    documents: Mapping[str, object]
    """JSON documents logged as artifacts, keyed by file name (e.g. "features.json")."""


class TrainingRun:
    """An open parent run; trials log as nested runs under it."""

    def __init__(
        self, settings: Settings, client: MlflowClient, *, run_id: str, experiment_id: str
    ) -> None:
        self.settings = settings
        self.client = client
        self.run_id = run_id
        self.experiment_id = experiment_id
        self.versions: list[str] = []
        """The model versions this run registered (marked complete when the run ends well)."""

    def log_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """Optuna callback: one nested run per finished trial (complete, pruned or failed)."""
        self.trial_logger()(study, trial)

    def trial_logger(self) -> TrialLogger:
        """The picklable form of `log_trial`, for tuning worker processes."""
        return TrialLogger(
            tracking_uri=self.settings.tracking_uri,
            experiment_id=self.experiment_id,
            parent_run_id=self.run_id,
        )

    # Everything below names the parent run explicitly, through the client: nothing depends
    # on MLflow's thread-local "active run", which another start_run could have changed.
    def log_record(self, record: RunRecord) -> None:
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        self.client.log_batch(
            self.run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in record.metrics.items()],
            params=[Param(k, str(v)) for k, v in record.params.items()],
            tags=[RunTag(k, str(v)) for k, v in record.tags.items()],
        )
        for name, doc in record.documents.items():
            self.client.log_dict(self.run_id, doc, name)  # type: ignore[arg-type]

    def log_files(self, directory: Path, *, artifact_path: str) -> None:
        """Every file of `directory` (tables, PNG plots) under `artifact_path`."""
        self.client.log_artifacts(self.run_id, str(directory), artifact_path=artifact_path)

    def tag_versions(self, tags: Mapping[str, str]) -> None:
        """The same tags on every version this run registered."""
        for version in self.versions:
            self.tag_version(version, tags)

    def tag_version(self, version: str, tags: Mapping[str, str]) -> None:
        """Tags on the registered model version (the evaluation that promotion gates read)."""
        name = self.settings.mlflow.model_name
        for key, value in tags.items():
            self.client.set_model_version_tag(name, version, key, value)

    def log_model(
        self,
        model: ClvModel,
        *,
        reference: pd.DataFrame,
        input_example: pd.DataFrame,
        evaluated: ClvModel | None = None,
    ) -> LoggedVersion:
        """Bundle under `bundle/`, reference sample, and a registered pyfunc model version.

        `evaluated` (the embargoed model the test metrics describe, when the served model is a
        refit on all rows) goes to `bundle_eval/`: gates re-score it on a later test snapshot,
        which the refit cannot be judged on fairly (its labels overlap that snapshot's window).
        """
        from mlflow.models import infer_signature

        with tempfile.TemporaryDirectory(prefix="clv-bundle-") as tmp:
            bundle = model.save(Path(tmp) / BUNDLE_PATH)
            self.client.log_artifacts(self.run_id, str(bundle), artifact_path=BUNDLE_PATH)
            if evaluated is not None and evaluated is not model:
                held_out = evaluated.save(Path(tmp) / EVAL_BUNDLE_PATH)
                self.client.log_artifacts(
                    self.run_id, str(held_out), artifact_path=EVAL_BUNDLE_PATH
                )
            ref_path = Path(tmp) / REFERENCE_FILE
            reference.to_parquet(ref_path, index=False)
            self.client.log_artifact(self.run_id, str(ref_path), artifact_path=REFERENCE_PATH)

            signature = infer_signature(input_example, model.predict(input_example))
            # The logged model's source run is this run, whatever run is "active".
            logged = mlflow.initialize_logged_model(
                name=MODEL_NAME, source_run_id=self.run_id, experiment_id=self.experiment_id
            )
            info = mlflow.pyfunc.log_model(
                name=MODEL_NAME,
                model_id=logged.model_id,
                python_model=str(Path(__file__).with_name("pyfunc_model.py")),
                artifacts={BUNDLE_PATH: str(bundle)},
                code_paths=[str(pyfunc_code(Path(tmp) / "code"))],
                registered_model_name=self.settings.mlflow.model_name,
                signature=signature,
                input_example=input_example,
                pip_requirements=pip_requirements(),
                await_registration_for=0,
            )
        version = info.registered_model_version
        if version is None:  # pragma: no cover - registration is requested above
            raise RuntimeError("MLflow did not register a model version")
        self.versions.append(str(version))
        return LoggedVersion(run_id=self.run_id, version=str(version))


def _trial_tags(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> dict[str, str]:
    tags = {"optuna.study": study.study_name, "optuna.state": trial.state.name}
    pid = trial.user_attrs.get("worker_pid")
    if isinstance(pid, int):
        tags["optuna.worker_pid"] = str(pid)
    return tags


def _trial_metrics(trial: optuna.trial.FrozenTrial) -> dict[str, float]:
    metrics = {"trial_number": float(trial.number)}
    if trial.value is not None:
        metrics["validation_score"] = float(trial.value)
    if trial.duration is not None:
        metrics["seconds"] = trial.duration.total_seconds()
    best_iteration = trial.user_attrs.get("best_iteration")
    if isinstance(best_iteration, int):
        metrics["best_iteration"] = float(best_iteration)
    return metrics


@dataclass(frozen=True)
class TrialLogger:
    """Optuna callback logging a trial as a nested run of `parent_run_id`, through a client of
    this process (no fluent run state, nothing inherited from another process): what tuning
    worker processes use. The nesting is the `mlflow.parentRunId` tag, as MLflow's own."""

    tracking_uri: str
    experiment_id: str
    parent_run_id: str

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        from mlflow.entities import Metric, Param

        client = _client(self.tracking_uri)
        tags = {"mlflow.parentRunId": self.parent_run_id, **_trial_tags(study, trial)}
        run = client.create_run(self.experiment_id, run_name=f"trial-{trial.number:03d}", tags=tags)
        now = int(time.time() * 1000)
        client.log_batch(
            run.info.run_id,
            metrics=[Metric(k, v, now, 0) for k, v in _trial_metrics(trial).items()],
            params=[Param(k, str(v)) for k, v in trial.params.items()],
        )
        client.set_terminated(run.info.run_id)


@functools.cache
def _client(tracking_uri: str) -> MlflowClient:
    """One MlflowClient per tracking URI and process (created on first use in that process)."""
    quiet()
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


@contextmanager
def training_run(settings: Settings, *, run_name: str) -> Iterator[TrainingRun]:
    """Start the parent run in the workspace's experiment; ends FAILED if the body raises."""
    client = connect(settings)
    experiment_id = ensure_experiment(settings, client)
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
        client.set_tag(run.info.run_id, RUN_OWNER_TAG, run_owner())
        mrun = TrainingRun(settings, client, run_id=run.info.run_id, experiment_id=experiment_id)
        try:
            yield mrun
        except BaseException as exc:
            with contextlib.suppress(Exception):  # best effort: the original error is reported
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                mrun.tag_versions(
                    {
                        STATUS_TAG: STATUS_INCOMPLETE,
                        STATUS_REASON_TAG: f"training failed: {type(exc).__name__}: {first}"[:500],
                    }
                )
            raise
        # The very last registry write of a training run: every evaluation tag is on the
        # version; a version without it was left by a run that stopped (clv.registry.completion).
        mrun.tag_versions({STATUS_TAG: STATUS_COMPLETE})


def pip_requirements() -> list[str]:
    """Pins of the libraries a served bundle needs, read from the installed distributions."""
    pins = []
    for dist in _PINNED:
        try:
            pins.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:  # pragma: no cover
            pins.append(dist)
    return pins


def pyfunc_code(into: Path) -> Path:
    """`clv` with the subpackages the pyfunc imports, as one folder tree under `into` (in a
    checkout the subpackages are sibling folders; installed, they are already under clv/)."""
    root = into / "clv"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    init = importlib.util.find_spec("clv")
    assert init is not None and init.origin is not None
    root.mkdir(parents=True)
    shutil.copy2(init.origin, root / "__init__.py")
    for name in PYFUNC_PACKAGES:
        spec = importlib.util.find_spec(f"clv.{name}")
        assert spec is not None and spec.submodule_search_locations
        shutil.copytree(spec.submodule_search_locations[0], root / name, ignore=skip)
    return root


def git_commit() -> str | None:
    """The code's commit, or None outside a git checkout (never fails)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=CODE_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and sha else None


def run_name(prefix: str = "train") -> str:
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
