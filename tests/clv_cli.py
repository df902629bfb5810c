"""The `clv` CLI in process, as the tests drive it: `clv --workspace WS ARGV --json`."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

from clv.cli.main import main


def run_clv(workspace: Path, *argv: str) -> tuple[int, str]:
    """The exit code and what the command printed on stdout."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["--workspace", str(workspace), *argv, "--json"])
    return code, out.getvalue()


def clv_json(workspace: Path, *argv: str) -> dict[str, Any]:
    """The JSON document of a command that must succeed."""
    code, printed = run_clv(workspace, *argv)
    assert code == 0, (argv, printed[-500:])
    result: dict[str, Any] = json.loads(printed)
    return result
