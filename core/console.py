"""What commands print: a short human summary, or one JSON document with `--json`."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import typer

from clv.core.settings import Settings, load_settings

JsonOption = typer.Option(False, "--json", help="Print one machine-readable JSON document.")


def as_of_option(
    help: str = "Snapshot date YYYY-MM-DD (default: the latest snapshot).",
) -> str | None:
    """The `--as-of` option: a date, or None when not given."""
    return typer.Option(None, "--as-of", help=help)


@dataclass
class CliState:
    """Carried on the Typer context: the workspace chosen at the root, settings loaded lazily."""

    workspace: Path | None
    _settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.workspace)
        return self._settings


def settings_of(ctx: typer.Context) -> Settings:
    """The settings of the workspace the root command was given."""
    root = ctx.find_root()
    state = root.obj
    if not isinstance(state, CliState):
        state = CliState(workspace=None)
        root.obj = state
    return state.settings


def _default(o: object) -> object:
    if isinstance(o, datetime | date):
        return o.isoformat()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "item"):  # numpy scalars
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def to_json(payload: Mapping[str, object]) -> str:
    return json.dumps(payload, default=_default, indent=2, sort_keys=False)


def emit(summary: str, payload: Mapping[str, object], *, as_json: bool) -> None:
    """Print the human summary, or the JSON payload alone on stdout."""
    if as_json:
        sys.stdout.write(to_json(payload) + "\n")
    else:
        typer.echo(summary)


def progress(message: str) -> None:
    """A progress line on stderr, so that `--json` stdout stays one document."""
    typer.echo(message, err=True)
