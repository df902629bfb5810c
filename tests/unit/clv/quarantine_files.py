"""Helpers of the ingest tests of this folder: a small input file, and the quarantine's reasons."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def write(path: Path, text: str) -> Path:
    """`text` at `path` (its folder made when missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def reasons(path: Path | None) -> dict[int, str]:
    """Row number -> reason of a quarantine file."""
    assert path is not None
    q = pd.read_csv(path, dtype=str)
    return dict(zip(q["row_number"].astype(int), q["reason"], strict=True))
