"""The registry adapter and CLI against a real MLflow SQLite store in a tmp workspace."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from clv.cli import registry as registry_cli
from clv.core.console import CliState
from clv.core.errors import ClvError, NotReadyError
from clv.core.settings import Settings
from clv.registry.aliases import ensure_champion
from clv.registry.mlflow_io import (
    aliases,
    list_versions,
    load_alias,
    reference_frame,
    version_info,
)
from clv.registry.promotion import promote

pytestmark = pytest.mark.slow
Register = Callable[..., tuple[str, str]]


def test_no_model_yet_is_not_ready(settings: Settings, register_version: Register) -> None:
    with pytest.raises(NotReadyError, match=r"no champion yet: run `clv train`"):
        load_alias(settings)
    assert list_versions(settings) == []
    assert aliases(settings) == {}


def test_champion_is_set_once_then_promotion_moves_it(
    settings: Settings, register_version: Register
) -> None:
    _, v1 = register_version(settings, scale=1.0)
    run2, v2 = register_version(settings, scale=3.0)
    assert (v1, v2) == ("1", "2")
    with pytest.raises(NotReadyError, match="no champion yet"):
        load_alias(settings)  # registered but no alias yet
    assert ensure_champion(settings, v1) is True
    assert ensure_champion(settings, v2) is False
    assert aliases(settings) == {"champion": "1", "challenger": "2"}

    decision = promote(settings, v2, force=True)  # no evaluation tags: gates fail, forced
    assert "was version 1" in decision.message
    assert aliases(settings) == {"champion": "2"}
    loaded = load_alias(settings)
    assert (loaded.version, loaded.run_id) == ("2", run2)
    # the cache holds the bundle by version; version 2 predicts ~3x spend
    assert (settings.state_dir / "models" / "2" / "model.json").exists()
    x = pd.DataFrame({"spend": [50.0], "channel": ["web"]})
    assert loaded.model.predict(x)["clv"].iloc[0] > 100.0  # the 3x model, not the 1x one


def test_cached_bundle_is_reused(settings: Settings, register_version: Register) -> None:
    _, v1 = register_version(settings, scale=1.0)
    ensure_champion(settings, v1)
    first = load_alias(settings)
    card = settings.state_dir / "models" / "1" / "model.json"
    stamp = card.stat().st_mtime_ns
    second = load_alias(settings)
    assert card.stat().st_mtime_ns == stamp
    x = pd.DataFrame({"spend": [10.0, 90.0], "channel": ["app", "web"]})
    np.testing.assert_allclose(first.model.predict(x)["clv"], second.model.predict(x)["clv"])
    assert second.model.predict(x)["clv"].iloc[1] > second.model.predict(x)["clv"].iloc[0]


def test_versions_listing_and_reference(settings: Settings, register_version: Register) -> None:
    run1, _ = register_version(settings, scale=1.0)
    register_version(settings, scale=2.0)
    ensure_champion(settings, "1")
    versions = list_versions(settings)
    assert [v.version for v in versions] == ["2", "1"]
    assert versions[1].aliases == ("champion",) and versions[0].aliases == ()
    assert versions[1].metrics["test_gini"] == pytest.approx(0.51)
    info = version_info(settings, "1")
    assert info.run_id == run1 and info.aliases == ("champion",)
    ref = reference_frame(settings, run1)
    assert len(ref) == 60 and {"spend", "channel", "clv"} <= set(ref.columns)
    with pytest.raises(ClvError, match="has no version 9"):
        version_info(settings, "9")


def test_cli_status_promote_list_show_json(settings: Settings, register_version: Register) -> None:
    register_version(settings, scale=1.0)
    register_version(settings, scale=2.0)
    runner = CliRunner()
    obj = CliState(workspace=settings.workspace)
    app = registry_cli.app

    def call(*args: str) -> dict[str, object]:
        res = runner.invoke(app, [*args, "--json"], obj=obj)
        assert res.exit_code == 0, res.output
        doc = json.loads(res.stdout)
        assert isinstance(doc, dict)
        return doc

    assert call("status")["aliases"] == {}
    assert call("promote", "2", "--force")["changes"][0]["to_version"] == "2"
    assert call("status")["aliases"] == {"champion": "2"}
    listed = call("list")["versions"]
    assert isinstance(listed, list) and [v["version"] for v in listed] == ["2", "1"]
    shown = call("show", "2")
    assert shown["aliases"] == ["champion"] and "params" in shown
    res = runner.invoke(app, ["promote", "7", "--force"], obj=obj)
    assert res.exit_code != 0 and isinstance(res.exception, ClvError)
