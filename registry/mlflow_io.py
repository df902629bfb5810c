"""The registry's MLflow adapter: model versions, aliases, and loading a bundle by alias.

Loading takes the fast path: the version's run artifact `bundle/` is downloaded once into
`<ws>/.clv/models/<version>/` and read with `ClvModel.load` (no pyfunc, no environment checks).
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from clv.core.contracts import CHAMPION
from clv.core.errors import ClvError, NotReadyError
from clv.core.settings import Settings
from clv.core.tags import (
    CONTRACTUAL_TAG,
    RUN_OWNER_TAG,
    STATUS_INCOMPLETE,
    STATUS_REASON_TAG,
    STATUS_TAG,
)
from clv.model.bundle import CARD_FILE, ClvModel
from clv.model.contractual_bundle import CARD_FILE as CONTRACTUAL_CARD
from clv.model.contractual_bundle import CONTRACTUAL_PATH, ContractualModel
from clv.registry.completion import judge_registration, owner_alive
from clv.training.mlflow_io import (
    BUNDLE_PATH,
    EVAL_BUNDLE_PATH,
    REFERENCE_FILE,
    REFERENCE_PATH,
    connect,
)

if TYPE_CHECKING:
    from clv.training.champion import ChampionModel

CANARY_SHARE_TAG = "clv.canary.share"
CANARY_SHADOW_TAG = "clv.canary.shadow"
NO_CHAMPION = "no champion yet: run `clv train`"


@dataclass(frozen=True)
class LoadedModel:
    model: ClvModel
    version: str
    alias: str
    run_id: str


@dataclass(frozen=True)
class VersionInfo:
    """One registered version, with the headline metrics of the run that produced it."""

    version: str
    run_id: str
    aliases: tuple[str, ...]
    created: pd.Timestamp
    status: str
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    version_tags: dict[str, str] = field(default_factory=dict)
    """Tags on the model version: evaluation (`eval.*`) and gate results (`gate.*`)."""

    def as_dict(self, *, detail: bool = False) -> dict[str, object]:
        out: dict[str, object] = {
            "version": self.version,
            "run_id": self.run_id,
            "aliases": list(self.aliases),
            "created": self.created.isoformat(),
            "status": self.status,
            "metrics": self.metrics,
            "version_tags": self.version_tags,
        }
        if detail:
            out["params"] = self.params
            out["tags"] = self.tags
        return out


HEADLINE_METRICS = (
    "test_gini",
    "test_rmse",
    "test_spearman",
    "test_top_decile_share",
    "test_default_gini",
    "test_churn_roc_auc",
)


def models_dir(settings: Settings) -> Path:
    return settings.state_dir / "models"


def alias_version(settings: Settings, alias: str = CHAMPION) -> str | None:
    """The version an alias points at, or None when the model or alias does not exist."""
    client = connect(settings)
    try:
        mv = client.get_model_version_by_alias(settings.mlflow.model_name, alias)
    except MlflowException:
        return None
    return str(mv.version)


def aliases(settings: Settings) -> dict[str, str]:
    """Alias -> version for the registered model ({} when it is not registered yet)."""
    client = connect(settings)
    try:
        rm = client.get_registered_model(settings.mlflow.model_name)
    except MlflowException:
        return {}
    return {str(k): str(v) for k, v in sorted(rm.aliases.items())}


def set_alias(settings: Settings, alias: str, version: str) -> None:
    """Point `alias` at `version`; raises ClvError when the version does not exist."""
    client = connect(settings)
    _version(client, settings, version)
    client.set_registered_model_alias(settings.mlflow.model_name, alias, version)


def delete_alias(settings: Settings, alias: str) -> None:
    """Remove `alias` from the model (nothing happens when it is not set)."""
    client = connect(settings)
    try:
        client.get_model_version_by_alias(settings.mlflow.model_name, alias)
    except MlflowException:
        return
    client.delete_registered_model_alias(settings.mlflow.model_name, alias)


def move_alias(settings: Settings, alias: str, version: str | None) -> None:
    """Point `alias` at `version`, or remove it when `version` is None."""
    if version is None:
        delete_alias(settings, alias)
    else:
        set_alias(settings, alias, version)


@dataclass(frozen=True)
class RegistryState:
    """Aliases and model tags, read with one registry call (what the server polls)."""

    aliases: dict[str, str]
    tags: dict[str, str]

    @property
    def canary_share(self) -> float:
        try:
            return float(self.tags.get(CANARY_SHARE_TAG, "0"))
        except ValueError:
            return 0.0

    @property
    def canary_shadow(self) -> bool:
        return self.tags.get(CANARY_SHADOW_TAG, "false").lower() == "true"


def registry_state(settings: Settings) -> RegistryState:
    """Alias -> version and the registered model's tags ({} when not registered yet)."""
    client = connect(settings)
    try:
        rm = client.get_registered_model(settings.mlflow.model_name)
    except MlflowException:
        return RegistryState({}, {})
    return RegistryState(
        aliases={str(k): str(v) for k, v in sorted(rm.aliases.items())},
        tags={str(k): str(v) for k, v in (rm.tags or {}).items()},
    )


def set_model_tags(settings: Settings, tags: dict[str, str]) -> None:
    """Tags on the registered model (canary share and mode)."""
    client = connect(settings)
    for key, value in tags.items():
        client.set_registered_model_tag(settings.mlflow.model_name, key, value)


def version_tags(settings: Settings, version: str) -> dict[str, str]:
    """The tags of one model version (evaluation and gate results)."""
    client = connect(settings)
    mv = _version(client, settings, version)
    return {str(k): str(v) for k, v in (mv.tags or {}).items()}


def set_version_tags(settings: Settings, version: str, tags: dict[str, str]) -> None:
    client = connect(settings)
    _version(client, settings, version)
    for key, value in tags.items():
        client.set_model_version_tag(settings.mlflow.model_name, version, key, value)


def list_versions(settings: Settings) -> list[VersionInfo]:
    """Every registered version, newest first ([] when nothing is registered); versions
    whose registration did not complete are marked first (`mark_incomplete`)."""
    client = connect(settings)
    name = settings.mlflow.model_name
    mark_incomplete(settings)
    try:
        found = client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        return []
    held: dict[str, list[str]] = {}
    for alias, version in aliases(settings).items():
        held.setdefault(version, []).append(alias)
    infos = [_info(client, mv, detail=False, aliases=held.get(str(mv.version), [])) for mv in found]
    return sorted(infos, key=lambda v: int(v.version), reverse=True)


def mark_incomplete(settings: Settings) -> tuple[str, ...]:
    """Mark each version whose registration did not complete (clv.registry.completion): tags
    `clv.status=incomplete` with the reason, and its run FAILED when it was left RUNNING.
    A version a live training run is still tagging is left alone. The versions marked."""
    client = connect(settings)
    name = settings.mlflow.model_name
    try:
        found = client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        return ()
    host, now_ms = socket.gethostname(), time.time() * 1000.0
    marked: list[str] = []
    for mv in found:
        tags = {str(k): str(v) for k, v in (mv.tags or {}).items()}
        if STATUS_TAG in tags:
            continue
        run = _run(client, mv.run_id)
        owner = run.data.tags.get(RUN_OWNER_TAG) if run is not None else None
        judged = judge_registration(
            tags,
            run_status=str(run.info.status) if run is not None else None,
            owner=owner,
            owner_alive=owner_alive(owner, host=host),
            age_seconds=(now_ms - int(mv.creation_timestamp)) / 1000.0,
            grace_seconds=settings.registry.incomplete_grace_seconds,
        )
        if judged.state != "incomplete":
            continue
        client.set_model_version_tag(name, str(mv.version), STATUS_REASON_TAG, judged.reason)
        client.set_model_version_tag(name, str(mv.version), STATUS_TAG, STATUS_INCOMPLETE)
        if run is not None and run.info.status == "RUNNING":
            client.set_terminated(str(mv.run_id), "FAILED")
        marked.append(str(mv.version))
    return tuple(marked)


def _run(client: MlflowClient, run_id: str | None) -> Run | None:
    if not run_id:
        return None
    try:
        return client.get_run(run_id)
    except MlflowException:
        return None


def version_info(settings: Settings, version: str) -> VersionInfo:
    """One version with its run's params, metrics and tags."""
    client = connect(settings)
    mv = _version(client, settings, version)
    held = [a for a, v in aliases(settings).items() if v == str(mv.version)]
    return _info(client, mv, detail=True, aliases=held)


def load_alias(settings: Settings, alias: str = CHAMPION) -> LoadedModel:
    """The ClvModel an alias points at (downloaded once per version into the workspace)."""
    client = connect(settings)
    try:
        mv = client.get_model_version_by_alias(settings.mlflow.model_name, alias)
    except MlflowException as exc:
        if alias == CHAMPION:
            raise NotReadyError(NO_CHAMPION) from exc
        raise NotReadyError(
            f"model {settings.mlflow.model_name!r} has no alias {alias!r}: "
            "see `clv registry status`"
        ) from exc
    return load_version(settings, str(mv.version), alias=alias)


def load_version(
    settings: Settings, version: str, *, alias: str = "", evaluated: bool = False
) -> LoadedModel:
    """A version's served bundle, or with `evaluated` its held-out (embargoed) evaluation bundle.

    Versions whose served model is itself the evaluated one have no separate evaluation bundle;
    asking for it raises NotReadyError.
    """
    client = connect(settings)
    mv = _version(client, settings, version)
    run_id = str(mv.run_id)
    artifact = EVAL_BUNDLE_PATH if evaluated else BUNDLE_PATH
    bundle = _cached_bundle(settings, version, run_id, artifact=artifact)
    return LoadedModel(model=ClvModel.load(bundle), version=version, alias=alias, run_id=run_id)


def reference_frame(settings: Settings, run_id: str) -> pd.DataFrame:
    """The reference sample (training features + predictions) logged with a run."""
    import mlflow

    connect(settings)
    try:
        with tempfile.TemporaryDirectory(prefix="clv-ref-") as tmp:
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id,
                artifact_path=f"{REFERENCE_PATH}/{REFERENCE_FILE}",
                dst_path=tmp,
                tracking_uri=settings.tracking_uri,
            )
            return pd.read_parquet(local)
    except MlflowException as exc:
        raise NotReadyError(
            f"run {run_id} has no reference sample: retrain with `clv train`"
        ) from exc


def load_contractual(settings: Settings, version: str) -> ContractualModel | None:
    """The subscribers' contractual part of a version (clv.model.contractual_bundle), or None
    when its training saw no subscriptions (no `clv.contractual` tag of "true")."""
    client = connect(settings)
    mv = _version(client, settings, version)
    if (mv.tags or {}).get(CONTRACTUAL_TAG) != "true":
        return None
    bundle = _cached_bundle(
        settings, version, str(mv.run_id), artifact=CONTRACTUAL_PATH, card=CONTRACTUAL_CARD
    )
    return ContractualModel.load(bundle)


def _cached_bundle(
    settings: Settings,
    version: str,
    run_id: str,
    *,
    artifact: str = BUNDLE_PATH,
    card: str = CARD_FILE,
) -> Path:
    """`<ws>/.clv/models/<version>/`: downloaded on first use, atomically (temp dir + rename)."""
    import mlflow

    name = version if artifact == BUNDLE_PATH else f"{version}-{artifact}"
    target = models_dir(settings) / name
    if (target / card).exists():
        return target
    models_dir(settings).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=models_dir(settings)))
    try:
        mlflow.artifacts.download_artifacts(
            run_id=run_id,
            artifact_path=artifact,
            dst_path=str(tmp),
            tracking_uri=settings.tracking_uri,
        )
        if target.exists():
            shutil.rmtree(target)
        (tmp / artifact).rename(target)
    except MlflowException as exc:
        raise NotReadyError(f"version {version} (run {run_id}) has no {artifact} artifact") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _version(client: MlflowClient, settings: Settings, version: str) -> ModelVersion:
    name = settings.mlflow.model_name
    try:
        return client.get_model_version(name, str(version))
    except MlflowException as exc:
        raise ClvError(f"model {name!r} has no version {version}: see `clv registry list`") from exc


def _info(
    client: MlflowClient, mv: ModelVersion, *, detail: bool, aliases: list[str]
) -> VersionInfo:
    metrics: dict[str, float] = {}
    params: dict[str, str] = {}
    tags: dict[str, str] = {}
    if mv.run_id:
        try:
            run = client.get_run(mv.run_id)
        except MlflowException:
            run = None
        if run is not None:
            all_metrics = {str(k): float(v) for k, v in run.data.metrics.items()}
            metrics = (
                all_metrics
                if detail
                else {k: all_metrics[k] for k in HEADLINE_METRICS if k in all_metrics}
            )
            if detail:
                params = {str(k): str(v) for k, v in run.data.params.items()}
                tags = {
                    str(k): str(v)
                    for k, v in run.data.tags.items()
                    if not str(k).startswith("mlflow.")
                }
    return VersionInfo(
        version=str(mv.version),
        run_id=str(mv.run_id),
        aliases=tuple(sorted(set(aliases) | set(mv.aliases or ()))),
        created=pd.Timestamp(int(mv.creation_timestamp), unit="ms", tz="UTC"),
        status=str(mv.status),
        metrics=metrics,
        params=params,
        tags=tags,
        version_tags={str(k): str(v) for k, v in (mv.tags or {}).items()},
    )


def live_champion(settings: Settings) -> ChampionModel | None:
    """The champion's held-out evaluation bundle (its served bundle when it has none), to be
    scored on the new version's test rows; None without a champion."""
    from clv.training.champion import ChampionModel  # lazy: serving imports this module

    version = alias_version(settings, CHAMPION)
    if version is None:
        return None
    try:
        model = load_version(settings, version, evaluated=True).model
    except NotReadyError:
        model = load_version(settings, version).model
    return ChampionModel(version, model)
