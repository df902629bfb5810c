"""What a benchmark case is: a function of `quick` that returns its measured figures (a flat
JSON mapping), working in its own workspace under `benchmarks/work/` (git-ignored), never in
the repo tree proper."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Protocol

from clv.core.settings import Settings, load_settings

WORK = Path(__file__).resolve().parent / "work"

Figures = dict[str, object]


class Case(Protocol):
    """One benchmark: `quick` picks the smaller sizes of a smoke run."""

    def __call__(self, *, quick: bool) -> Figures: ...


def workspace(name: str) -> Settings:
    """A fresh, empty workspace for one benchmark."""
    path = WORK / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    settings = load_settings(path, environ={})
    settings.ensure_dirs()
    return settings
