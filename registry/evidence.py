"""The evidence for the promotion gates, gathered: tags, the served contract, a smoke test.

`check_gates` gathers it for a version against the champion, calls the pure decision
(`clv.registry.gates.evaluate_gates`) and tags the version with the result.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from clv.core.contracts import CHAMPION
from clv.core.errors import ClvError
from clv.core.settings import Settings
from clv.registry import gates, mlflow_io
from clv.registry.gates import GateResult, ServedContract, SmokeResult


def served_contract(settings: Settings) -> ServedContract | None:
    """The FeatureService the online store serves, or None when Feast cannot be read."""
    try:
        from clv.features.feast_io import feature_names

        names = feature_names(settings)
    except Exception:
        return None
    return ServedContract(service=settings.features.service, feature_names=tuple(names))


def smoke_test(settings: Settings, version: str, *, rows: int = 200) -> SmokeResult:
    """Load the version and score part of its reference sample (or one empty row)."""
    import pandas as pd

    try:
        loaded = mlflow_io.load_version(settings, version)
    except Exception as exc:
        return SmokeResult(False, f"does not load: {type(exc).__name__}: {_line(exc)}")
    model = loaded.model
    contract = gates.ModelContract(model.card.feature_service, tuple(model.feature_names))
    try:
        batch = mlflow_io.reference_frame(settings, loaded.run_id).head(rows)
    except ClvError:
        batch = pd.DataFrame({name: [np.nan] for name in model.feature_names})
    try:
        preds = model.predict(batch)
    except Exception as exc:
        return SmokeResult(False, f"does not score: {type(exc).__name__}: {_line(exc)}", contract)
    clv = preds["clv"].to_numpy(dtype=np.float64)
    churn = preds["churn_probability"].to_numpy(dtype=np.float64)
    if len(preds) != len(batch) or not np.isfinite(clv).all():
        return SmokeResult(False, f"non-finite CLV on a {len(batch)}-row smoke batch", contract)
    if np.isfinite(churn).any() and not ((churn >= 0) & (churn <= 1)).all():
        return SmokeResult(False, "churn probability outside [0, 1] on the smoke batch", contract)
    return SmokeResult(True, f"loaded and scored {len(batch)} rows", contract)


def check_gates(
    settings: Settings, version: str, *, forced: bool = False, by: str | None = None
) -> GateResult:
    """Gather the evidence for `version` against the champion, decide, tag the version.

    The champion's evidence is its tags; when training scored it on this version's test rows
    (`eval.champion.*`) the gates compare on those (`clv.registry.gates.
    champion_on_candidate_rows`). `by` names the job that checked (tag `gate.by`).
    """
    mlflow_io.mark_incomplete(settings)  # a version left by a killed training is refused
    held = mlflow_io.aliases(settings)
    champion = held.get(CHAMPION)
    candidate = gates.VersionEvidence(version, mlflow_io.version_tags(settings, version))
    incumbent = (
        gates.VersionEvidence(champion, mlflow_io.version_tags(settings, champion))
        if champion is not None and champion != version
        else None
    )
    result = gates.evaluate_gates(
        candidate,
        incumbent,
        settings=settings.registry,
        served=served_contract(settings),
        smoke=smoke_test(settings, version),
        forced=forced,
    )
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    signed = {"gate.by": by} if by is not None else {}
    mlflow_io.set_version_tags(
        settings, version, {**result.tags(), "gate.checked_at": stamp, **signed}
    )
    return result


def _line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
