"""The CLI imports Feast without typeguard's import-time instrumentation (clv.core.dependencies
.skip_feast_typechecks), unless CLV_DEBUG is set; a process that imported Feast first keeps
Feast's checks. Each case is a fresh interpreter: whether Feast checks its arguments is decided
once, when Feast is imported."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = """
import sys
from clv.core.dependencies import skip_feast_typechecks
mode = sys.argv[1]
skipped = None
if mode == "feast first":
    import feast
if mode == "cli":
    from clv.cli.main import main
    main(["--help"])
else:
    skipped = skip_feast_typechecks()
import feast
try:
    feast.Entity(name=123, join_keys=["customer_id"])  # a name that is not a str
    checked = False
except Exception as exc:
    checked = type(exc).__name__ == "TypeCheckError"
print(skipped, checked)
"""


def _probe(mode: str, *, debug: bool = False) -> str:
    env = {k: v for k, v in os.environ.items() if k != "CLV_DEBUG"}
    if debug:
        env["CLV_DEBUG"] = "1"
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", PROBE, mode],
        capture_output=True,
        text=True,
        check=True,
        timeout=180,
        env=env,
    )
    return done.stdout.strip().splitlines()[-1]


def test_skipped_before_feast_is_imported_feast_checks_nothing() -> None:
    assert _probe("skip first") == "True False"


def test_once_feast_is_imported_nothing_changes_and_its_checks_stay() -> None:
    assert _probe("feast first") == "False True"


def test_the_cli_skips_them_unless_debugging() -> None:
    assert _probe("cli") == "None False"
    assert _probe("cli", debug=True) == "None True"
