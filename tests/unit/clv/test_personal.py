"""Personal data: keyed pseudonyms, the key from the environment, `protect` on a raw frame."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clv.core.errors import ConfigError
from clv.core.settings import IngestSettings, Settings
from clv.inputs.personal import personal_key, protect, pseudonym, pseudonymize

KEY = b"unit-test-key"
ENV = {"CLV_PERSONAL_KEY": KEY.decode()}


def settings(*columns: str, **ingest: str) -> Settings:
    return Settings(
        workspace=Path("unused"),
        ingest=IngestSettings(personal_columns=columns, **ingest),  # type: ignore[arg-type]
    )


def test_pseudonym_is_the_keyed_hmac_sha256_prefixed() -> None:
    digest = hmac.new(KEY, b"ann@example.org", hashlib.sha256).hexdigest()
    assert pseudonym("ann@example.org", KEY) == "h:" + digest[:32]


def test_pseudonym_is_stable_per_key_and_differs_across_keys_and_values() -> None:
    ann = pseudonym("ann@example.org", KEY)
    assert pseudonym("ann@example.org", KEY) == ann
    assert pseudonym("ann@example.org", b"another key") != ann
    assert pseudonym("bob@example.org", KEY) != ann
    assert "ann" not in ann


def test_pseudonym_ignores_surrounding_whitespace_only() -> None:
    ann = pseudonym("ann@example.org", KEY)
    assert pseudonym("  ann@example.org\t\n", KEY) == ann
    assert pseudonym("ann @example.org", KEY) != ann
    assert pseudonym("Ann@example.org", KEY) != ann  # no case folding: ids may be case-sensitive


def test_pseudonymize_keeps_missing_values_missing() -> None:
    values = pd.Series(["ann@example.org", None, np.nan, "", "   ", " ann@example.org"])
    out = pseudonymize(values, KEY)
    ann = pseudonym("ann@example.org", KEY)
    assert out.tolist() == [ann, None, None, None, None, ann]


def test_pseudonymize_hashes_numbers_as_their_text() -> None:
    out = pseudonymize(pd.Series([447700900123, 12]), KEY)
    assert out.tolist() == [pseudonym("447700900123", KEY), pseudonym("12", KEY)]


@pytest.mark.parametrize(
    ("name", "environ"),
    [("CLV_PERSONAL_KEY", {}), ("CLV_PERSONAL_KEY", {"CLV_PERSONAL_KEY": ""}), ("SHOP_PII", {})],
)
def test_a_missing_key_is_a_config_error_naming_the_variable(
    name: str, environ: dict[str, str]
) -> None:
    with pytest.raises(ConfigError, match=rf"\${name} is empty"):
        personal_key(settings("email", personal_key_env=name), environ=environ)
    frame = pd.DataFrame({"customer_id": ["C1"], "email": ["ann@example.org"]})
    with pytest.raises(ConfigError, match=rf"\${name} is empty"):
        protect(frame, settings("email", personal_key_env=name), environ=environ)


def test_the_key_comes_from_the_variable_the_settings_name() -> None:
    chosen = settings("email", personal_key_env="SHOP_PII")
    assert personal_key(chosen, environ={"SHOP_PII": "k2", "CLV_PERSONAL_KEY": "k1"}) == b"k2"


def test_protect_hashes_declared_columns_and_leaves_the_rest_unchanged() -> None:
    frame = pd.DataFrame(
        {
            "customer_id": ["C1", "C2", "C3"],
            " email ": ["ann@example.org", None, "cy@example.org"],  # names are stripped
            "amount": [10.5, 3.0, np.nan],
            "country": ["GB", "US", None],
        }
    )
    before = frame.copy()
    out = protect(frame, settings("email", "phone"), environ=ENV)
    assert out[" email "].tolist() == [
        pseudonym("ann@example.org", KEY),
        None,
        pseudonym("cy@example.org", KEY),
    ]
    for column in ("customer_id", "amount", "country"):
        pd.testing.assert_series_equal(out[column], before[column])
    assert list(out.columns) == list(before.columns)
    pd.testing.assert_frame_equal(frame, before)  # the caller's frame is not changed


def test_a_file_without_declared_columns_needs_no_key() -> None:
    frame = pd.DataFrame({"customer_id": ["C1"], "amount": ["1"]})
    assert protect(frame, settings("email"), environ={}) is frame


def test_drop_removes_declared_columns_without_a_key() -> None:
    frame = pd.DataFrame({"customer_id": ["C1"], "email": ["ann@example.org"], "name": ["Ann"]})
    out = protect(frame, settings("email", "name", personal_action="drop"), environ={})
    assert list(out.columns) == ["customer_id"]


def test_drop_of_a_required_column_is_a_config_error() -> None:
    frame = pd.DataFrame({"customer_id": ["ann@example.org"], "ts": ["2024-01-01"]})
    chosen = settings("customer_id", personal_action="drop")
    with pytest.raises(
        ConfigError, match=r"customer_id is a required column.*personal_action: hash"
    ):
        protect(frame, chosen, environ={})
