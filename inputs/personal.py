"""Personal data: columns declared personal (`ingest.personal_columns`) never stored in clear.

At ingest, before validation (so quarantine files and error messages never see them), each
declared column that a raw file holds is replaced by a keyed pseudonym (HMAC-SHA256 with the
key from the environment variable `ingest.personal_key_env`) or dropped
(`ingest.personal_action`). The pseudonym is stable for one key, so a hashed e-mail joins
across tables and files, and a caller holding the clear value finds it with `pseudonym`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping

import pandas as pd

from clv.core.contracts import CONTRACTS
from clv.core.errors import ConfigError
from clv.core.settings import Settings

PREFIX = "h:"
"""Pseudonyms start with this, so a reader can tell one from a clear value."""
DIGITS = 32
"""Hex digits kept of the HMAC-SHA256 (128 bits: no collisions among billions of values)."""


def personal_key(settings: Settings, *, environ: Mapping[str, str] | None = None) -> bytes:
    """The hash key from the environment; ConfigError (naming the variable) when unset."""
    env = os.environ if environ is None else environ
    name = settings.ingest.personal_key_env
    value = env.get(name, "")
    if not value:
        raise ConfigError(
            f"ingest.personal_columns is set but ${name} is empty: set it to a secret key "
            "(the same key every time, or pseudonyms will not match), or set "
            "ingest.personal_action: drop"
        )
    return value.encode()


def pseudonym(value: str, key: bytes) -> str:
    """The keyed pseudonym of one clear value (surrounding whitespace ignored)."""
    digest = hmac.new(key, value.strip().encode(), hashlib.sha256).hexdigest()
    return PREFIX + digest[:DIGITS]


def pseudonymize(values: pd.Series, key: bytes) -> pd.Series:
    """Every non-missing value replaced by its pseudonym (each distinct value hashed once)."""
    text = values.astype("string")
    present = text.notna() & (text.str.strip() != "")
    codes, uniques = pd.factorize(text[present])
    hashed = pd.Series([pseudonym(str(u), key) for u in uniques], dtype=object)
    out = pd.Series([None] * len(values), index=values.index, dtype=object)
    if len(codes):
        out[present.to_numpy()] = hashed.to_numpy()[codes]
    return out


def declared(settings: Settings, columns: pd.Index) -> list[str]:
    """The personal columns among a raw file's columns."""
    wanted = {c.strip() for c in settings.ingest.personal_columns}
    return [str(c) for c in columns if str(c).strip() in wanted]


def protect(
    frame: pd.DataFrame, settings: Settings, *, environ: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """A raw frame with its personal columns hashed or dropped (the frame itself unchanged)."""
    columns = declared(settings, frame.columns)
    if not columns:
        return frame
    out = frame.copy()
    if settings.ingest.personal_action == "drop":
        required = {c for contract in CONTRACTS.values() for c in contract.required}
        kept = sorted(set(columns) & required)
        if kept:
            raise ConfigError(
                f"ingest.personal_action is drop, but {', '.join(kept)} is a required column; "
                "use personal_action: hash for it"
            )
        return out.drop(columns=columns)
    key = personal_key(settings, environ=environ)
    for column in columns:
        out[column] = pseudonymize(out[column], key)
    return out
