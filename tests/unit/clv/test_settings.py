from __future__ import annotations

from pathlib import Path

import pytest

from clv.core.errors import ConfigError
from clv.core.settings import load_settings


def test_defaults_bind_state_to_the_workspace(tmp_path: Path) -> None:
    s = load_settings(tmp_path, environ={})
    assert s.workspace == tmp_path.resolve()
    assert s.model.horizon_days == 365
    assert s.model.churn_window_days == 90
    assert s.model.annual_discount_rate == pytest.approx(0.10)
    assert s.tracking_uri == f"sqlite:///{tmp_path.resolve() / '.clv' / 'mlflow.db'}"
    assert s.optuna_storage.endswith("/.clv/optuna.db")
    assert s.reports_dir == tmp_path.resolve() / "reports"


def test_yaml_then_environment_override(tmp_path: Path) -> None:
    (tmp_path / "clv.yaml").write_text(
        "model:\n  horizon_days: 180\n  margin_rate: 0.4\nmlflow:\n  tracking_uri: ${DB_URI}\n"
    )
    env = {"DB_URI": "postgresql://u@h/db", "CLV_MODEL__HORIZON_DAYS": "90"}
    s = load_settings(tmp_path, environ=env)
    assert s.model.horizon_days == 90  # the environment wins over the file
    assert s.model.margin_rate == pytest.approx(0.4)
    assert s.tracking_uri == "postgresql://u@h/db"


def test_unknown_key_is_rejected_with_the_file_named(tmp_path: Path) -> None:
    (tmp_path / "clv.yaml").write_text("model:\n  horizon: 10\n")
    with pytest.raises(ConfigError, match=r"clv\.yaml: model\.horizon"):
        load_settings(tmp_path, environ={})


def test_invalid_value_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="annual_discount_rate"):
        load_settings(tmp_path, environ={"CLV_MODEL__ANNUAL_DISCOUNT_RATE": "1.5"})


def test_missing_env_reference_names_the_variable(tmp_path: Path) -> None:
    (tmp_path / "clv.yaml").write_text("mlflow:\n  tracking_uri: ${NOPE_NOT_SET}\n")
    with pytest.raises(ConfigError, match="NOPE_NOT_SET"):
        load_settings(tmp_path, environ={})


def test_settings_are_frozen(tmp_path: Path) -> None:
    s = load_settings(tmp_path, environ={})
    with pytest.raises(ValueError, match="frozen"):
        s.model.horizon_days = 3  # type: ignore[misc]
